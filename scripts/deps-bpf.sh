#!/bin/sh
# deps-bpf.sh installs what building and testing trace/ needs on Debian 12
# (bookworm): clang/llvm to compile the eBPF C with bpf2go, libbpf headers
# (bpf_helpers.h), gcc for the uprobe test fixtures, and mounts
# tracefs. Idempotent and non-interactive: quick when everything is present.
set -eu

pkgs="clang llvm libbpf-dev gcc libc6-dev"
missing=""
for p in $pkgs; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
if [ -n "$missing" ]; then
	SUDO=""
	[ "$(id -u)" -ne 0 ] && SUDO="sudo"
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq
	# shellcheck disable=SC2086
	$SUDO apt-get install -y -qq --no-install-recommends $missing
fi

# Tracepoints are read and attached through tracefs, which is not mounted by
# default on the CI and GPU machines.
if [ ! -e /sys/kernel/tracing/events ]; then
	if [ "$(id -u)" -eq 0 ]; then
		mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || true
	else
		sudo mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || true
	fi
fi
