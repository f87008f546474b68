#!/usr/bin/env bash
# The whole test suite, every tier that can run without a GPU. It installs
# what the tiers need (Debian packages, Go tools, NVIDIA sources, kernel
# headers), is safe to re-run, and is what CI (.ci/run) calls.
#
#   scripts/test.sh
#
# Tiers that need the GPU machine run through scripts/gpu-build.sh and
# scripts/gpu-run.sh instead (see README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="$PATH:$(go env GOPATH)/bin"
failed=()

tier() { # name, command...
	local name=$1
	shift
	echo
	echo "=== tier: $name"
	local start=$SECONDS
	if "$@"; then
		echo "=== tier $name passed ($((SECONDS - start))s)"
	else
		echo "=== tier $name FAILED ($((SECONDS - start))s)"
		failed+=("$name")
	fi
}

lint() {
	local bad
	bad=$(gofmt -l $(git ls-files '*.go'))
	if [ -n "$bad" ]; then
		echo "gofmt would change:"
		echo "$bad"
		return 1
	fi
	go vet ./...
	# The device tests build only with -tags gpu (scripts/gpu-build.sh): check
	# them here too, or a change breaks the GPU machine's build unseen.
	go vet -tags gpu ./...
	if ! command -v staticcheck >/dev/null; then
		GOFLAGS= go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
	fi
	staticcheck ./...
	staticcheck -tags gpu ./...
}

deps() {
	scripts/deps-bpf.sh &&
		scripts/deps-python.sh &&
		scripts/kernel-deps.sh
}

# Unit and integration tests of every package; eBPF tests attach for real
# (CI runs as root). -p 1 keeps tests that build C fixtures or kernel trees
# from racing for the two cores; the long timeout covers the kernel tiers.
unit() { go test -count=1 -timeout 60m $(go list ./... | grep -v /tests/dkms); }

# -short: the full-trace simulation runs in the unit tier; under the race
# detector it would take minutes for nothing new.
race() { go test -count=1 -race -short -timeout 20m ./kvcache/... ./backend/... ./simulate/... ./workload/...; }

# Benchmarks must keep running: one iteration each.
bench_smoke() { go test -count=1 -run '^$' -bench . -benchtime 1x ./kvcache/... ./backend/... ./workload/...; }

# The Python module through each of its paths: the C extension built into
# python/vattn (VATTN_REQUIRE_EXT: a build that does not load fails), and
# ctypes (VATTN_NO_EXT). The unit tier's TestPython runs both too, on
# builds of its own; this checks the build a developer gets.
python_paths() {
	go build -buildmode=c-shared -o build/libvattn.so ./cmd/libvattn &&
		scripts/build-python-ext.sh &&
		VATTN_LIB=build/libvattn.so VATTN_REQUIRE_EXT=1 python3 -m unittest discover -s python/tests &&
		VATTN_LIB=build/libvattn.so VATTN_NO_EXT=1 python3 -m unittest discover -s python/tests
}

# The patched nvidia-uvm against real NVIDIA sources and kernel headers:
# series apply, builds, warnings, sparse, userspace sanitizer tests.
kernel() { scripts/kernel-check.sh --no-deps; }

tier deps deps
tier lint lint
tier unit unit
tier python python_paths
tier race race
tier bench-smoke bench_smoke
tier kernel kernel

# DKMS end to end for real, per NVIDIA branch: stock driver installed with
# DKMS, then install-driver/status/uninstall-driver and rollback cases.
dkms() { go test -count=1 -p 1 -timeout 80m ./tests/dkms/; }
tier dkms dkms

echo
if [ ${#failed[@]} -ne 0 ]; then
	echo "FAILED tiers: ${failed[*]}"
	exit 1
fi
echo "all tiers passed"
