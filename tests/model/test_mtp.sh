#!/usr/bin/env bash
# MTP layers (spec §2.7) on a tiny synthetic checkpoint with one:
#  - `mimo logits --mtp-out`: the MTP layer's logits over a prompt (token t + 1 with the model's final-normed hidden
#    state at t) against tools/reference/np_reference.py --mtp-out (numpy, float64, written from the spec), and the
#    model's own logits from the same pass against it too;
#  - `mimo generate --num-speculative-tokens K` (the serving engine with MTP drafts) prints what plain decoding prints,
#    greedy and seeded sampling (the drafts' rejection sampling keeps the seeded draws);
#  - refusals: a checkpoint without MTP layers, a draft count out of range.
source "$(dirname "$0")/../cli/lib.sh"
PY=/usr/bin/python3
M="$work/m"
"$MIMO_BIN" synth --out "$M" --preset tiny --seed 8 --mtp-layers 2 --no-vision 2>/dev/null || { echo "synth failed"; exit 1; }
V=$($PY -c "import json;print(json.load(open('$M/config.json'))['vocab_size'])")
ids=$(seq -s, 40 3 150)
if "$MIMO_BIN" logits --model "$M" --backend cpu --tokens "$ids" --out "$work/l.f32" --mtp-out "$work/d.f32" 2>"$work/err"; then
  $PY "$MIMO_SRC/tools/reference/np_reference.py" --model "$M" --tokens "$ids" --out "$work/lr.f32" \
    --mtp-out "$work/dr.f32" >/dev/null || bad "np_reference --mtp-out"
  for x in l d; do
    out=$($PY "$MIMO_SRC/tests/model/compare_logits.py" "$work/$x.f32" "$work/${x}r.f32" --vocab "$V" \
      --label "$([ $x = d ] && echo MTP || echo model)") && ok "$out" || bad "$out"
  done
else
  bad "logits --mtp-out: $(cat "$work/err")"
fi
P=$(seq -s, 11 2 60)
want=$("$MIMO_BIN" generate --model "$M" --backend cpu --tokens "$P" --max-tokens 48 --ignore-eos 2>/dev/null)
for k in 1 3; do
  got=$("$MIMO_BIN" generate --model "$M" --backend cpu --tokens "$P" --max-tokens 48 --ignore-eos \
    --num-speculative-tokens $k 2>"$work/err")
  [ -n "$want" ] && [ "$got" = "$want" ] && ok "speculative k=$k = greedy: $(cat "$work/err")" ||
    bad "speculative k=$k: '$got' vs greedy '$want': $(cat "$work/err")"
done
S="--temperature 0.8 --top-p 0.9 --seed 5"
want=$("$MIMO_BIN" generate --model "$M" --backend cpu --tokens "$P" --max-tokens 40 --ignore-eos $S 2>/dev/null)
got=$("$MIMO_BIN" generate --model "$M" --backend cpu --tokens "$P" --max-tokens 40 --ignore-eos $S \
  --num-speculative-tokens 3 2>"$work/err")
[ -n "$want" ] && [ "$got" = "$want" ] && ok "speculative k=3 sampled = sampled: $(cat "$work/err")" ||
  bad "speculative k=3 sampled: '$got' vs '$want': $(cat "$work/err")"
# bench-spec: the serving engine with drafts from the answer (70 % right) against without; it exits 1 when the outputs
# differ, and says how many drafts were kept (stated property: some, not all).
if out=$("$MIMO_BIN" bench-spec --model "$M" --backend cpu --prompt 16 --decode 40 --batch 2 --acceptance 0.7 \
  --num-speculative-tokens 3 2>"$work/err"); then
  kept=$(sed -n 's/.*drafts from the answer: \([0-9]*\) of \([0-9]*\) kept.*/\1 \2/p' <<<"$out")
  read -r a b <<<"$kept"
  [ -n "$kept" ] && [ "$a" -gt 0 ] && [ "$a" -lt "$b" ] && grep -q 'outputs identical' <<<"$out" &&
    ok "bench-spec: $(tail -2 <<<"$out" | paste -sd' ')" || bad "bench-spec: $out"
else
  bad "bench-spec: $out $(tail -2 "$work/err")"
fi
"$MIMO_BIN" synth --out "$work/plain" --preset tiny --seed 8 --no-vision 2>/dev/null
refused "no MTP layers" "the checkpoint has no MTP layers" \
  "$MIMO_BIN" generate --model "$work/plain" --backend cpu --tokens 1,2,3 --num-speculative-tokens 2
refused "17 drafts" "--num-speculative-tokens: 1 to 16" \
  "$MIMO_BIN" generate --model "$M" --backend cpu --tokens 1,2,3 --num-speculative-tokens 17
finish mtp
