#!/usr/bin/env bash
# The OpenAI Responses API (/v1/responses) against the same server's chat completions, with the official client
# (tests/server/responses.cjs); then the store's limit: the oldest response goes first.
source "$(dirname "$0")/lib.sh"
start_server --backend cpu --threads 2
run_node "$HERE/responses.cjs"
m=$(curl -sf "$BASE/metrics") || die "/metrics"
grep -q 'mimo:http_requests_total{path="/v1/responses/\*",status="404"}' <<<"$m" || die "/metrics: GET/DELETE by id counted under one path"
stop_server
CALLS='<think>Need the weather.</think><tool_call>
<function=get_weather>
<parameter=city>
Paris
</parameter>
</function>
</tool_call>
<tool_call>
<function=get_weather>
<parameter=city>
Lyon
</parameter>
</function>
</tool_call>'
start_mock "$CALLS"
TOOLS=1 run_node "$HERE/responses.cjs"
stop_server
start_server --backend cpu --threads 2 --max-stored-responses 2
ids=()
for i in 1 2 3; do
  ids+=("$(curl -sf "$BASE/v1/responses" -H 'content-type: application/json' \
    -d '{"model":"tiny","input":"hi '"$i"'","max_output_tokens":2}' | node -e 'console.log(JSON.parse(require("fs").readFileSync(0,"utf8")).id)')")
done
code() { curl -s -o /dev/null -w '%{http_code}' "$BASE/v1/responses/$1"; }
[ "$(code "${ids[0]}")" = 404 ] && [ "$(code "${ids[1]}")" = 200 ] && [ "$(code "${ids[2]}")" = 200 ] ||
  die "--max-stored-responses 2: GET of 3 responses gave $(code "${ids[0]}") $(code "${ids[1]}") $(code "${ids[2]}")"
s=$(curl -sf "$BASE/v1/responses" -H 'content-type: application/json' -d '{"model":"tiny","input":"x","max_output_tokens":2,"store":false}' |
  node -e 'console.log(JSON.parse(require("fs").readFileSync(0,"utf8")).id)')
[ "$(code "$s")" = 404 ] || die "store: false was kept"
stop_server
echo "ok   --max-stored-responses 2 keeps the newest two; store: false keeps none"
