package testenv

import (
	"fmt"
	"os"
	"runtime"
	"testing"
)

// recorder stands in for the test a helper is given, to see how it ends.
type recorder struct {
	testing.TB
	ended string // "fail: …" or "skip: …"; "" when the helper returned
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.ended = "fail: " + fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Skip(args ...any) {
	r.ended = "skip: " + fmt.Sprint(args...)
	runtime.Goexit()
}

func (r *recorder) Skipf(format string, args ...any) {
	r.ended = "skip: " + fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func run(t *testing.T, f func(tb testing.TB)) string {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r.ended
}

func TestNeedRoot(t *testing.T) {
	for _, c := range []struct {
		ci   string
		euid int
		want string
	}{
		{"true", 0, ""},
		{"", 0, ""},
		{"true", 1000, "fail: loading eBPF programs needs root; CI must run this test as root"},
		{"", 1000, "skip: skipping: loading eBPF programs needs root"},
		{"1", 1000, "skip: skipping: loading eBPF programs needs root"},
	} {
		t.Setenv("CI", c.ci)
		if got := run(t, func(tb testing.TB) { needRoot(tb, "loading eBPF programs", c.euid) }); got != c.want {
			t.Errorf("CI=%q euid %d: %q, want %q", c.ci, c.euid, got, c.want)
		}
	}
}

func TestNeedTool(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv("CI", "true")
	if got := run(t, func(tb testing.TB) { NeedTool(tb, "bpftool", "scripts/deps-bpf.sh") }); got != "fail: bpftool not found: run scripts/deps-bpf.sh" {
		t.Errorf("CI: %q", got)
	}
	t.Setenv("CI", "")
	if got := run(t, func(tb testing.TB) { NeedTool(tb, "bpftool", "scripts/deps-bpf.sh") }); got != "skip: skipping: bpftool not found (scripts/deps-bpf.sh installs it)" {
		t.Errorf("not CI: %q", got)
	}
	t.Setenv("PATH", "/bin:/usr/bin")
	var p string
	if got := run(t, func(tb testing.TB) { p = NeedTool(tb, "sh", "apt") }); got != "" || p == "" {
		t.Errorf("sh: %q %q", got, p)
	}
}

func TestNeedEBPF(t *testing.T) {
	t.Setenv("CI", "true")
	want := ""
	switch {
	case runtime.GOARCH != "amd64":
		want = "skip: skipping: the eBPF programs are built for amd64 only"
	case os.Geteuid() != 0:
		want = "fail: tracing needs root; CI must run this test as root"
	}
	if got := run(t, func(tb testing.TB) { NeedEBPF(tb, "tracing") }); got != want {
		t.Errorf("%q, want %q", got, want)
	}
}
