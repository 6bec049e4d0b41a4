#!/usr/bin/env bash
# Thinking budgets on the random tiny model (which left alone almost never ends its reasoning): vLLM's
# thinking_token_budget (chat) and Anthropic's thinking.budget_tokens force </think> after that many reasoning
# tokens, so the answer starts there; with a response_format the answer after it is valid JSON for the schema.
source "$(dirname "$0")/lib.sh"
start_server
chat() { curl -sS -m 60 "$BASE/v1/chat/completions" -H 'content-type: application/json' -d "$1"; }
B='"model":"tiny","messages":[{"role":"user","content":"Think, then answer."}],"temperature":1,"logprobs":true'
for budget in 0 3 10; do
  for seed in 1 2; do
    chat "{$B,\"seed\":$seed,\"max_tokens\":40,\"thinking_token_budget\":$budget}" | node -e '
      const r = JSON.parse(require("fs").readFileSync(0, "utf8")).choices[0], budget = +process.argv[1];
      const toks = r.logprobs.content.map((t) => t.token), end = toks.indexOf("</think>");
      if (end < 0 || end > budget) { console.error("budget", budget, "</think> at", end, JSON.stringify(toks)); process.exit(1); }
      if (!r.message.content) { console.error("no answer after the reasoning", JSON.stringify(r)); process.exit(1); }' "$budget" ||
      die "thinking_token_budget $budget (seed $seed)"
  done
done
echo "ok   thinking_token_budget 0 / 3 / 10: </think> within the budget, an answer after it"
free=$(chat "{$B,\"seed\":1,\"max_tokens\":40}" | node -e '
  const r = JSON.parse(require("fs").readFileSync(0, "utf8")).choices[0];
  console.log(r.logprobs.content.map((t) => t.token).indexOf("</think>"))')
echo "     (the same request without a budget: </think> at $free of 40)"
S='{"type":"object","properties":{"n":{"type":"integer","minimum":0,"maximum":9}},"required":["n"]}'
for seed in 1 2 3; do
  chat "{$B,\"seed\":$seed,\"max_tokens\":200,\"thinking_token_budget\":4,\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"s\",\"schema\":$S}}}" |
    python3 -c '
import json, sys, jsonschema
c = json.load(sys.stdin)["choices"][0]
assert c["finish_reason"] == "stop", c
jsonschema.validate(json.loads(c["message"]["content"]), json.loads(sys.argv[1]))' "$S" || die "budget + response_format (seed $seed)"
done
echo "ok   thinking_token_budget 4 with a JSON schema: the reasoning ends, the answer is valid JSON for it"
# (no seed on Anthropic's API: the model may also end by itself inside its reasoning, within the budget; at least one
# of three requests must reach the answer)
answered=0
for try in 1 2 3; do
  kinds=$(curl -sS -m 60 "$BASE/v1/messages" -H 'content-type: application/json' -d '{"model":"tiny","max_tokens":40,"temperature":1,
    "thinking":{"type":"enabled","budget_tokens":6},"messages":[{"role":"user","content":"Think, then answer."}]}' | node -e '
    const r = JSON.parse(require("fs").readFileSync(0, "utf8"));
    const kinds = r.content.map((b) => b.type).join(",");
    /* a random model may end inside its reasoning within the budget, even at its first token (no block at all) */
    const ended = r.stop_reason === "end_turn" && r.usage.output_tokens <= 6 && (kinds === "thinking" || kinds === "");
    if (kinds !== "thinking,text" && !ended) { console.error(kinds, JSON.stringify(r)); process.exit(1); }
    console.log(kinds);') || die "Anthropic thinking.budget_tokens"
  [ "$kinds" = "thinking,text" ] && answered=$((answered + 1))
done
[ "$answered" -ge 1 ] || die "Anthropic thinking.budget_tokens: no request reached its answer"
echo "ok   Anthropic thinking.budget_tokens 6: $answered of 3 a thinking block, then text (the others ended inside it)"
stop_server
echo ok
