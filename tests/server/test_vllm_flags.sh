#!/usr/bin/env bash
# A vLLM command line runs as it is (cli/vllm_compat.h): the flags that mean nothing here are taken, those with an
# effect have it (--max-logprobs bounds requests, --enable-force-include-usage ends every stream with usage,
# --default-chat-template-kwargs turns thinking off unless a request turns it on, --seed makes unseeded sampling
# repeat across restarts), and values mimo cannot honour stop the server with exit status 2 naming the flag.
source "$(dirname "$0")/lib.sh"
VLLM=(--dtype auto --quantization compressed-tensors --enable-chunked-prefill --disable-log-requests --block-size 16
  --swap-space 4 --trust-remote-code --enable-auto-tool-choice --tool-call-parser qwen3_xml --reasoning-parser qwen3
  --generation-config vllm --uvicorn-log-level warning --load-format safetensors --tokenizer "$MODEL"
  --mm-processor-kwargs '{}' --pipeline-parallel-size 1 --data-parallel-size 1 --disable-log-stats
  --distributed-executor-backend mp -tp 1 --max-logprobs 5 --enable-force-include-usage --seed 7
  --default-chat-template-kwargs '{"enable_thinking": false}')
start_server "${VLLM[@]}"
chat() { curl -sS -m 60 "$BASE/v1/chat/completions" -H 'content-type: application/json' -d "$1"; }
M0='"model":"tiny","messages":[{"role":"user","content":"Hi"}]'
M="$M0,\"max_tokens\":12"
code=$(curl -s -m 30 -o "$WORK/r" -w '%{http_code}' "$BASE/v1/chat/completions" -H 'content-type: application/json' \
  -d "{$M,\"logprobs\":true,\"top_logprobs\":6}")
[ "$code" = 400 ] && grep -q "top_logprobs" "$WORK/r" || die "--max-logprobs 5: top_logprobs 6 gave $code $(cat "$WORK/r")"
chat "{$M,\"logprobs\":true,\"top_logprobs\":5}" | node -e '
  const r = JSON.parse(require("fs").readFileSync(0, "utf8"));
  if (r.choices[0].logprobs.content[0].top_logprobs.length !== 5) process.exit(1);' || die "top_logprobs 5"
echo "ok   --max-logprobs 5: 6 refused (400), 5 given"
last=$(curl -sS -m 60 -N "$BASE/v1/chat/completions" -H 'content-type: application/json' -d "{$M,\"stream\":true}" |
  grep '^data: {' | tail -n 1)
echo "$last" | grep -q '"usage":{"prompt_tokens":' || die "--enable-force-include-usage: last chunk $last"
echo "ok   --enable-force-include-usage: a stream without stream_options ends with usage"
off=$(chat "{$M,\"temperature\":1,\"seed\":3}" | node -e 'const r=JSON.parse(require("fs").readFileSync(0,"utf8")).choices[0].message; console.log(r.reasoning_content === null ? "none" : "some")')
on=$(chat "{$M0,\"temperature\":1,\"seed\":3,\"max_tokens\":24,\"chat_template_kwargs\":{\"enable_thinking\":true}}" |
  node -e 'const r=JSON.parse(require("fs").readFileSync(0,"utf8")).choices[0].message; console.log(r.reasoning_content === null ? "none" : "some")')
[ "$off" = none ] && [ "$on" = some ] || die "--default-chat-template-kwargs: reasoning '$off' by default, '$on' asked"
echo "ok   --default-chat-template-kwargs: thinking off by default (no reasoning), on when a request asks"
# vLLM's other routes: /version, /ping (SageMaker's liveness), /invocations (a chat or a completions body)
v=$(curl -sS -m 10 "$BASE/version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')
[ "$v" = "$("$MIMO_BIN" --version | cut -d" " -f2)" ] || die "/version: '$v'"
for m in GET POST; do
  [ "$(curl -s -m 10 -o /dev/null -w '%{http_code}' -X $m "$BASE/ping")" = 200 ] || die "$m /ping"
done
curl -sS -m 60 "$BASE/invocations" -H 'content-type: application/json' -d "{$M}" |
  python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["object"]=="chat.completion", r' || die "/invocations chat"
curl -sS -m 60 "$BASE/invocations" -H 'content-type: application/json' -d '{"model":"tiny","prompt":"x","max_tokens":3}' |
  python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["object"]=="text_completion", r' || die "/invocations completion"
code=$(curl -s -m 10 -o "$WORK/r" -w '%{http_code}' "$BASE/invocations" -H 'content-type: application/json' -d '{"x":1}')
[ "$code" = 400 ] || die "/invocations without messages or prompt: $code"
echo "ok   /version = mimo --version ($v), GET and POST /ping, /invocations routes chat and completions bodies (400 else)"
stop_server
start_server "${VLLM[@]}"
first=$(chat "{$M,\"temperature\":1}" | node -e 'console.log(JSON.parse(require("fs").readFileSync(0,"utf8")).choices[0].message.content)')
stop_server
start_server "${VLLM[@]}"
again=$(chat "{$M,\"temperature\":1}" | node -e 'console.log(JSON.parse(require("fs").readFileSync(0,"utf8")).choices[0].message.content)')
[ "$first" = "$again" ] || die "--seed 7: the first unseeded request differs across restarts: '$first' / '$again'"
echo "ok   --seed 7: the first unseeded request repeats across a restart"
stop_server
for bad in "--dtype float16|--dtype float16" "--pipeline-parallel-size 2|pipeline parallelism" \
  "--data-parallel-size 2|one server per replica" "--ssl-keyfile k.pem|TLS" "--quantization fp8|quantization" \
  "--tokenizer /tmp|--tokenizer /tmp" "--mm-processor-kwargs {\"max_pixels\":1}|--mm-processor-kwargs" \
  "--max-logprobs 21|--max-logprobs" "--seed -1|--seed" "--default-chat-template-kwargs [1]|a JSON object"; do
  flag=${bad%%|*}; want=${bad#*|}
  rc=0
  "$MIMO_BIN" serve "$MODEL" --port 0 "${flag%% *}" "${flag#* }" >"$WORK/o" 2>&1 || rc=$?
  [ "$rc" = 2 ] && grep -qF -- "$want" "$WORK/o" || die "$flag: exit $rc, $(cat "$WORK/o")"
done
echo "ok   10 values mimo cannot honour: exit 2 naming the flag"
echo ok
