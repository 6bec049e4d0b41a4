#!/usr/bin/env bash
# `mimo serve --tensor-parallel-size 2` (CPU ranks here; GPUs in tools/gpu-check): the
# same greedy completions as one rank, streamed and whole, under concurrent requests.
source "$(dirname "$0")/lib.sh"
ask() { # prompt [tag] -> completion text as JSON (greedy, 12 tokens)
  local f="$WORK/r${2:-}.json"
  curl -sS --max-time 60 "$BASE/v1/completions" -H 'content-type: application/json' \
    -d "{\"model\":\"tiny\",\"prompt\":\"$1\",\"max_tokens\":12,\"temperature\":0}" >"$f"
  node -e 'const r=require(process.argv[1]); process.stdout.write(JSON.stringify(r.choices[0].text))' "$f"
}
prompts=("hello world" "the quick brown fox" "1 2 3 4 5")
start_server --backend cpu --threads 2
for p in "${prompts[@]}"; do ask "$p" >>"$WORK/one.txt"; echo >>"$WORK/one.txt"; done
stop_server
start_server --backend cpu --threads 2 --tensor-parallel-size 2
for p in "${prompts[@]}"; do ask "$p" >>"$WORK/two.txt"; echo >>"$WORK/two.txt"; done
# Concurrent requests through the group (continuous batching over the ranks).
pids=()
for i in 1 2 3 4; do
  ( ask "${prompts[$((i % 3))]}" "$i" >"$WORK/c$i.txt" ) & pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
stop_server
cmp -s "$WORK/one.txt" "$WORK/two.txt" || die "TP-2 completions differ from one rank: $(cat "$WORK/one.txt") vs $(cat "$WORK/two.txt")"
for i in 1 2 3 4; do
  want=$(sed -n "$(( (i % 3) + 1 ))p" "$WORK/one.txt")
  [ "$(cat "$WORK/c$i.txt")" = "$want" ] || die "concurrent request $i: $(cat "$WORK/c$i.txt") vs $want"
done
echo "ok   serve TP-2 = TP-1 on $(wc -l <"$WORK/one.txt") prompts and 4 concurrent requests: $(head -1 "$WORK/one.txt")"
echo "test_tp_serve: 1 passed, 0 failed"
