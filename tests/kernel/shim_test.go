package kernel

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// needTool fails under CI (which must have it) and skips elsewhere.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found: %v", name, err)
		}
		t.Skipf("%s not found: %v", name, err)
	}
	return p
}

// TestVattnLogicUnderSanitizers builds uvm_vattn.c (the file that goes into the
// module, unchanged) with the userspace shim and runs its test program: directed
// tests of every rule, a fault-injection sweep, a race sweep (the process's own
// stock unmap or sparse map before every locked step of a batch), and a seeded
// randomized run of 200000 hostile argument sets checked against a reference model.
func TestVattnLogicUnderSanitizers(t *testing.T) {
	cc := needTool(t, "gcc")
	root := filepath.Join("..", "..")
	bin := filepath.Join(t.TempDir(), "vattn_test")
	// gcc reads the sources, not this process: read them here too, so that go
	// test's cache sees a change to any of them.
	for _, dir := range []string{filepath.Join(root, "kernel", "nvidia-uvm-patch"), "shim"} {
		srcs, _ := filepath.Glob(filepath.Join(dir, "*.[ch]"))
		for _, f := range srcs {
			if _, err := os.ReadFile(f); err != nil {
				t.Fatal(err)
			}
		}
	}
	args := []string{
		"-std=gnu11", "-O1", "-g", "-Wall", "-Wextra", "-Werror",
		"-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer",
		"-DUVM_VATTN_USERSPACE",
		"-I", filepath.Join(root, "kernel", "nvidia-uvm-patch"),
		"-I", filepath.Join("shim"),
		"-o", bin,
		filepath.Join(root, "kernel", "nvidia-uvm-patch", "uvm_vattn.c"),
		filepath.Join("shim", "shim.c"),
		filepath.Join("shim", "vattn_test.c"),
	}
	if out, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	seeds := []string{"20261125", "7"}
	if s := os.Getenv("VATTN_SEED"); s != "" {
		seeds = []string{s}
	}
	for _, seed := range seeds {
		cmd := exec.Command(bin, seed, "200000")
		cmd.Env = append(os.Environ(), "ASAN_OPTIONS=detect_leaks=1:abort_on_error=1", "UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("seed %s: %v\n%s", seed, err, out)
		}
		if !strings.Contains(string(out), "vattn_test: ok") || !strings.Contains(string(out), "200000 hostile argument sets") ||
			!strings.Contains(string(out), "race sweep: ") {
			t.Fatalf("seed %s: unexpected output:\n%s", seed, out)
		}
		t.Logf("seed %s: %s", seed, strings.TrimSpace(string(out)))
	}
}
