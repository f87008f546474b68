package gpumem

import (
	"errors"
	"strings"
	"testing"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/cuda"
	"github.com/vattn/vattn/cuda/cudafake"
	"github.com/vattn/vattn/internal/cudatest"
)

const page = 2 << 20

// onFake gives a context on the fake driver (the test's own retain) and a
// verifier on it, closed when the test ends; the driver must be left holding
// nothing.
func onFake(t *testing.T) (*cudafake.Fake, *cuda.Ctx, *Verifier) {
	t.Helper()
	f, ctx, v := fakeVerifier(t, cudafake.Live{})
	t.Cleanup(func() {
		if err := ctx.Do(v.Close); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return f, ctx, v
}

// fakeVerifier is onFake without the Close: after the test the driver must
// hold what left says.
func fakeVerifier(t *testing.T, left cudafake.Live) (*cudafake.Fake, *cuda.Ctx, *Verifier) {
	t.Helper()
	f, lib := cudatest.Fake(t)
	t.Cleanup(func() {
		if live := f.Live(); live != left {
			t.Errorf("left %s, want %s", live, left)
		}
	})
	gpu := cudatest.Retain(t, lib)
	return f, gpu.Ctx, NewVerifier(gpu.Ctx, gpu.Ctx.Device.Device)
}

// failedIn reports whether err comes from the C function sym.
func failedIn(err error, sym string) bool {
	var ce *cuda.Error
	return errors.As(err, &ce) && ce.Call == sym
}

func TestMemInfo(t *testing.T) {
	f, ctx, _ := onFake(t)
	mi, err := MemInfo(ctx)
	if err != nil || mi.Total != f.TotalMemory || mi.Free > mi.Total {
		t.Errorf("meminfo %+v %v", mi, err)
	}
	f.Inject("cuMemGetInfo_v2", 1, cuda.CUDA_ERROR_UNKNOWN)
	if _, err := MemInfo(ctx); !failedIn(err, "cuMemGetInfo_v2") {
		t.Errorf("failing cuMemGetInfo: %v", err)
	}
}

func TestCheckMapped(t *testing.T) {
	const base = 1 << 40
	mapped := map[uint64]backend.PageID{base: 1, base + page: 2, base + 3*page: 3}
	for _, c := range []struct {
		addr, size uint64
		want       error
	}{
		{base, 2 * page, nil},
		{base + 3*page, page, nil},
		{base, 0, backend.ErrMisaligned},
		{base + 4096, page, backend.ErrMisaligned},
		{base, page + 4096, backend.ErrMisaligned},
		{base, 3 * page, backend.ErrNotMapped},
		{base + 4*page, page, backend.ErrNotMapped},
	} {
		if err := CheckMapped(mapped, page, c.addr, c.size); !errors.Is(err, c.want) || (err == nil) != (c.want == nil) {
			t.Errorf("%#x+%#x: %v, want %v", c.addr, c.size, err, c.want)
		}
	}
}

// The fake holds no memory: the host reads zeros and the GPU counter reads
// zero. Pattern(0, 0, 0) is the only zero word, so the counts are exact.
func TestCheckFence(t *testing.T) {
	for _, c := range []struct {
		fence, completed backend.Epoch
		want             error
	}{
		{0, 0, nil},
		{3, 3, nil},
		{3, 5, nil},
		{4, 3, backend.ErrFenceNotReached},
	} {
		if err := CheckFence(2, c.fence, c.completed); !errors.Is(err, c.want) || (err == nil) != (c.want == nil) {
			t.Errorf("epoch %d, completed %d: %v, want %v", c.fence, c.completed, err, c.want)
		}
	}
	const want = "unmap 2 pages: epoch 4, completed 3: "
	if err := CheckFence(2, 4, 3); err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("%v, want it to start %q", err, want)
	}
}

func TestFillCheckSpin(t *testing.T) {
	f, _, v := onFake(t)
	r := cuda.PatternRange{Base: 1 << 40, Bytes: 2 * page, PageSize: page}
	if err := v.Fill(0, r); err != nil {
		t.Fatal(err)
	}
	if err := v.Spin(0, 100); err != nil {
		t.Fatal(err)
	}
	res, err := v.Check(0, r)
	if err != nil {
		t.Fatal(err)
	}
	sampled := 2 * 2 * HostSampleWords
	if want := (CheckResult{Pages: 2, HostSampled: sampled, HostMismatches: sampled - 1}); res != want || res.OK() {
		t.Errorf("check %+v, want %+v", res, want)
	}
	r.Page0 = 1
	if res, err = v.Check(0, r); err != nil || res.HostMismatches != sampled {
		t.Errorf("check from page 1: %+v %v", res, err)
	}
	if f.Launches() != 4 || f.Calls("cuModuleLoadData") != 1 {
		t.Errorf("%d launches, %d module loads; want 4 and the kernels loaded once", f.Launches(), f.Calls("cuModuleLoadData"))
	}
	if !(CheckResult{Pages: 1, HostSampled: 1}).OK() || (CheckResult{GPUMismatches: 1}).OK() {
		t.Error("OK misreads mismatches")
	}
}

func TestErrors(t *testing.T) {
	r := cuda.PatternRange{Base: 1 << 40, Bytes: page, PageSize: page, Tag: 7}
	fill := func(v *Verifier) error { return v.Fill(0, r) }
	check := func(v *Verifier) error { _, err := v.Check(0, r); return err }
	spin := func(v *Verifier) error { return v.Spin(0, 1) }
	for _, c := range []struct {
		name string
		sym  string
		nth  int
		op   func(v *Verifier) error
	}{
		{"fill/load", "cuModuleLoadData", 1, fill},
		{"check/load", "cuModuleLoadData", 1, check},
		{"spin/load", "cuModuleLoadData", 1, spin},
		{"fill/launch", "cuLaunchKernel", 1, fill},
		{"check/launch", "cuLaunchKernel", 1, check},
		{"spin/launch", "cuLaunchKernel", 1, spin},
		{"check/counter", "cuMemcpyDtoH_v2", 1, check},
		{"check/host", "cuMemcpyDtoH_v2", 2, check},
		{"check/host-last", "cuMemcpyDtoH_v2", 3, check},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, _, v := onFake(t)
			f.Inject(c.sym, c.nth, cuda.CUDA_ERROR_LAUNCH_FAILED)
			if err := c.op(v); !failedIn(err, c.sym) {
				t.Errorf("%s failing: %v", c.sym, err)
			}
		})
	}
}

// A failing unload is reported; the rest of the kernels' memory is still
// freed, and a second Close has nothing left to do.
func TestCloseError(t *testing.T) {
	f, ctx, v := fakeVerifier(t, cudafake.Live{Modules: 1})
	if err := ctx.Do(v.Close); err != nil {
		t.Errorf("close before the kernels were loaded: %v", err)
	}
	if err := v.Spin(0, 1); err != nil {
		t.Fatal(err)
	}
	f.Inject("cuModuleUnload", 1, cuda.CUDA_ERROR_UNKNOWN)
	if err := ctx.Do(v.Close); !failedIn(err, "cuModuleUnload") {
		t.Errorf("failing unload: %v", err)
	}
	if err := ctx.Do(v.Close); err != nil {
		t.Errorf("second close: %v", err)
	}
}
