# Shared by tests/server/test_*.sh: a tiny synthetic model, a `mimo serve` on a
# free loopback port (always stopped on exit), and the npm OpenAI client.
set -Eeuo pipefail
# A command that fails under `set -e` names itself instead of ending the test silently.
trap 'echo "FAIL: ${BASH_SOURCE[0]##*/}:$LINENO: $BASH_COMMAND (status $?)" >&2' ERR
: "${MIMO_BIN:?MIMO_BIN must point at the mimo binary}"
: "${MIMO_SRC:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
export NODE_PATH="$MIMO_SRC/tests/npm/node_modules"
HERE="$MIMO_SRC/tests/server"
export HERE
WORK=$(mktemp -d /tmp/mimo-srv-test.XXXXXX)
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
die() { echo "FAIL: $*" >&2; [ -f "$WORK/server.log" ] && tail -n 30 "$WORK/server.log" >&2; exit 1; }

MODEL="$WORK/model"
"$MIMO_BIN" synth --out "$MODEL" --preset tiny --seed 1 >/dev/null 2>&1 || die "synth"

# start_server ARGS... : starts `mimo serve $MODEL ARGS` and sets PORT / BASE.
start_server() {
  : >"$WORK/server.log"
  "$MIMO_BIN" serve "$MODEL" --host 127.0.0.1 --port 0 --served-model-name tiny "$@" >"$WORK/server.out" \
    2>"$WORK/server.log" &
  SERVER_PID=$!
  PORT=""
  for _ in $(seq 1 300); do
    PORT=$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$WORK/server.log" | head -n1)
    [ -n "$PORT" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || die "server exited at startup"
    sleep 0.1
  done
  [ -n "$PORT" ] || die "server did not start in 30 s"
  BASE="http://127.0.0.1:$PORT"
  export PORT BASE
}

# start_mock LINE... : a server whose every completion is the given texts (JSON-encoded here).
start_mock() {
  local f="$WORK/mock.jsonl" extra=()
  : >"$f"
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    node -e 'console.log(JSON.stringify(process.argv[1]))' "$1" >>"$f"
    shift
  done
  [ "${1:-}" = "--" ] && shift && extra=("$@")
  start_server --mock-output "$f" "${extra[@]}"
}

# stop_server [TIMEOUT_S]: SIGTERM, wait, fail if it hangs or exits non-zero.
stop_server() {
  local t=${1:-20} rc=0
  [ -n "$SERVER_PID" ] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 1 $((t * 10))); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -KILL "$SERVER_PID"; SERVER_PID=""; die "server did not stop within $t s of SIGTERM"
  fi
  wait "$SERVER_PID" || rc=$?
  SERVER_PID=""
  if grep -qE "AddressSanitizer|LeakSanitizer|runtime error" "$WORK/server.log"; then
    die "sanitizer report in the server log"
  fi
  [ "$rc" -eq 0 ] || die "server exit status $rc"
}

# expect_400 BODY SUBSTRING: POST /v1/chat/completions answers 400 with SUBSTRING in the error body (printed).
expect_400() {
  local code
  code=$(curl -s -m 30 -o "$WORK/resp" -w '%{http_code}' -H 'Content-Type: application/json' \
    "$BASE/v1/chat/completions" --data-binary "$1")
  [ "$code" = 400 ] && grep -qF -- "$2" "$WORK/resp" || die "status $code for $1: $(cat "$WORK/resp"), wanted '$2'"
  echo "ok   400: $(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).error.message)' "$WORK/resp")"
}

run_node() { timeout 120 node "$@" || die "node $*"; }
