#!/usr/bin/env bash
# `mimo perplexity` on a tiny synthetic model against an independent reference: the same chunks' logits from
# `mimo logits` (one process per chunk: an empty cache each), log-softmax, perplexity and KL computed in plain
# Python (perplexity_ref.py). Also: feeding a chunk in steps = one shot; a run against its own base has KL 0;
# bad base files and arguments are refused with a message naming what is wrong, and a failed run leaves no
# base file behind.
source "$(dirname "$0")/lib.sh"
M="$work/m"
"$MIMO_BIN" synth --out "$M" --preset tiny --seed 7 2>/dev/null || { echo "synth failed"; exit 1; }
# close A B REL: |A - B| <= REL * |B|
close() { python3 -c "import sys; a, b, r = map(float, sys.argv[1:]); sys.exit(0 if abs(a - b) <= r * abs(b) else 1)" "$1" "$2" "$3"; }
field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p"; }

V=$(grep -o '"vocab_size": *[0-9]*' "$M/config.json" | grep -o '[0-9]*$')
CTX=24 FIRST=9 CHUNKS=3
ids=$(awk -v V="$V" 'BEGIN{s=3; for(i=0;i<80;i++){s=(s*1103515245+12345)%2147483648; printf "%s%d", (i?",":""), s%V}}')
IFS=, read -r -a all <<<"$ids"

# reference: each chunk's logits from its own process, float32 and bf16 KV
q="" b=""
for c in $(seq 0 $((CHUNKS - 1))); do
  chunk=$(IFS=,; echo "${all[*]:$((c * CTX)):$CTX}")
  "$MIMO_BIN" logits --model "$M" --backend cpu --tokens "$chunk" --out "$work/f32_$c" || bad "mimo logits chunk $c"
  "$MIMO_BIN" logits --model "$M" --backend cpu --tokens "$chunk" --kv-cache-dtype bfloat16 --out "$work/bf16_$c" ||
    bad "mimo logits bf16 chunk $c"
  q="$q${q:+,}$work/bf16_$c" b="$b${b:+,}$work/f32_$c"
done
ref=$(python3 "$MIMO_SRC/tests/cli/perplexity_ref.py" "$V" $CTX $FIRST "$ids" "$b")
ref_kl=$(python3 "$MIMO_SRC/tests/cli/perplexity_ref.py" "$V" $CTX $FIRST "$ids" "$q" "$b")

P=("$MIMO_BIN" perplexity --model "$M" --backend cpu --tokens "$ids" --ctx $CTX --score-from $FIRST)
out=$("${P[@]}" --kl-base-out "$work/base") || bad "perplexity run"
ppl=$(printf '%s\n' "$out" | sed -n 's/^Final estimate: PPL = \([^ ]*\).*/\1/p')
rppl=$(printf '%s' "$ref" | field ppl)
close "$ppl" "$rppl" 1e-6 && ok "PPL $ppl = reference $rppl" || bad "PPL $ppl, reference $rppl"
printf '%s\n' "$out" | grep -q "^perplexity: 3 chunks of 24 tokens, scoring positions 9..22 of each (42 tokens)" &&
  ok "3 whole chunks of 80 tokens, 14 scored each" || bad "chunking: $(printf '%s' "$out" | head -1)"
size=$(stat -c %s "$work/base")
[ "$size" = $((48 + 42 * V * 4)) ] && ok "base file: header + 42 rows of $V floats" || bad "base file size $size"

out2=$("${P[@]}" --chunk 5 | sed -n 's/^Final estimate: PPL = \([^ ]*\).*/\1/p')
close "$out2" "$ppl" 1e-6 && ok "fed 5 tokens a step = one shot ($out2)" || bad "chunked $out2 vs $ppl"

self=$("${P[@]}" --kl-base "$work/base")
kld=$(printf '%s\n' "$self" | sed -n 's/^Mean KLD *: \([^ ]*\).*/\1/p')
same=$(printf '%s\n' "$self" | sed -n 's/^Same top token *: \([^ ]*\).*/\1/p')
python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) <= 1e-10 else 1)" "$kld" && [ "$same" = 100 ] && ok "against its own base: KL $kld, same top $same %" ||
  bad "self KL $kld same $same"

kv=$("${P[@]}" --kl-base "$work/base" --kv-cache-dtype bfloat16)
kld=$(printf '%s\n' "$kv" | sed -n 's/^Mean KLD *: \([^ ]*\).*/\1/p')
same=$(printf '%s\n' "$kv" | sed -n 's/^Same top token *: \([^ ]*\).*/\1/p')
bppl=$(printf '%s\n' "$kv" | sed -n 's/^Mean PPL(base) *: \([^ ]*\).*/\1/p')
rkl=$(printf '%s' "$ref_kl" | field kl) rsame=$(printf '%s' "$ref_kl" | field same_top)
close "$kld" "$rkl" 1e-4 && ok "bf16 KV against float32: KL $kld = reference $rkl" || bad "KL $kld, reference $rkl"
close "$same" "$rsame" 1e-3 && ok "same top $same % = reference $rsame" || bad "same top $same vs $rsame"
close "$bppl" "$rppl" 1e-5 && ok "base PPL read back from the file ($bppl)" || bad "base PPL $bppl vs $rppl"

# a base kept as each position's 16 most likely tokens: the KL lumps the rest into one bucket, a lower bound
"${P[@]}" --kl-base-out "$work/base16" --kl-top 16 >/dev/null || bad "--kl-top 16 run"
size16=$(stat -c %s "$work/base16")
[ "$size16" = $((48 + 42 * (4 + 16 * 8))) ] && ok "--kl-top 16 file: header + 42 rows of 132 bytes" || bad "top-16 size $size16"
kv16=$("${P[@]}" --kl-base "$work/base16" --kv-cache-dtype bfloat16)
k16=$(printf '%s\n' "$kv16" | sed -n 's/^Mean KLD *: \([^ ]*\).*/\1/p')
s16=$(printf '%s\n' "$kv16" | sed -n 's/^Same top token *: \([^ ]*\).*/\1/p')
b16=$(printf '%s\n' "$kv16" | sed -n 's/^Mean PPL(base) *: \([^ ]*\).*/\1/p')
python3 -c "import sys; a, b = map(float, sys.argv[1:]); sys.exit(0 if 0 < a <= b * (1 + 1e-6) else 1)" "$k16" "$kld" &&
  ok "top-16 KL $k16: positive, at most the full KL $kld" || bad "top-16 KL $k16 vs full $kld"
[ "$s16" = "$same" ] && close "$b16" "$bppl" 1e-6 && ok "top-16: same top and base PPL as the full base" ||
  bad "top-16 same $s16 vs $same, base PPL $b16 vs $bppl"

# refusals
expect_fail() { # name, expected rc, message pattern, command...
  local name=$1 want=$2 pat=$3; shift 3
  "$@" >/dev/null 2>"$work/err"; local rc=$?
  if [ $rc = "$want" ] && grep -q -- "$pat" "$work/err"; then ok "$name"; else bad "$name: rc $rc, $(cat "$work/err")"; fi
}
other=$(printf '%s' "$ids" | awk -F, -v V="$V" '{$5=($5+1)%V; OFS=","; print}' OFS=,)
expect_fail "base of other tokens" 1 "evaluated other tokens" "$MIMO_BIN" perplexity --model "$M" --backend cpu \
  --tokens "$other" --ctx $CTX --score-from $FIRST --kl-base "$work/base"
expect_fail "base of another ctx" 1 "has ctx 24, this run 20" "$MIMO_BIN" perplexity --model "$M" --backend cpu \
  --tokens "$ids" --ctx 20 --score-from $FIRST --kl-base "$work/base"
head -c $((size - 100)) "$work/base" >"$work/short"
expect_fail "truncated base" 1 "cut short at chunk 3" "${P[@]}" --kl-base "$work/short"
cp "$work/base" "$work/long" && printf 'x' >>"$work/long"
expect_fail "longer base" 1 "longer than this run" "${P[@]}" --kl-base "$work/long"
printf 'not a base file at all, no' >"$work/junk"
expect_fail "not a base file" 1 "not a base-run file" "${P[@]}" --kl-base "$work/junk"
expect_fail "fewer tokens than one chunk" 1 "less than one chunk" "$MIMO_BIN" perplexity --model "$M" \
  --backend cpu --tokens 1,2,3 --ctx 8
expect_fail "--score-from past the chunk" 2 "score-from" "${P[@]/--score-from/--chunks}" --score-from 23
cp "$work/base16" "$work/bad16" && printf '\xff\xff\xff\x7f' | dd of="$work/bad16" bs=1 seek=52 conv=notrunc 2>/dev/null
expect_fail "top-16 base entry outside the vocabulary" 1 "outside the vocabulary" "${P[@]}" --kl-base "$work/bad16"
cp "$work/base16" "$work/nan16" && printf '\x00\x00\xc0\x7f' | dd of="$work/nan16" bs=1 seek=56 conv=notrunc 2>/dev/null
expect_fail "top-16 base entry NaN" 1 "entry 0 is not a log-probability" "${P[@]}" --kl-base "$work/nan16"
expect_fail "--kl-top without --kl-base-out" 2 "goes with --kl-base-out" "${P[@]}" --kl-top 4
expect_fail "--file and --tokens" 2 "one of --file or --tokens" "$MIMO_BIN" perplexity --model "$M" \
  --tokens 1,2 --file /dev/null
expect_fail "token outside the vocabulary" 1 "outside the vocabulary" "$MIMO_BIN" perplexity --model "$M" \
  --backend cpu --tokens "$ids,$V" --ctx 81 --kl-base-out "$work/gone"
[ ! -e "$work/gone" ] && ok "a failed run leaves no base file" || bad "base file left after a failure"
printf 'the cat sat on the mat and the dog ran far away. ' >"$work/t.txt"
for i in 1 2 3 4 5 6; do cat "$work/t.txt" "$work/t.txt" >"$work/t2" && mv "$work/t2" "$work/t.txt"; done
"$MIMO_BIN" perplexity --model "$M" --backend cpu --file "$work/t.txt" --ctx 32 --chunks 2 >"$work/ft" 2>&1 &&
  grep -q "^perplexity: 2 chunks of 32 tokens" "$work/ft" && ok "--file text through the tokenizer, --chunks 2" ||
  bad "--file: $(cat "$work/ft")"
finish perplexity
