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
# vLLM's stream_options.continuous_usage_stats: every chunk carries the counts so far, never falling, ending at the
# final usage chunk's
curl -sS -N -m 60 "$BASE/v1/chat/completions" -H 'content-type: application/json' -d '{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":12,"stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":true}}' >"$WORK/cu.txt"
node -e 'const l=require("fs").readFileSync(process.argv[1],"utf8").split("\n").filter(x=>x.startsWith("data: {")).map(x=>JSON.parse(x.slice(6)));
  let prev=-1; for (const c of l) { if (!c.usage) { console.error("a chunk without usage"); process.exit(1) }
    if (c.usage.completion_tokens < prev) { console.error("usage fell"); process.exit(1) } prev=c.usage.completion_tokens }
  const fin=l[l.length-1]; if (fin.choices.length || l[l.length-2].usage.completion_tokens !== fin.usage.completion_tokens) { console.error("last", JSON.stringify(fin)); process.exit(1) }
  console.log("ok   continuous_usage_stats: " + l.length + " chunks, usage in each, " + fin.usage.completion_tokens + " tokens")' "$WORK/cu.txt" ||
  die "continuous_usage_stats"
stop_server
echo "ok"
