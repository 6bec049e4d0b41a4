#!/usr/bin/env bash
# Tool calls over a scripted output (tests/server/tools.cjs).
source "$(dirname "$0")/lib.sh"
CALLS='<tool_call>
<function=get_weather>
<parameter=city>
北京
</parameter>
<parameter=days>
3
</parameter>
<parameter=metric>
true
</parameter>
</function>
</tool_call>
<tool_call>
<function=add>
<parameter=a>
1.5
</parameter>
<parameter=b>
2
</parameter>
</function>
</tool_call>'
start_mock "<think>Need the weather.</think>$CALLS"
run_node "$HERE/tools.cjs"
stop_server
# required / named: the engine forces the output to start with the call syntax (the script starts with it)
start_mock "$CALLS"
FORCED=1 run_node "$HERE/tools.cjs"
stop_server
echo ok
