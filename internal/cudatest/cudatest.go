// Package cudatest gives tests their own hold on GPU 0's primary context:
// on the real driver for the device tests (built with -tags gpu and run on
// the GPU machine, see scripts/gpu-build.sh), or on the fake driver
// (cuda/cudafake) for tests that run anywhere. A test that holds the context
// itself sees the GPU as it is after the code under test has let go: the
// free memory left, or that it can still work there.
package cudatest

import (
	"testing"

	"github.com/vattn/vattn/cuda"
	"github.com/vattn/vattn/cuda/cudafake"
)

// GPU is a test's retain of GPU 0's primary context.
type GPU struct {
	Lib *cuda.Lib
	Ctx *cuda.Ctx
}

// Open loads libcuda and retains GPU 0's primary context until the test
// ends. It fails the test when it cannot, and never skips: device tests are
// built to run where the GPU is.
func Open(t testing.TB) GPU {
	t.Helper()
	lib, err := cuda.Load()
	if err != nil {
		t.Fatal(err)
	}
	return Retain(t, lib)
}

// Retain retains GPU 0's primary context of lib until the test ends,
// failing the test when it cannot.
func Retain(t testing.TB, lib *cuda.Lib) GPU {
	t.Helper()
	dev, err := lib.SelectDevice("")
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := lib.Retain(dev)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ctx.Release(); err != nil {
			t.Errorf("test's own context: %v", err)
		}
	})
	return GPU{Lib: lib, Ctx: ctx}
}

// Fake returns the fake driver and a library on it.
func Fake(t testing.TB) (*cudafake.Fake, *cuda.Lib) {
	t.Helper()
	f := cudafake.New()
	lib, err := cuda.NewLib(f.Driver(), "fake")
	if err != nil {
		t.Fatal(err)
	}
	return f, lib
}

// Free returns the GPU's free memory, failing the test when the driver
// cannot say. Its first call also makes the context current, which is what
// has the driver set the GPU up for this process.
func (g GPU) Free(t testing.TB) uint64 {
	t.Helper()
	var free uint64
	if err := g.Ctx.Do(func(b cuda.Bound) error {
		var err error
		free, _, err = b.MemGetInfo()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return free
}
