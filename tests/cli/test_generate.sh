#!/usr/bin/env bash
# `mimo generate` contracts on a tiny synthetic model with a tokenizer:
# --prompt equals tokenize -> --tokens -> detokenize; same seed => same output,
# another seed => another; greedy ignores the seed; --chat renders the template
# (its prompt ends with the generation prompt) and splits reasoning from answer.
set -u
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
M="$work/m"
"$MIMO_BIN" synth --out "$M" --preset tiny --seed 11 2>/dev/null || { echo "synth failed"; exit 1; }
fails=0
expect_eq() { if [ "$2" == "$3" ]; then echo "ok   $1"; else echo "FAIL $1: '$2' != '$3'"; fails=$((fails+1)); fi; }
expect_ne() { if [ "$2" != "$3" ]; then echo "ok   $1"; else echo "FAIL $1: both '$2'"; fails=$((fails+1)); fi; }

ids=$(printf 'The quick brown fox' | "$MIMO_BIN" tokenize --model "$M")
out_ids=$("$MIMO_BIN" generate --model "$M" --tokens "$ids" --max-tokens 12 --ignore-eos)
text=$("$MIMO_BIN" generate --model "$M" --prompt 'The quick brown fox' --max-tokens 12 --ignore-eos; echo x)
ref=$(printf '%s' "$out_ids" | "$MIMO_BIN" detokenize --model "$M" --skip-special; echo; echo x)
expect_eq "--prompt text = detokenize(--tokens ids)" "$text" "$ref"

a=$("$MIMO_BIN" generate --model "$M" --tokens "$ids" --max-tokens 16 --temperature 1 --seed 5 --ignore-eos)
b=$("$MIMO_BIN" generate --model "$M" --tokens "$ids" --max-tokens 16 --temperature 1 --seed 5 --ignore-eos)
c=$("$MIMO_BIN" generate --model "$M" --tokens "$ids" --max-tokens 16 --temperature 1 --seed 6 --ignore-eos)
expect_eq "same seed, same tokens" "$a" "$b"
expect_ne "another seed, other tokens" "$a" "$c"
g1=$("$MIMO_BIN" generate --model "$M" --tokens "$ids" --max-tokens 8 --seed 1 --ignore-eos)
g2=$("$MIMO_BIN" generate --model "$M" --tokens "$ids" --max-tokens 8 --seed 2 --ignore-eos)
expect_eq "greedy ignores the seed" "$g1" "$g2"
n=$(printf '%s' "$a" | awk -F, '{print NF}')
expect_eq "--max-tokens 16 gives 16 ids" "$n" "16"

chat=$("$MIMO_BIN" generate --model "$M" --chat "hello" --max-tokens 6 --ignore-eos)
case "$chat" in reasoning*|answer*) echo "ok   --chat prints reasoning/answer";; *) echo "FAIL --chat output: $chat"; fails=$((fails+1));; esac
"$MIMO_BIN" generate --model "$M" --tokens 1,2 --prompt x >/dev/null 2>&1; rc=$?
expect_eq "--tokens with --prompt is a usage error" "$rc" "2"
"$MIMO_BIN" generate --model "$M" --tokens 1,999999 >/dev/null 2>"$work/err"; rc=$?
expect_eq "token id outside the vocabulary: exit 1" "$rc" "1"
grep -q "outside the vocabulary" "$work/err" && echo "ok   message names the id" || { echo "FAIL message: $(cat "$work/err")"; fails=$((fails+1)); }
# --json-schema / --grammar-file / --regex (llama.cpp's flags): the output follows the grammar; JSON checked by
# python3-jsonschema, the GBNF sentence and the regex by Python's re
S='{"type":"object","properties":{"n":{"type":"integer","minimum":0,"maximum":99},"tag":{"enum":["a","b"]}},"required":["n","tag"]}'
good=0
for seed in 1 2 3 4; do
  out=$("$MIMO_BIN" generate --model "$M" --prompt "JSON:" --max-tokens 80 --temperature 1 --seed $seed --json-schema "$S")
  printf '%s' "$out" | python3 -c 'import json,sys,jsonschema; jsonschema.validate(json.loads(sys.stdin.read()), json.loads(sys.argv[1]))' "$S" \
    && good=$((good+1)) || echo "     (seed $seed: $out)"
done
expect_eq "--json-schema: 4 outputs valid under the schema" "$good" "4"
printf 'root ::= "yes" | "no" | "maybe " num\nnum ::= [0-9]+\n' > "$work/g.gbnf"
good=0
for seed in 1 2 3 4; do
  out=$("$MIMO_BIN" generate --model "$M" --prompt "Q:" --max-tokens 12 --temperature 1 --seed $seed --grammar-file "$work/g.gbnf")
  printf '%s' "$out" | python3 -c 'import re,sys; t=sys.stdin.read().rstrip("\n"); sys.exit(0 if re.fullmatch(r"yes|no|maybe [0-9]+", t) else 1)' \
    && good=$((good+1)) || echo "     (seed $seed: '$out')"
done
expect_eq "--grammar-file: 4 outputs are sentences of the grammar" "$good" "4"
out=$("$MIMO_BIN" generate --model "$M" --prompt "Code:" --max-tokens 12 --temperature 1 --seed 3 --regex '[A-Z]{2}-[0-9]{3}')
printf '%s' "$out" | python3 -c 'import re,sys; sys.exit(0 if re.fullmatch(r"[A-Z]{2}-[0-9]{3}", sys.stdin.read().rstrip("\n")) else 1)' \
  && echo "ok   --regex: '$out' matches" || { echo "FAIL --regex: '$out'"; fails=$((fails+1)); }
"$MIMO_BIN" generate --model "$M" --prompt x --regex '(a' >/dev/null 2>"$work/err"; rc=$?
grep -q -- "--regex: regex: a group" "$work/err" && [ "$rc" = 1 ] && echo "ok   a bad regex: $(cat "$work/err")" || { echo "FAIL bad regex: $rc $(cat "$work/err")"; fails=$((fails+1)); }
[ $fails -eq 0 ] && echo "generate: all checks passed" || { echo "generate: $fails failures"; exit 1; }
