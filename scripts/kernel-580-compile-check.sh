#!/usr/bin/env bash
# kernel-580-compile-check.sh: developer-machine compile check of the vattn port to the
# 580 branch, against the public NVIDIA/open-gpu-kernel-modules tag (580.142 here).
# CI does NOT run this: Debian serves no 580 source, and the git tree lacks
# nvidia/nv-kernel.o_binary, so nvidia.ko cannot be built from it.
#
#   scripts/kernel-580-compile-check.sh KERNEL_OPEN_DIR    (e.g. from `git archive 580.142 kernel-open`)
#
# It copies the tree, adds our files, applies kernel/nvidia-uvm-patch/ports/580.142 with
# --fuzz=0 and builds nvidia-uvm.ko alone (DRIVER-NOTES §4 option (b): nvidia.Kbuild's
# conftests appended to nvidia-uvm.Kbuild; KBUILD_MODPOST_WARN=1 because nvidia.ko's
# symbols are absent). Pass: every object compiles and no warning names our files.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SRC=${1:?usage: $0 KERNEL_OPEN_DIR}
. "$ROOT/.cache/kernel/env.sh"
T=$ROOT/.cache/kernel/build/580.142-$KREL
rm -rf "$T" && cp -a "$SRC" "$T"
cp "$ROOT"/kernel/nvidia-uvm-patch/uvm_vattn*.[ch] "$T/nvidia-uvm/"
for p in $(cat "$ROOT/kernel/nvidia-uvm-patch/ports/580.142/series"); do
    patch -d "$T" -p1 --fuzz=0 --no-backup-if-mismatch <"$ROOT/kernel/nvidia-uvm-patch/ports/580.142/$p"
done
grep -E '^NV_CONFTEST_[A-Z_]+ \+= ' "$T/nvidia/nvidia.Kbuild" >>"$T/nvidia-uvm/nvidia-uvm.Kbuild"
set +e
make -C "$T" -j"$(nproc)" modules SYSSRC="$SYSSRC" SYSOUT="$SYSOUT" NV_KERNEL_MODULES=nvidia-uvm \
    KBUILD_MODPOST_WARN=1 >"$T.log" 2>&1
rc=$?
set -e
ours=$(grep -E '(warning|error): ' "$T.log" | grep uvm_vattn || true)
if [ $rc -eq 0 ] && [ -f "$T/nvidia-uvm.ko" ] && [ -z "$ours" ]; then
    echo "580.142: nvidia-uvm with vattn compiles against $KREL, no warnings from our files"
else
    echo "580.142: compile check failed (rc $rc); see $T.log"; echo "$ours" | head -20
    exit 1
fi
