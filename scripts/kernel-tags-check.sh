#!/usr/bin/env bash
# kernel-tags-check.sh: the hand compile checks, all at once (never in CI).
#
#   scripts/kernel-tags-check.sh GIT_DIR [VERSION...]
#
# GIT_DIR is a clone (or bare mirror) of NVIDIA/open-gpu-kernel-modules. For each
# VERSION (default: every series under kernel/nvidia-uvm-patch/series that Debian does
# not serve, plus 580.142 presented as 580.159.04, the GPU machine's untagged version)
# it unpacks the tag's kernel-open/ into .cache/kernel/tags/<tag> (never committed) and
# runs scripts/kernel-compile-check.sh on it under flock /tmp/vattn-kernel.lock. It
# prints the RESULT lines to copy into kernel/nvidia-uvm-patch/README.md and
# docs/driver-install.md, and exits non-zero if any check failed. Run it again after
# the hooks change (regenerate the series first: README.md, "Adding a version").
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
GIT=${1:?usage: $0 GIT_DIR [VERSION...]}
shift
versions=("$@")
if [ ${#versions[@]} -eq 0 ]; then
    for d in "$ROOT"/kernel/nvidia-uvm-patch/series/*/; do
        v=$(basename "$d")
        case "$v" in 535.261.03|550.163.01) ;; *) versions+=("$v") ;; esac
    done
    versions+=(580.159.04=580.142)
fi
results=() failed=0
for spec in "${versions[@]}"; do
    as=${spec%%=*} tag=${spec#*=}   # "580.159.04=580.142": tag 580.142 presented as 580.159.04
    dir=$ROOT/.cache/kernel/tags/$tag
    if [ ! -f "$dir/kernel-open/Kbuild" ]; then
        rm -rf "$dir" && mkdir -p "$dir"
        git -C "$GIT" archive "$tag" kernel-open | tar -x -C "$dir" || { results+=("RESULT $as: no tag $tag in $GIT"); failed=1; continue; }
    fi
    extra=(); [ "$as" != "$tag" ] && extra=(--as "$as")
    out=$(flock /tmp/vattn-kernel.lock "$ROOT/scripts/kernel-compile-check.sh" "${extra[@]}" "$dir/kernel-open" 2>&1) || failed=1
    results+=("$(echo "$out" | grep '^RESULT' || echo "RESULT $as: no result; $(echo "$out" | tail -n1)")")
done
printf '%s\n' "${results[@]}"
exit $failed
