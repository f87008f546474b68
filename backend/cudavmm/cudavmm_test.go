package cudavmm

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/backend/internal/gpumem"
	"github.com/vattn/vattn/cuda"
	"github.com/vattn/vattn/cuda/cudafake"
	"github.com/vattn/vattn/internal/cudatest"
	"github.com/vattn/vattn/pagesize"
)

const mib2 = 2 << 20

func newFake(t *testing.T, opts Options) (*Backend, *cudafake.Fake) {
	t.Helper()
	f, lib := cudatest.Fake(t)
	opts.Lib = lib
	b, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if live := f.Live(); live != (cudafake.Live{}) {
			t.Errorf("after Close the driver still holds %v", live)
		}
	})
	return b, f
}

func TestNewErrors(t *testing.T) {
	f, lib := cudatest.Fake(t)
	if _, err := New(Options{Lib: lib, PageSize: pagesize.Size64K}); !errors.Is(err, pagesize.ErrUnsupported) ||
		!strings.Contains(err.Error(), "2MiB") || !strings.Contains(err.Error(), "64KiB") {
		t.Errorf("64k pages: %v", err)
	}
	if _, err := New(Options{Lib: lib, Device: "3"}); !errors.Is(err, cuda.ErrDeviceNotFound) {
		t.Errorf("device 3: %v", err)
	}
	f.Inject("cuMemGetAllocationGranularity", 1, cuda.CUDA_ERROR_NOT_SUPPORTED)
	if _, err := New(Options{Lib: lib}); !errors.Is(err, cuda.ErrNotSupported) {
		t.Errorf("granularity failure: %v", err)
	}
	f.GPUs[0].NoVMM = true
	if _, err := New(Options{Lib: lib}); !errors.Is(err, backend.ErrUnavailable) {
		t.Errorf("no VMM: %v", err)
	}
	if live := f.Live(); live != (cudafake.Live{}) {
		t.Errorf("failed New left %v", live)
	}
	f.GPUs[0].NoVMM = false
	b, err := New(Options{Lib: lib, Device: cuda.FormatUUID(f.GPUs[0].UUID)})
	if err != nil || b.Device().Index != 0 {
		t.Fatalf("select by UUID: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if live := f.Live(); live != (cudafake.Live{}) {
		t.Errorf("after Close: %v", live)
	}
}

func TestReserveRelease(t *testing.T) {
	b, f := newFake(t, Options{})
	if b.Name() != "cudavmm" || b.PageSize() != pagesize.Size2M || b.Access() != AccessPerRun {
		t.Fatal("identity")
	}
	if _, err := b.Reserve(0); !errors.Is(err, backend.ErrBadArgument) {
		t.Errorf("reserve 0: %v", err)
	}
	if _, err := b.Reserve(mib2 + 4096); !errors.Is(err, backend.ErrMisaligned) {
		t.Errorf("reserve misaligned: %v", err)
	}
	f.Inject("cuMemAddressReserve", 1, cuda.CUDA_ERROR_OUT_OF_MEMORY)
	if _, err := b.Reserve(mib2); !errors.Is(err, backend.ErrOutOfMemory) {
		t.Errorf("reserve failure: %v", err)
	}
	r1, err := b.Reserve(4 * mib2)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := b.Reserve(mib2)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Release(backend.Region{Addr: r1.Addr, Size: mib2}); !errors.Is(err, backend.ErrOutOfRange) {
		t.Errorf("release wrong size: %v", err)
	}
	pages, _ := b.AllocPages(1)
	if err := b.Map([]backend.Mapping{{Addr: r1.Addr + 3*mib2, Page: pages[0]}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Release(r1); !errors.Is(err, backend.ErrRegionInUse) {
		t.Errorf("release with a mapped page: %v", err)
	}
	f.Inject("cuMemAddressFree", 1, cuda.CUDA_ERROR_INVALID_VALUE)
	if err := b.Release(r2); !errors.Is(err, cuda.ErrInvalidValue) {
		t.Errorf("release failure: %v", err)
	}
	if err := b.Release(r2); err != nil {
		t.Errorf("release after a failed one: %v", err)
	}
	if err := b.Release(r2); !errors.Is(err, backend.ErrOutOfRange) {
		t.Errorf("double release: %v", err)
	}
	if regions, _, _ := b.Held(); regions != 1 {
		t.Errorf("%d regions held", regions)
	}
}

func TestAllocFree(t *testing.T) {
	b, f := newFake(t, Options{})
	if _, err := b.AllocPages(0); !errors.Is(err, backend.ErrBadArgument) {
		t.Errorf("alloc 0: %v", err)
	}
	f.Inject("cuMemCreate", 3, cuda.CUDA_ERROR_OUT_OF_MEMORY)
	if _, err := b.AllocPages(5); !errors.Is(err, backend.ErrOutOfMemory) {
		t.Errorf("alloc with OOM: %v", err)
	}
	if live := f.Live(); live.Handles != 0 {
		t.Errorf("failed alloc left %d handles", live.Handles)
	}
	f.TotalMemory = 3 * mib2
	if _, err := b.AllocPages(4); !errors.Is(err, backend.ErrOutOfMemory) || f.Live().Handles != 0 {
		t.Errorf("alloc past memory: %v, %d handles", err, f.Live().Handles)
	}
	ids, err := b.AllocPages(3)
	if err != nil || len(ids) != 3 {
		t.Fatal(err)
	}
	mi, err := b.MemInfo()
	if err != nil || mi.Total != 3*mib2 || mi.Free != 0 {
		t.Errorf("meminfo %+v %v", mi, err)
	}
	r, _ := b.Reserve(mib2)
	if err := b.Map([]backend.Mapping{{Addr: r.Addr, Page: ids[2]}}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		ids  []backend.PageID
		want error
	}{
		{[]backend.PageID{ids[0], 99}, backend.ErrUnknownPage},
		{[]backend.PageID{ids[0], ids[0]}, backend.ErrUnknownPage},
		{[]backend.PageID{ids[0], ids[2]}, backend.ErrPageMapped},
	} {
		if err := b.FreePages(bad.ids); !errors.Is(err, bad.want) {
			t.Errorf("free %v: %v", bad.ids, err)
		}
	}
	if _, pages, _ := b.Held(); pages != 3 {
		t.Fatalf("a rejected free changed the pages: %d", pages)
	}
	f.Inject("cuMemRelease", 2, cuda.CUDA_ERROR_INVALID_HANDLE)
	if err := b.FreePages(ids[:2]); !errors.Is(err, cuda.ErrInvalidHandle) {
		t.Errorf("free with a driver failure: %v", err)
	}
	if _, pages, _ := b.Held(); pages != 2 {
		t.Errorf("after a half-failed free: %d pages, want 2 (the failed one kept)", pages)
	}
	if err := b.FreePages(ids[1:2]); err != nil {
		t.Errorf("free the page that failed before: %v", err)
	}
}

func TestMapValidation(t *testing.T) {
	b, f := newFake(t, Options{})
	r, _ := b.Reserve(8 * mib2)
	ids, _ := b.AllocPages(4)
	if err := b.Map([]backend.Mapping{{Addr: r.Addr, Page: ids[0]}}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		maps []backend.Mapping
		want error
	}{
		{"misaligned", []backend.Mapping{{Addr: r.Addr + mib2 + 4096, Page: ids[1]}}, backend.ErrMisaligned},
		{"outside", []backend.Mapping{{Addr: r.End(), Page: ids[1]}}, backend.ErrOutOfRange},
		{"below", []backend.Mapping{{Addr: r.Addr - mib2, Page: ids[1]}}, backend.ErrOutOfRange},
		{"address taken", []backend.Mapping{{Addr: r.Addr + mib2, Page: ids[1]}, {Addr: r.Addr, Page: ids[2]}}, backend.ErrAlreadyMapped},
		{"page mapped", []backend.Mapping{{Addr: r.Addr + mib2, Page: ids[0]}}, backend.ErrAlreadyMapped},
		{"address twice", []backend.Mapping{{Addr: r.Addr + mib2, Page: ids[1]}, {Addr: r.Addr + mib2, Page: ids[2]}}, backend.ErrAlreadyMapped},
		{"page twice", []backend.Mapping{{Addr: r.Addr + mib2, Page: ids[1]}, {Addr: r.Addr + 2*mib2, Page: ids[1]}}, backend.ErrAlreadyMapped},
		{"unknown page", []backend.Mapping{{Addr: r.Addr + mib2, Page: 999}}, backend.ErrUnknownPage},
	}
	calls := f.Calls("cuMemMap")
	for _, c := range cases {
		if err := b.Map(c.maps); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	if f.Calls("cuMemMap") != calls {
		t.Error("a rejected batch reached the driver")
	}
	if _, _, mapped := b.Held(); mapped != 1 {
		t.Errorf("%d mapped after rejected batches", mapped)
	}
	if err := b.Map(nil); err != nil {
		t.Errorf("empty batch: %v", err)
	}
}

// TestMapAllOrNothing fails each driver call of a batch in turn: the batch
// leaves nothing mapped, and the same batch succeeds afterwards.
func TestMapAllOrNothing(t *testing.T) {
	for _, mode := range []AccessMode{AccessPerRun, AccessPerPage} {
		for _, fail := range []struct {
			sym string
			nth int
		}{{"cuMemMap", 1}, {"cuMemMap", 3}, {"cuMemMap", 5}, {"cuMemSetAccess", 1}, {"cuMemSetAccess", 2}} {
			t.Run(mode.String()+"/"+fail.sym, func(t *testing.T) {
				b, f := newFake(t, Options{Access: mode})
				r, _ := b.Reserve(16 * mib2)
				ids, _ := b.AllocPages(5)
				// Two runs: pages 0-2 and 5-6.
				maps := []backend.Mapping{
					{Addr: r.Addr + 6*mib2, Page: ids[4]}, {Addr: r.Addr, Page: ids[0]}, {Addr: r.Addr + mib2, Page: ids[1]},
					{Addr: r.Addr + 2*mib2, Page: ids[2]}, {Addr: r.Addr + 5*mib2, Page: ids[3]},
				}
				f.Inject(fail.sym, fail.nth, cuda.CUDA_ERROR_OUT_OF_MEMORY)
				err := b.Map(maps)
				if !errors.Is(err, backend.ErrOutOfMemory) {
					t.Fatalf("map with failing %s #%d: %v", fail.sym, fail.nth, err)
				}
				if addrs, _ := f.Mapped(); len(addrs) != 0 {
					t.Fatalf("failed batch left %d mappings in the driver", len(addrs))
				}
				if _, _, mapped := b.Held(); mapped != 0 {
					t.Fatalf("failed batch left %d mappings in the books", mapped)
				}
				if err := b.Map(maps); err != nil {
					t.Fatalf("retry: %v", err)
				}
				addrs, access := f.Mapped()
				if len(addrs) != 5 {
					t.Fatalf("%d mapped", len(addrs))
				}
				for i, a := range access {
					if !a {
						t.Errorf("page at %#x mapped without access", addrs[i])
					}
				}
			})
		}
	}
}

func TestAccessCalls(t *testing.T) {
	for _, c := range []struct {
		mode AccessMode
		want int
	}{{AccessPerRun, 3}, {AccessPerPage, 7}} {
		b, f := newFake(t, Options{Access: c.mode})
		r1, _ := b.Reserve(8 * mib2)
		r2, _ := b.Reserve(8 * mib2)
		ids, _ := b.AllocPages(7)
		// Runs: r1 pages 0-3, r1 page 5, r2 pages 0-1 (a run never crosses regions).
		var maps []backend.Mapping
		for i, a := range []uint64{r1.Addr, r1.Addr + mib2, r1.Addr + 2*mib2, r1.Addr + 3*mib2, r1.Addr + 5*mib2, r2.Addr, r2.Addr + mib2} {
			maps = append(maps, backend.Mapping{Addr: a, Page: ids[i]})
		}
		before := f.Calls("cuMemSetAccess")
		if err := b.Map(maps); err != nil {
			t.Fatal(err)
		}
		if n := f.Calls("cuMemSetAccess") - before; n != c.want {
			t.Errorf("%s mode: %d cuMemSetAccess calls, want %d", c.mode, n, c.want)
		}
	}
}

func TestUnmapAndFence(t *testing.T) {
	b, f := newFake(t, Options{})
	r, _ := b.Reserve(4 * mib2)
	ids, _ := b.AllocPages(2)
	if err := b.Map([]backend.Mapping{{Addr: r.Addr, Page: ids[0]}, {Addr: r.Addr + mib2, Page: ids[1]}}); err != nil {
		t.Fatal(err)
	}
	fence := b.Fence()
	if fence.Completed() != 0 {
		t.Fatal("fresh fence has completed work")
	}
	f.Submit() // a kernel reading the pages
	e1, err := fence.Record()
	if err != nil || e1 != 1 {
		t.Fatalf("record: %d %v", e1, err)
	}
	if fence.Completed() != 0 {
		t.Fatal("pending work reported complete")
	}
	if err := b.Unmap([]uint64{r.Addr}, e1); !errors.Is(err, backend.ErrFenceNotReached) {
		t.Fatalf("unmap before the fence: %v", err)
	}
	if _, _, mapped := b.Held(); mapped != 2 {
		t.Fatal("a refused unmap changed the mappings")
	}
	e2, _ := fence.Record() // no new work: completes with e1
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	if err := fence.Wait(ctx, e2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait on pending work: %v", err)
	}
	if err := fence.Wait(context.Background(), e2+1); err == nil {
		t.Fatal("waiting for an unrecorded epoch succeeded")
	}
	done := make(chan error)
	go func() { done <- fence.Wait(context.Background(), e2) }()
	time.Sleep(2 * time.Millisecond)
	f.Complete()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if fence.Completed() != e2 {
		t.Fatalf("completed %d, want %d", fence.Completed(), e2)
	}
	for _, bad := range [][]uint64{{r.Addr + 2*mib2}, {r.Addr, r.Addr}, {r.Addr + 4096}} {
		if err := b.Unmap(bad, e2); err == nil {
			t.Errorf("unmap %v succeeded", bad)
		}
	}
	if _, _, mapped := b.Held(); mapped != 2 {
		t.Fatal("a rejected unmap changed the mappings")
	}
	if err := b.Unmap([]uint64{r.Addr, r.Addr + mib2}, e2); err != nil {
		t.Fatal(err)
	}
	if addrs, _ := f.Mapped(); len(addrs) != 0 {
		t.Fatal("driver still has mappings")
	}
	// Pages are reusable at once, elsewhere.
	if err := b.Map([]backend.Mapping{{Addr: r.Addr + 3*mib2, Page: ids[0]}}); err != nil {
		t.Fatal(err)
	}
	// Events are pooled: many records on a completed stream create few.
	created := f.Calls("cuEventCreate")
	for range 100 {
		e, err := fence.Record()
		if err != nil {
			t.Fatal(err)
		}
		if fence.Completed() != e {
			t.Fatal("idle stream: epoch not complete")
		}
	}
	if n := f.Calls("cuEventCreate") - created; n > 1 {
		t.Errorf("%d events created for 100 records on an idle stream", n)
	}
}

func TestFenceErrors(t *testing.T) {
	b, f := newFake(t, Options{})
	fence := b.Fence()
	f.Inject("cuEventCreate", 1, cuda.CUDA_ERROR_OUT_OF_MEMORY)
	if _, err := fence.Record(); !errors.Is(err, backend.ErrOutOfMemory) {
		t.Errorf("record with failing create: %v", err)
	}
	f.Inject("cuEventRecord", 1, cuda.CUDA_ERROR_INVALID_HANDLE)
	if _, err := fence.Record(); !errors.Is(err, cuda.ErrInvalidHandle) {
		t.Errorf("record with failing record: %v", err)
	}
	f.Submit()
	e, err := fence.Record()
	if err != nil || e != 1 {
		t.Fatalf("record after failures: %d %v", e, err)
	}
	// A fault in the work: the query fails, and the epoch never completes.
	f.Inject("cuEventQuery", 1, cuda.CUDA_ERROR_LAUNCH_FAILED)
	if fence.Completed() != 0 {
		t.Error("faulted work completed")
	}
	f.Complete()
	if err := fence.Wait(context.Background(), e); !errors.Is(err, cuda.ErrLaunchFailed) {
		t.Errorf("wait after a fault: %v", err)
	}
	if _, err := fence.Record(); !errors.Is(err, cuda.ErrLaunchFailed) {
		t.Errorf("record after a fault: %v", err)
	}
}

func TestCloseReleasesEverything(t *testing.T) {
	b, f := newFake(t, Options{})
	r, _ := b.Reserve(64 * mib2)
	if _, err := b.Reserve(2 * mib2); err != nil {
		t.Fatal(err)
	}
	ids, _ := b.AllocPages(40)
	var maps []backend.Mapping
	for i, id := range ids[:30] {
		maps = append(maps, backend.Mapping{Addr: r.Addr + uint64(2*i)*mib2, Page: id})
	}
	if err := b.Map(maps); err != nil {
		t.Fatal(err)
	}
	f.Submit()
	if _, err := b.Fence().Record(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if live := f.Live(); live != (cudafake.Live{}) {
		t.Fatalf("after Close: %v", live)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if _, err := b.Reserve(mib2); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("reserve after close: %v", err)
	}
	if _, err := b.AllocPages(1); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("alloc after close: %v", err)
	}
	if err := b.Map(maps[:1]); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("map after close: %v", err)
	}
	if err := b.Unmap([]uint64{r.Addr}, 0); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("unmap after close: %v", err)
	}
	if err := b.FreePages(ids[:1]); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("free after close: %v", err)
	}
	if err := b.Release(r); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("release after close: %v", err)
	}
}

func TestCloseKeepsGoingOnErrors(t *testing.T) {
	f, lib := cudatest.Fake(t)
	b, err := New(Options{Lib: lib})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := b.Reserve(4 * mib2)
	ids, _ := b.AllocPages(2)
	if err := b.Map([]backend.Mapping{{Addr: r.Addr, Page: ids[0]}}); err != nil {
		t.Fatal(err)
	}
	f.Inject("cuMemRelease", 1, cuda.CUDA_ERROR_UNKNOWN)
	err = b.Close()
	if err == nil || !strings.Contains(err.Error(), "cuMemRelease") {
		t.Fatalf("close with a failing release: %v", err)
	}
	// One handle stays (its release failed); everything else went.
	live := f.Live()
	if live.Handles != 1 || live.Mappings != 0 || live.Reservations != 0 || live.Retains != 0 {
		t.Fatalf("after a failed close: %v", live)
	}
}

// TestMegacacheShape maps the way kvcache's megacache layout does: one K and
// one V range spanning all layers, a request's page index touching one page
// per range, with page reuse across slots.
func TestMegacacheShape(t *testing.T) {
	b, f := newFake(t, Options{})
	const slots, pagesPerSlot = 8, 4
	k, _ := b.Reserve(slots * pagesPerSlot * mib2)
	v, _ := b.Reserve(slots * pagesPerSlot * mib2)
	ids, _ := b.AllocPages(2 * pagesPerSlot)
	slotMaps := func(slot int) []backend.Mapping {
		var maps []backend.Mapping
		for p := range pagesPerSlot {
			off := uint64(slot*pagesPerSlot+p) * mib2
			maps = append(maps, backend.Mapping{Addr: k.Addr + off, Page: ids[2*p]}, backend.Mapping{Addr: v.Addr + off, Page: ids[2*p+1]})
		}
		return maps
	}
	for slot := range slots {
		maps := slotMaps(slot)
		if err := b.Map(maps); err != nil {
			t.Fatalf("slot %d: %v", slot, err)
		}
		f.Submit()
		e, _ := b.Fence().Record()
		f.Complete()
		var addrs []uint64
		for _, m := range maps {
			addrs = append(addrs, m.Addr)
		}
		if err := b.Unmap(addrs, e); err != nil {
			t.Fatalf("slot %d: %v", slot, err)
		}
	}
	if f.Calls("cuMemSetAccess") != 2*slots {
		t.Errorf("%d set-access calls for %d slots: runs are not merged per range", f.Calls("cuMemSetAccess"), slots)
	}
}

// TestConcurrentFence polls the fence from another goroutine while the
// owner maps and unmaps (run with -race).
func TestConcurrentFence(t *testing.T) {
	b, f := newFake(t, Options{})
	r, _ := b.Reserve(16 * mib2)
	ids, _ := b.AllocPages(16)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				b.Fence().Completed()
			}
		}
	})
	for round := range 20 {
		var maps []backend.Mapping
		var addrs []uint64
		for i, id := range ids {
			maps = append(maps, backend.Mapping{Addr: r.Addr + uint64(i)*mib2, Page: id})
			addrs = append(addrs, r.Addr+uint64(i)*mib2)
		}
		if err := b.Map(maps); err != nil {
			t.Fatal(round, err)
		}
		f.Submit()
		e, err := b.Fence().Record()
		if err != nil {
			t.Fatal(err)
		}
		f.Complete()
		if err := b.Fence().Wait(context.Background(), e); err != nil {
			t.Fatal(err)
		}
		if err := b.Unmap(addrs, e); err != nil {
			t.Fatal(round, err)
		}
	}
	close(stop)
	wg.Wait()
}

func TestPatternOnFake(t *testing.T) {
	b, f := newFake(t, Options{})
	r, _ := b.Reserve(4 * mib2)
	ids, _ := b.AllocPages(2)
	if err := b.Fill(r.Addr, 2*mib2, 1); !errors.Is(err, backend.ErrNotMapped) {
		t.Errorf("fill unmapped: %v", err)
	}
	if _, err := b.Check(r.Addr+4096, mib2, 1); !errors.Is(err, backend.ErrMisaligned) {
		t.Errorf("check misaligned: %v", err)
	}
	if err := b.Map([]backend.Mapping{{Addr: r.Addr, Page: ids[0]}, {Addr: r.Addr + mib2, Page: ids[1]}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Fill(r.Addr, 2*mib2, 1); err != nil {
		t.Fatal(err)
	}
	if err := b.Spin(100); err != nil {
		t.Fatal(err)
	}
	// The fake holds no memory: host reads come back zero, so the check
	// must report mismatches (it is not vacuous).
	res, err := b.Check(r.Addr, 2*mib2, 1)
	if err != nil {
		t.Fatal(err)
	}
	if res.Pages != 2 || res.HostSampled != 2*2*gpumem.HostSampleWords || res.HostMismatches == 0 || res.OK() {
		t.Errorf("check on the fake: %+v", res)
	}
	if f.Launches() != 3 {
		t.Errorf("%d launches", f.Launches())
	}
}

// TestStalePageID: an ID freed and whose slot a new page took names nothing.
func TestStalePageID(t *testing.T) {
	b, _ := newFake(t, Options{})
	old, _ := b.AllocPages(1)
	if err := b.FreePages(old); err != nil {
		t.Fatal(err)
	}
	fresh, _ := b.AllocPages(1)
	if fresh[0] == old[0] {
		t.Fatal("a freed ID was handed out again")
	}
	r, _ := b.Reserve(mib2)
	if err := b.Map([]backend.Mapping{{Addr: r.Addr, Page: old[0]}}); !errors.Is(err, backend.ErrUnknownPage) {
		t.Errorf("map a stale ID: %v", err)
	}
	if err := b.FreePages(old); !errors.Is(err, backend.ErrUnknownPage) {
		t.Errorf("free a stale ID: %v", err)
	}
	for _, bad := range []backend.PageID{0, 1 << 32, 99} {
		if err := b.FreePages([]backend.PageID{bad}); !errors.Is(err, backend.ErrUnknownPage) {
			t.Errorf("free ID %#x: %v", bad, err)
		}
	}
	if err := b.FreePages(fresh); err != nil {
		t.Fatal(err)
	}
}

// TestCloseReportsEventFailures: a failing cuEventDestroy is reported and
// the rest is still released.
func TestCloseReportsEventFailures(t *testing.T) {
	f, lib := cudatest.Fake(t)
	b, err := New(Options{Lib: lib})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Fence().Record(); err != nil {
		t.Fatal(err)
	}
	r, _ := b.Reserve(mib2)
	ids, _ := b.AllocPages(1)
	if err := b.Map([]backend.Mapping{{Addr: r.Addr, Page: ids[0]}}); err != nil {
		t.Fatal(err)
	}
	f.Inject("cuEventDestroy_v2", 1, cuda.CUDA_ERROR_INVALID_HANDLE)
	if err := b.Close(); !errors.Is(err, cuda.ErrInvalidHandle) || !strings.Contains(err.Error(), "destroy events") {
		t.Fatalf("close: %v", err)
	}
	live := f.Live()
	if live.Events != 1 || live.Mappings+live.Handles+live.Reservations+live.Retains != 0 {
		t.Errorf("after close: %v", live)
	}
}

// TestContextFailures: when the context cannot be made current, every call
// fails with the driver's error and changes nothing.
func TestContextFailures(t *testing.T) {
	b, f := newFake(t, Options{})
	r, _ := b.Reserve(2 * mib2)
	empty, _ := b.Reserve(mib2)
	ids, _ := b.AllocPages(2)
	if err := b.Map([]backend.Mapping{{Addr: r.Addr, Page: ids[0]}}); err != nil {
		t.Fatal(err)
	}
	calls := map[string]func() error{
		"reserve": func() error { _, err := b.Reserve(mib2); return err },
		"release": func() error { return b.Release(empty) },
		"alloc":   func() error { _, err := b.AllocPages(1); return err },
		"free":    func() error { return b.FreePages(ids[1:]) },
		"map":     func() error { return b.Map([]backend.Mapping{{Addr: r.Addr + mib2, Page: ids[1]}}) },
		"unmap":   func() error { return b.Unmap([]uint64{r.Addr}, 0) },
		"meminfo": func() error { _, err := b.MemInfo(); return err },
		"record":  func() error { _, err := b.Fence().Record(); return err },
		"fill":    func() error { return b.Fill(r.Addr, mib2, 1) },
		"spin":    func() error { return b.Spin(1) },
	}
	for name, call := range calls {
		f.Inject("cuCtxSetCurrent", 1, cuda.CUDA_ERROR_INVALID_CONTEXT)
		if err := call(); err == nil || !strings.Contains(err.Error(), "cuCtxSetCurrent") {
			t.Errorf("%s with no context: %v", name, err)
		}
	}
	if regions, pages, mapped := b.Held(); regions != 2 || pages != 2 || mapped != 1 {
		t.Errorf("failed calls changed the books: %d regions, %d pages, %d mapped", regions, pages, mapped)
	}
}
