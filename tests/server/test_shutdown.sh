#!/usr/bin/env bash
# SIGTERM: the listener closes at once, a short in-flight stream finishes normally
# within the grace period, a long one is ended cleanly (finish_reason "abort",
# then [DONE]), and the process exits 0 promptly.
source "$(dirname "$0")/lib.sh"
start_server --shutdown-timeout 5
curl -sN -m 30 "$BASE/v1/completions" -d '{"prompt":"a","max_tokens":60,"ignore_eos":true,"stream":true}' >"$WORK/short" &
p1=$!
curl -sN -m 30 "$BASE/v1/completions" -d '{"prompt":"b","max_tokens":100000,"ignore_eos":true,"stream":true}' >"$WORK/long" &
p2=$!
for _ in $(seq 1 100); do [ -s "$WORK/long" ] && [ -s "$WORK/short" ] && break; sleep 0.05; done
t0=$(date +%s.%N)
kill -TERM "$SERVER_PID"
sleep 0.3
code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$BASE/health" || true)
[ "$code" = 000 ] || die "new connection accepted while draining ($code)"
rc1=0; rc2=0; wait "$p1" || rc1=$?; wait "$p2" || rc2=$?
[ "$rc1$rc2" = 00 ] || die "a client saw an error (curl $rc1 $rc2): $(tail -c 300 "$WORK/long")"
stop_server 15
t1=$(date +%s.%N)
node -e 'if (process.argv[2] - process.argv[1] > 8) { console.error("shutdown took", process.argv[2] - process.argv[1]); process.exit(1) }' "$t0" "$t1" \
  || die "slow shutdown"
tail -c 200 "$WORK/short" | grep -q '"finish_reason":"length"' || { tail -c 600 "$WORK/short"; die "short stream did not finish"; }
tail -n 2 "$WORK/short" | grep -q '^data: \[DONE\]$' || die "short stream: no [DONE]"
grep -q '"finish_reason":"abort"' "$WORK/long" || die "long stream not ended with abort: $(tail -c 300 "$WORK/long")"
tail -n 2 "$WORK/long" | grep -q '^data: \[DONE\]$' || die "long stream: no [DONE]"
grep -q "stopped" "$WORK/server.log" || die "no clean stop"
echo ok
