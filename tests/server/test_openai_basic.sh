#!/usr/bin/env bash
# mimo serve on a tiny synthetic model driven by the npm `openai` client (tests/server/basic.cjs).
source "$(dirname "$0")/lib.sh"
start_server
run_node "$HERE/basic.cjs"
curl -sf "$BASE/health" >/dev/null || die "/health"
curl -sf "$BASE/metrics" | grep -q '^vllm:generation_tokens_total{model_name="tiny"} [1-9]' || die "/metrics tokens"
curl -sf "$BASE/metrics" | grep -q 'mimo:http_requests_total{path="/v1/chat/completions",status="200"}' || die "/metrics status"
tok=$(curl -sf "$BASE/tokenize" -d '{"prompt":"Hello world"}')
ids=$(node -e 'console.log(JSON.stringify(JSON.parse(process.argv[1]).tokens))' "$tok")
curl -sf "$BASE/detokenize" -d "{\"tokens\":$ids}" | grep -q '"prompt":"Hello world"' || die "tokenize round trip"
stop_server
echo "ok"
