#!/usr/bin/env bash
# reasoning_content / content split over a scripted output (tests/server/reasoning.cjs).
source "$(dirname "$0")/lib.sh"
start_mock "<think>Let me think.</think>The answer is 4."
run_node "$HERE/reasoning.cjs"
stop_server
echo ok
