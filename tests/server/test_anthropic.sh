#!/usr/bin/env bash
# Anthropic Messages API (/v1/messages, /v1/messages/count_tokens) with the real
# @anthropic-ai/sdk: scripted outputs (--mock-output) for thinking/text/stop/tools,
# then a real tiny model with an API key for every error case in Anthropic's shape.
source "$(dirname "$0")/lib.sh"
start_mock "<think>plan</think>Hello"
run_node "$HERE/anthropic_basic.cjs"
stop_server

CALLS='<tool_call>
<function=get_weather>
<parameter=city>
Paris
</parameter>
<parameter=days>
3
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
start_mock "<think>Need the tools.</think>$CALLS"
run_node "$HERE/anthropic_tools.cjs"
stop_server
# any / tool: the engine forces the output to start with the call syntax (the script starts with it)
start_mock "$CALLS"
FORCED=1 run_node "$HERE/anthropic_tools.cjs"
stop_server

start_server --max-model-len 128 --api-key sekret --max-body-bytes 65536
API_KEY=sekret run_node "$HERE/anthropic_errors.cjs"
H=(-H "x-api-key: sekret" -H "anthropic-version: 2023-06-01" -H "Content-Type: application/json")
# expect STATUS TYPE PATH BODY: the status and Anthropic's {"type":"error","error":{type, message}}
expect() {
  local want=$1 type=$2 path=$3 body=$4 code
  code=$(curl -s -m 10 -o "$WORK/resp" -w '%{http_code}' "${H[@]}" "$BASE$path" --data-binary "$body") || die "curl $path"
  [ "$code" = "$want" ] || die "$path $body: status $code, want $want: $(cat "$WORK/resp")"
  node -e '
    const j = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const ok = j.type === "error" && Object.keys(j).length === 2 && j.error && j.error.type === process.argv[2] &&
      typeof j.error.message === "string" && j.error.message.length > 0;
    if (!ok) { console.error("bad error body", JSON.stringify(j)); process.exit(1); }
  ' "$WORK/resp" "$type" || die "$path $body: error body $(cat "$WORK/resp")"
}
M=/v1/messages
U='"messages":[{"role":"user","content":"hi"}]'
IR=invalid_request_error
expect 400 $IR $M '{"model":"tiny","max_tokens":8,'"$U"
expect 400 $IR $M '[1,2]'
expect 400 $IR $M ''
expect 400 $IR $M '{"max_tokens":8,'"$U"'}'
expect 400 $IR $M '{"model":"tiny",'"$U"'}'
expect 400 $IR $M '{"model":"tiny","max_tokens":0,'"$U"'}'
expect 400 $IR $M '{"model":"tiny","max_tokens":"8",'"$U"'}'
expect 400 $IR $M '{"model":"tiny","max_tokens":8}'
expect 400 $IR $M '{"model":"tiny","max_tokens":8,"messages":[]}'
expect 400 $IR $M '{"model":"tiny","max_tokens":8,"messages":"hi"}'
expect 400 $IR $M '{"model":"tiny","max_tokens":8,"messages":[{"role":"wizard","content":"hi"}]}'
expect 400 $IR $M '{"model":"tiny","max_tokens":8,"messages":[{"role":"system","content":"hi"}]}'
expect 400 $IR $M '{"model":"tiny","max_tokens":8,"messages":[{"content":"hi"}]}'
expect 400 $IR $M '{"model":"tiny","max_tokens":8,"messages":[{"role":"user"}]}'
expect 400 $IR $M '{"model":"tiny","max_tokens":8,"messages":[{"role":"user","content":[]}]}'
expect 400 $IR $M '{"model":"tiny","max_tokens":8,"messages":[{"role":"user","content":[{"type":"video"}]}]}'
expect 400 $IR $M '{"model":"tiny","max_tokens":8,"messages":[{"role":"user","content":[{"type":"text"}]}]}'
expect 400 $IR $M '{"model":"tiny","max_tokens":8,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}}]}]}'
grep -q "messages.0.content.0.source: image: PNG data truncated" "$WORK/resp" || die "image message: $(cat "$WORK/resp")"
expect 400 $IR $M '{"model":"tiny","max_tokens":8,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"file"}}]}]}'
expect 400 $IR $M '{"model":"tiny","max_tokens":8,"messages":[{"role":"user","content":[{"type":"tool_result","content":"x"}]}]}'
expect 400 $IR $M '{"model":"tiny","max_tokens":8,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","is_error":"yes"}]}]}'
expect 400 $IR $M '{"model":"tiny","max_tokens":8,"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":[1]}]}]}'
expect 400 $IR $M '{"model":"tiny","max_tokens":8,"messages":[{"role":"assistant","content":[{"type":"thinking"}]}]}'
expect 400 $IR $M '{"model":"tiny","max_tokens":8,'"$U"',"system":7}'
expect 400 $IR $M '{"model":"tiny","max_tokens":8,'"$U"',"system":[{"type":"image"}]}'
expect 400 $IR $M '{"model":"tiny","max_tokens":8,'"$U"',"tools":{"name":"f"}}'
expect 400 $IR $M '{"model":"tiny","max_tokens":8,'"$U"',"tools":[{"name":"f"}]}'
expect 400 $IR $M '{"model":"tiny","max_tokens":8,'"$U"',"tools":[{"name":"bad name!","input_schema":{}}]}'
expect 400 $IR $M '{"model":"tiny","max_tokens":8,'"$U"',"tools":[{"type":"bash_20250124","name":"bash"}]}'
expect 400 $IR $M '{"model":"tiny","max_tokens":8,'"$U"',"tool_choice":{"type":"any"}}'
expect 400 $IR $M '{"model":"tiny","max_tokens":8,'"$U"',"tools":[{"name":"f","input_schema":{}}],"tool_choice":{"type":"tool","name":"g"}}'
expect 400 $IR $M '{"model":"tiny","max_tokens":8,'"$U"',"tools":[{"name":"f","input_schema":{}}],"tool_choice":{"type":"sometimes"}}'
expect 400 $IR $M '{"model":"tiny","max_tokens":8,'"$U"',"tool_choice":"auto"}'
expect 400 $IR $M '{"model":"tiny","max_tokens":8,'"$U"',"thinking":{"type":"enabled"}}'
expect 400 $IR $M '{"model":"tiny","max_tokens":8,'"$U"',"thinking":{"type":"maybe"}}'
expect 400 $IR $M '{"model":"tiny","max_tokens":8,'"$U"',"temperature":1.5}'
expect 400 $IR $M '{"model":"tiny","max_tokens":8,'"$U"',"top_p":"x"}'
expect 400 $IR $M '{"model":"tiny","max_tokens":8,'"$U"',"top_k":-1}'
expect 400 $IR $M '{"model":"tiny","max_tokens":8,'"$U"',"stream":"yes"}'
expect 400 $IR $M '{"model":"tiny","max_tokens":8,'"$U"',"stop_sequences":"x"}'
expect 400 $IR $M '{"model":"tiny","max_tokens":8,'"$U"',"stop_sequences":[1]}'
expect 400 $IR $M '{"model":"tiny","max_tokens":8,'"$U"',"metadata":"x"}'
printf '{"model":"tiny","max_tokens":8,"messages":[{"role":"user","content":"\xff\xfe"}]}' >"$WORK/bad_utf8.json"
expect 400 $IR $M "$(cat "$WORK/bad_utf8.json")"
long=$(node -e 'console.log("word ".repeat(400))')
expect 400 $IR $M "{\"model\":\"tiny\",\"max_tokens\":8,\"messages\":[{\"role\":\"user\",\"content\":\"$long\"}]}"
grep -q "prompt is too long" "$WORK/resp" || die "too-long message: $(cat "$WORK/resp")"
expect 404 not_found_error $M '{"model":"claude-nope","max_tokens":8,'"$U"'}'
expect 404 not_found_error $M/count_tokens '{"model":"claude-nope",'"$U"'}'
expect 400 $IR $M/count_tokens '{"model":"tiny","messages":[]}'
expect 400 $IR $M/count_tokens '{"model":"tiny"'
# count_tokens needs no max_tokens and counts even a prompt too long to generate from
code=$(curl -s -m 10 -o "$WORK/resp" -w '%{http_code}' "${H[@]}" "$BASE$M/count_tokens" \
  --data-binary "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"$long\"}]}")
[ "$code" = 200 ] && grep -q '"input_tokens"' "$WORK/resp" || die "count_tokens long: $code $(cat "$WORK/resp")"
# body too large
head -c 70000 /dev/zero | tr '\0' 'a' >"$WORK/big"
code=$(curl -s -m 10 -o "$WORK/resp" -w '%{http_code}' "${H[@]}" "$BASE$M" --data-binary @"$WORK/big")
[ "$code" = 413 ] || die "big body: $code"
grep -q '"type":"request_too_large"' "$WORK/resp" || die "413 body: $(cat "$WORK/resp")"
# auth: none, wrong x-api-key, wrong bearer
for hdr in "X-Nothing: 1" "x-api-key: nope" "Authorization: Bearer nope"; do
  code=$(curl -s -m 10 -o "$WORK/resp" -w '%{http_code}' -H "$hdr" "$BASE$M" --data-binary '{}')
  [ "$code" = 401 ] || die "$hdr: $code"
  grep -q '"type":"authentication_error"' "$WORK/resp" || die "401 body: $(cat "$WORK/resp")"
done
code=$(curl -s -m 10 -o /dev/null -w '%{http_code}' "$BASE/health")
[ "$code" = 200 ] || die "server unhealthy after the error cases: $code"
stop_server
echo ok
