package trace

import (
	"runtime"
	"testing"

	"github.com/vattn/vattn/internal/testenv"
)

// needRoot skips a test that loads eBPF programs when not root, except in CI
// (CI=true), where such a test must run and so fails instead.
func needRoot(t *testing.T) {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		t.Skip("skipping: the eBPF programs are built for amd64 only")
	}
	testenv.NeedRoot(t, "loading eBPF programs")
}

// needTool skips (fails in CI) when a program from scripts/deps-bpf.sh is missing.
func needTool(t *testing.T, name string) string {
	t.Helper()
	return testenv.NeedTool(t, name, "scripts/deps-bpf.sh")
}
