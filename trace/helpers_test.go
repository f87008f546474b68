package trace

import (
	"os"
	"os/exec"
	"runtime"
	"testing"
)

// needRoot skips a test that loads eBPF programs when not root, except in CI
// (CI=true), where such a test must run and so fails instead.
func needRoot(t *testing.T) {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		t.Skip("skipping: the eBPF programs are built for amd64 only")
	}
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("loading eBPF programs needs root; CI must run this test as root")
	}
	t.Skip("skipping: loading eBPF programs needs root")
}

// needTool skips (fails in CI) when a program from scripts/deps-bpf.sh is missing.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found: run scripts/deps-bpf.sh", name)
	}
	t.Skipf("skipping: %s not found (scripts/deps-bpf.sh installs it)", name)
	return ""
}
