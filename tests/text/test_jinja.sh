#!/usr/bin/env bash
# Chat-template renderer vs Python jinja2 (Debian python3-jinja2, HF's settings):
# (1) the committed snippet expectations still match live jinja2 (test_jinja.c checks mimo
# against them), (2) 5 real templates x 100 seeded conversations rendered by `mimo render
# --jsonl` are byte-identical to jinja2, errors where jinja2 raises, (3) CLI contract.
set -euo pipefail
PY=/usr/bin/python3
if ! $PY -c 'import jinja2' 2>/dev/null; then
  echo "SKIP: $PY has no jinja2 (install python3-jinja2)"; exit 0
fi
cd "$MIMO_SRC"
$PY tests/text/jinja_ref.py check-cases
$PY tests/text/jinja_ref.py convs "$MIMO_BIN" 100

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cp tests/text/jinja_data/mimo-style-chat-template.jinja "$tmp/chat_template.jinja"
echo '{"eos_token": "<|im_end|>", "chat_template": "IGNORED"}' > "$tmp/tokenizer_config.json"
echo '[{"role": "user", "content": "hi"}]' > "$tmp/m.json"
out=$("$MIMO_BIN" render --model "$tmp" --messages "$tmp/m.json" --kwargs '{"enable_thinking": false}')
want=$'<|im_start|>system\nYou are MiMo, a helpful AI assistant engineered by Xiaomi.<|im_end|><|im_start|>user\nhi<|im_end|><|im_start|>assistant\n<think></think>'
[ "$out" == "$want" ] || { echo "render CLI: got [$out]"; exit 1; }
out=$("$MIMO_BIN" render --model "$tmp" --messages "$tmp/m.json" --no-generation-prompt)
[ "$out" == $'<|im_start|>system\nYou are MiMo, a helpful AI assistant engineered by Xiaomi.<|im_end|><|im_start|>user\nhi<|im_end|>' ] || { echo "no-gen: got [$out]"; exit 1; }
echo 'X{{ messages|length }}{{ bos_token }}' > "$tmp/o.jinja"
[ "$("$MIMO_BIN" render --model "$tmp" --messages "$tmp/m.json" --chat-template "$tmp/o.jinja")" == "X1" ] || { echo "override failed"; exit 1; }
# list-form chat_template, special tokens as {content:...}
rm "$tmp/chat_template.jinja"
echo '{"bos_token": {"content": "<s>"}, "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "{{ bos_token }}D{{ tools }}"}]}' > "$tmp/tokenizer_config.json"
[ "$("$MIMO_BIN" render --model "$tmp" --messages "$tmp/m.json")" == "<s>DNone" ] || { echo "list template failed"; exit 1; }
# errors are reported, not crashes
echo '{"chat_template": "{{ raise_exception(\"boom\") }}"}' > "$tmp/tokenizer_config.json"
if "$MIMO_BIN" render --model "$tmp" --messages "$tmp/m.json" 2>"$tmp/err"; then echo "expected failure"; exit 1; fi
grep -q "boom" "$tmp/err" || { echo "missing message: $(cat "$tmp/err")"; exit 1; }
printf '%s\n' '{"messages": [{"role":"user","content":"a"}]}' 'not json' | "$MIMO_BIN" render --model "$tmp" --jsonl > "$tmp/o.jsonl" || true
[ "$(grep -c '"error"' "$tmp/o.jsonl")" == 2 ] || { echo "jsonl errors: $(cat "$tmp/o.jsonl")"; exit 1; }
echo "render CLI checks passed"
