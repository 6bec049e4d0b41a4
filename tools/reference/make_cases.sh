#!/usr/bin/env bash
# (Re)creates the golden-case checkpoints under tests/data/ref/<case>/ (checkpoint + inputs.json)
# and prints the numpy reference's robustness margins for each. Goldens (golden.json,
# logits.f32) are then produced on the GPU machine by tools/reference/make_goldens.sh.
#
# usage: tools/reference/make_cases.sh [MIMO_BIN]
#   "synth" cases come from `MIMO_BIN synth --preset tiny` (the published-layout writer under
#   test); without MIMO_BIN they fall back to tools/reference/make_ckpt.py. "np" cases always come
#   from make_ckpt.py (numpy stand-in: an independent writer of the same layout, and the only
#   source of a SWA/full KV-head ratio other than 2, which exercises hf_reference.py patch P1).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
BIN=${1:-}
REF=tests/data/ref
# name | writer | quant | group | kv-heads (= qkv chunk count) | seed | extra make_ckpt args
CASES=(
  "synth_int4_sym_g32_kv4|synth|int4|32|4|11|"
  "synth_int4_asym_g16_kv2|synth|int4-asym|16|2|12|"
  "synth_bf16_kv4|synth|bf16|32|4|13|"
  "npw_int4_asym_g16_kv2_swa8|np|int4-asym|16|2|22|--swa-kv-heads 8"
)
for c in "${CASES[@]}"; do
  IFS='|' read -r name kind quant group kv seed extra <<<"$c"
  d=$REF/$name
  rm -rf "$d"; mkdir -p "$d"
  if [ "$kind" = synth ] && [ -n "$BIN" ]; then
    "$BIN" synth --out "$d" --preset tiny --quant "$quant" --group-size "$group" --kv-heads "$kv" --seed "$seed"
    writer="mimo synth --preset tiny --quant $quant --group-size $group --kv-heads $kv --seed $seed"
  else
    # shellcheck disable=SC2086
    $PY tools/reference/make_ckpt.py --out "$d" --quant "$quant" --group-size "$group" --kv-heads "$kv" \
      --seed "$seed" $extra
    writer="tools/reference/make_ckpt.py --quant $quant --group-size $group --kv-heads $kv --seed $seed $extra"
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
  $PY tools/reference/np_reference.py --model "$d" --tokens "$toks" --greedy 24 --greedy-prompt "$gp" --diag \
    2>"$d/.diag" >/dev/null
  # Robustness: a router top-k margin or a top-1 logit gap near rounding noise would make the
  # fp32 engine-vs-reference comparison flaky; pick another seed if this warns.
  $PY - "$d/.diag" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))
print("   min router margin %.2e, min top1 gap %.2e, greedy min gap %.2e" % (d["min_route_margin"], d["min_top1_gap"], d["greedy_min_gap"]))
if d["min_route_margin"] < 2e-5 or min(d["min_top1_gap"], d["greedy_min_gap"]) < 1e-4:
    print("   WARNING: margins are small; choose another seed")
PYEOF
  rm -f "$d/.diag"
done
