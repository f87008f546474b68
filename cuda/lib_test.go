package cuda_test

import (
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/cuda"
	"github.com/vattn/vattn/cuda/cudafake"
)

func newLib(t *testing.T, f *cudafake.Fake) *cuda.Lib {
	t.Helper()
	lib, err := cuda.NewLib(f.Driver(), "fake")
	if err != nil {
		t.Fatal(err)
	}
	return lib
}

func TestInitErrors(t *testing.T) {
	f := cudafake.New()
	f.InitResult = cuda.CUDA_ERROR_NO_DEVICE
	_, err := cuda.NewLib(f.Driver(), "/x/libcuda.so.1")
	var ce *cuda.Error
	if !errors.As(err, &ce) || ce.Call != "cuInit" || ce.Code != cuda.CUDA_ERROR_NO_DEVICE {
		t.Fatalf("init: %v", err)
	}
	if !errors.Is(err, cuda.ErrNoDevice) || !errors.Is(err, backend.ErrUnavailable) || errors.Is(err, cuda.ErrOutOfMemory) {
		t.Errorf("no-device error matches the wrong sentinels: %v", err)
	}
	for _, want := range []string{"cuInit", "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected", "/x/libcuda.so.1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message lacks %q: %v", want, err)
		}
	}

	f = cudafake.New()
	f.InitResult = cuda.CUDA_ERROR_INSUFFICIENT_DRIVER
	if _, err := cuda.NewLib(f.Driver(), "fake"); !errors.Is(err, cuda.ErrDriverTooOld) || !errors.Is(err, backend.ErrUnavailable) {
		t.Errorf("old driver: %v", err)
	}

	// A code the driver cannot name still reports its number.
	f = cudafake.New()
	f.InitResult = 12345
	if _, err := cuda.NewLib(f.Driver(), "fake"); err == nil || !strings.Contains(err.Error(), "CUresult 12345") {
		t.Errorf("unknown code: %v", err)
	}

	f = cudafake.New()
	f.Inject("cuDriverGetVersion", 1, cuda.CUDA_ERROR_UNKNOWN)
	if _, err := cuda.NewLib(f.Driver(), "fake"); err == nil || !strings.Contains(err.Error(), "cuDriverGetVersion") {
		t.Errorf("version failure: %v", err)
	}
}

func TestDevices(t *testing.T) {
	f := cudafake.New()
	f.GPUs = append(f.GPUs, cudafake.GPU{Name: "Second", UUID: cuda.UUID{0xab, 0xcd, 15: 0xef}, Major: 8})
	lib := newLib(t, f)
	if lib.DriverVersionString() != "13.0" {
		t.Errorf("driver version %q", lib.DriverVersionString())
	}
	devs, err := lib.Devices()
	if err != nil || len(devs) != 2 {
		t.Fatalf("devices: %v %v", devs, err)
	}
	if devs[1].Name != "Second" || devs[1].UUID != "GPU-abcd0000-0000-0000-0000-0000000000ef" || devs[1].ComputeMajor != 8 || !devs[1].VMM {
		t.Errorf("device 1: %+v", devs[1])
	}
	for sel, want := range map[string]int{"": 0, "1": 1, "GPU-abcd0000-0000-0000-0000-0000000000ef": 1, "ABCD0000-0000-0000-0000-0000000000EF": 1, devs[0].UUID: 0} {
		d, err := lib.SelectDevice(sel)
		if err != nil || d.Index != want {
			t.Errorf("select %q: %v %v", sel, d.Index, err)
		}
	}
	for _, sel := range []string{"2", "-1", "GPU-ffff", "nope"} {
		if _, err := lib.SelectDevice(sel); !errors.Is(err, cuda.ErrDeviceNotFound) {
			t.Errorf("select %q: %v", sel, err)
		}
	}
	f.Inject("cuDeviceGetUuid_v2", 1, cuda.CUDA_ERROR_INVALID_DEVICE)
	if _, err := lib.Devices(); !errors.Is(err, cuda.ErrInvalidDevice) {
		t.Errorf("uuid failure: %v", err)
	}
	f.Inject("cuDeviceGetCount", 1, cuda.CUDA_ERROR_NOT_INITIALIZED)
	if _, err := lib.Devices(); !errors.Is(err, cuda.ErrNotInitialized) {
		t.Errorf("count failure: %v", err)
	}
	f.GPUs = nil
	if _, err := lib.SelectDevice(""); !errors.Is(err, cuda.ErrNoDevice) || !errors.Is(err, backend.ErrUnavailable) {
		t.Errorf("no GPUs: %v", err)
	}
}

// TestContextThreads runs bound calls from many goroutines: each must find
// the context current on whatever thread it runs on.
func TestContextThreads(t *testing.T) {
	f := cudafake.New()
	lib := newLib(t, f)
	dev, err := lib.SelectDevice("0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := lib.Retain(dev)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 16 {
		wg.Go(func() {
			for range 50 {
				errs <- ctx.Do(func(b cuda.Bound) error {
					runtime.Gosched()
					_, _, err := b.MemGetInfo()
					return err
				})
			}
		})
	}
	go func() { wg.Wait(); close(errs) }()
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := ctx.Release(); err != nil {
		t.Fatal(err)
	}
	if err := ctx.Release(); err != nil {
		t.Errorf("second release: %v", err)
	}
	if err := ctx.Do(func(cuda.Bound) error { return nil }); !errors.Is(err, cuda.ErrContextReleased) {
		t.Errorf("Do after release: %v", err)
	}
	if live := f.Live(); live.Retains != 0 {
		t.Errorf("after release: %v", live)
	}
}

func TestRetainAndBoundErrors(t *testing.T) {
	f := cudafake.New()
	lib := newLib(t, f)
	dev, _ := lib.SelectDevice("0")
	f.Inject("cuDevicePrimaryCtxRetain", 1, cuda.CUDA_ERROR_OUT_OF_MEMORY)
	if _, err := lib.Retain(dev); !errors.Is(err, backend.ErrOutOfMemory) {
		t.Fatalf("retain: %v", err)
	}
	ctx, err := lib.Retain(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Release()
	f.Inject("cuCtxSetCurrent", 1, cuda.CUDA_ERROR_INVALID_CONTEXT)
	ran := false
	if err := ctx.Do(func(cuda.Bound) error { ran = true; return nil }); err == nil || ran {
		t.Errorf("Do ran after cuCtxSetCurrent failed: %v", err)
	}
	f.TotalMemory = 4 << 20
	err = ctx.Do(func(b cuda.Bound) error {
		prop := cuda.DeviceProp(dev.Device)
		h1, err := b.MemCreate(4<<20, &prop)
		if err != nil {
			return err
		}
		defer b.MemRelease(h1)
		_, err = b.MemCreate(2<<20, &prop)
		return err
	})
	var ce *cuda.Error
	if !errors.Is(err, backend.ErrOutOfMemory) || !errors.Is(err, cuda.ErrOutOfMemory) || !errors.As(err, &ce) || ce.Call != "cuMemCreate" {
		t.Errorf("out of memory: %v", err)
	}
	if !strings.Contains(err.Error(), "cuMemCreate: CUDA_ERROR_OUT_OF_MEMORY: out of memory") {
		t.Errorf("message: %v", err)
	}
	err = ctx.Do(func(b cuda.Bound) error {
		e, err := b.EventCreate(cuda.CU_EVENT_DISABLE_TIMING)
		if err != nil {
			return err
		}
		defer b.EventDestroy(e)
		f.Inject("cuEventQuery", 1, cuda.CUDA_ERROR_LAUNCH_FAILED)
		_, err = b.EventQuery(e)
		return err
	})
	if !errors.Is(err, cuda.ErrLaunchFailed) {
		t.Errorf("event query failure: %v", err)
	}
}

func TestKernelsOnFake(t *testing.T) {
	f := cudafake.New()
	lib := newLib(t, f)
	dev, _ := lib.SelectDevice("0")
	ctx, err := lib.Retain(dev)
	if err != nil {
		t.Fatal(err)
	}
	err = ctx.Do(func(b cuda.Bound) error {
		k, err := cuda.LoadKernels(b, dev.Device)
		if err != nil {
			return err
		}
		r := cuda.PatternRange{Base: 1 << 40, Bytes: 4 << 20, PageSize: 2 << 20, Page0: 3, Tag: 7}
		if err := k.Fill(b, 0, r); err != nil {
			return err
		}
		if n, err := k.Mismatches(b, 0, r); err != nil || n != 0 {
			t.Errorf("mismatches on the fake: %d %v", n, err)
		}
		if err := k.Spin(b, 0, 1000); err != nil {
			return err
		}
		bad := r
		bad.PageSize = 3 << 20
		if err := k.Fill(b, 0, bad); err == nil {
			t.Error("fill accepted a page size that is not a power of two")
		}
		return k.Close(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	if f.Launches() != 3 {
		t.Errorf("%d launches, want 3", f.Launches())
	}
	// A failure halfway through loading leaves nothing behind.
	f.Inject("cuMemSetAccess", 1, cuda.CUDA_ERROR_INVALID_VALUE)
	err = ctx.Do(func(b cuda.Bound) error {
		_, err := cuda.LoadKernels(b, dev.Device)
		return err
	})
	if !errors.Is(err, cuda.ErrInvalidValue) {
		t.Errorf("load with failing set-access: %v", err)
	}
	ctx.Release()
	if live := f.Live(); live != (cudafake.Live{}) {
		t.Errorf("left behind: %v", live)
	}
	if cuda.Pattern(3, 5, 0) != 3<<20|5 || cuda.Pattern(1, 0, 0xffffffff) != ^uint32(1<<20) {
		t.Error("pattern")
	}
}

// TestBoundErrors makes each bound call fail in the driver and checks the
// error names the C function that failed and carries its code.
func TestBoundErrors(t *testing.T) {
	f := cudafake.New()
	lib := newLib(t, f)
	dev, _ := lib.SelectDevice("0")
	ctx, err := lib.Retain(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Release()
	prop := cuda.DeviceProp(dev.Device)
	access := cuda.AccessDesc{Location: prop.Location, Flags: cuda.CU_MEM_ACCESS_FLAGS_PROT_READWRITE}
	buf := make([]byte, 8)
	calls := []struct {
		sym string
		do  func(b cuda.Bound) error
	}{
		{"cuMemGetInfo_v2", func(b cuda.Bound) error { _, _, err := b.MemGetInfo(); return err }},
		{"cuMemGetAllocationGranularity", func(b cuda.Bound) error { _, err := b.Granularity(&prop, 0); return err }},
		{"cuMemAddressReserve", func(b cuda.Bound) error { _, err := b.AddressReserve(2<<20, 0); return err }},
		{"cuMemAddressFree", func(b cuda.Bound) error { return b.AddressFree(1<<40, 2<<20) }},
		{"cuMemCreate", func(b cuda.Bound) error { _, err := b.MemCreate(2<<20, &prop); return err }},
		{"cuMemCreate", func(b cuda.Bound) error { var h cuda.MemHandle; return b.MemCreateAt(&h, 2<<20, &prop) }},
		{"cuMemRelease", func(b cuda.Bound) error { return b.MemRelease(1) }},
		{"cuMemMap", func(b cuda.Bound) error { return b.MemMap(1<<40, 2<<20, 1) }},
		{"cuMemUnmap", func(b cuda.Bound) error { return b.MemUnmap(1<<40, 2<<20) }},
		{"cuMemSetAccess", func(b cuda.Bound) error { return b.SetAccess(1<<40, 2<<20, &access) }},
		{"cuMemsetD32_v2", func(b cuda.Bound) error { return b.MemsetD32(1<<40, 0, 1) }},
		{"cuMemAllocManaged", func(b cuda.Bound) error { _, err := b.AllocManaged(2 << 20); return err }},
		{"cuMemFree_v2", func(b cuda.Bound) error { return b.MemFree(1 << 40) }},
		{"cuMemcpyDtoH_v2", func(b cuda.Bound) error { return b.CopyDtoH(buf, 1<<40) }},
		{"cuMemcpyHtoD_v2", func(b cuda.Bound) error { return b.CopyHtoD(1<<40, buf) }},
		{"cuStreamCreate", func(b cuda.Bound) error { _, err := b.StreamCreate(0); return err }},
		{"cuStreamDestroy_v2", func(b cuda.Bound) error { return b.StreamDestroy(1) }},
		{"cuStreamSynchronize", func(b cuda.Bound) error { return b.StreamSynchronize(0) }},
		{"cuCtxSynchronize", func(b cuda.Bound) error { return b.Synchronize() }},
		{"cuEventCreate", func(b cuda.Bound) error { _, err := b.EventCreate(0); return err }},
		{"cuEventRecord", func(b cuda.Bound) error { return b.EventRecord(1, 0) }},
		{"cuEventQuery", func(b cuda.Bound) error { _, err := b.EventQuery(1); return err }},
		{"cuEventSynchronize", func(b cuda.Bound) error { return b.EventSynchronize(1) }},
		{"cuEventDestroy_v2", func(b cuda.Bound) error { return b.EventDestroy(1) }},
		{"cuModuleLoadData", func(b cuda.Bound) error { _, err := b.ModuleLoadData([]byte("x")); return err }},
		{"cuModuleUnload", func(b cuda.Bound) error { return b.ModuleUnload(1) }},
		{"cuModuleGetFunction", func(b cuda.Bound) error { _, err := b.ModuleGetFunction(1, "f"); return err }},
		{"cuLaunchKernel", func(b cuda.Bound) error { return b.Launch(1, 1, 1, 0, 7) }},
	}
	for _, c := range calls {
		f.Inject(c.sym, 1, cuda.CUDA_ERROR_UNKNOWN)
		err := ctx.Do(c.do)
		var ce *cuda.Error
		if !errors.As(err, &ce) || ce.Call != c.sym || ce.Code != cuda.CUDA_ERROR_UNKNOWN || ce.Name != "CUDA_ERROR_UNKNOWN" {
			t.Errorf("%s failing: %v", c.sym, err)
		}
	}
	// Empty copies do not reach the driver.
	if err := ctx.Do(func(b cuda.Bound) error {
		return errors.Join(b.CopyDtoH(nil, 1<<40), b.CopyHtoD(1<<40, nil))
	}); err != nil || f.Calls("cuMemcpyDtoH_v2") != 1 || f.Calls("cuMemcpyHtoD_v2") != 1 {
		t.Errorf("empty copies: %v", err)
	}
}
