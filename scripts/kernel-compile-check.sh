#!/usr/bin/env bash
# kernel-compile-check.sh: compile check of the patched nvidia-uvm against an NVIDIA
# kernel-open tree that CI does not carry (the public tags of open-gpu-kernel-modules:
# 570, 575, 580, 590, 595). Run BY HAND, never in CI; record the result in
# kernel/nvidia-uvm-patch/README.md and docs/driver-install.md.
#
#   scripts/kernel-compile-check.sh [--as VERSION] [--series DIR] KERNEL_OPEN_DIR
#
#   KERNEL_OPEN_DIR  e.g. git -C <open-gpu-kernel-modules> archive 580.142 kernel-open | tar -x
#   --as VERSION     present the tree as another version (its version string replaced
#                    everywhere), as a machine with an untagged driver (580.159.04) has it
#   --series DIR     check this series folder instead of the one install-driver picks
#
# Steps, each of which fails the check:
#   1. tools/series picks the series install-driver would (the version's own, else the
#      nearest proven version of its branch) and proves it applies with no fuzz;
#   2. our files are copied in and the series applied with the same code as
#      install-driver's stage step;
#   3. nvidia-uvm.ko is built on its own (the public tree lacks nv-kernel.o_binary, so
#      nvidia.ko cannot be linked): nvidia.Kbuild's conftests appended to
#      nvidia-uvm.Kbuild (DRIVER-NOTES §4 (b)), and nvidia.ko's symbol list given to
#      modpost as KBUILD_EXTRA_SYMBOLS: a Module.symvers made from the EXPORT_SYMBOL
#      lines of the files nvidia-sources.Kbuild builds into nvidia.ko. modpost then
#      fails on any symbol that neither the kernel nor nvidia.ko exports (no
#      KBUILD_MODPOST_WARN);
#   4. no compiler or modpost warning names our files, and modpost warns of nothing;
#   5. the negative control: with one symbol nvidia-uvm.ko imports from nvidia.ko
#      taken out of the list, modpost must fail naming it (so step 3 could fail);
#   6. sparse on our files (C=1) reports nothing.
# Uses the kernel headers of .cache/kernel/env.sh (scripts/kernel-deps.sh). The last
# line is "RESULT <version> PASS|FAIL ...". Wrap it in flock /tmp/vattn-kernel.lock on
# a shared machine.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
AS="" SERIES=""
while [ $# -gt 1 ]; do
    case "$1" in
        --as) AS=$2; shift 2 ;;
        --series) SERIES=$(cd "$2" && pwd) || { echo "--series $2: no such folder"; exit 2; }; shift 2 ;;
        *) break ;;
    esac
done
SRC=${1:?usage: $0 [--as VERSION] [--series DIR] KERNEL_OPEN_DIR}
[ -f "$SRC/Kbuild" ] && [ -d "$SRC/nvidia-uvm" ] || { echo "$SRC: not a kernel-open tree"; exit 2; }
# shellcheck disable=SC1091
. "$ROOT/.cache/kernel/env.sh" || { echo "run scripts/kernel-deps.sh first"; exit 2; }
TREEVER=$(sed -n 's/.*NV_VERSION_STRING=\\"\([0-9.]*\)\\".*/\1/p' "$SRC/Kbuild" | head -n1)
VER=${AS:-$TREEVER}
T=$ROOT/.cache/kernel/build/cc-$VER-$KREL
LOG=$T.log
rm -rf "$T" "$T".*.symvers && mkdir -p "$(dirname "$T")" && cp -a "$SRC" "$T"
: >"$LOG"
result() { echo "RESULT $VER (tree $TREEVER, series ${SERIES_USED:-none}; gcc $(gcc -dumpfullversion), headers $KREL, $(date -u +%F)) $*"; }
fail() { echo "FAIL: $*"; result "FAIL: $*"; exit 1; }

if [ -n "$AS" ]; then
    grep -rlI --null -F "$TREEVER" "$T" | xargs -0 -r sed -i "s/${TREEVER//./\\.}/$AS/g"
    echo "tree $TREEVER presented as $AS"
fi

# 1-2. prove, then apply with install-driver's code
TOOL=$ROOT/.cache/kernel/series-tool
(cd "$ROOT" && go build -o "$TOOL" ./kernel/nvidia-uvm-patch/tools/series) || fail "building tools/series"
args=(); [ -n "$SERIES" ] && args=(-series "$SERIES")
if ! "$TOOL" prove "${args[@]}" "$T" >"$T.prove" 2>&1; then
    cat "$T.prove"; fail "no series fits: $(tail -n1 "$T.prove")"
fi
tail -n1 "$T.prove"
SERIES_USED=$(sed -n 's/^series \([0-9.]*\) fits.*/\1/p' "$T.prove")
cp "$ROOT"/kernel/nvidia-uvm-patch/uvm_vattn*.[ch] "$T/nvidia-uvm/"
"$TOOL" apply "${args[@]}" "$T" || fail "apply"

# 3. nvidia-uvm alone, against the kernel's and nvidia.ko's exports
grep -E '^NV_CONFTEST_[A-Z_]+ \+= ' "$T/nvidia/nvidia.Kbuild" >>"$T/nvidia-uvm/nvidia-uvm.Kbuild"
SYMVERS=$T.nvidia.symvers
for f in $(sed -n 's/^NVIDIA_SOURCES += //p' "$T/nvidia/nvidia-sources.Kbuild"); do
    sed -n 's/^[[:space:]]*\(NV_\)\{0,1\}EXPORT_SYMBOL\(_GPL\)\{0,1\}(\([A-Za-z0-9_]*\));.*/\3 \1\2/p' "$T/$f"
done | awk '{ type = ($2 == "" ? "EXPORT_SYMBOL" : "EXPORT_SYMBOL_GPL"); printf "0x00000000\t%s\tnvidia\t%s\t\n", $1, type }' |
    sort -u >"$SYMVERS"
echo "nvidia.ko exports $(wc -l <"$SYMVERS") symbols (from nvidia-sources.Kbuild's files)"
[ -s "$SYMVERS" ] || fail "no EXPORT_SYMBOL found in nvidia's sources"
build() { # extra make args...
    make -C "$T" -j"$(nproc)" modules SYSSRC="$SYSSRC" SYSOUT="$SYSOUT" NV_KERNEL_MODULES=nvidia-uvm "$@"
}
build KBUILD_EXTRA_SYMBOLS="$SYMVERS" >"$LOG" 2>&1
rc=$?
if [ $rc -ne 0 ] || [ ! -f "$T/nvidia-uvm.ko" ]; then
    grep -E 'error|ERROR|undefined' "$LOG" | head -20; fail "build (rc $rc; log $LOG)"
fi
grep -q 'MODPOST' "$LOG" || fail "modpost did not run (log $LOG)"
echo "nvidia-uvm.ko built; modpost resolved every symbol against the kernel and nvidia.ko's exports"

# 4. warnings
ours=$(grep -E '(warning|error): ' "$LOG" | grep uvm_vattn || true)
[ -z "$ours" ] || { echo "$ours" | head -20; fail "warnings from our files"; }
mp=$(grep -E '^WARNING: modpost' "$LOG" || true)
[ -z "$mp" ] || { echo "$mp" | head -20; fail "modpost warnings"; }
echo "no warning from our files, none from modpost ($(grep -cE '(warning): ' "$LOG") compiler warnings in NVIDIA's files)"

# 5. negative control: take out one symbol nvidia-uvm.ko imports from nvidia.ko
sym=$(nm -u "$T/nvidia-uvm.ko" | awk '{print $2}' | grep -xFf <(cut -f2 "$SYMVERS") | head -n1)
[ -n "$sym" ] || fail "nvidia-uvm.ko imports nothing from nvidia.ko's list"
grep -vP "\t$sym\t" "$SYMVERS" >"$T.minus.symvers"
if build KBUILD_EXTRA_SYMBOLS="$T.minus.symvers" >"$T.minus.log" 2>&1; then
    fail "negative control: modpost accepted nvidia-uvm.ko without $sym"
fi
grep -q "\"$sym\" \[.*nvidia-uvm.ko\] undefined" "$T.minus.log" || fail "negative control failed for another reason (log $T.minus.log)"
echo "negative control: without $sym modpost fails: $(grep -m1 'undefined' "$T.minus.log")"
build KBUILD_EXTRA_SYMBOLS="$SYMVERS" >>"$LOG" 2>&1 || fail "rebuild after the negative control"

# 6. sparse on our files
touch "$T/nvidia-uvm/uvm_vattn.c" "$T/nvidia-uvm/uvm_vattn_kernel.c"
build KBUILD_EXTRA_SYMBOLS="$SYMVERS" C=1 CHECK=sparse >"$T.sparse.log" 2>&1 || fail "sparse build (log $T.sparse.log)"
grep -q 'CHECK .*uvm_vattn_kernel.c' "$T.sparse.log" && grep -q 'CHECK .*uvm_vattn.c' "$T.sparse.log" || fail "sparse did not check our files"
sp=$(grep -E 'uvm_vattn[a-z_]*\.[ch]:[0-9]+:[0-9]+: ' "$T.sparse.log" || true)
[ -z "$sp" ] || { echo "$sp" | head -20; fail "sparse on our files"; }
echo "sparse clean on our files"
result "PASS: no fuzz ($(grep -c '^0' "$T.prove") hunks), builds, modpost with nvidia.ko's $(wc -l <"$SYMVERS") exports (negative control ok), no warnings from our files or modpost, sparse clean"
