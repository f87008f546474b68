package trace_test

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/vattn/vattn/internal/cli"
	"github.com/vattn/vattn/internal/cmd/root"
	"github.com/vattn/vattn/internal/testenv"
)

func TestBadArguments(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"trace", "--unit", "s"}, cli.ExitBadArgument, "--unit"},
		{[]string{"trace", "--source", "cuda,gpu"}, cli.ExitBadArgument, "unknown trace source"},
		{[]string{"trace", "--count", "2"}, cli.ExitBadArgument, "--count needs --interval"},
		{[]string{"trace", "--interval", "-1s"}, cli.ExitBadArgument, "must not be negative"},
		{[]string{"trace", "--device", "/nonexistent/uvm"}, cli.ExitNotFound, "--device"},
		{[]string{"trace", "--device", "/dev"}, cli.ExitBadArgument, "not a character device"},
		{[]string{"trace", "--device", "1:x"}, cli.ExitBadArgument, "MAJ:MIN"},
		{[]string{"trace", "--lib", "/nonexistent/libcuda.so.1"}, cli.ExitLibraryMissing, "--lib"},
		{[]string{"trace", "extra"}, cli.ExitBadArgument, "unknown command"},
		{[]string{"trace", "-i", "first"}, cli.ExitBadArgument, "want an index or a GPU-"},
	} {
		var stdout, stderr bytes.Buffer
		code := root.Main(tc.args, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stderr.String(), tc.msg) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, stderr.String(), tc.code, tc.msg)
		}
	}
}

func TestNoSourceAttaches(t *testing.T) {
	if os.Geteuid() != 0 && !testenv.InCI() {
		t.Skip("skipping: vattnctl trace needs root")
	}
	var stdout, stderr bytes.Buffer
	code := root.Main([]string{"trace", "--source", "cuda,tracepoint", "--lib", "/bin/true"}, &stdout, &stderr)
	if code != cli.ExitNotSupported || !strings.Contains(stderr.String(), "cuda: not attached") || !strings.Contains(stderr.String(), "tracepoint: not attached") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}

// This machine has no NVIDIA GPU: any -i names none.
func TestNoSuchGPU(t *testing.T) {
	if _, err := os.Stat("/proc/driver/nvidia/gpus"); err == nil {
		t.Skip("skipping: this machine has NVIDIA GPUs")
	}
	var stdout, stderr bytes.Buffer
	code := root.Main([]string{"trace", "-i", "0"}, &stdout, &stderr)
	if code != cli.ExitNotFound || !strings.Contains(stderr.String(), "no such GPU") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}

func TestBadPrometheusAddress(t *testing.T) {
	if os.Geteuid() != 0 && !testenv.InCI() {
		t.Skip("skipping: vattnctl trace needs root")
	}
	var stdout, stderr bytes.Buffer
	code := root.Main([]string{"trace", "--source", "ioctl", "--device", "/dev/null", "--prometheus", "no-such-host.invalid:x"}, &stdout, &stderr)
	if code != cli.ExitBadArgument || !strings.Contains(stderr.String(), "--prometheus") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}
