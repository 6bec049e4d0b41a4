#!/usr/bin/env bash
# mimo serve on a tiny synthetic model driven by the npm `openai` client (tests/server/basic.cjs).
source "$(dirname "$0")/lib.sh"
start_server
run_node "$HERE/basic.cjs"
curl -sf "$BASE/health" >/dev/null || die "/health"
# Read whole replies before grep -q: under pipefail, grep quitting early makes curl fail with SIGPIPE.
metrics=$(curl -sf "$BASE/metrics") || die "/metrics"
grep -q '^vllm:generation_tokens_total{model_name="tiny"} [1-9]' <<<"$metrics" || die "/metrics tokens"
grep -q 'mimo:http_requests_total{path="/v1/chat/completions",status="200"}' <<<"$metrics" || die "/metrics status"
grep -q '^mimo:kv_pool_bytes{model_name="tiny"} [1-9]' <<<"$metrics" || die "/metrics kv pool (the requests took blocks)"
grep -q '^vllm:num_preemptions_total{model_name="tiny"} 0$' <<<"$metrics" || die "/metrics preemptions (none: memory is plenty)"
tok=$(curl -sf "$BASE/tokenize" -d '{"prompt":"Hello world"}')
ids=$(node -e 'console.log(JSON.stringify(JSON.parse(process.argv[1]).tokens))' "$tok")
detok=$(curl -sf "$BASE/detokenize" -d "{\"tokens\":$ids}") || die "detokenize"
grep -q '"prompt":"Hello world"' <<<"$detok" || die "tokenize round trip"
stop_server
echo "ok"
