// Package testenv applies the project's rule for a test that needs what a
// machine may lack (root, a program a script installs): under CI (CI=true),
// which must provide it, the test fails; elsewhere it skips, saying what is
// missing and how to get it.
package testenv

import (
	"os"
	"os/exec"
	"runtime"
	"testing"
)

// InCI reports whether the tests run under CI, which must provide
// everything they need.
func InCI() bool { return os.Getenv("CI") == "true" }

// NeedRoot ends t unless it runs as root; what says what needs it
// ("loading eBPF programs").
func NeedRoot(t testing.TB, what string) { needRoot(t, what, os.Geteuid()) }

func needRoot(t testing.TB, what string, euid int) {
	t.Helper()
	if euid == 0 {
		return
	}
	if InCI() {
		t.Fatalf("%s needs root; CI must run this test as root", what)
	}
	t.Skipf("skipping: %s needs root", what)
}

// NeedEBPF ends t unless it can load the project's eBPF programs: they are
// built for amd64 only, so elsewhere the test skips, under CI too; and
// loading them needs root (see NeedRoot).
func NeedEBPF(t testing.TB, what string) {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		t.Skip("skipping: the eBPF programs are built for amd64 only")
	}
	NeedRoot(t, what)
}

// NeedTool returns the path of the program name, or ends t when it is not
// on PATH; script is what installs it ("scripts/deps-bpf.sh").
func NeedTool(t testing.TB, name, script string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if InCI() {
		t.Fatalf("%s not found: run %s", name, script)
	}
	t.Skipf("skipping: %s not found (%s installs it)", name, script)
	return ""
}
