package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// buildLib builds libvattn.so and its header into a temporary directory.
func buildLib(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("gcc is missing: the C ABI test needs it under CI")
		}
		t.Skip("gcc not found; the C ABI test needs it")
	}
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", filepath.Join(dir, "libvattn.so"), ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build libvattn.so: %v\n%s", err, out)
	}
	return dir
}

// TestCABI compiles testdata/capi.c against the library and runs it: every
// exported function and every error code a C caller can reach.
func TestCABI(t *testing.T) {
	dir := buildLib(t)
	bin := filepath.Join(dir, "capi")
	src, err := filepath.Abs("testdata/capi.c")
	if err != nil {
		t.Fatal(err)
	}
	cc := exec.Command("gcc", "-Wall", "-Werror", "-o", bin, src, "-I", dir, "-L", dir, "-lvattn", "-lpthread", "-Wl,-rpath,"+dir)
	if out, err := cc.CombinedOutput(); err != nil {
		t.Fatalf("compile capi.c: %v\n%s", err, out)
	}
	gpu := "unavailable"
	if _, err := os.Stat("/dev/nvidiactl"); err == nil {
		gpu = "gpu"
	}
	out, err := exec.Command(bin, gpu).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("capi: %v\n%s", err, out)
	}
}

// TestHeaderCodes checks the generated header's enum against the Go
// constants the boundary returns.
func TestHeaderCodes(t *testing.T) {
	dir := buildLib(t)
	h, err := os.ReadFile(filepath.Join(dir, "libvattn.h"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]status{
		"VATTN_OK = 0": stOK, "VATTN_ERR_BAD_HANDLE = 1": stBadHandle, "VATTN_ERR_BAD_ARGUMENT = 2": stBadArgument,
		"VATTN_ERR_BAD_CONFIG = 3": stBadConfig, "VATTN_ERR_SLOT_RANGE = 4": stSlotRange,
		"VATTN_ERR_SLOT_INACTIVE = 5": stSlotInactive, "VATTN_ERR_BAD_LENGTH = 6": stBadLength,
		"VATTN_ERR_CONTEXT_TOO_LONG = 7": stContextTooLong, "VATTN_ERR_NO_FREE_SLOT = 8": stNoFreeSlot,
		"VATTN_ERR_OUT_OF_PAGES = 9": stOutOfPages, "VATTN_ERR_BACKEND = 10": stBackend,
		"VATTN_ERR_UNAVAILABLE = 11": stUnavailable, "VATTN_ERR_PANIC = 12": stPanic,
		"VATTN_ERR_BUFFER_TOO_SMALL = 13": stBufferTooSmall,
	}
	for decl, code := range want {
		var n int
		_, num, _ := strings.Cut(decl, " = ")
		if _, err := fmt.Sscan(num, &n); err != nil || status(n) != code || !strings.Contains(string(h), decl) {
			t.Errorf("header lacks %q for code %d", decl, code)
		}
	}
}

// TestPanicRecovered: a panic inside a call becomes VATTN_ERR_PANIC with
// the panic in the handle's message, and the handle stays usable.
func TestPanicRecovered(t *testing.T) {
	h, err := create("sim", 0, createConfig{layers: 1, kvHeads: 1, headDim: 64, dtypeBytes: 2, maxBatch: 1, maxContext: 16, pageSize: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer destroy(h)
	if got := guardHandle(h, true, func(*cacheHandle) error { panic("boom") }); got != stPanic {
		t.Fatalf("status %d, want %d", got, stPanic)
	}
	msg, _ := lastError(h)
	if !strings.Contains(msg, "panic: boom") {
		t.Fatalf("message %q lacks the panic", msg)
	}
	if got := guard(0, func() error { panic(errors.New("bang")) }); got != stPanic {
		t.Fatalf("global status %d, want %d", got, stPanic)
	}
	if got := guardHandle(h, true, func(c *cacheHandle) error { return c.cache.Step([]int{16}) }); got != stSlotInactive {
		t.Fatalf("after panic: status %d, want %d", got, stSlotInactive)
	}
}

// TestPython runs the Python module's tests (python/tests) against the
// library just built, on the sim backend: once through ctypes and once
// through the C extension (python/vattn/_fast.c, built here by
// scripts/build-python-ext.sh), so that both paths stay tested.
func TestPython(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 is missing: the Python module's tests need it under CI")
		}
		t.Skip("python3 not found; the Python module's tests need it")
	}
	dir := buildLib(t)
	lib := "VATTN_LIB=" + filepath.Join(dir, "libvattn.so")
	tests, err := filepath.Abs("../../python/tests")
	if err != nil {
		t.Fatal(err)
	}
	unittest := func(t *testing.T, env ...string) {
		cmd := exec.Command(py, "-m", "unittest", "discover", "-v", "-s", tests)
		cmd.Env = append(append(os.Environ(), lib), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("python tests: %v\n%s", err, out)
		}
		t.Logf("%s", out)
	}
	t.Run("ctypes", func(t *testing.T) { unittest(t, "VATTN_NO_EXT=1") })
	ext := filepath.Join(dir, "_fast.abi3.so")
	build := exec.Command("../../scripts/build-python-ext.sh", dir)
	build.Env = append(os.Environ(), "PYTHON="+py)
	if out, err := build.CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("build the Python extension: %v\n%s", err, out)
		}
		t.Skipf("cannot build the Python extension (its tests and the binding benchmark need it): %v\n%s", err, out)
	}
	// VATTN_EXT: this build, not one left in python/vattn; VATTN_REQUIRE_EXT:
	// a build that does not load fails the tests instead of falling back.
	withExt := []string{"VATTN_EXT=" + ext, "VATTN_REQUIRE_EXT=1"}
	t.Run("extension", func(t *testing.T) { unittest(t, withExt...) })

	// The binding microbenchmark keeps running: a few calls of each kind,
	// every row with its Go figure from vattn_time_steps.
	bench, err := filepath.Abs("../../bench/binding/binding.py")
	if err != nil {
		t.Fatal(err)
	}
	js := filepath.Join(t.TempDir(), "binding.json")
	cmd := exec.Command(py, bench, "--iters", "20", "--json", js)
	cmd.Env = append(append(os.Environ(), lib, "VATTN_BACKEND=sim"), withExt...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("binding benchmark: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Extension string  `json:"extension"`
		CStepP50  float64 `json:"c_step_p50_us"`
		Rows      []struct {
			Path  string  `json:"path"`
			Call  string  `json:"call"`
			Input string  `json:"input"`
			P50   float64 `json:"p50_us"`
			GoP50 float64 `json:"go_p50_us"`
		} `json:"rows"`
	}
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Extension != ext {
		t.Errorf("the benchmark ran with extension %q, want %s", rep.Extension, ext)
	}
	if rep.CStepP50 <= 0 {
		t.Errorf("no vattn_step timed from C: %v µs", rep.CStepP50)
	}
	paths := map[string]int{}
	for _, r := range rep.Rows {
		paths[r.Path]++
	}
	for _, p := range []string{"extension", "ctypes"} {
		if paths[p] < 12 {
			t.Errorf("%d %s rows: want 3 calls × at least 4 kinds of lengths", paths[p], p)
		}
	}
	for _, r := range rep.Rows {
		if r.P50 <= 0 || r.GoP50 <= 0 {
			t.Errorf("row %+v", r)
		}
	}
}
