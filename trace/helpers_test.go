package trace

import (
	"testing"

	"github.com/vattn/vattn/internal/testenv"
)

// needRoot skips a test that loads eBPF programs when not root (or not on
// amd64), except in CI (CI=true), where such a test must run and so fails
// instead.
func needRoot(t *testing.T) {
	t.Helper()
	testenv.NeedEBPF(t, "loading eBPF programs")
}

// needTool skips (fails in CI) when a program from scripts/deps-bpf.sh is missing.
func needTool(t *testing.T, name string) string {
	t.Helper()
	return testenv.NeedTool(t, name, "scripts/deps-bpf.sh")
}
