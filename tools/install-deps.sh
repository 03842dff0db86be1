#!/usr/bin/env bash
# Installs what lotrace needs to build, run and test on Debian 12+ / Ubuntu 22.04+.
# Idempotent: apt-get skips what is already there.  Run as root.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps.sh: run as root (sudo bash tools/install-deps.sh)" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq

pkgs=(
	make gcc clang llvm pkg-config   # build; clang compiles the BPF programs
	libbpf-dev libelf-dev zlib1g-dev # libbpf and what it links against
	libcriterion-dev libjson-c-dev   # tests
	tmux                             # lotrace top under a pseudo-terminal (tests)
	iproute2 util-linux              # tc, ip netns (tests), setpriv (tests)
	qemu-system-x86 busybox-static xz-utils dash # the VM backend matrix (make vmtest)
	prometheus prometheus-node-exporter systemd # export tests: promtool, servers, systemd-analyze
)
# bpftool has its own package on Debian; Ubuntu ships it in linux-tools.
if apt-cache show bpftool >/dev/null 2>&1; then
	pkgs+=(bpftool)
else
	pkgs+=(linux-tools-common "linux-tools-$(uname -r)")
fi
apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
echo "install-deps.sh: installed ${pkgs[*]}"
