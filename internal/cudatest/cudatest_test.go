package cudatest

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/vattn/vattn/cuda"
	"github.com/vattn/vattn/cuda/cudafake"
)

// recorder stands in for the test a helper is given, to see how it ends.
type recorder struct {
	testing.TB
	failed   []string
	cleanups []func()
}

func (r *recorder) Helper() {}

func (r *recorder) Fatal(args ...any) {
	r.failed = append(r.failed, fmt.Sprint(args...))
	runtime.Goexit()
}

func (r *recorder) Errorf(format string, args ...any) {
	r.failed = append(r.failed, fmt.Sprintf(format, args...))
}

func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }

// run calls f with a recorder as a test would (Fatal ends f), then runs the
// cleanups f registered, last first, and returns the failures.
func run(t *testing.T, f func(tb testing.TB)) []string {
	t.Helper()
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
	return r.failed
}

func TestRetainAndFree(t *testing.T) {
	f, lib := Fake(t)
	var free uint64
	if failed := run(t, func(tb testing.TB) {
		g := Retain(tb, lib)
		if g.Lib != lib || g.Ctx.Device.Index != 0 || f.Live().Retains != 1 {
			tb.Errorf("retained %+v, fake holds %s", g, f.Live())
		}
		free = g.Free(tb)
	}); len(failed) != 0 {
		t.Fatal(failed)
	}
	if free == 0 || free > f.TotalMemory {
		t.Errorf("free %d of %d", free, f.TotalMemory)
	}
	if live := f.Live(); live != (cudafake.Live{}) {
		t.Errorf("after the test the fake holds %s", live)
	}
}

func TestFailures(t *testing.T) {
	for _, c := range []struct {
		sym  string
		call func(tb testing.TB, lib *cuda.Lib)
	}{
		{"cuDeviceGetCount", func(tb testing.TB, lib *cuda.Lib) { Retain(tb, lib) }},
		{"cuDevicePrimaryCtxRetain", func(tb testing.TB, lib *cuda.Lib) { Retain(tb, lib) }},
		{"cuMemGetInfo_v2", func(tb testing.TB, lib *cuda.Lib) { Retain(tb, lib).Free(tb) }},
		{"cuDevicePrimaryCtxRelease_v2", func(tb testing.TB, lib *cuda.Lib) { Retain(tb, lib) }},
	} {
		f, lib := Fake(t)
		f.Inject(c.sym, 1, cuda.CUDA_ERROR_UNKNOWN)
		failed := run(t, func(tb testing.TB) { c.call(tb, lib) })
		if len(failed) != 1 || !strings.Contains(failed[0], c.sym) {
			t.Errorf("%s failing: the test saw %q", c.sym, failed)
		}
	}
}

// TestOpen: without libcuda (this machine, CI) Open fails the test with the
// loader's error; with one, it holds GPU 0.
func TestOpen(t *testing.T) {
	_, loadErr := cuda.Load()
	failed := run(t, func(tb testing.TB) { Open(tb) })
	switch {
	case loadErr != nil && (len(failed) != 1 || failed[0] != loadErr.Error()):
		t.Errorf("libcuda missing (%v): the test saw %q", loadErr, failed)
	case loadErr == nil && len(failed) != 0:
		t.Errorf("libcuda present: the test saw %q", failed)
	}
}
