#!/usr/bin/env bash
# vmtest.sh: run a command as root inside a Debian cloud kernel under qemu.
#
# Usage:
#   tools/vmtest.sh --kernel 6.1|6.12 [--cache DIR] [--timeout SECONDS]
#                   [--add PATH]... [--workdir DIR] [--module NAME]...
#                   [--host-tool NAME]... -- COMMAND [ARGS...]
#
# The kernel is the newest linux-image-6.1.0-*-cloud-amd64-unsigned or
# linux-image-6.12.*+deb12-cloud-amd64-unsigned that apt knows about,
# fetched with `apt-get download` and unpacked with `dpkg-deb -x` into the
# cache directory (default: build/vm under the repository); nothing is
# installed on the host.  The guest is a busybox initramfs holding the host's
# ip, tc, bpftool and setpriv (with their shared libraries), the --add files
# and the modules sch_ingress, cls_bpf, veth and cls_u32.  Its /init is
# tools/vmtest-init.sh.
#
# The command's stdout+stderr are printed on stdout as the guest writes them
# (the kernel log is kept apart, in CACHE/console-<kernel>.log, and shown on
# stderr only when the VM fails); vmtest.sh's own messages go to stderr.
#
# Exit status: the command's; 124 when --timeout (default 600 s, counted from
# qemu's start, boot included) runs out; 125 when the VM could not be set up,
# boot or report a status; 2 on a usage error.
#
# Options:
#   --kernel 6.1|6.12   kernel series (required)
#   --cache DIR         download/unpack cache (default: <repo>/build/vm)
#   --timeout SECONDS   wall-clock limit for the whole VM run (default 600)
#   --add PATH          copy a file or directory into the guest working
#                       directory (by its base name); ELF executables get
#                       their shared libraries too, at their host paths
#   --workdir DIR       copy DIR (without .git and the cache) to the same
#                       absolute path in the guest and run the command there;
#                       default: an empty /vmtest holding only the --add files
#   --module NAME       also load kernel module NAME (with its dependencies)
#   --host-tool NAME    also copy host program NAME (from PATH) with its
#                       libraries to its host path, e.g. bash or strace
# Environment:
#   VMTEST_ACCEL=tcg|tcg-single|kvm|icount
#                         force the accelerator (tcg-single: TCG with all
#                         vCPUs on one host thread, which cannot race the
#                         kernel's code patching as multi-threaded TCG can;
#                         icount: TCG, one thread,
#                         -icount shift=0,sleep=off: the guest clock advances
#                         1 ns per guest instruction, so a duration measured
#                         in the guest is an instruction count, the same run
#                         after run; use with VMTEST_SMP=1) (default: KVM only when
#                         kvm_intel/kvm_amd is loaded and a probe boot works)
#   VMTEST_SMP=N          guest CPUs (default 2)
#   VMTEST_MEM=MB         guest memory (default 2048)
#   VMTEST_KERNEL_ARGS=.. appended to the kernel command line (e.g. loglevel=8)
set -euo pipefail

# The whole script is one brace group, so bash parses it completely before
# running it: editing or checking out this file during a run is safe.
{
PROG=vmtest.sh
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
INIT_SCRIPT=$SCRIPT_DIR/vmtest-init.sh

# Modules the lotrace tests need: clsact (sch_ingress), BPF classifier, veth
# pairs, and the u32 classifier for the "foreign filter" test.
DEFAULT_MODULES=(sch_ingress cls_bpf veth cls_u32)
# Host programs always copied into the guest (the busybox applets lack the
# netns/bpf features).  The first ones are required.
REQUIRED_TOOLS=(ip tc)
OPTIONAL_TOOLS=(bpftool setpriv)

EXIT_USAGE=2
EXIT_VMFAIL=125
EXIT_TIMEOUT=124

msg() { echo "$PROG: $*" >&2; }
die() { msg "$*"; exit "$EXIT_VMFAIL"; }
usage_die() { msg "$*"; echo "usage: $PROG --kernel 6.1|6.12 [--cache DIR] [--timeout SECONDS] [--add PATH]... [--workdir DIR] [--module NAME]... [--host-tool NAME]... -- COMMAND [ARGS...]" >&2; exit "$EXIT_USAGE"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# ---------------------------------------------------------------- arguments
series='' cache='' timeout_s=600 workdir=''
adds=() extra_modules=() extra_tools=()
while [ $# -gt 0 ]; do
	case $1 in
	--kernel) [ $# -ge 2 ] || usage_die "--kernel needs a value"; series=$2; shift 2 ;;
	--kernel=*) series=${1#*=}; shift ;;
	--cache) [ $# -ge 2 ] || usage_die "--cache needs a value"; cache=$2; shift 2 ;;
	--cache=*) cache=${1#*=}; shift ;;
	--timeout) [ $# -ge 2 ] || usage_die "--timeout needs a value"; timeout_s=$2; shift 2 ;;
	--timeout=*) timeout_s=${1#*=}; shift ;;
	--add) [ $# -ge 2 ] || usage_die "--add needs a value"; adds+=("$2"); shift 2 ;;
	--add=*) adds+=("${1#*=}"); shift ;;
	--workdir) [ $# -ge 2 ] || usage_die "--workdir needs a value"; workdir=$2; shift 2 ;;
	--workdir=*) workdir=${1#*=}; shift ;;
	--module) [ $# -ge 2 ] || usage_die "--module needs a value"; extra_modules+=("$2"); shift 2 ;;
	--module=*) extra_modules+=("${1#*=}"); shift ;;
	--host-tool) [ $# -ge 2 ] || usage_die "--host-tool needs a value"; extra_tools+=("$2"); shift 2 ;;
	--host-tool=*) extra_tools+=("${1#*=}"); shift ;;
	-h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
	--) shift; break ;;
	*) usage_die "unknown argument '$1' (the command goes after --)" ;;
	esac
done
[ $# -gt 0 ] || usage_die "no command given (put it after --)"
case $series in
6.1|6.12) ;;
'') usage_die "--kernel is required (6.1 or 6.12)" ;;
*) usage_die "unsupported --kernel '$series' (use 6.1 or 6.12)" ;;
esac
[[ $timeout_s =~ ^[1-9][0-9]*$ ]] ||
	usage_die "--timeout must be a positive number of seconds, not '$timeout_s'"
for a in "${adds[@]+"${adds[@]}"}"; do
	[ -e "$a" ] || usage_die "--add $a: no such file or directory"
done
if [ -n "$workdir" ]; then
	[ -d "$workdir" ] || usage_die "--workdir $workdir: not a directory"
	workdir=$(cd "$workdir" && pwd -P)
fi
[ -f "$INIT_SCRIPT" ] || die "missing $INIT_SCRIPT (the guest's /init)"

export PATH="$PATH:/usr/sbin:/sbin"
for t in qemu-system-x86_64 dpkg-deb gzip timeout flock tail ldd; do
	command -v "$t" >/dev/null || die "'$t' not found on the host (apt-get install qemu-system-x86 dpkg gzip coreutils util-linux libc-bin)"
done
BUSYBOX=$(command -v busybox) || die "busybox not found (apt-get install busybox-static)"
if command -v cpio >/dev/null; then CPIO=(cpio --quiet -o -H newc -R 0:0); else CPIO=("$BUSYBOX" cpio -o -H newc -R 0:0); fi

cache=${cache:-$REPO_ROOT/build/vm}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd -P)

t_start=$(now)

# ---------------------------------------------------------------- kernel
# Newest package for the series; unsigned first (it holds vmlinuz and the
# modules just like the signed one), the signed one as a fallback.
case $series in
6.1) pkg_re='^linux-image-6\.1\.0-[0-9]+-cloud-amd64' pkg_glob='linux-image-6.1.0-*-cloud-amd64' ;;
6.12) pkg_re='^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64' pkg_glob='linux-image-6.12.*+deb12-cloud-amd64' ;;
esac
# newest_cached: "kernels/<package>" of the newest complete cached kernel.
newest_cached() {
	find "$cache/kernels" -mindepth 1 -maxdepth 1 -name "$pkg_glob*" -exec test -f {}/.complete \; \
		-printf 'kernels/%f\n' 2>/dev/null | sort -V | tail -n 1 || true
}
# fetch PACKAGE: download and unpack into $cache/kernels/PACKAGE (locked
# against concurrent runs).  Returns 1, with the reason on stderr, on failure.
fetch() {
	local p=$1 dest=$cache/kernels/$1 dl deb rc=0
	exec 9>"$cache/.lock"
	flock 9
	if [ ! -f "$dest/.complete" ]; then
		dl=$(mktemp -d "$cache/download.XXXXXX")
		msg "downloading $p ..."
		if ! command -v apt-get >/dev/null; then
			msg "apt-get not found: cannot download $p"; rc=1
		elif ! (cd "$dl" && apt-get download -q -o APT::Sandbox::User=root "$p" >"$dl/apt.log" 2>&1); then
			sed 's/^/  /' "$dl/apt.log" >&2
			msg "apt-get download $p failed (run apt-get update?)"; rc=1
		elif ! deb=$(find "$dl" -maxdepth 1 -name '*.deb' | grep .); then
			msg "apt-get download $p produced no .deb"; rc=1
		else
			msg "unpacking ${deb##*/} ..."
			mkdir -p "$dl/root" "$cache/kernels"
			if ! dpkg-deb -x "$deb" "$dl/root"; then
				msg "dpkg-deb -x $deb failed"; rc=1
			elif ! find "$dl/root/boot" -maxdepth 1 -name 'vmlinuz-*' 2>/dev/null | grep -q .; then
				msg "$p holds no /boot/vmlinuz-*"; rc=1
			else
				rm -rf "$dest"
				mv "$dl/root" "$dest"
				touch "$dest/.complete"
			fi
		fi
		rm -rf "$dl"
	fi
	flock -u 9
	exec 9>&-
	return "$rc"
}

pkg=''
if command -v apt-cache >/dev/null; then
	names=$(apt-cache pkgnames linux-image-6. 2>/dev/null || true)
	for suffix in -unsigned ''; do
		pkg=$(grep -E "${pkg_re}${suffix}\$" <<<"$names" | sort -V | tail -n 1 || true)
		[ -z "$pkg" ] || break
	done
fi
if [ -z "$pkg" ]; then
	# apt knows nothing (no lists yet?): fall back to the newest cached one.
	last=$(newest_cached)
	[ -n "$last" ] || die "no $pkg_glob-unsigned package found in apt and none cached in $cache/kernels (run apt-get update)"
	pkg=${last#kernels/}
	msg "note: apt lists no $pkg_glob package; using the cached $pkg"
elif [ ! -f "$cache/kernels/$pkg/.complete" ] && ! fetch "$pkg"; then
	last=$(newest_cached)
	[ -n "$last" ] || die "cannot get kernel package $pkg (see above)"
	pkg=${last#kernels/}
	msg "note: using the cached $pkg instead"
fi
kroot=$cache/kernels/$pkg
vmlinuz=$(find "$kroot/boot" -maxdepth 1 -name 'vmlinuz-*' 2>/dev/null | head -n 1) || true
[ -n "$vmlinuz" ] || die "no vmlinuz in $kroot (remove that directory and retry)"
kver=${vmlinuz##*/vmlinuz-}
moddir=$kroot/lib/modules/$kver
[ -d "$moddir" ] || die "no modules directory $moddir"

# ---------------------------------------------------------------- run dir
run=$(mktemp -d "$cache/run.XXXXXX")
qpid='' tpid=''
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then kill "$qpid" 2>/dev/null || true; wait "$qpid" 2>/dev/null || true; fi
	if [ -n "$tpid" ] && kill -0 "$tpid" 2>/dev/null; then kill "$tpid" 2>/dev/null || true; fi
	rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

root=$run/root
mkdir -p "$root"
# Mirror the host's merged-/usr layout so libraries and tools sit at the
# same absolute paths as on the host.
for d in bin sbin lib lib64 lib32 libx32; do
	if [ -L "/$d" ]; then
		ln -s "$(readlink "/$d")" "$root/$d"
		mkdir -p "$root/$(readlink -f "/$d" | sed 's|^/||')"
	elif [ -d "/$d" ]; then
		mkdir -p "$root/$d"
	fi
done
mkdir -p "$root"/{usr/bin,usr/sbin,etc,proc,sys,dev,run,tmp,root,mnt,var/tmp,.vmtest}
ln -s /run "$root/var/run"

declare -A copied=()
is_elf() {
	local m=
	LC_ALL=C IFS= read -r -n 4 m <"$1" 2>/dev/null || true
	[ "$m" = $'\x7fELF' ]
}
# copy_file SRC DEST-ABS-PATH-IN-GUEST: dereferences symlinks.
copy_file() {
	[ -z "${copied[$2]+x}" ] || return 0
	mkdir -p "$root$(dirname "$2")"
	cp -L --preserve=mode "$1" "$root$2"
	copied[$2]=1
}
# libs_of FILE: copy the shared libraries and dynamic loader of an ELF file.
libs_of() {
	local f=$1 out line lib
	is_elf "$f" || return 0
	out=$(LC_ALL=C ldd "$f" 2>/dev/null) || return 0
	while IFS= read -r line; do
		case $line in
		*"=> not found"*) msg "warning: $f: ${line%% =>*} not found by ldd" ;;
		*"=> /"*) lib=${line#*=> }; lib=${lib%% (*}; copy_file "$lib" "$lib" ;;
		*/*) lib=${line#"${line%%[![:space:]]*}"}; lib=${lib%% (*}; [ "${lib:0:1}" != / ] || copy_file "$lib" "$lib" ;;
		esac
	done <<<"$out"
}
# libs_in DIR: libs_of every executable ELF file below DIR (in the staging tree).
libs_in() {
	local f
	while IFS= read -r -d '' f; do libs_of "$f"; done < <(find "$1" -type f -perm /111 -print0)
}
add_host_tool() { # add_host_tool NAME required|optional
	local p
	if ! p=$(command -v "$1"); then
		[ "$2" = required ] && die "'$1' not found on the host (apt-get install iproute2)"
		msg "warning: '$1' not found on the host; the guest will not have it"
		return 0
	fi
	case $p in /*) ;; *) die "'$1' is not a program ($p)" ;; esac
	copy_file "$p" "$p"
	libs_of "$p"
	host_tool_names[$1]=1
}

t_build=$(now)
declare -A host_tool_names=()
for t in "${REQUIRED_TOOLS[@]}"; do add_host_tool "$t" required; done
for t in "${OPTIONAL_TOOLS[@]}" "${extra_tools[@]+"${extra_tools[@]}"}"; do add_host_tool "$t" optional; done
[ -d /etc/iproute2 ] && cp -a /etc/iproute2 "$root/etc/"
[ -f /etc/ld.so.cache ] && cp /etc/ld.so.cache "$root/etc/"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\ntty:x:5:\nnogroup:x:65534:\n' >"$root/etc/group"
printf '127.0.0.1 localhost vmtest\n::1 localhost ip6-localhost\n' >"$root/etc/hosts"

# Guest working directory.
if [ -n "$workdir" ]; then
	gwork=$workdir
	excl=(--exclude=./.git)
	case $cache/ in "$workdir"/*) excl+=("--exclude=./${cache#"$workdir"/}") ;; esac
	mkdir -p "$root$gwork"
	tar -C "$workdir" "${excl[@]}" -cf - . | tar -C "$root$gwork" -xf -
	libs_in "$root$gwork"
else
	gwork=/vmtest
	mkdir -p "$root$gwork"
fi
declare -A add_names=()
for a in "${adds[@]+"${adds[@]}"}"; do
	name=$(basename "$(realpath -s "$a")")
	[ -z "${add_names[$name]+x}" ] || die "two --add paths have the base name '$name'"
	add_names[$name]=1
	if [ -d "$a" ]; then
		rm -rf "${root:?}$gwork/$name"
		cp -a "$a" "$root$gwork/$name"
		libs_in "$root$gwork/$name"
	else
		cp -L --preserve=mode,timestamps "$a" "$root$gwork/$name"
		libs_of "$root$gwork/$name"
	fi
done
printf '%s\n' "$gwork" >"$root/.vmtest/workdir"

# The command, quoted for sh.
{
	printf '# generated by vmtest.sh\nexec'
	for arg in "$@"; do printf " '%s'" "${arg//\'/\'\\\'\'}"; done
	printf '\n'
} >"$root/.vmtest/cmd"

# Kernel modules: decompressed here (busybox insmod cannot read .ko.xz), in
# dependency order.
declare -A modfile=() builtin=() modseen=()
while IFS= read -r f; do
	n=${f##*/}; n=${n%%.ko*}; n=${n//-/_}
	modfile[$n]=$f
done < <(find "$moddir" -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz')
if [ -f "$moddir/modules.builtin" ]; then
	while IFS= read -r f; do n=${f##*/}; n=${n%.ko}; builtin[${n//-/_}]=1; done <"$moddir/modules.builtin"
fi
mkdir -p "$root/lib/modules/$kver"
: >"$root/.vmtest/modules"
add_module() { # add_module NAME: the module and, first, what it depends on
	local n=${1//-/_} src dst dep deps
	[ -z "${modseen[$n]+x}" ] || return 0
	modseen[$n]=1
	[ -z "${builtin[$n]+x}" ] || return 0
	src=${modfile[$n]:-}
	[ -n "$src" ] || die "kernel module '$1' not found in $moddir"
	dst=/lib/modules/$kver/$n.ko
	case $src in
	*.ko.xz) command -v xz >/dev/null || die "xz not found (apt-get install xz-utils), needed to unpack $src"; xz -dc "$src" >"$root$dst" ;;
	*.ko.zst) command -v zstd >/dev/null || die "zstd not found (apt-get install zstd), needed to unpack $src"; zstd -qdc "$src" >"$root$dst" ;;
	*.ko.gz) gzip -dc "$src" >"$root$dst" ;;
	*) cp "$src" "$root$dst" ;;
	esac
	# depends= from the .modinfo section (NUL-separated strings).
	deps=$(tr '\0' '\n' <"$root$dst" | sed -n 's/^depends=//p' | head -n 1)
	for dep in ${deps//,/ }; do add_module "$dep"; done
	echo "$dst" >>"$root/.vmtest/modules"
}
for m in "${DEFAULT_MODULES[@]}" "${extra_modules[@]+"${extra_modules[@]}"}"; do add_module "$m"; done

# /bin/sh is the host's dash: this busybox's sh runs its own applets before
# anything in PATH ("standalone shell"), so `sh -c 'ip netns ...'` and
# system() would get the featureless busybox ip/tc.
if dash=$(command -v dash); then
	copy_file "$dash" /bin/dash
	libs_of "$dash"
	[ -e "$root/bin/sh" ] || ln -s dash "$root/bin/sh"
else
	msg "warning: dash not found on the host; /bin/sh is busybox sh, which prefers its own ip/tc applets to the real ones"
	ln -s busybox "$root/bin/sh"
fi
# busybox for everything else: /init runs `busybox --install -s`, which makes
# one symlink per applet where no real program exists (symlink() does not
# replace files, so ip and tc stay the iproute2 ones).  Applets that share a
# name with a copied host tool but live in another directory are listed in
# /.vmtest/shadowed for /init to remove.
copy_file "$BUSYBOX" /bin/busybox
libs_of "$BUSYBOX"
: >"$root/.vmtest/shadowed"
while IFS= read -r applet; do
	n=${applet##*/}
	if [ -n "${host_tool_names[$n]+x}" ] && [ ! -e "$root/$applet" ]; then echo "/$applet" >>"$root/.vmtest/shadowed"; fi
done < <("$BUSYBOX" --list-full)
cp "$INIT_SCRIPT" "$root/init"
chmod 755 "$root/init"

initrd=$run/initramfs.cpio.gz
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | "${CPIO[@]}" 2>/dev/null | gzip -1 >"$initrd") ||
	die "building the initramfs failed"
t_built=$(now)

# ---------------------------------------------------------------- qemu
qemu=(qemu-system-x86_64)
accel=${VMTEST_ACCEL:-}
if [ -z "$accel" ]; then
	accel=tcg
	if { [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; } && [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
		# Probe: boot the kernel with no initramfs until it panics looking
		# for a root fs.  Reaching the panic means KVM runs this kernel.
		probe_log=$run/kvm-probe.log
		timeout -k 5 60 "${qemu[@]}" -accel kvm -cpu host -m 256 -smp 1 -nodefaults -display none \
			-monitor none -no-reboot -serial "file:$probe_log" -kernel "$vmlinuz" \
			-append "console=ttyS0 panic=-1 loglevel=3" </dev/null >/dev/null 2>&1 || true
		if grep -q 'Kernel panic' "$probe_log" 2>/dev/null; then accel=kvm; else msg "note: KVM probe failed; using TCG (slow)"; fi
	fi
fi
case $accel in
kvm) accel_args=(-accel kvm -cpu host) ;;
tcg) accel_args=(-accel tcg -cpu max) ;;
tcg-single) accel_args=(-accel tcg,thread=single -cpu max) ;;
icount) accel_args=(-accel tcg,thread=single -icount shift=0,sleep=off -cpu max) ;;
*) usage_die "VMTEST_ACCEL must be tcg, tcg-single, kvm or icount, not '$accel'" ;;
esac
smp=${VMTEST_SMP:-2}
mem=${VMTEST_MEM:-2048}

console_log=$run/console.log
out=$run/out
status=$run/status
: >"$out"
cmdline="console=ttyS0 quiet loglevel=4 panic=-1 oops=panic rdinit=/init 8250.nr_uarts=4 mitigations=off tsc=reliable${VMTEST_KERNEL_ARGS:+ $VMTEST_KERNEL_ARGS}"
"${qemu[@]}" "${accel_args[@]}" -smp "$smp" -m "$mem" -nodefaults -display none -monitor none -no-reboot \
	-kernel "$vmlinuz" -initrd "$initrd" -append "$cmdline" \
	-serial "file:$console_log" -serial "file:$out" -serial "file:$status" \
	</dev/null >"$run/qemu.err" 2>&1 &
qpid=$!
# Stream the command output while the VM runs; tail exits once qemu is gone.
tail -n +1 -s 0.2 -f --pid="$qpid" "$out" &
tpid=$!

qrc=0
timed_out=0
deadline=$((SECONDS + timeout_s))
while kill -0 "$qpid" 2>/dev/null; do
	if [ "$SECONDS" -ge "$deadline" ]; then
		timed_out=1
		kill "$qpid" 2>/dev/null || true
		for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$qpid" 2>/dev/null || break; sleep 0.2; done
		kill -KILL "$qpid" 2>/dev/null || true
		break
	fi
	sleep 0.2
done
wait "$qpid" || qrc=$?
qpid=
wait "$tpid" 2>/dev/null || true
tpid=
t_end=$(now)

cp "$console_log" "$cache/console-$series.log" 2>/dev/null || true
show_failure() {
	if [ -s "$run/qemu.err" ]; then msg "qemu said:"; sed 's/^/  /' "$run/qemu.err" >&2; fi
	if [ -s "$console_log" ]; then
		msg "kernel log ($cache/console-$series.log), last 40 lines:"
		tail -n 40 "$console_log" | tr -d '\r' | sed 's/^/  /' >&2 || true
	else
		msg "the kernel log is empty; for early boot messages retry with VMTEST_KERNEL_ARGS='earlyprintk=serial,ttyS0 loglevel=8'"
	fi
}
# Warnings from the guest's /init.
if grep -a 'vmtest-init: ' "$console_log" 2>/dev/null | tr -d '\r' >"$run/initmsgs"; then
	sed 's/^vmtest-init: /'"$PROG"': guest: /' "$run/initmsgs" >&2
fi

st_boot=$(sed -n 's/^boot //p' "$status" | tr -d '\r' | head -n 1)
st_rc=$(sed -n 's/^rc //p' "$status" | tr -d '\r' | head -n 1)
st_end=$(sed -n 's/^end //p' "$status" | tr -d '\r' | head -n 1)
summary="$kver ($accel, smp $smp): initramfs $(elapsed "$t_build" "$t_built")s ($(du -k "$initrd" | cut -f1) KiB)"
[ -z "$st_boot" ] || summary+=", boot ${st_boot}s"
[ -z "$st_end" ] || [ -z "$st_boot" ] || summary+=", command $(elapsed "$st_boot" "$st_end")s"
summary+=", total $(elapsed "$t_start" "$t_end")s"

if [ "$timed_out" = 1 ]; then
	msg "timed out after ${timeout_s}s (${st_boot:+booted after ${st_boot}s, }command still running); $summary"
	[ -n "$st_boot" ] || show_failure
	exit "$EXIT_TIMEOUT"
fi
if [[ ! $st_rc =~ ^[0-9]+$ ]]; then
	if [ -z "$st_boot" ]; then
		msg "the VM did not boot to the command (qemu exit $qrc); $summary"
	else
		msg "the VM stopped without reporting the command's exit status (guest crash? qemu exit $qrc); $summary"
	fi
	show_failure
	exit "$EXIT_VMFAIL"
fi
msg "$summary, exit $st_rc"
exit "$st_rc"
}
