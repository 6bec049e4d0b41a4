#!/usr/bin/env bash
# Stop strings over a scripted output (tests/server/stop.cjs).
source "$(dirname "$0")/lib.sh"
start_mock "Hello world, STOP here. The end."
run_node "$HERE/stop.cjs"
stop_server
echo ok
