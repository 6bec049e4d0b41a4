#!/usr/bin/env bash
# End-to-end logits/greedy check of the engine against committed goldens (tests/data/ref/<case>/:
# checkpoint + golden.json + logits.f32 from transformers' MiMoV2FlashForCausalLM, fp32; see
# docs/reference.md). Per case:
#   mimo logits one-shot, --chunk 1, --chunk 7: max|got-ref|/max|ref| <= 1e-4 at every position
#   mimo generate (greedy, 24 tokens) == golden greedy ids
#   tools/reference/np_reference.py (independent numpy path) vs the same goldens (<= 1e-5, same greedy)
#   mimo logits --route-margin (each token's smallest router top-k margin) vs the numpy path's (<= 1e-5)
# Skips (exit 0) only when the binary has no `logits` command yet.
set -uo pipefail
SRC=${MIMO_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
BIN=${MIMO_BIN:?MIMO_BIN must point at the built mimo binary}
PY=/usr/bin/python3
TOL=${MIMO_REF_TOL:-1e-4}
CMP="$PY $SRC/tests/model/compare_logits.py"
if [ ! -x "$BIN" ]; then echo "FAIL: MIMO_BIN=$BIN is not executable"; exit 1; fi
help=$("$BIN" logits --help 2>&1)
if grep -qi "unknown command" <<<"$help"; then
  echo "SKIP: '$BIN logits' does not exist yet"; exit 0
fi
$PY -c "import numpy" || { echo "FAIL: $PY has no numpy"; exit 1; }
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
fails=0; ncase=0
fail() { echo "FAIL $*"; fails=$((fails+1)); }
jget() { $PY -c "import json,sys;v=json.load(open(sys.argv[1]))[sys.argv[2]];print(','.join(map(str,v)) if isinstance(v,list) else v)" "$@"; }
for d in "$SRC"/tests/data/ref/*/; do
  d=${d%/}; name=$(basename "$d")
  [ -f "$d/golden.json" ] || continue
  ncase=$((ncase+1))
  toks=$(jget "$d/golden.json" tokens); gp=$(jget "$d/golden.json" greedy_prompt)
  want=$(jget "$d/golden.json" greedy); V=$(jget "$d/config.json" vocab_size)
  echo "== $name (T=$(tr ',' '\n' <<<"$toks" | wc -l), vocab $V)"
  for mode in oneshot 1 7; do
    args=(); [ $mode != oneshot ] && args=(--chunk $mode)
    out="$W/$name.$mode.f32"
    "$BIN" logits --model "$d" --tokens "$toks" --out "$out" "${args[@]}" >"$W/log" 2>&1
    rc=$?
    if [ $rc -ne 0 ]; then
      fail "$name logits ${args[*]:-(one-shot)}: exit status $rc"; tail -n 5 "$W/log"; continue
    fi
    $CMP "$out" "$d/logits.f32" --vocab "$V" --tol "$TOL" --label "$name engine $([ $mode = oneshot ] && echo one-shot || echo "--chunk $mode")" ||
      fails=$((fails+1))
  done
  got=$("$BIN" generate --model "$d" --tokens "$gp" --max-tokens 24 2>"$W/log" | grep -v '^\s*$' | tail -n 1 | tr -d ' ')
  if [ "$got" = "$want" ]; then
    echo "ok   $name engine greedy 24 ids match"
  else
    fail "$name engine greedy: got [$got] want [$want]"; tail -n 5 "$W/log"
  fi
  # The independent numpy reference against the same goldens (documents that the references agree).
  if $PY "$SRC/tools/reference/np_reference.py" --model "$d" --tokens "$toks" --out "$W/$name.np.f32" \
       --greedy 24 --greedy-prompt "$gp" --greedy-out "$W/$name.np.json" --margin-out "$W/$name.np.margin" >/dev/null 2>"$W/log"; then
    $CMP "$W/$name.np.f32" "$d/logits.f32" --vocab "$V" --tol 1e-5 --label "$name numpy-reference" || fails=$((fails+1))
    npg=$(jget "$W/$name.np.json" greedy)
    [ "$npg" = "$want" ] && echo "ok   $name numpy-reference greedy matches" ||
      fail "$name numpy-reference greedy: got [$npg] want [$want]"
    if "$BIN" logits --model "$d" --tokens "$toks" --out "$W/$name.m.f32" --backend cpu \
         --route-margin "$W/$name.margin" >"$W/log" 2>&1; then
      $PY - "$W/$name.margin" "$W/$name.np.margin" "$name" <<'PYEOF' || fails=$((fails+1))
import sys, numpy as np
got, ref = (np.fromfile(f, "<f4") for f in sys.argv[1:3])
fin = np.isfinite(ref)
ok = got.shape == ref.shape and np.array_equal(fin, np.isfinite(got)) and \
     (not fin.any() or float(np.max(np.abs(got[fin] - ref[fin]))) <= 1e-5)
d = float(np.max(np.abs(got[fin] - ref[fin]))) if got.shape == ref.shape and fin.any() else float("nan")
print(f"{'ok  ' if ok else 'FAIL'} {sys.argv[3]} router margins vs numpy: {len(ref)} tokens, max |diff| {d:.2e}, "
      f"smallest {float(np.min(ref)):.3e}")
sys.exit(0 if ok else 1)
PYEOF
    else
      fail "$name logits --route-margin: exit status $?"; tail -n 5 "$W/log"
    fi
  else
    fail "$name np_reference.py crashed"; tail -n 5 "$W/log"
  fi
done
[ $ncase -gt 0 ] || { echo "FAIL: no cases with golden.json under $SRC/tests/data/ref"; exit 1; }
echo "$ncase cases, $fails failures"
[ $fails -eq 0 ]
