#!/bin/sh
# Run one test suite: its output goes to the terminal and to LOG; when it
# fails, its failures are printed again at the end, since a CI log keeps
# only its tail.
#   tools/run-suite.sh LOG command [args...]
#   tools/run-suite.sh --failures LOG      (the failures in LOG again)
failures() {
	grep -B2 -A3 -E 'Assertion Failed|\[FAIL\]|Timed out|crashed|CRASH|Unexpected signal' "$1" ||
		tail -n 20 "$1"
}
if [ "$1" = --failures ]; then
	echo "== failures in $2:"
	failures "$2"
	exit 0
fi
log=$1
shift
mkdir -p "$(dirname "$log")"
"$@" >"$log" 2>&1
rc=$?
cat "$log"
if [ "$rc" != 0 ]; then
	echo "== $* failed (exit $rc); its failures again:"
	failures "$log"
fi
exit "$rc"
