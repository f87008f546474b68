#!/usr/bin/env bash
# Run on the GPU machine what scripts/gpu-build.sh put in this folder: the
# device tests, "vattnctl map --verify", and the benchmark of vattnctl map
# against the raw driver API (bench/cvmm/vmmbench.c, built here with gcc).
# Outputs go to $OUT (default ./gpu-out).
#   bash .gpubin/gpu-run.sh [tests] [map] [bench] [trace] [status] [stock] [binding]
#   (default: tests map bench)
# "stock" is small pages on NVIDIA's stock driver: map --verify at every
# page size, selftest, status, the growth bench (map-ahead levers) and the
# Python module at 64 KiB (needs libvattn.so beside this script and torch).
# "binding" is the Python binding's microbenchmark (bench/binding/binding.py:
# each step call from Python, through the C extension beside this script and
# through ctypes, next to Go's own Step in the same process) and the Python
# tests through each path; BINDING_BACKEND picks the backend (default auto).
set -uo pipefail
bin=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-./gpu-out}
mkdir -p "$out"
sections=${*:-tests map bench}
status=0

{
	date -u
	nvidia-smi --query-gpu=index,name,uuid,driver_version,memory.total,memory.used --format=csv
	uname -r
} >"$out/device.txt" 2>&1
cat "$out/device.txt"

if [[ " $sections " == *" tests "* ]]; then
	for t in "$bin"/*.test; do
		echo "== $(basename "$t")"
		log=$(mktemp)
		(cd "$bin" && "$t" -test.v -test.count=1 -test.timeout=240s) >"$log" 2>&1 || { status=1; echo "FAILED: $(basename "$t")"; }
		cat "$log" >>"$out/tests.log"
		grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|_test.go' "$log" || true
		rm -f "$log"
	done
fi

if [[ " $sections " == *" map "* ]]; then
	echo "== vattnctl map --backend cudavmm --pages 1024 --verify"
	"$bin/vattnctl" map --backend cudavmm --pages 1024 --verify 2>&1 | tee "$out/map.txt" || status=1
	"$bin/vattnctl" map --backend cudavmm --pages 1024 --verify -o json >"$out/map.json" 2>&1 || status=1
	echo "exit codes: no such GPU: $("$bin/vattnctl" map -i 7 >/dev/null 2>&1; echo $?), 64k pages: $("$bin/vattnctl" map --page-size 64k >/dev/null 2>&1; echo $?)" | tee -a "$out/map.txt"
fi

if [[ " $sections " == *" bench "* ]]; then
	gcc -O2 -Wall -o "$bin/vmmbench" "$bin/vmmbench.c" -l:libcuda.so.1 2>/dev/null ||
		gcc -O2 -Wall -o "$bin/vmmbench" "$bin/vmmbench.c" -lcuda || { echo "cannot build vmmbench"; exit 1; }
	tag=${BENCH_TAG:-}
	jsonl="$out/bench$tag.jsonl"
	: >"$jsonl"
	rounds=${ROUNDS:-9}
	# Both pinned to the same two cores: unpinned runs of either swing by
	# 50% from run to run (on the machine measured), depending on where the
	# scheduler puts them.
	pin=""
	[[ ${PIN_CPUS-4,5} != none ]] && command -v taskset >/dev/null && pin="taskset -c ${PIN_CPUS:-4,5}"
	oneline() { python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)))'; }
	raw() { $pin "$bin/vmmbench" --pages 1024 --batch "$2" --access "$1" | oneline >>"$jsonl" || status=1; }
	gov() { $pin "$bin/vattnctl" map --backend cudavmm --pages 1024 --batch "$2" --access "$1" -o json | oneline >>"$jsonl" || status=1; }
	# Same machine, same process shape; raw C and Go alternate, and which
	# goes first alternates too.
	IFS=, read -ra cfgs <<<"${CONFIGS:-page 1,page 64,run 64,run 1024}"
	for cfg in "${cfgs[@]}"; do
		for r in $(seq "$rounds"); do
			if ((r % 2)); then raw $cfg; gov $cfg; else gov $cfg; raw $cfg; fi
		done
	done
	python3 "$bin/summarize.py" "$jsonl" | tee "$out/summary$tag.txt"
fi
if [[ " $sections " == *" trace "* ]]; then
	# vattnctl trace on the real libcuda while vattnctl map runs, and what
	# tracing costs the map loop: map alone and map traced, alternating.
	mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing
	cycle() { # one map run; prints the µs per page of alloc+map+unmap+free
		"$bin/vattnctl" map --backend cudavmm --pages 512 -o json |
			python3 -c 'import json,sys; r=json.load(sys.stdin); print("%.2f" % sum(o["us_per_page"] for o in r["ops"] if o["op"] in ("alloc","map","unmap","free")))'
	}
	: >"$out/trace-overhead.txt"
	for r in 1 2 3; do
		echo "untraced $(cycle)" | tee -a "$out/trace-overhead.txt"
		"$bin/vattnctl" trace --source cuda,ioctl --duration 60s >"$out/trace-$r.txt" 2>"$out/trace-$r.err" &
		tpid=$!
		sleep 4
		echo "traced $(cycle)" | tee -a "$out/trace-overhead.txt"
		kill -INT $tpid
		wait $tpid || true
	done
	"$bin/vattnctl" trace --source cuda --duration 20s -o json >"$out/trace.json" 2>"$out/trace-json.err" &
	tpid=$!
	sleep 4
	"$bin/vattnctl" map --backend cudavmm --pages 1024 >/dev/null || status=1
	kill -INT $tpid
	wait $tpid || true
	cat "$out/trace-1.err" "$out/trace-1.txt"
fi

if [[ " $sections " == *" status "* ]]; then
	for c in "status" "status -o json" "selftest" "bench --backend cudavmm"; do
		echo "== vattnctl $c"
		# shellcheck disable=SC2086
		"$bin/vattnctl" $c 2>&1 | tee -a "$out/status.txt"
		echo "exit code: ${PIPESTATUS[0]}" | tee -a "$out/status.txt"
	done
fi
if [[ " $sections " == *" stock "* ]]; then
	for ps in 64k 128k 256k 2m; do
		echo "== vattnctl map --backend uvm --page-size $ps --pages 4096 --batch 4096 --verify"
		"$bin/vattnctl" map --backend uvm --page-size $ps --pages 4096 --batch 4096 --verify 2>&1 | tee -a "$out/stock-map.txt" || status=1
	done
	echo "== vattnctl map --backend cudavmm --page-size 2m --pages 4096 --batch 4096 --verify"
	"$bin/vattnctl" map --backend cudavmm --page-size 2m --pages 4096 --batch 4096 --verify 2>&1 | tee -a "$out/stock-map.txt" || status=1
	for c in "status" "selftest"; do
		echo "== vattnctl $c"
		# shellcheck disable=SC2086
		"$bin/vattnctl" $c 2>&1 | tee -a "$out/stock-status.txt"
		echo "exit code: ${PIPESTATUS[0]}" | tee -a "$out/stock-status.txt"
	done
	echo "== vattnctl bench --backend cudavmm,uvm (one run)"
	"$bin/vattnctl" bench --backend cudavmm,uvm --page-size 2m,64k,128k,256k --pages 1024 --map-batch 1,64 --step-batch 256 -o json >"$out/stock-bench.json" 2>"$out/stock-bench.err" || status=1
	echo "== vattnctl bench --growth (64k stock, 2m cudavmm)"
	"$bin/vattnctl" bench --backend uvm,cudavmm --page-size 64k,2m --pages 64 --map-batch 64 --step-batch 1 --growth -o json >"$out/stock-growth.json" 2>"$out/stock-growth.err" || status=1
	if [[ -f "$bin/libvattn.so" ]]; then
		echo "== python tests (64 KiB through backend auto, 2 MiB through cudavmm)"
		(cd "$bin/../python/tests" && VATTN_LIB="$bin/libvattn.so" python3 -m unittest -v test_vattn.Torch) 2>&1 | tee "$out/stock-python.txt" || status=1
	fi
fi
if [[ " $sections " == *" binding "* ]]; then
	repo=$bin/..
	echo "== python tests, through the C extension and through ctypes"
	(cd "$repo/python/tests" && VATTN_LIB="$bin/libvattn.so" VATTN_REQUIRE_EXT=1 python3 -m unittest 2>&1) |
		tail -3 | tee "$out/binding-tests.txt" || status=1
	(cd "$repo/python/tests" && VATTN_LIB="$bin/libvattn.so" VATTN_NO_EXT=1 python3 -m unittest 2>&1) |
		tail -3 | tee -a "$out/binding-tests.txt" || status=1
	be=${BINDING_BACKEND:-auto}
	echo "== bench/binding/binding.py (backend $be)"
	VATTN_LIB="$bin/libvattn.so" VATTN_BACKEND=$be python3 "$repo/bench/binding/binding.py" \
		--iters "${BINDING_ITERS:-20000}" --json "$out/binding-$be.json" 2>&1 | tee "$out/binding-$be.txt" || status=1
fi
exit $status
