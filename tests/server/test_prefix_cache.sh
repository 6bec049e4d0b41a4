#!/usr/bin/env bash
# Prefix caching (on by default, as in vLLM): repeated and continued prompts report their cached tokens through both
# APIs and /metrics, and answer exactly (text; logprobs within 1e-4) as a server without the cache does.
source "$(dirname "$0")/lib.sh"
export OUT="$WORK/cached.json"
start_server
MODE=cache run_node "$HERE/prefix_cache.cjs"
stop_server
start_server --no-enable-prefix-caching
MODE=nocache run_node "$HERE/prefix_cache.cjs"
stop_server
echo "ok   prefix cache: repeated and continued prompts, OpenAI and Anthropic usage, /metrics, = no cache"
