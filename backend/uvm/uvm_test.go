package uvm

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/backend/uvm/uvmfake"
	"github.com/vattn/vattn/cuda"
	"github.com/vattn/vattn/cuda/cudafake"
	"github.com/vattn/vattn/internal/cudatest"
	"github.com/vattn/vattn/ioctl"
	"github.com/vattn/vattn/pagesize"
)

const testFD = 6

// setup gives a backend on the fake CUDA driver and the fake module, with CUDA's
// va_space file at fd 6 and batches of at most maxBatch.
func setup(t *testing.T, maxBatch uint32) (*Backend, *cudafake.Fake, *uvmfake.Module) {
	t.Helper()
	fdDir(t, map[int]string{5: DevicePath, testFD: DevicePath})
	cf, lib := cudatest.Fake(t)
	fu := uvmfake.New(testFD, cf.GPUs[0].UUID, maxBatch)
	t.Cleanup(fu.Install())
	b, err := New(Options{Lib: lib})
	if err != nil {
		t.Fatal(err)
	}
	return b, cf, fu
}

// withPages reserves a region of regionPages pages on b and allocates n
// pages; it returns them and the page size.
func withPages(t *testing.T, b backend.Backend, regionPages uint64, n int) (backend.Region, []backend.PageID, uint64) {
	t.Helper()
	size := b.PageSize().Bytes()
	r, err := b.Reserve(regionPages * size)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := b.AllocPages(n)
	if err != nil {
		t.Fatal(err)
	}
	return r, ids, size
}

func closeClean(t *testing.T, b *Backend, cf *cudafake.Fake, fu *uvmfake.Module) {
	t.Helper()
	if err := b.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if p, m := fu.Live(); p != 0 || m != 0 {
		t.Errorf("after close the module holds %d pages, %d mappings", p, m)
	}
	if live := cf.Live(); live != (cudafake.Live{}) {
		t.Errorf("after close CUDA holds %s", live)
	}
}

func mapAll(r backend.Region, ids []backend.PageID, size uint64) []backend.Mapping {
	ms := make([]backend.Mapping, len(ids))
	for i, id := range ids {
		ms[i] = backend.Mapping{Addr: r.Addr + uint64(i)*size, Page: id}
	}
	return ms
}

func TestNewStockDriver(t *testing.T) {
	for _, errno := range []unix.Errno{unix.ENOSYS, unix.EINVAL} {
		fdDir(t, map[int]string{testFD: DevicePath})
		cf, lib := cudatest.Fake(t)
		fu := uvmfake.New(testFD, cf.GPUs[0].UUID, 16)
		fu.Errno = errno
		restore := fu.Install()
		_, err := New(Options{Lib: lib})
		restore()
		if !errors.Is(err, ErrNotPatched) || !errors.Is(err, backend.ErrUnavailable) || !strings.Contains(err.Error(), "vattnctl install-driver") || !strings.Contains(err.Error(), unix.ErrnoName(errno)) {
			t.Errorf("%v: %v", errno, err)
		}
		if live := cf.Live(); live != (cudafake.Live{}) {
			t.Errorf("%v: a refused backend left %s", errno, live)
		}
	}
}

func TestNewRefusals(t *testing.T) {
	fdDir(t, nil)
	cf, lib := cudatest.Fake(t)
	if _, err := New(Options{Lib: lib}); !errors.Is(err, backend.ErrUnavailable) || errors.Is(err, ErrNotPatched) {
		t.Errorf("no UVM file: %v", err)
	}
	if _, err := New(Options{Lib: lib, PageSize: 4096}); !errors.Is(err, pagesize.ErrUnsupported) {
		t.Errorf("4 KiB pages: %v", err)
	}
	if _, err := New(Options{Lib: lib, Device: "7"}); !errors.Is(err, cuda.ErrDeviceNotFound) {
		t.Errorf("GPU 7: %v", err)
	}
	fdDir(t, map[int]string{testFD: DevicePath})
	fu := uvmfake.New(testFD, [16]byte{1}, 16) // another GPU registered
	defer fu.Install()()
	if _, err := New(Options{Lib: lib}); !errors.Is(err, backend.ErrUnavailable) || !strings.Contains(err.Error(), "not registered") {
		t.Errorf("GPU not registered: %v", err)
	}
	if live := cf.Live(); live != (cudafake.Live{}) {
		t.Errorf("refusals left %s", live)
	}
}

func TestBatchesSplitAtMaxBatch(t *testing.T) {
	b, cf, fu := setup(t, 4)
	if b.MaxBatch() != 4 || b.FD() != testFD {
		t.Fatalf("max batch %d fd %d", b.MaxBatch(), b.FD())
	}
	r, ids, size := withPages(t, b, 16, 10)
	if got := fu.Counts(ioctl.UVM_VATTN_ALLOC); !slices.Equal(got, []uint32{4, 4, 2}) {
		t.Errorf("alloc batches %v", got)
	}
	if err := b.Map(mapAll(r, ids, size)); err != nil {
		t.Fatal(err)
	}
	if got := fu.Counts(ioctl.UVM_VATTN_MAP); !slices.Equal(got, []uint32{4, 4, 2}) {
		t.Errorf("map batches %v", got)
	}
	addrs := make([]uint64, 9)
	for i := range addrs {
		addrs[i] = r.Addr + uint64(i)*size
	}
	if err := b.Unmap(addrs, 0); err != nil {
		t.Fatal(err)
	}
	if got := fu.Counts(ioctl.UVM_VATTN_UNMAP); !slices.Equal(got, []uint32{4, 4, 1}) {
		t.Errorf("unmap batches %v", got)
	}
	if err := b.FreePages(ids[:9]); err != nil {
		t.Fatal(err)
	}
	if got := fu.Counts(ioctl.UVM_VATTN_FREE); !slices.Equal(got, []uint32{4, 4, 1}) {
		t.Errorf("free batches %v", got)
	}
	if rg, pg, mp := b.Held(); rg != 1 || pg != 1 || mp != 1 {
		t.Errorf("held %d %d %d", rg, pg, mp)
	}
	// Close with a page still mapped: RELEASE_RANGE frees it.
	closeClean(t, b, cf, fu)
	if got := fu.Counts(ioctl.UVM_VATTN_RELEASE_RANGE); len(got) != 1 {
		t.Errorf("release range calls %d", len(got))
	}
}

func TestAllocRollback(t *testing.T) {
	b, cf, fu := setup(t, 4)
	fu.FailNext(ioctl.UVM_VATTN_ALLOC, 2, ioctl.NV_ERR_NO_MEMORY, 0, 0)
	_, err := b.AllocPages(10)
	if !errors.Is(err, backend.ErrOutOfMemory) || !errors.Is(err, ioctl.NV_ERR_NO_MEMORY) {
		t.Fatalf("alloc: %v", err)
	}
	if p, _ := fu.Live(); p != 0 {
		t.Errorf("failed allocation left %d pages in the module", p)
	}
	if _, pg, _ := b.Held(); pg != 0 {
		t.Errorf("books hold %d pages", pg)
	}
	// Undo failing too: the pages it could not free stay in the books so Close frees them.
	fu.FailNext(ioctl.UVM_VATTN_ALLOC, 2, ioctl.NV_ERR_NO_MEMORY, 0, 0)
	fu.FailNext(ioctl.UVM_VATTN_FREE, 1, ioctl.NV_ERR_INVALID_ARGUMENT, 0, 1)
	if _, err := b.AllocPages(6); err == nil || !strings.Contains(err.Error(), "also failed") {
		t.Fatalf("alloc with failing undo: %v", err)
	}
	if _, pg, _ := b.Held(); pg != 3 {
		t.Errorf("books hold %d pages, want the 3 not freed", pg)
	}
	closeClean(t, b, cf, fu)
}

func TestMapRollback(t *testing.T) {
	b, cf, fu := setup(t, 4)
	r, ids, size := withPages(t, b, 16, 10)
	// The second MAP applies 1 entry and fails: 5 entries are mapped in the
	// module, and all must be undone.
	fu.FailNext(ioctl.UVM_VATTN_MAP, 2, ioctl.NV_ERR_NO_MEMORY, 0, 1)
	err := b.Map(mapAll(r, ids, size))
	if !errors.Is(err, backend.ErrOutOfMemory) {
		t.Fatalf("map: %v", err)
	}
	if _, m := fu.Live(); m != 0 {
		t.Errorf("failed map left %d mappings", m)
	}
	if got := fu.Counts(ioctl.UVM_VATTN_UNMAP); !slices.Equal(got, []uint32{4, 1}) {
		t.Errorf("undo batches %v", got)
	}
	if _, _, mp := b.Held(); mp != 0 {
		t.Errorf("books hold %d mappings", mp)
	}
	// The batch maps fine afterwards.
	if err := b.Map(mapAll(r, ids, size)); err != nil {
		t.Fatal(err)
	}
	// An undo that fails leaves the mappings it could not undo in the books.
	if err := b.Unmap([]uint64{r.Addr}, 0); err != nil {
		t.Fatal(err)
	}
	extra := []backend.Mapping{{Addr: r.Addr, Page: ids[0]}, {Addr: r.Addr + 10*size, Page: ids[0] + 1000}}
	if err := b.Map(extra); !errors.Is(err, backend.ErrUnknownPage) {
		t.Errorf("unknown page: %v", err)
	}
	more, err := b.AllocPages(1)
	if err != nil {
		t.Fatal(err)
	}
	extra[1].Page = more[0]
	fu.FailNext(ioctl.UVM_VATTN_MAP, 1, ioctl.NV_ERR_NO_MEMORY, 0, 1)
	fu.FailNext(ioctl.UVM_VATTN_UNMAP, 1, ioctl.NV_ERR_INVALID_ARGUMENT, 0, 0)
	if err := b.Map(extra); err == nil || !strings.Contains(err.Error(), "also failed") {
		t.Fatalf("map with failing undo: %v", err)
	}
	if _, _, mp := b.Held(); mp != 10 {
		t.Errorf("books hold %d mappings, want 10", mp)
	}
	closeClean(t, b, cf, fu)
}

func TestValidationBeforeDriver(t *testing.T) {
	b, cf, fu := setup(t, 16)
	r, ids, size := withPages(t, b, 4, 2)
	if r.Addr%size != 0 {
		t.Errorf("region %#x not aligned", r.Addr)
	}
	cases := []struct {
		maps []backend.Mapping
		want error
	}{
		{[]backend.Mapping{{Addr: r.Addr + 1, Page: ids[0]}}, backend.ErrMisaligned},
		{[]backend.Mapping{{Addr: r.End(), Page: ids[0]}}, backend.ErrOutOfRange},
		{[]backend.Mapping{{Addr: r.Addr, Page: ids[0]}, {Addr: r.Addr, Page: ids[1]}}, backend.ErrAlreadyMapped},
		{[]backend.Mapping{{Addr: r.Addr, Page: ids[0]}, {Addr: r.Addr + size, Page: ids[0]}}, backend.ErrAlreadyMapped},
		{[]backend.Mapping{{Addr: r.Addr, Page: 12345}}, backend.ErrUnknownPage},
	}
	for i, c := range cases {
		if err := b.Map(c.maps); !errors.Is(err, c.want) {
			t.Errorf("case %d: %v, want %v", i, err, c.want)
		}
	}
	if got := fu.Counts(ioctl.UVM_VATTN_MAP); len(got) != 0 {
		t.Errorf("invalid batches reached the driver: %v", got)
	}
	if err := b.Map([]backend.Mapping{{Addr: r.Addr, Page: ids[0]}}); err != nil {
		t.Fatal(err)
	}
	if err := b.FreePages([]backend.PageID{ids[0]}); !errors.Is(err, backend.ErrPageMapped) {
		t.Errorf("free mapped: %v", err)
	}
	if err := b.FreePages([]backend.PageID{ids[1], ids[1]}); !errors.Is(err, backend.ErrUnknownPage) {
		t.Errorf("free twice in a batch: %v", err)
	}
	if err := b.Unmap([]uint64{r.Addr + size}, 0); !errors.Is(err, backend.ErrNotMapped) {
		t.Errorf("unmap unmapped: %v", err)
	}
	if err := b.Unmap([]uint64{r.Addr + 3}, 0); !errors.Is(err, backend.ErrMisaligned) {
		t.Errorf("unmap misaligned: %v", err)
	}
	if err := b.Release(r); !errors.Is(err, backend.ErrRegionInUse) {
		t.Errorf("release in use: %v", err)
	}
	if _, err := b.Reserve(size + 1); !errors.Is(err, backend.ErrMisaligned) {
		t.Errorf("reserve misaligned: %v", err)
	}
	if _, err := b.Reserve(0); !errors.Is(err, backend.ErrBadArgument) {
		t.Errorf("reserve 0: %v", err)
	}
	if _, err := b.AllocPages(0); !errors.Is(err, backend.ErrBadArgument) {
		t.Errorf("alloc 0: %v", err)
	}
	if got := fu.Counts(ioctl.UVM_VATTN_FREE); len(got) != 0 {
		t.Errorf("invalid frees reached the driver: %v", got)
	}
	closeClean(t, b, cf, fu)
}

func TestDriverErrorsMap(t *testing.T) {
	b, cf, fu := setup(t, 16)
	r, ids, size := withPages(t, b, 4, 2)
	cases := []struct {
		st   ioctl.Status
		want error
	}{
		{ioctl.NV_ERR_UVM_ADDRESS_IN_USE, backend.ErrAlreadyMapped},
		{ioctl.NV_ERR_INVALID_OFFSET, backend.ErrMisaligned},
		{ioctl.NV_ERR_INVALID_ADDRESS, backend.ErrOutOfRange},
		{ioctl.NV_ERR_INVALID_STATE, backend.ErrOutOfRange},
		{ioctl.NV_ERR_INVALID_ARGUMENT, backend.ErrBadArgument},
		{ioctl.NV_ERR_INSUFFICIENT_RESOURCES, backend.ErrOutOfMemory},
		{ioctl.NV_ERR_OBJECT_NOT_FOUND, backend.ErrUnknownPage},
	}
	for _, c := range cases {
		fu.FailNext(ioctl.UVM_VATTN_MAP, 1, c.st, 0, 0)
		if err := b.Map([]backend.Mapping{{Addr: r.Addr, Page: ids[0]}}); !errors.Is(err, c.want) || !errors.Is(err, c.st) {
			t.Errorf("%v: %v", c.st.Name(), err)
		}
	}
	fu.FailNext(ioctl.UVM_VATTN_MAP, 1, 0, unix.ENOSYS, 0)
	if err := b.Map([]backend.Mapping{{Addr: r.Addr, Page: ids[0]}}); !errors.Is(err, ErrNotPatched) {
		t.Errorf("ENOSYS: %v", err)
	}
	fu.FailNext(ioctl.UVM_VATTN_MAP, 1, 0, unix.EAGAIN, 0)
	if err := b.Map([]backend.Mapping{{Addr: r.Addr, Page: ids[0]}}); !errors.Is(err, unix.EAGAIN) {
		t.Errorf("EAGAIN: %v", err)
	}
	if err := b.Map([]backend.Mapping{{Addr: r.Addr, Page: ids[0]}, {Addr: r.Addr + size, Page: ids[1]}}); err != nil {
		t.Fatal(err)
	}
	// A partial UNMAP: the first entry is gone, the books say so.
	fu.FailNext(ioctl.UVM_VATTN_UNMAP, 1, ioctl.NV_ERR_NO_MEMORY, 0, 1)
	if err := b.Unmap([]uint64{r.Addr, r.Addr + size}, 0); !errors.Is(err, backend.ErrOutOfMemory) || !strings.Contains(err.Error(), "1 unmapped") {
		t.Errorf("partial unmap: %v", err)
	}
	if _, _, mp := b.Held(); mp != 1 {
		t.Errorf("books hold %d mappings, want 1", mp)
	}
	if err := b.Unmap([]uint64{r.Addr + size}, 0); err != nil {
		t.Fatal(err)
	}
	fu.FailNext(ioctl.UVM_VATTN_FREE, 1, ioctl.NV_ERR_IN_USE, 0, 1)
	if err := b.FreePages(ids); !errors.Is(err, backend.ErrPageMapped) || !strings.Contains(err.Error(), "1 freed") {
		t.Errorf("partial free: %v", err)
	}
	if _, pg, _ := b.Held(); pg != 1 {
		t.Errorf("books hold %d pages, want 1", pg)
	}
	if err := b.Release(r); err != nil {
		t.Fatal(err)
	}
	closeClean(t, b, cf, fu)
}

func TestUnmapWaitsForFence(t *testing.T) {
	b, cf, fu := setup(t, 16)
	r, ids, _ := withPages(t, b, 1, 1)
	if err := b.Map([]backend.Mapping{{Addr: r.Addr, Page: ids[0]}}); err != nil {
		t.Fatal(err)
	}
	cf.Submit() // a kernel reading the page is running
	e, err := b.Fence().Record()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Unmap([]uint64{r.Addr}, e); !errors.Is(err, backend.ErrFenceNotReached) {
		t.Fatalf("unmap before the fence: %v", err)
	}
	if _, m := fu.Live(); m != 1 {
		t.Error("the refused unmap reached the driver")
	}
	cf.Complete()
	if err := b.Unmap([]uint64{r.Addr}, e); err != nil {
		t.Fatal(err)
	}
	closeClean(t, b, cf, fu)
}

func TestCloseErrorsAndClosed(t *testing.T) {
	b, cf, fu := setup(t, 16)
	r, ids, size := withPages(t, b, 2, 2)
	if err := b.Map([]backend.Mapping{{Addr: r.Addr, Page: ids[0]}}); err != nil {
		t.Fatal(err)
	}
	fu.FailNext(ioctl.UVM_VATTN_RELEASE_RANGE, 1, ioctl.NV_ERR_INVALID_ARGUMENT, 0, 0)
	cf.Inject("cuMemFree_v2", 1, cuda.CUDA_ERROR_UNKNOWN)
	err := b.Close()
	if !errors.Is(err, ioctl.NV_ERR_INVALID_ARGUMENT) || !strings.Contains(err.Error(), "cuMemFree") {
		t.Errorf("close: %v", err)
	}
	// The unmapped page was still freed, and the context released.
	if p, _ := fu.Live(); p != 1 {
		t.Errorf("module holds %d pages, want the 1 that stayed mapped", p)
	}
	if live := cf.Live(); live.Retains != 0 {
		t.Errorf("context still retained: %s", live)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if _, err := b.Reserve(size); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("reserve after close: %v", err)
	}
	if _, err := b.AllocPages(1); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("alloc after close: %v", err)
	}
	if err := b.Map(nil); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("map after close: %v", err)
	}
	if err := b.Unmap(nil, 0); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("unmap after close: %v", err)
	}
	if err := b.FreePages(nil); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("free after close: %v", err)
	}
	if err := b.Release(r); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("release after close: %v", err)
	}
}

func TestReserveAlignsAndReleases(t *testing.T) {
	b, cf, fu := setup(t, 16)
	size := b.PageSize().Bytes()
	cf.Inject("cuMemAllocManaged", 1, cuda.CUDA_ERROR_OUT_OF_MEMORY)
	if _, err := b.Reserve(size); !errors.Is(err, backend.ErrOutOfMemory) {
		t.Errorf("reserve out of memory: %v", err)
	}
	r, err := b.Reserve(3 * size)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Release(backend.Region{Addr: r.Addr, Size: size}); !errors.Is(err, backend.ErrOutOfRange) {
		t.Errorf("release wrong size: %v", err)
	}
	cf.Inject("cuMemFree_v2", 1, cuda.CUDA_ERROR_UNKNOWN)
	if err := b.Release(r); err == nil {
		t.Error("release with failing cuMemFree: no error")
	}
	if err := b.Release(r); err != nil {
		t.Fatal(err)
	}
	if mi, err := b.MemInfo(); err != nil || mi.Total == 0 {
		t.Errorf("meminfo %+v %v", mi, err)
	}
	closeClean(t, b, cf, fu)
}

// The pattern checks run on the default stream, and Fill waits for its kernel.
func TestPatternOnFake(t *testing.T) {
	b, cf, fu := setup(t, 16)
	r, ids, size := withPages(t, b, 3, 2)
	if err := b.Map(mapAll(r, ids, size)); err != nil {
		t.Fatal(err)
	}
	if err := b.Fill(r.Addr, 3*size, 1); !errors.Is(err, backend.ErrNotMapped) {
		t.Errorf("fill past the mapped pages: %v", err)
	}
	if res, err := b.Check(r.Addr+4096, size, 0, 1); !errors.Is(err, backend.ErrMisaligned) || res.Pages != 1 {
		t.Errorf("check misaligned: %+v %v", res, err)
	}
	syncs := cf.Calls("cuCtxSynchronize")
	if err := b.Fill(r.Addr, 2*size, 1); err != nil {
		t.Fatal(err)
	}
	if cf.Calls("cuCtxSynchronize") != syncs+1 {
		t.Error("fill did not wait for its kernel")
	}
	cf.Inject("cuCtxSynchronize", 1, cuda.CUDA_ERROR_LAUNCH_FAILED)
	if err := b.Fill(r.Addr, size, 1); !errors.Is(err, cuda.ErrLaunchFailed) || !strings.HasPrefix(err.Error(), "fill: ") {
		t.Errorf("fill whose kernel fails: %v", err)
	}
	// The fake holds no memory, so the host reads zeros: only word 0 of
	// page 0 matches with tag 0, and none from page 1 on.
	res, err := b.Check(r.Addr+size, size, 1, 0)
	if err != nil || res.Pages != 1 || res.HostSampled == 0 || res.HostMismatches != res.HostSampled {
		t.Errorf("check from page 1: %+v %v", res, err)
	}
	if res, err = b.Check(r.Addr, size, 0, 0); err != nil || res.HostMismatches != res.HostSampled-1 {
		t.Errorf("check from page 0: %+v %v", res, err)
	}
	closeClean(t, b, cf, fu)
	if err := b.Fill(r.Addr, size, 1); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("fill after close: %v", err)
	}
	if res, err := b.Check(r.Addr, 2*size, 0, 1); !errors.Is(err, backend.ErrClosed) || res.Pages != 2 {
		t.Errorf("check after close: %+v %v", res, err)
	}
}
