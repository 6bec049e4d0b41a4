# Shared by tests/cli/test_*.sh: a scratch directory removed on exit, and a tally of checks.
# ok MSG / bad MSG print one line each; refused checks that a command fails with a message; finish NAME ends the
# script with the summary (exit 1 on any bad).
set -u
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; fails=$((fails + 1)); }
# refused LABEL SUBSTRING COMMAND...: the command fails and says SUBSTRING on stderr.
refused() {
  local label=$1 want=$2; shift 2
  if "$@" >/dev/null 2>"$work/err"; then bad "$label: succeeded"; return; fi
  grep -qF -- "$want" "$work/err" && ok "$label: $(head -1 "$work/err")" || bad "$label: wanted '$want', got: $(cat "$work/err")"
}
finish() { [ $fails = 0 ] && echo "$1: all passed" || { echo "$1: $fails failed"; exit 1; }; }
