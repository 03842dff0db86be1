#!/usr/bin/env bash
# Regenerates vmlinux/x86/vmlinux.h (kernel types for CO-RE) from a kernel's BTF.
# Usage: tools/gen-vmlinux.sh [BTF file, default /sys/kernel/btf/vmlinux]
# Any BTF-enabled kernel will do: CO-RE relocates field offsets at load time,
# so the header only needs every type lotrace uses to exist with these names.
set -euo pipefail
btf=${1:-/sys/kernel/btf/vmlinux}
out=$(dirname "$0")/../vmlinux/x86/vmlinux.h
if [ ! -r "$btf" ]; then
	echo "gen-vmlinux.sh: $btf: not readable (kernel built without CONFIG_DEBUG_INFO_BTF?)" >&2
	exit 1
fi
bpftool btf dump file "$btf" format c > "$out.tmp"
mv "$out.tmp" "$out"
echo "gen-vmlinux.sh: wrote $out from $btf ($(wc -l < "$out") lines)"
