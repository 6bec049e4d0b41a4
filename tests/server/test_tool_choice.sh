#!/usr/bin/env bash
# Constrained tool calls with real sampling (tests/server/tool_choice.cjs): tool_choice required / named and auto
# with strict functions (OpenAI), any / tool (Anthropic) on the random tiny model. Every finished call's arguments,
# as the server's own parser returned them, must be valid under the tool's parameters schema by python3-jsonschema
# (an independent validator); a strict tool whose schema cannot be constrained is a 400 naming the keyword.
source "$(dirname "$0")/lib.sh"
start_server
export TOOLS='[
 {"type":"function","function":{"name":"set_alarm","parameters":{"type":"object","properties":{
   "hour":{"type":"integer","minimum":0,"maximum":23},"minute":{"type":"integer","minimum":0,"maximum":59},
   "label":{"type":"string","maxLength":6},"days":{"type":"array","items":{"enum":["mon","tue","sat"]},"maxItems":2},
   "loud":{"type":"boolean"}},"required":["hour","minute"]}}},
 {"type":"function","function":{"name":"lookup","parameters":{"type":"object","properties":{
   "kind":{"type":"string","enum":["city","person"]},"id":{"type":"string","pattern":"^[A-Z][0-9]{2}$"},
   "limit":{"type":"number","minimum":0,"maximum":1}},"required":["kind","id"]}}}]'
run_node "$HERE/tool_choice.cjs" >"$WORK/calls.jsonl"
head -n 3 "$WORK/calls.jsonl"
/usr/bin/python3 - "$WORK/calls.jsonl" <<'PY' || die "forced tool calls: arguments not valid under their schema"
import json, os, sys
import jsonschema
tools = {t["function"]["name"]: t["function"]["parameters"] for t in json.loads(os.environ["TOOLS"])}
n, by_api = 0, {}
for line in open(sys.argv[1]):
    c = json.loads(line)
    jsonschema.validate(c["arguments"], tools[c["name"]])
    n += 1
    by_api[c["api"]] = by_api.get(c["api"], 0) + 1
print(f"ok   {n} constrained tool calls {by_api}, arguments valid under their tools' schemas")
if n < 10 or min(by_api.get(k, 0) for k in ("auto-strict", "thinking", "responses")) < 1:
    sys.exit(f"only {n} calls: {by_api}")
PY
STRICT='[{"type":"function","function":{"name":"f","strict":true,"parameters":{"type":"object","properties":{"x":{"type":"integer","multipleOf":2}}}}}]'
expect_400 "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":4,\"tools\":$STRICT,\"tool_choice\":\"required\"}" \
  "tools[0].function.parameters.properties.x.multipleOf"
stop_server
echo ok
