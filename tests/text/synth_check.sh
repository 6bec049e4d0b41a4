#!/usr/bin/env bash
# Helper of tests/unit/test_tokenizer.c: the Rust library and mimo give identical
# ids (and decodes) on seeded strings for the synthetic tokenizer in DIR.
set -euo pipefail
dir=$1
: "${MIMO_SRC:?}" "${MIMO_BIN:?}"
export NODE_PATH=$MIMO_SRC/tests/npm/node_modules
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
node "$MIMO_SRC/tests/text/tokref.js" gen "$dir" "$out" 11 "${MIMO_SYNTH_CASES:-3000}" no >/dev/null
"$MIMO_BIN" tokenize --model "$dir" --jsonl <"$out/cases.jsonl" >"$out/mimo_ids.jsonl"
"$MIMO_BIN" detokenize --model "$dir" --jsonl <"$out/mimo_ids.jsonl" >"$out/mimo_dec.jsonl"
"$MIMO_BIN" detokenize --model "$dir" --jsonl --skip-special <"$out/mimo_ids.jsonl" >"$out/mimo_dec_skip.jsonl"
"$MIMO_BIN" tokenize --model "$dir" <"$out/bad.bin" >"$out/mimo_bad.txt"
node "$MIMO_SRC/tests/text/tokref.js" cmp "$out"
