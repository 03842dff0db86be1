#!/usr/bin/env bash
# The backend matrix (`make vmtest`): Debian 6.1 and 6.12 kernels booted under
# qemu (tools/vmtest.sh) and this host, each running tools/vmmatrix-guest.sh:
# for every hook backend, whether lotrace loads and attaches, whether the
# integration tests pass (exact counts, latency, semantics, and every latency
# scenario of test_latency), and the ping-pong latency it adds.  Exits 1 when a kernel does not behave as expected:
#   6.1:  fentry and kprobe pass, tracepoint is refused (no sock tracepoints)
#   6.12: all three pass
#   host: whatever loads must pass; auto must pick a backend that works
# Then checks the instructions lotrace adds per message against the committed
# bench/icount-6.12.txt and bench/icount-6.1.txt (bench/icount.sh --check).
# Usage: vmmatrix.sh [--scenarios]   (--scenarios: every latency scenario of
# test_latency per backend, not only the datagram accounting ones, ~10-15
# more minutes each under TCG; `make vmtest-scenarios`.  Without it the
# matrix fits CI's 90 minutes.)
set -uo pipefail
cd "$(dirname "$0")/.."
scenarios=
case ${1:-} in
--scenarios) scenarios=scenarios timeout=5400 ;;
'') timeout=1800 ;;
*) echo "vmmatrix.sh: unknown argument '$1' (expected --scenarios or nothing)" >&2; exit 2 ;;
esac
for f in lotrace tools/lobench build/test_integration build/test_latency bench/hookfloor; do
	[ -x "$f" ] || { echo "vmmatrix.sh: $f missing: run make vmtest" >&2; exit 2; }
done

rows=$(mktemp)
trap 'rm -f "$rows"' EXIT
# A kernel gets 30 minutes (90 with --scenarios): under TCG a backend's
# suites take 1-3 minutes (a lotrace start is seconds: the exact counts run
# under one), the datagram scenarios about 3 more, all scenarios 10-15.  The guests run TCG on
# one host thread: multi-threaded TCG can run a stale translation of code the
# kernel is patching (an "Oops: int3" in syscall_trace_enter seen as the
# tracepoint backend attached on 6.12), and a single thread costs these
# mostly ping-pong suites little (6.1 fentry latency 85 s against 75 s).
for k in 6.1 6.12; do
	echo "vmmatrix.sh: kernel $k ..." >&2
	VMTEST_ACCEL=${VMTEST_ACCEL:-tcg-single} tools/vmtest.sh --kernel "$k" --timeout "$timeout" \
		--add lotrace --add tools/lobench --add build/test_integration --add build/test_latency \
		--add tools/vmmatrix-guest.sh -- sh ./vmmatrix-guest.sh . $scenarios |
		tee -a "$rows" | grep -v '^ROW\|^AUTO' >&2
	[ "${PIPESTATUS[0]}" -eq 0 ] || echo "ROW $k - no no - - - - - VM failed" >> "$rows"
done
echo "vmmatrix.sh: this host ..." >&2
dir=$(mktemp -d)
cp lotrace tools/lobench build/test_integration build/test_latency tools/vmmatrix-guest.sh "$dir/"
sh "$dir/vmmatrix-guest.sh" "$dir" | tee -a "$rows" | grep -v '^ROW\|^AUTO' >&2
rm -rf "$dir"

printf '\n%-28s %-11s %-6s %-9s %-7s %-8s %-10s %-10s %-16s %s\n' KERNEL BACKEND LOADS ATTACHES \
	COUNTS LATENCY SEMANTICS SCENARIOS ADDED/BASE "WHY NOT"
fail=0
while read -r tag kernel backend loads attaches counts latency semantics scenarios overhead reason; do
	[ "$tag" = ROW ] || continue
	printf '%-28s %-11s %-6s %-9s %-7s %-8s %-10s %-10s %-16s %s\n' "$kernel" "$backend" "$loads" \
		"$attaches" "$counts" "$latency" "$semantics" "$scenarios" "$overhead" "$reason"
	case "$kernel" in
	6.1.*) expect_fail=$([ "$backend" = tracepoint ] && echo 1 || echo 0) ;;
	6.12.*) expect_fail=0 ;;
	*) expect_fail=$([ "$attaches" = yes ] && echo 0 || echo 1) ;; # the host: what runs must pass
	esac
	if [ "$expect_fail" = 0 ]; then
		# SCENARIOS is reported, not required: under TCG some test_latency
		# scenarios still hit rare races (issue 9).
		for r in "$counts" "$latency" "$semantics"; do
			case $r in pass | pass/2) ;; *) fail=1 ;; esac
		done
	fi
	if [ "$expect_fail" = 1 ] && [ "$attaches" = yes ]; then
		fail=1 # e.g. tracepoint on 6.1 must be refused
	fi
done < "$rows"
echo "pass/2: failed once (shown above), passed when run again."
echo "SCENARIOS (tests/test_latency.c: its datagram accounting scenarios; all of them with"
echo "make vmtest-scenarios) is shown, not required: under TCG some still hit rare races."
echo "ADDED/BASE: one-way latency lotrace adds to a same-core unix_stream ping-pong (median"
echo "of 3 interleaved rounds) / the untraced one-way latency; under TCG emulation both are"
echo "inflated and noisy, so compare backends within a kernel, not across."
echo
grep '^AUTO' "$rows" | while read -r _ kernel backend; do echo "auto on $kernel: $backend"; done
grep -q '^AUTO .* none$' "$rows" && fail=1
[ "$(grep -c '^AUTO' "$rows")" -eq 3 ] || fail=1

# The cost per message in guest instructions (bench/icount.sh) against the
# committed tables: deterministic, so growth beyond 2 % is a regression.
for k in 6.12 6.1; do
	echo
	echo "icount, kernel $k, against bench/icount-$k.txt:"
	bench/icount.sh --kernel "$k" --check "bench/icount-$k.txt" || fail=1
done
exit $fail
