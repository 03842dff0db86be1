#!/bin/sh
# /init of the initramfs built by tools/vmtest.sh.  Runs inside the guest as
# PID 1 under /bin/sh (the host's dash, or busybox sh if the host had none).
#
# Serial ports (set up by vmtest.sh on the qemu side):
#   ttyS0  kernel console and this script's own messages (saved to a log)
#   ttyS1  stdout+stderr of the command, nothing else
#   ttyS2  status lines for the host: "boot <uptime>", "rc <n>", "end <uptime>"
#
# Control files written by vmtest.sh into /.vmtest:
#   cmd       shell script that runs the command (already quoted)
#   workdir   absolute path of the guest working directory
#   modules   kernel modules to insmod, one path a line, dependencies first
#   shadowed  busybox applet links to remove (a host tool of that name
#             lives elsewhere in PATH)

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
export TERM=dumb
umask 022

# Applet symlinks for busybox (it does not replace the real ip, tc, ...).
/bin/busybox --install -s
if [ -f /.vmtest/shadowed ]; then
	while read -r f; do
		[ -L "$f" ] && rm -f "$f"
	done </.vmtest/shadowed
fi

# The initramfs has no /dev/console node (building it needs no root), so
# get one from devtmpfs first and point our stdio at it.
mkdir -p /dev
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/null >/dev/console 2>&1

log() { echo "vmtest-init: $*"; }

mnt() { # mnt TYPE DIR [OPTIONS]
	mkdir -p "$2"
	if [ -n "${3:-}" ]; then
		mount -t "$1" -o "$3" "$1" "$2" || log "WARNING: mount -t $1 $2 failed"
	else
		mount -t "$1" "$1" "$2" || log "WARNING: mount -t $1 $2 failed"
	fi
}

mnt proc /proc
mnt sysfs /sys
mnt devpts /dev/pts "gid=5,mode=620,ptmxmode=666"
mnt tmpfs /dev/shm "mode=1777"
mnt bpf /sys/fs/bpf "mode=700"
mnt tracefs /sys/kernel/tracing
mnt debugfs /sys/kernel/debug
mnt cgroup2 /sys/fs/cgroup
mnt tmpfs /run "mode=755"
mkdir -p /run/netns /tmp /var/tmp /root
chmod 1777 /tmp /var/tmp
[ -e /var/run ] || ln -s /run /var/run
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
[ -e /dev/stdin ] || ln -s /proc/self/fd/0 /dev/stdin
[ -e /dev/stdout ] || ln -s /proc/self/fd/1 /dev/stdout
[ -e /dev/stderr ] || ln -s /proc/self/fd/2 /dev/stderr
# `ip netns add` bind-mounts namespaces under /run/netns and wants shared
# propagation; make the whole tree shared like systemd does.
mount --make-rshared / 2>/dev/null || log "WARNING: mount --make-rshared / failed"

hostname vmtest
ip link set lo up || log "WARNING: ip link set lo up failed"
ulimit -l unlimited || log "WARNING: ulimit -l unlimited failed"
ulimit -c 0

if [ -f /.vmtest/modules ]; then
	while read -r m; do
		[ -n "$m" ] || continue
		insmod "$m" || log "WARNING: insmod $m failed"
	done </.vmtest/modules
fi

workdir=$(cat /.vmtest/workdir 2>/dev/null || echo /)
mkdir -p "$workdir"
cd "$workdir" || log "WARNING: cannot cd to $workdir"

# fd 3: command output, fd 4: status.  Raw mode: no \n -> \r\n translation.
exec 3>/dev/ttyS1 4>/dev/ttyS2
stty raw -echo <&3 2>/dev/null || log "WARNING: stty raw on ttyS1 failed"
stty raw -echo <&4 2>/dev/null || log "WARNING: stty raw on ttyS2 failed"

read -r up _ </proc/uptime
echo "boot $up" >&4
sh /.vmtest/cmd </dev/null >&3 2>&3 3>&- 4>&-
rc=$?
read -r up _ </proc/uptime

# Kill what the command left behind (it may hold ttyS1 open), then close
# ttyS1: the last close waits until the UART has sent everything.
kill -9 -1 2>/dev/null
sleep 0.2
exec 3>&-
echo "rc $rc" >&4
echo "end $up" >&4
exec 4>&-
sync
poweroff -f
# not reached; if it is, the kernel panics and qemu (-no-reboot) exits.
sleep 5
