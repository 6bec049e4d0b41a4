#!/usr/bin/env bash
# 64 concurrent streaming clients with random disconnects (tests/server/concurrency.cjs).
# In the ASan suite MIMO_BIN is the sanitizer build: stop_server fails on any
# ASan/LSan report at shutdown.
source "$(dirname "$0")/lib.sh"
start_server --max-num-seqs 16
run_node "$HERE/concurrency.cjs"
curl -sf -m 10 "$BASE/health" >/dev/null || die "unhealthy after the load"
# cancelled sequences were freed: nothing left running or waiting
for _ in $(seq 1 100); do
  m=$(curl -s "$BASE/metrics")
  grep -q '^vllm:num_requests_waiting{model_name="tiny"} 0' <<<"$m" && break
  sleep 0.1
done
grep -q '^vllm:num_requests_waiting{model_name="tiny"} 0' <<<"$m" || die "requests left waiting"
stop_server 30
echo ok
