#!/usr/bin/env bash
# Tensor / expert parallel on CPU ranks (the CI has no GPUs; the same sharding runs on
# GPUs with NCCL in tools/gpu-check): for synthetic checkpoints with qkv chunk counts
# 4 and 2 (fused) and the split q/k/v layout, sym/asym int4 and bf16 experts,
#   mimo logits --tensor-parallel-size N [--enable-expert-parallel] [--chunk 7]
# must equal the single-rank logits (max|d|/max|ref| <= 1e-5 per position, same argmax),
# including TP > KV heads (KV heads replicated) and TP 8 = one query head per rank;
# sizes that do not split are refused with a message naming the heads.
set -uo pipefail
SRC=${MIMO_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
BIN=${MIMO_BIN:?MIMO_BIN must point at the built mimo binary}
PY=/usr/bin/python3
CMP="$PY $SRC/tests/model/compare_logits.py"
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
fails=0; passes=0
ids=$(seq -s, 3 2 121) # 60 tokens: several sliding windows
check() { # label got ref vocab
  if $CMP "$2" "$3" --vocab "$4" --tol 1e-5 --label "$1"; then passes=$((passes+1)); else fails=$((fails+1)); fi
}
run_case() { # name, synth args...
  local name=$1; shift
  local d="$W/$name"
  "$BIN" synth --out "$d" --preset tiny "$@" >"$W/log" 2>&1 || { echo "FAIL synth $name"; cat "$W/log"; fails=$((fails+1)); return; }
  local V; V=$(grep -o '"vocab_size": *[0-9]*' "$d/config.json" | grep -o '[0-9]*$')
  "$BIN" logits --backend cpu --threads 2 --model "$d" --tokens "$ids" --out "$W/$name.tp1" >"$W/log" 2>&1 ||
    { echo "FAIL $name tp1"; cat "$W/log"; fails=$((fails+1)); return; }
  for mode in "2" "4" "8 ep" "2 ep" "4 ep" "2 chunk" "4 ep chunk" ${EXTRA_MODES:-}; do
    set -- $mode
    local tp=$1 args=(--tensor-parallel-size "$1") tag="tp$1"
    [[ " $mode " == *" ep "* ]] && { args+=(--enable-expert-parallel); tag+="-ep"; }
    [[ " $mode " == *" chunk "* ]] && { args+=(--chunk 7); tag+="-chunk7"; }
    if ! "$BIN" logits --backend cpu --threads 2 --model "$d" --tokens "$ids" --out "$W/$name.$tag" "${args[@]}" >"$W/log" 2>&1; then
      echo "FAIL $name $tag: exit status"; tail -3 "$W/log"; fails=$((fails+1)); continue
    fi
    check "$name $tag vs 1 rank" "$W/$name.$tag" "$W/$name.tp1" "$V"
  done
}
run_case int4-g32-chunks4 --quant int4 --group-size 32 --kv-heads 4
run_case int4asym-g16-chunks2 --quant int4-asym --group-size 16 --kv-heads 2
EXTRA_MODES=8 run_case bf16-chunks4 --quant bf16 --kv-heads 4 # TP-8: one query head per rank, KV heads shared by 2
run_case int4-split-qkv --quant int4 --group-size 32 --kv-heads 2 --split-qkv

# bf16 KV caches on every rank (the group sets its ranks' cache type): TP-4 against one rank with the same cache
# type. The ranks' partial sums meet in another order (~1e-7), which can move a key across a bf16 rounding boundary,
# so the tolerance is the chunking test's for bf16 caches (tests/unit/test_model.c).
d="$W/int4-g32-chunks4"
V=$(grep -o '"vocab_size": *[0-9]*' "$d/config.json" | grep -o '[0-9]*$')
if "$BIN" logits --backend cpu --threads 2 --model "$d" --tokens "$ids" --kv-cache-dtype bfloat16 --out "$W/bf.tp1" >"$W/log" 2>&1 &&
  "$BIN" logits --backend cpu --threads 2 --model "$d" --tokens "$ids" --kv-cache-dtype bfloat16 --tensor-parallel-size 4 \
    --out "$W/bf.tp4" >"$W/log" 2>&1; then
  if $CMP "$W/bf.tp4" "$W/bf.tp1" --vocab "$V" --tol 5e-4 --label "bf16 KV tp4 vs 1 rank"; then passes=$((passes+1)); else fails=$((fails+1)); fi
else
  echo "FAIL bf16 KV TP runs: exit status"; tail -3 "$W/log"; fails=$((fails+1))
fi

# Greedy generation through the group matches one rank.
d="$W/int4-g32-chunks4"
a=$("$BIN" generate --backend cpu --model "$d" --tokens 5,6,7,8 --max-tokens 12 2>/dev/null | tail -n 1)
b=$("$BIN" generate --backend cpu --model "$d" --tokens 5,6,7,8 --max-tokens 12 --tensor-parallel-size 4 2>/dev/null | tail -n 1)
if [ -n "$a" ] && [ "$a" = "$b" ]; then echo "ok   generate greedy TP-4 = TP-1 ($a)"; passes=$((passes+1));
else echo "FAIL generate greedy TP-4 [$b] vs TP-1 [$a]"; fails=$((fails+1)); fi

# Sizes that cannot split: a clear message, exit 1.
out=$("$BIN" logits --backend cpu --model "$d" --tokens 1,2 --out "$W/x" --tensor-parallel-size 3 2>&1); rc=$?
if [ $rc = 1 ] && grep -q "query heads do not split over 3 ranks" <<<"$out"; then echo "ok   TP-3 refused: $out"; passes=$((passes+1));
else echo "FAIL TP-3: rc=$rc: $out"; fails=$((fails+1)); fi
out=$("$BIN" logits --backend cpu --model "$d" --tokens 1,2 --out "$W/x" --tensor-parallel-size 16 2>&1); rc=$?
if [ $rc = 1 ] && grep -q "ranks" <<<"$out"; then echo "ok   TP-16 refused: $out"; passes=$((passes+1));
else echo "FAIL TP-16: rc=$rc: $out"; fails=$((fails+1)); fi

# int4 experts 32 wide over 8 ranks would cut 4 columns out of an 8-column word.
out=$("$BIN" logits --backend cpu --model "$d" --tokens 1,2 --out "$W/x" --tensor-parallel-size 8 2>&1); rc=$?
if [ $rc = 1 ] && grep -q "cut int4 words" <<<"$out"; then echo "ok   int4 TP-8 of 32-wide experts refused: $out"; passes=$((passes+1));
else echo "FAIL int4 TP-8: rc=$rc: $out"; fails=$((fails+1)); fi

# Several processes (the multi-host mode, here on one host): node 0 runs the command,
# node 1 follows it over --master-addr/--master-port; CPU ranks sum through that link.
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
for mode in "2" "4" "4 ep" "2 chunk"; do
  set -- $mode
  args=(--tensor-parallel-size "$1") tag="2proc-tp$1"
  [[ " $mode " == *" ep "* ]] && { args+=(--enable-expert-parallel); tag+="-ep"; }
  [[ " $mode " == *" chunk "* ]] && { args+=(--chunk 5); tag+="-chunk5"; }
  port=$(free_port)
  L=("$BIN" logits --backend cpu --threads 1 --model "$d" --tokens "$ids" "${args[@]}" --nnodes 2 --master-port "$port")
  "${L[@]}" --node-rank 1 --out "$W/unused" >"$W/node1.log" 2>&1 &
  w=$!
  "${L[@]}" --node-rank 0 --out "$W/$tag" >"$W/node0.log" 2>&1; rc0=$?
  wait $w; rc1=$?
  if [ $rc0 = 0 ] && [ $rc1 = 0 ]; then
    check "int4-g32-chunks4 $tag vs 1 rank" "$W/$tag" "$W/int4-g32-chunks4.tp1" 640
  else
    echo "FAIL $tag: node 0 rc=$rc0 node 1 rc=$rc1"; tail -n 3 "$W/node0.log" "$W/node1.log"; fails=$((fails+1))
  fi
done
echo "test_tp: $passes passed, $fails failed"
[ $fails = 0 ]
