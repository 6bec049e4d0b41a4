# Shared by tests/cli/test_*.sh: a scratch directory removed on exit, and a tally of checks.
# ok MSG / bad MSG print one line each; finish NAME ends the script with the summary (exit 1 on any bad).
set -u
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; fails=$((fails + 1)); }
finish() { [ $fails = 0 ] && echo "$1: all passed" || { echo "$1: $fails failed"; exit 1; }; }
