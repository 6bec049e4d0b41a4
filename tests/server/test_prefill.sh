#!/usr/bin/env bash
# Continuing the final message: vLLM's continue_final_message (chat) and Anthropic's prefill (a final assistant
# message). Reference: the model's own template rendered by `mimo render` (checked against Python jinja2 elsewhere)
# and cut just after the final message's text, as transformers' apply_chat_template(continue_final_message=True)
# cuts it, sent as a raw completions prompt: the greedy continuations must be the same tokens.
source "$(dirname "$0")/lib.sh"
start_server --backend cpu --threads 2
PREFILL='{"answer": '
cat >"$WORK/msgs.json" <<JSON
[{"role": "user", "content": "Reply in JSON."}, {"role": "assistant", "content": $(node -e 'console.log(JSON.stringify(process.argv[1]))' "$PREFILL")}]
JSON
"$MIMO_BIN" render --model "$MODEL" --messages "$WORK/msgs.json" --no-generation-prompt >"$WORK/full.txt" || die "render"
/usr/bin/python3 - "$WORK/full.txt" "$PREFILL" >"$WORK/prompt.json" <<'PY'
import json, sys
t = open(sys.argv[1], encoding="utf-8").read()
fin = sys.argv[2]
print(json.dumps(t[: t.rindex(fin) + len(fin)]))
PY
want=$(curl -sS -m 60 "$BASE/v1/completions" -H 'content-type: application/json' \
  -d "{\"model\":\"tiny\",\"prompt\":$(cat "$WORK/prompt.json"),\"max_tokens\":8,\"temperature\":0,\"ignore_eos\":true,\"skip_special_tokens\":false}" |
  node -e 'const r=JSON.parse(require("fs").readFileSync(0,"utf8")); console.log(JSON.stringify([r.choices[0].text, r.usage.prompt_tokens]))')
msgs=$(cat "$WORK/msgs.json")
got=$(curl -sS -m 60 "$BASE/v1/chat/completions" -H 'content-type: application/json' \
  -d "{\"model\":\"tiny\",\"messages\":$msgs,\"continue_final_message\":true,\"add_generation_prompt\":false,\"max_tokens\":8,\"temperature\":0,\"ignore_eos\":true,\"skip_special_tokens\":false}" |
  node -e 'const r=JSON.parse(require("fs").readFileSync(0,"utf8")); const m=r.choices[0].message;
    console.log(JSON.stringify([(m.reasoning_content||"")+(m.content||""), r.usage.prompt_tokens]))')
[ "$got" = "$want" ] || die "continue_final_message: $got, the cut template gives $want"
anth=$(curl -sS -m 60 "$BASE/v1/messages" -H 'content-type: application/json' \
  -d "{\"model\":\"tiny\",\"max_tokens\":8,\"temperature\":0,\"messages\":$msgs}" |
  node -e 'const r=JSON.parse(require("fs").readFileSync(0,"utf8")); console.log(JSON.stringify(r.content.map(b=>b.text||b.thinking||"").join("")))')
wtext=$(node -e 'console.log(JSON.stringify(JSON.parse(process.argv[1])[0]))' "$want")
# (Anthropic's answer ends at the model's end of turn; the reference ignored it: compare the common start)
node -e 'const a=JSON.parse(process.argv[1]), w=JSON.parse(process.argv[2]); process.exit(a.length && w.startsWith(a) || a===w ? 0 : 1)' "$anth" "$wtext" ||
  die "anthropic prefill: $anth, the cut template gives $wtext"
echo "ok   continue_final_message and Anthropic's prefill continue '$PREFILL' as the cut template does: $want"
M='"model":"tiny","max_tokens":2,"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y"}]'
expect_400 "{$M,\"continue_final_message\":true,\"add_generation_prompt\":true}" "cannot both be true"
expect_400 '{"model":"tiny","max_tokens":2,"continue_final_message":true,"messages":[{"role":"user","content":"x"},{"role":"assistant","content":""}]}' "has no text to continue"
stop_server
