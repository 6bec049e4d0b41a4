#!/usr/bin/env bash
# (Re)creates the golden-case checkpoints under tests/data/ref/<case>/ (checkpoint + inputs.json)
# and prints the numpy reference's robustness margins for each. Goldens (golden.json,
# logits.f32) are then produced on the GPU machine by tools/reference/make_goldens.sh.
#
# usage: tools/reference/make_cases.sh [MIMO_BIN]
#   with MIMO_BIN: checkpoints come from `MIMO_BIN synth --preset tiny` (the writer under test);
#   without: from tools/reference/make_ckpt.py (numpy stand-in, same published layout).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
BIN=${1:-}
REF=tests/data/ref
# name | quant | group | kv-heads (= qkv chunk count) | seed
CASES=(
  "int4_sym_g32_kv4|int4|32|4|11"
  "int4_asym_g16_kv2|int4-asym|16|2|22"
  "bf16_kv4|bf16|32|4|13"
)
for c in "${CASES[@]}"; do
  IFS='|' read -r name quant group kv seed <<<"$c"
  d=$REF/$name
  rm -rf "$d"; mkdir -p "$d"
  if [ -n "$BIN" ]; then
    "$BIN" synth --out "$d" --preset tiny --quant "$quant" --group-size "$group" --kv-heads "$kv" --seed "$seed"
    writer="mimo synth --preset tiny --quant $quant --group-size $group --kv-heads $kv --seed $seed"
  else
    extra=()
    [ "$name" = int4_asym_g16_kv2 ] && extra=(--swa-kv-heads 8) # SWA/full KV ratio 4: exercises HF patch P1
    $PY tools/reference/make_ckpt.py --out "$d" --quant "$quant" --group-size "$group" --kv-heads "$kv" \
      --seed "$seed" "${extra[@]}"
    writer="tools/reference/make_ckpt.py --quant $quant --group-size $group --kv-heads $kv --seed $seed ${extra[*]}"
  fi
  # Inputs: T=48 tokens (6 sliding windows of 8 in the tiny preset), greedy from a 16-token prompt.
  $PY - "$d" "$seed" "$writer" <<'PYEOF'
import json, sys, numpy as np
d, seed, writer = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = json.load(open(f"{d}/config.json"))
V = c["vocab_size"]
rng = np.random.default_rng(1000 + seed)
toks = rng.integers(0, min(V, 151643), 48).tolist()
json.dump({"tokens": toks, "greedy_prompt": toks[:16], "greedy_n": 24, "writer": writer}, open(f"{d}/inputs.json", "w"))
PYEOF
  toks=$($PY -c "import json;print(','.join(map(str,json.load(open('$d/inputs.json'))['tokens'])))")
  gp=$($PY -c "import json;print(','.join(map(str,json.load(open('$d/inputs.json'))['greedy_prompt'])))")
  echo "== $name ($(du -sh "$d" | cut -f1))"
  $PY tools/reference/np_reference.py --model "$d" --tokens "$toks" --greedy 24 --greedy-prompt "$gp" --diag
done
