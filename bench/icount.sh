#!/usr/bin/env bash
# icount.sh: lotrace's cost per message in guest instructions, deterministic.
#
# Usage: bench/icount.sh [--kernel 6.12|6.1] [--modes "none tracepoint fentry"]
#                        [--n N] [--cache DIR] [--lotrace PATH]
#
# Boots a Debian kernel under qemu TCG with one vCPU and -icount shift=0
# (tools/vmtest.sh, VMTEST_ACCEL=icount): the guest clock advances 1 ns per
# guest instruction, so `hookfloor loop`'s ns per write + read of 64 B is an
# instruction count, the same run after run.  In the guest it runs that loop on
# unix_stream, unix_dgram, unix_seqpacket, tcp and udp (127.0.0.1), and
# getppid, untraced and then under `lotrace stat --backend B` for each mode;
# each mode is measured twice, best of 3 runs each, after a discarded warm-up;
# the lower is shown.  Untraced, the two agree to the instruction; traced,
# lotrace's own reader and timers land in the runs and move them by up to ~2 %.
# Prints the untraced instructions and what each backend adds per message.
# Needs `make lotrace bench/hookfloor` first.  Exit status: 1 when the two
# runs of a mode differ by more than 1 % or a run failed.
set -euo pipefail
cd "$(dirname "$0")/.."

kernel=6.12 modes="none tracepoint fentry" n=10000 cache='' lotrace=./lotrace
while [ $# -gt 0 ]; do
	case $1 in
	--kernel) kernel=$2; shift 2 ;;
	--modes) modes=$2; shift 2 ;;
	--n) n=$2; shift 2 ;;
	--cache) cache=$2; shift 2 ;;
	--lotrace) lotrace=$2; shift 2 ;;
	-h|--help) sed -n 2,17p "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "icount.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
for f in "$lotrace" bench/hookfloor; do
	[ -x "$f" ] || { echo "icount.sh: $f missing: make lotrace bench/hookfloor" >&2; exit 2; }
done

transports="unix_stream unix_dgram unix_seqpacket tcp udp"
# The guest's script (busybox sh).  Each line of results: MODE RUN JSON.
guest=$(cat <<EOF
set -u
ip link set lo up
measure() {
	for t in $transports; do
		echo "\$1 \$2 \$(./hookfloor loop \$t $n 3)"
	done
}
measure warm 0 >/dev/null  # cold after boot (and slow for a while): discarded
for m in $modes; do
	pid=
	if [ \$m != none ]; then
		./lotrace stat -d 100000 --lo-attach none --backend \$m >/dev/null 2>lt.err &
		pid=\$!
		i=0
		until grep -q 'tracing with' lt.err; do
			i=\$((i + 1)); [ \$i -lt 200 ] || { echo "lotrace \$m did not attach:"; cat lt.err; exit 1; }
			sleep 0.1
		done
		./hookfloor loop unix_stream $n 1 >/dev/null  # first traced run: maps fill
	fi
	measure \$m 1
	measure \$m 2
	[ -z "\$pid" ] || { kill -INT \$pid; wait \$pid; }
done
EOF
)

stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
cp "$lotrace" "$stage/lotrace"  # the guest runs ./lotrace, whichever build it is
args=(--kernel "$kernel" --timeout 1800 --add "$stage/lotrace" --add bench/hookfloor)
[ -z "$cache" ] || args+=(--cache "$cache")
out=$(VMTEST_ACCEL=icount VMTEST_SMP=1 tools/vmtest.sh "${args[@]}" -- sh -c "$guest")
echo "$out" | grep -v "^[a-z]* [12] {" >&2 || true
[ -z "${ICOUNT_RAW:-}" ] || echo "$out" >&2

echo "$out" | awk -v modes="$modes" -v transports="$transports getppid" -v kernel="$kernel" -v n="$n" '
/^[a-z]+ [12] \{/ {
	m = $1; r = $2
	match($0, /"transport": "[a-z_]+"/); t = substr($0, RSTART + 14, RLENGTH - 15)
	match($0, /"write_read_ns": [0-9.]+/); v = substr($0, RSTART + 17, RLENGTH - 17)
	match($0, /"syscall_ns": [0-9.]+/); s = substr($0, RSTART + 14, RLENGTH - 14)
	val[m, r, t] = v
	if (t == "unix_stream") val[m, r, "getppid"] = s
	seen[m, r, t] = 1
}
END {
	nm = split(modes, M, " "); nt = split(transports, T, " "); bad = 0
	printf "kernel %s, %d write+read of 64 B per run, instructions per message (getppid: per call)\n", kernel, n
	printf "%-16s", "transport"
	for (i = 1; i <= nm; i++) printf " %12s", (M[i] == "none" ? "none" : "+" M[i])
	printf "\n"
	for (j = 1; j <= nt; j++) {
		t = T[j]; printf "%-16s", t
		for (i = 1; i <= nm; i++) {
			m = M[i]
			if (!((m, 1, "unix_stream") in seen)) { printf " %12s", "-"; bad = 1; continue }
			a = val[m, 1, t]; b = val[m, 2, t]; lo = a < b ? a : b
			off = (a - b > lo / 100 || b - a > lo / 100)
			if (off) bad = 1
			base = ("none", 1, t) in val ? (val["none", 1, t] < val["none", 2, t] ? val["none", 1, t] : val["none", 2, t]) : 0
			x = (m == "none") ? lo : lo - base
			printf " %12.1f%s", x, off ? "*" : ""
		}
		printf "\n"
	}
	if (bad) print "* the two runs differ by more than 1 % (or a mode is missing)" > "/dev/stderr"
	exit bad
}'
