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
cached() { node -e 'const r=require(process.argv[1]); process.stdout.write(String(r.usage.prompt_tokens_details.cached_tokens))' "$WORK/r$1.json"; }
prompts=("hello world" "the quick brown fox" "1 2 3 4 5")
# Prompts long enough for the prefix cache (>= 64 tokens): the second continues the first.
long="$(printf 'item %d, ' $(seq 1 40))"
longer="$long and then some more words"
start_server --backend cpu --threads 2 --no-enable-prefix-caching
for p in "${prompts[@]}"; do ask "$p" >>"$WORK/one.txt"; echo >>"$WORK/one.txt"; done
ask "$long" >"$WORK/one_long.txt"
ask "$longer" >"$WORK/one_longer.txt"
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
# Two processes (multi-host mode on one host): node 1 follows node 0, which serves.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$MIMO_BIN" serve "$MODEL" --backend cpu --threads 1 --tensor-parallel-size 2 --nnodes 2 --node-rank 1 \
  --master-port "$port" >"$WORK/node1.log" 2>&1 &
node1=$!
start_server --backend cpu --threads 1 --tensor-parallel-size 2 --nnodes 2 --node-rank 0 --master-port "$port"
for p in "${prompts[@]}"; do ask "$p" >>"$WORK/twoproc.txt"; echo >>"$WORK/twoproc.txt"; done
for i in 1 2 3 4; do ask "${prompts[$((i % 3))]}" "p$i" >"$WORK/p$i.txt"; done
# The prefix cache across the processes: node 0's fork of a cache tells node 1 to fork its shards too.
ask "$long" L1 >"$WORK/two_long.txt"
ask "$longer" L2 >"$WORK/two_longer.txt"
ask "$long" L3 >"$WORK/two_long_again.txt"
stop_server
node1_rc=0
wait "$node1" || node1_rc=$?
[ "$node1_rc" = 0 ] || die "node 1 exited with $node1_rc: $(tail -3 "$WORK/node1.log")"
cmp -s "$WORK/one.txt" "$WORK/twoproc.txt" || die "2-process completions differ: $(cat "$WORK/twoproc.txt")"
for i in 1 2 3 4; do
  want=$(sed -n "$(( (i % 3) + 1 ))p" "$WORK/one.txt")
  [ "$(cat "$WORK/p$i.txt")" = "$want" ] || die "2-process request $i: $(cat "$WORK/p$i.txt") vs $want"
done
for f in long longer; do
  cmp -s "$WORK/one_$f.txt" "$WORK/two_$f.txt" || die "2-process $f prompt: $(cat "$WORK/two_$f.txt") vs $(cat "$WORK/one_$f.txt")"
done
cmp -s "$WORK/one_long.txt" "$WORK/two_long_again.txt" || die "2-process long prompt from the prefix cache differs"
[ "$(cached L1)" = 0 ] && [ "$(cached L2)" -ge 64 ] && [ "$(cached L3)" -ge 64 ] ||
  die "2-process cached tokens: $(cached L1) $(cached L2) $(cached L3) (want 0, >= 64, >= 64)"
echo "ok   serve over 2 processes = TP-1 on 10 requests (2 from the prefix cache: $(cached L2), $(cached L3) tokens); node 1 ended with node 0"

# A worker that dies: node 0 fails the step (no hang), /health turns 503, new requests get a 500 that says why.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$MIMO_BIN" serve "$MODEL" --backend cpu --threads 1 --tensor-parallel-size 2 --nnodes 2 --node-rank 1 \
  --master-port "$port" >"$WORK/node1b.log" 2>&1 &
node1=$!
start_server --backend cpu --threads 1 --tensor-parallel-size 2 --nnodes 2 --node-rank 0 --master-port "$port"
ask "hello world" >/dev/null
kill -KILL "$node1"
wait "$node1" 2>/dev/null || true
curl -sS --max-time 60 "$BASE/v1/completions" -H 'content-type: application/json' \
  -d '{"model":"tiny","prompt":"hello","max_tokens":4,"temperature":0}' >"$WORK/dead1.json"
grep -q '"finish_reason":"error"' "$WORK/dead1.json" || die "request after the worker died: $(cat "$WORK/dead1.json")"
code=$(curl -sS -o "$WORK/health.txt" -w '%{http_code}' --max-time 10 "$BASE/health")
[ "$code" = 503 ] || die "/health after the worker died: $code"
code=$(curl -sS -o "$WORK/dead2.json" -w '%{http_code}' --max-time 10 "$BASE/v1/completions" -H 'content-type: application/json' \
  -d '{"model":"tiny","prompt":"hello","max_tokens":4}')
[ "$code" = 500 ] && grep -q "restart" "$WORK/dead2.json" || die "new request after the worker died: $code $(cat "$WORK/dead2.json")"
stop_server
echo "ok   worker killed: the step fails, /health 503, new requests 500 naming the lost link"
cmp -s "$WORK/one.txt" "$WORK/two.txt" || die "TP-2 completions differ from one rank: $(cat "$WORK/one.txt") vs $(cat "$WORK/two.txt")"
for i in 1 2 3 4; do
  want=$(sed -n "$(( (i % 3) + 1 ))p" "$WORK/one.txt")
  [ "$(cat "$WORK/c$i.txt")" = "$want" ] || die "concurrent request $i: $(cat "$WORK/c$i.txt") vs $want"
done
echo "ok   serve TP-2 = TP-1 on $(wc -l <"$WORK/one.txt") prompts and 4 concurrent requests: $(head -1 "$WORK/one.txt")"

# TP-8 (issue 8's CPU side): bf16 with 4 KV heads, so one KV head is shared by two ranks; with and without expert
# parallelism, the prefix cache (every rank forks its shard) answers as the uncached server does (tools/serve-prefix).
"$MIMO_BIN" synth --out "$WORK/tp8" --preset tiny --quant bf16 --kv-heads 4 --seed 4 >/dev/null 2>&1 || die "synth tp8"
for ep in "" --enable-expert-parallel; do
  line=$(timeout 120 python3 "$MIMO_SRC/tools/serve-prefix" "$MIMO_BIN" "$WORK/tp8" 300 --backend cpu --threads 1 \
    --tensor-parallel-size 8 $ep 2>&1) || die "TP-8 ${ep:-tensor parallel} prefix cache: $line"
  echo "ok   serve TP-8 ${ep:-(TP)} prefix cache: $(tail -1 <<<"$line")"
done
echo "test_tp_serve: 5 passed, 0 failed"
