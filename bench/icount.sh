#!/usr/bin/env bash
# icount.sh: lotrace's cost per message in guest instructions, deterministic.
#
# Usage: bench/icount.sh [--kernel 6.12|6.1] [--modes "MODE..."] [--n N]
#                        [--cache DIR] [--lotrace PATH]
#                        [--write FILE | --check FILE [--tolerance PCT]]
#
# Boots a Debian kernel under qemu TCG with one vCPU and -icount shift=0
# (tools/vmtest.sh, VMTEST_ACCEL=icount): the guest clock advances 1 ns per
# guest instruction, so `hookfloor loop`'s ns per write + read of 64 B is an
# instruction count, the same run after run.  In the guest it runs that loop on
# unix_stream, unix_dgram, unix_seqpacket, tcp and udp (127.0.0.1), getppid
# and a 64 B write to /dev/null (calls that are not sends), for each MODE:
#   none            untraced
#   BACKEND         under `lotrace stat --backend BACKEND` (fentry, tracepoint, kprobe)
#   BACKEND:export  under `lotrace export --backend BACKEND`
#   floor:SET       under `hookfloor attach SET`: empty programs on the
#                   tracepoint backend's hooks (empty-all, empty-syscalls, ...)
# (default: the modes named in the FILE of --check or --write, if it exists,
# else "none tracepoint fentry").  Each mode is measured twice, best of 3 runs each,
# after a discarded warm-up; the lower is shown.  Untraced, the two agree to
# the instruction; traced, lotrace's own reader and timers land in the runs and
# add up to ~2 % (never take away: the lower of the runs is the cost).
# Prints the untraced instructions and what each mode adds per message.
#
# --write FILE   also write that table to FILE (bench/icount-6.12.txt is the
#                committed one)
# --check FILE   compare with FILE's table: a cell that grew by more than PCT %
#                (default 2) of the instructions per message (untraced + added)
#                is measured once more and the lower kept; exit 1 if it still
#                did.  An untraced cell that moved means another kernel or
#                workload: exit 1 as well, with the table to commit.
# Needs `make lotrace bench/hookfloor` first.  Exit status: 1 when the two
# runs of a mode differ by more than 1 % (without --check), a check failed or
# a run failed; 2 on bad arguments.
set -euo pipefail
cd "$(dirname "$0")/.."

kernel=6.12 modes='' n=10000 cache='' lotrace=./lotrace write='' check='' tolerance=2
die2() { echo "icount.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
	case $1 in
	--kernel|--modes|--n|--cache|--lotrace|--write|--check|--tolerance)
		[ $# -ge 2 ] || die2 "$1 needs a value" ;;&
	--kernel) kernel=$2; shift 2 ;;
	--modes) modes=$2; shift 2 ;;
	--n) n=$2; shift 2 ;;
	--cache) cache=$2; shift 2 ;;
	--lotrace) lotrace=$2; shift 2 ;;
	--write) write=$2; shift 2 ;;
	--check) check=$2; shift 2 ;;
	--tolerance) tolerance=$2; shift 2 ;;
	-h|--help) sed -n 2,35p "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) die2 "unknown argument $1 (see --help)" ;;
	esac
done
case $kernel in 6.1|6.12) ;; *) die2 "--kernel expects 6.1 or 6.12, got '$kernel'" ;; esac
case $n in ''|*[!0-9]*|0) die2 "--n expects a positive integer, got '$n'" ;; esac
case $tolerance in ''|*[!0-9.]*) die2 "--tolerance expects a percentage, got '$tolerance'" ;; esac
[ -z "$write" ] || [ -z "$check" ] || die2 "--write and --check exclude each other"
[ -z "$check" ] || [ -r "$check" ] || die2 "--check: cannot read '$check'"
# The committed table names its modes on its header line.
for f in "$check" "$write"; do
	if [ -z "$modes" ] && [ -n "$f" ] && [ -r "$f" ]; then
		modes=$(awk '$1 == "transport" { $1 = ""; print; exit }' "$f")
	fi
done
[ -n "$modes" ] || modes="none tracepoint fentry"
for m in $modes; do
	case $m in
	none|fentry|tracepoint|kprobe|fentry:export|tracepoint:export|kprobe:export|floor:*) ;;
	*) die2 "--modes: unknown mode '$m' (none, BACKEND, BACKEND:export, floor:SET)" ;;
	esac
done
case " $modes " in *" none "*) ;; *) die2 "--modes must include none (the baseline)" ;; esac
for f in "$lotrace" bench/hookfloor; do
	[ -x "$f" ] || { echo "icount.sh: $f missing: make lotrace bench/hookfloor" >&2; exit 2; }
done

transports="unix_stream unix_dgram unix_seqpacket tcp udp"

# guest_script RUN MODES: the guest's script (busybox sh); each result line is
# "MODE RUN JSON".  RUN 1 measures each mode twice (runs 1 and 2); a re-run
# measures once, as run 3.
guest_script() {
	cat <<EOF
set -u
ip link set lo up
mkdir -p /tmp/textfile
measure() {
	for t in $transports; do
		echo "\$1 \$2 \$(./hookfloor loop \$t $n 3)"
	done
}
echo "release \$(uname -r)"
measure warm 0 >/dev/null  # cold after boot (and slow for a while): discarded
for m in $2; do
	pid=
	# A new file each time: the shell truncates it only once the child runs,
	# and the previous mode's "tracing with" would count as this one's.
	rm -f lt.err
	case \$m in
	none) ;;
	floor:*) ./hookfloor attach \${m#floor:} 2>lt.err & pid=\$!; ready='hookfloor: attached' ;;
	*:export) ./lotrace export --textfile-dir /tmp/textfile --lo-attach none --backend \${m%:export} 2>lt.err &
		pid=\$!; ready='tracing with' ;;
	*) ./lotrace stat -d 100000 --lo-attach none --backend \$m >/dev/null 2>lt.err &
		pid=\$!; ready='tracing with' ;;
	esac
	if [ -n "\$pid" ]; then
		i=0
		until grep -qs "\$ready" lt.err; do
			i=\$((i + 1)); [ \$i -lt 200 ] || { echo "\$m did not attach:"; cat lt.err; exit 1; }
			sleep 0.1
		done
		./hookfloor loop unix_stream $n 1 >/dev/null  # first traced run: maps fill
	fi
	if [ $1 = 1 ]; then measure \$m 1; measure \$m 2; else measure \$m $1; fi
	[ -z "\$pid" ] || { kill -INT \$pid; wait \$pid; }
done
EOF
}

stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
cp "$lotrace" "$stage/lotrace"  # the guest runs ./lotrace, whichever build it is
args=(--kernel "$kernel" --timeout 1800 --add "$stage/lotrace" --add bench/hookfloor)
[ -z "$cache" ] || args+=(--cache "$cache")

# run_guest RUN MODES: appends the result lines to $stage/raw.
run_guest() {
	local out rc=0
	out=$(VMTEST_ACCEL=icount VMTEST_SMP=1 tools/vmtest.sh "${args[@]}" -- \
		sh -c "$(guest_script "$1" "$2")") || rc=$?
	echo "$out" | grep -v "^[a-z:-]* [0-9] {\|^release " >&2 || true
	[ -z "${ICOUNT_RAW:-}" ] || echo "$out" >&2
	echo "$out" | grep "^[a-z:-]* [0-9] {" >> "$stage/raw" || true
	release=$(echo "$out" | sed -n 's/^release //p' | head -n 1)
	return $rc
}

# table: the lowest instructions of each mode and transport over all its runs
# ("none" absolute, the others added over it), as the committed file holds
# it; a "*" marks a cell whose runs 1 and 2 differ by more than 1 %.
table() {
	awk -v modes="$modes" -v transports="$transports getppid write_devnull" -v kernel="${release:-$kernel}" -v n="$n" '
	function put(m, r, t, v) {
		if (!((m, t) in low) || v < low[m, t]) low[m, t] = v
		run[m, r, t] = v
	}
	/^[a-z:-]+ [0-9] \{/ {
		m = $1; r = $2
		match($0, /"transport": "[a-z_]+"/); t = substr($0, RSTART + 14, RLENGTH - 15)
		match($0, /"write_read_ns": [0-9.]+/); v = substr($0, RSTART + 17, RLENGTH - 17) + 0
		match($0, /"syscall_ns": [0-9.]+/); s = substr($0, RSTART + 14, RLENGTH - 14) + 0
		match($0, /"null_write_ns": [0-9.]+/); w = substr($0, RSTART + 17, RLENGTH - 17) + 0
		put(m, r, t, v)
		if (t == "unix_stream") { put(m, r, "getppid", s); put(m, r, "write_devnull", w) }
	}
	END {
		nm = split(modes, M, " "); nt = split(transports, T, " ")
		printf "# kernel %s, %d write+read of 64 B per run; instructions per message (getppid, and a\n", kernel, n
		printf "# 64 B write to /dev/null: per call);\n"
		printf "# none: untraced; every other column: added over none (the lowest of its runs)\n"
		printf "%-16s", "transport"
		for (i = 1; i <= nm; i++) printf " %18s", M[i]
		printf "\n"
		for (j = 1; j <= nt; j++) {
			t = T[j]; printf "%-16s", t
			for (i = 1; i <= nm; i++) {
				m = M[i]
				if (!((m, t) in low) || !(("none", t) in low)) { printf " %18s", "-"; continue }
				a = run[m, 1, t]; b = run[m, 2, t]
				off = a && b && (a - b > low[m, t] / 100 || b - a > low[m, t] / 100)
				printf " %17.1f%s", m == "none" ? low[m, t] : low[m, t] - low["none", t], off ? "*" : " "
			}
			printf "\n"
		}
	}' "$stage/raw"
}

# compare OLD NEW: "transport mode old new why" for each cell whose
# instructions per message (untraced + added) grew by more than the
# tolerance, and for each untraced cell that moved by more than 0.5 %.
compare() {
	awk -v tol="$tolerance" '
	FNR == 1 { file++ }
	/^#/ { next }
	$1 == "transport" { for (i = 2; i <= NF; i++) col[file, i] = $i; ncol[file] = NF; next }
	NF > 1 {
		for (i = 2; i <= ncol[file]; i++) {
			v = $i; sub(/\*$/, "", v)
			if (v != "-") val[file, $1, col[file, i]] = v + 0
		}
		rows[$1] = 1
	}
	END {
		for (t in rows) for (k = 2; k <= ncol[2]; k++) {
			m = col[2, k]
			if (!((1, t, m) in val) || !((2, t, m) in val)) continue
			if (m == "none") {
				d = val[2, t, m] - val[1, t, m]; if (d < 0) d = -d
				if (d > val[1, t, m] / 200) print t, m, val[1, t, m], val[2, t, m], "baseline"
				continue
			}
			old = val[1, t, "none"] + val[1, t, m]; new = val[2, t, "none"] + val[2, t, m]
			if (new > old * (1 + tol / 100)) print t, m, val[1, t, m], val[2, t, m], "grew"
		}
	}' "$1" "$2"
}

: > "$stage/raw"
rc=0 release=
run_guest 1 "$modes" || rc=1
table > "$stage/table"
cat "$stage/table"
if grep -qE '(^| )-( |$)' "$stage/table"; then
	echo "icount.sh: a mode has no result (its errors are above)" >&2
	rc=1
fi
if [ -n "$write" ]; then
	cp "$stage/table" "$write"
	echo "icount.sh: wrote $write" >&2
fi
if [ -z "$check" ]; then
	if grep -q '\*' "$stage/table"; then
		echo "* runs 1 and 2 differ by more than 1 %" >&2
		rc=1
	fi
	exit $rc
fi
worse=$(compare "$check" "$stage/table")
again=$(echo "$worse" | awk '$5 == "grew" { print $2 }' | sort -u | tr '\n' ' ')
if [ -n "$again" ]; then
	# Noise only adds instructions: measure once more and keep the lower.
	echo "icount.sh: grew by more than $tolerance %, measuring again: $again" >&2
	run_guest 3 "none $again" || rc=1
	table > "$stage/table"
	cat "$stage/table"
	worse=$(compare "$check" "$stage/table")
fi
if [ -n "$worse" ]; then
	echo "icount.sh: committed: $(sed -n 1p "$check")" >&2
	echo "icount.sh: measured:  $(sed -n 1p "$stage/table")" >&2
	echo "icount.sh: against $check (tolerance $tolerance % of the instructions per message):" >&2
	echo "$worse" | awk '{
		why = "added instructions grew"
		if ($5 == "baseline") why = "untraced baseline moved (another kernel? see the first lines; commit the new table)"
		printf "  %-16s %-18s %10.1f -> %10.1f  %s\n", $1, $2, $3, $4, why
	}' >&2
	rc=1
else
	echo "icount.sh: no cell grew by more than $tolerance % over $check" >&2
fi
exit $rc
