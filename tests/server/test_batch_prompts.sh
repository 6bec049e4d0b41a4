#!/usr/bin/env bash
# Batched prompts in /v1/completions (tests/server/batch_prompts.cjs).
source "$(dirname "$0")/lib.sh"
start_server --backend cpu --threads 2
run_node "$HERE/batch_prompts.cjs"
stop_server
