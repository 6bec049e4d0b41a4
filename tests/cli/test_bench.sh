#!/usr/bin/env bash
# `mimo bench` contracts on a tiny synthetic model: it runs at batch 1 and at a batch with sampling filters, prints
# the untimed warm-up step and prefill warm-up apart (the latter changing no token), and at batch 1 its per-layer line adds up (layers · per layer + lm_head = the
# median step, to the printed rounding); bad values are usage errors (exit 2) that name the option.
source "$(dirname "$0")/lib.sh"
M="$work/m"
"$MIMO_BIN" synth --out "$M" --preset tiny --seed 5 2>/dev/null || { echo "synth failed"; exit 1; }

out=$("$MIMO_BIN" bench --model "$M" --prompt 8 --decode 6 2>&1); rc=$?
[ $rc = 0 ] && ok "batch 1 runs" || bad "batch 1: exit $rc: $out"
grep -q "^decode first step .* (untimed warm-up)" <<<"$out" && ok "warm-up step printed apart" || bad "no warm-up line: $out"
L=$(grep -o '"num_hidden_layers": *[0-9]*' "$M/config.json" | grep -o '[0-9]*$')
med=$(sed -n 's/^decode step median \([0-9.]*\) ms.*/\1/p' <<<"$out")
lm=$(sed -n 's/^decode layers without the lm_head (\([0-9.]*\) ms.*/\1/p' <<<"$out")
per=$(sed -n 's/^decode layers without the lm_head .*: \(-\{0,1\}[0-9.]*\) ms per layer.*/\1/p' <<<"$out")
if [ -n "$med" ] && [ -n "$lm" ] && [ -n "$per" ] &&
   awk -v m="$med" -v l="$lm" -v p="$per" -v n="$L" 'BEGIN{d = n * p + l - m; exit !(d < 0.0005 * (n + 2) && d > -0.0005 * (n + 2) && l > 0)}'; then
  ok "per-layer line adds up ($L x $per + $lm = $med ms)"
else
  bad "per-layer line: median '$med', lm_head '$lm', per layer '$per' ($L layers): $out"
fi

# the untimed prefill warm-up runs on a scratch sequence: the greedy tokens are the same with it and without it
out=$("$MIMO_BIN" bench --model "$M" --prompt 12 --chunk 5 --decode 6 --tokens-out "$work/tw" 2>&1); rc=$?
grep -q "^warm-up forward: 5 tokens in .* (untimed" <<<"$out" && ok "prefill warm-up printed apart (first chunk)" ||
  bad "prefill warm-up line: exit $rc: $out"
out2=$("$MIMO_BIN" bench --model "$M" --prompt 12 --chunk 5 --decode 6 --tokens-out "$work/tc" --no-prefill-warmup 2>&1); rc=$?
[ $rc = 0 ] && ! grep -q "^warm-up forward" <<<"$out2" && ok "--no-prefill-warmup skips it" || bad "--no-prefill-warmup: exit $rc: $out2"
[ -s "$work/tw" ] && cmp -s "$work/tw" "$work/tc" && ok "same tokens with and without the prefill warm-up" ||
  bad "tokens differ with the prefill warm-up: $(head -c 200 "$work/tw") / $(head -c 200 "$work/tc")"

out=$("$MIMO_BIN" bench --model "$M" --prompt 5 --decode 4 --batch 3 --temperature 0.8 --top-p 0.9 --top-k 20 2>&1); rc=$?
[ $rc = 0 ] && grep -q "^decode batch 3: 4 steps" <<<"$out" && ok "batch 3 with filters runs" || bad "batch 3: exit $rc: $out"
grep -q "without the lm_head" <<<"$out" && bad "per-layer line at batch 3" || ok "no per-layer line above batch 1"

for a in "--decode 0:--decode" "--batch 0:--batch" "--prompt 0:--prompt" "--chunk -1:--chunk" "--decode x:--decode"; do
  arg=${a%%:*} name=${a##*:}
  err=$("$MIMO_BIN" bench --model "$M" $arg 2>&1 >/dev/null); rc=$?
  [ $rc = 2 ] && grep -q -- "$name" <<<"$err" && ok "$arg: exit 2, names $name" || bad "$arg: exit $rc: $err"
done
finish bench
