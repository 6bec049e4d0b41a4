#!/usr/bin/env bash
# On the GPU machine (torch + transformers 5.x): for every case dir in tests/data/ref/, runs
# hf_reference.py (goldens) and np_reference.py (independent numpy path), compares them, and
# writes $OUT/goldens.tar (<case>/{golden.json,logits.f32,np_logits.f32,np_greedy.json} and
# src/ = the transformers source actually used) plus $OUT/log.txt.
# Install the results here with: tar -xf goldens.tar -C /tmp/g && tools/reference/install_goldens.sh /tmp/g
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/mimo_goldens}
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
W=$(mktemp -d)
status=0
{
  echo "python: $($PY -c 'import sys,torch,transformers,numpy;print(sys.version.split()[0],"torch",torch.__version__,"transformers",transformers.__version__,"numpy",numpy.__version__)')"
  first=1
  for d in tests/data/ref/*/; do
    d=${d%/}; name=$(basename "$d")
    [ -f "$d/inputs.json" ] || continue
    echo "== $name"
    mkdir -p "$W/$name"
    src=(); [ $first = 1 ] && src=(--dump-source "$W/src"); first=0
    if ! $PY tools/reference/hf_reference.py --model "$d" --inputs "$d/inputs.json" --out-dir "$W/$name" --cuda-check "${src[@]}"; then
      echo "FAIL $name: hf_reference.py"; status=1; continue
    fi
    toks=$($PY -c "import json;print(','.join(map(str,json.load(open('$d/inputs.json'))['tokens'])))")
    gp=$($PY -c "import json;print(','.join(map(str,json.load(open('$d/inputs.json'))['greedy_prompt'])))")
    V=$($PY -c "import json;print(json.load(open('$d/config.json'))['vocab_size'])")
    $PY tools/reference/np_reference.py --model "$d" --tokens "$toks" --out "$W/$name/np_logits.f32" \
      --greedy 24 --greedy-prompt "$gp" --greedy-out "$W/$name/np_greedy.json" --diag || { echo "FAIL $name: np_reference.py"; status=1; continue; }
    $PY tests/model/compare_logits.py "$W/$name/np_logits.f32" "$W/$name/logits.f32" --vocab "$V" --tol 1e-5 \
      --label "$name numpy-vs-HF" || status=1
    $PY - "$W/$name" <<'PYEOF' || status=1
import json, sys
d = sys.argv[1]
g, n = json.load(open(f"{d}/golden.json")), json.load(open(f"{d}/np_greedy.json"))
same = g["greedy"] == n["greedy"]
print(("ok  " if same else "FAIL"), "greedy HF", g["greedy"], "numpy", "same" if same else n["greedy"])
sys.exit(0 if same else 1)
PYEOF
  done
  echo "overall status $status"
} 2>&1 | tee "$W/log.txt"
mkdir -p "$OUT"
cp "$W/log.txt" "$OUT/log.txt"
tar -C "$W" -cf "$OUT/goldens.tar" .
exit $status
