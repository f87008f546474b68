#!/usr/bin/env bash
# Build what the GPU machine runs (it has no Go): a stripped vattnctl, the
# stripped device-test binaries (-tags gpu), the C ABI with the Python
# module's C extension beside it, and the C baseline's source, all into one
# folder that travels to the machine (default ./.gpubin, git-ignored).
#   scripts/gpu-build.sh [DEST]
# Then on the GPU machine, from the repository root: bash DEST/gpu-run.sh
set -euo pipefail
dest=${1:-./.gpubin}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
rm -f "$dest"/*.test "$dest"/vattnctl "$dest"/vmmbench "$dest"/libvattn.so "$dest"/_fast.abi3.so
cd "$(dirname "$0")/.."
export CGO_ENABLED=0
go build -trimpath -ldflags='-s -w' -o "$dest/vattnctl" ./cmd/vattnctl
# Every package with device tests.
for pkg in $(grep -rl --include='*_test.go' '^//go:build gpu' . | xargs -n1 dirname | sort -u); do
	name=$(echo "${pkg#./}" | tr / _)
	go test -c -trimpath -tags gpu -ldflags='-s -w' -o "$dest/$name.test" "$pkg"
done
# The C ABI for the Python module (cgo: built with gcc here).
CGO_ENABLED=1 go build -trimpath -ldflags='-s -w' -buildmode=c-shared -o "$dest/libvattn.so" ./cmd/libvattn
rm -f "$dest/libvattn.h"
# python/vattn's C extension (abi3: loads on any CPython from 3.11 on); the
# module finds it beside libvattn.so (VATTN_LIB). Optional: without it the
# module takes its ctypes path.
scripts/build-python-ext.sh "$dest" >/dev/null ||
	echo "gpu-build: the Python extension was not built; python/vattn will use ctypes" >&2
cp bench/cvmm/vmmbench.c bench/cvmm/summarize.py scripts/gpu-run.sh "$dest/"
du -sh "$dest"
