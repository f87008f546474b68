package uvm

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/backend/uvm/stockfake"
	"github.com/vattn/vattn/cuda"
	"github.com/vattn/vattn/cuda/cudafake"
	"github.com/vattn/vattn/internal/cudatest"
	"github.com/vattn/vattn/ioctl"
	"github.com/vattn/vattn/ioctl/branch"
	"github.com/vattn/vattn/pagesize"
)

func TestStockRunsAreOneCallEach(t *testing.T) {
	b, cf, fd := stockSetup(t, pagesize.Size64K)
	r, ids, size := withPages(t, b, 64, 48) // 32 pages per 2 MiB chunk: two chunks
	if c := b.Calls(); c.Chunks != 2 || c.ChunkBytes != 4<<20 {
		t.Fatalf("48 pages in %d chunks of %d bytes", c.Chunks, c.ChunkBytes)
	}
	// Ascending pages at ascending addresses: one run per chunk.
	var maps []backend.Mapping
	for i, id := range ids {
		maps = append(maps, backend.Mapping{Addr: r.Addr + uint64(i)*size, Page: id})
	}
	// Handed over in reverse order: the backend sorts.
	rev := make([]backend.Mapping, len(maps))
	for i := range maps {
		rev[i] = maps[len(maps)-1-i]
	}
	if err := b.Map(rev); err != nil {
		t.Fatal(err)
	}
	if n := b.Calls().MapCalls; n != 2 {
		t.Errorf("48 contiguous pages over two chunks took %d map calls, want 2", n)
	}
	checkBacking(t, b, fd, maps)
	// Unmap a run that spans both chunks, and a split of the first run.
	var addrs []uint64
	for i := 20; i < 40; i++ {
		addrs = append(addrs, r.Addr+uint64(i)*size)
	}
	if err := b.Unmap(addrs, 0); err != nil {
		t.Fatal(err)
	}
	if n := b.Calls().UnmapCalls; n != 1 {
		t.Errorf("20 consecutive addresses took %d unmap calls, want 1", n)
	}
	// Scattered: every other address is its own run.
	if err := b.Unmap([]uint64{r.Addr, r.Addr + 2*size, r.Addr + 4*size}, 0); err != nil {
		t.Fatal(err)
	}
	if n := b.Calls().UnmapCalls; n != 4 {
		t.Errorf("three scattered pages: %d unmap calls in all, want 4", n)
	}
	c := b.Calls()
	if c.MapCalls != 2 || c.MapPages != 48 || c.UnmapCalls != 4 || c.UnmapPages != 23 {
		t.Errorf("calls %+v", c)
	}
	// Map the freed pages elsewhere, scattered: one call each.
	before := fd.Calls(stockfake.OpMap)
	remap := []backend.Mapping{{Addr: r.Addr + 50*size, Page: maps[0].Page}, {Addr: r.Addr + 52*size, Page: maps[2].Page}}
	if err := b.Map(remap); err != nil {
		t.Fatal(err)
	}
	if n := fd.Calls(stockfake.OpMap) - before; n != 2 {
		t.Errorf("two scattered pages took %d calls", n)
	}
	checkBacking(t, b, fd, remap)
	stockClean(t, b, cf, fd)
}

func TestStockPageSizes(t *testing.T) {
	for _, ps := range pagesize.All() {
		t.Run(ps.Short(), func(t *testing.T) {
			cf, lib := cudatest.Fake(t)
			fd := stockfake.New()
			b, err := NewStock(Options{Lib: lib, PageSize: ps, StockDriver: fd})
			if err != nil {
				t.Fatal(err)
			}
			r, ids, size := withPages(t, b, 8, 8)
			if r.Addr%(2<<20) != 0 {
				t.Errorf("region at %#x: not 2 MiB aligned", r.Addr)
			}
			maps := mapAll(r, ids, size)
			if err := b.Map(maps); err != nil {
				t.Fatal(err)
			}
			checkBacking(t, b, fd, maps)
			if b.Calls().MapCalls != 1 {
				t.Errorf("%d map calls", b.Calls().MapCalls)
			}
			// 8 pages make one chunk, rounded up to 2 MiB.
			if c := b.Calls(); c.Chunks != 1 || c.ChunkBytes != max(2<<20, 8*ps.Bytes()) {
				t.Errorf("%d chunks of %d bytes", c.Chunks, c.ChunkBytes)
			}
			stockClean(t, b, cf, fd)
		})
	}
}

func TestStockRefusals(t *testing.T) {
	cf, lib := cudatest.Fake(t)
	fd := stockfake.New()
	if _, err := NewStock(Options{Lib: lib, PageSize: 4096, StockDriver: fd}); !errors.Is(err, pagesize.ErrUnsupported) {
		t.Errorf("4 KiB pages: %v", err)
	}
	if _, err := NewStock(Options{Lib: lib, ChunkBytes: 3 << 20, StockDriver: fd}); !errors.Is(err, backend.ErrBadArgument) {
		t.Errorf("3 MiB chunks: %v", err)
	}
	if _, err := NewStock(Options{Lib: lib, Device: "GPU-00000000-0000-0000-0000-000000000000", StockDriver: fd}); !errors.Is(err, cuda.ErrDeviceNotFound) {
		t.Errorf("wrong UUID: %v", err)
	}
	if _, err := Open(Options{Lib: lib, Mode: "fast"}); !errors.Is(err, backend.ErrBadArgument) {
		t.Errorf("mode fast: %v", err)
	}
	cf.GPUs[0].Major = 5
	if _, err := NewStock(Options{Lib: lib, StockDriver: fd}); !errors.Is(err, backend.ErrUnavailable) || !strings.Contains(err.Error(), "Pascal") {
		t.Errorf("Maxwell: %v", err)
	}
	cf.GPUs[0].Major = 9
	// No UVM file in the process (no fake driver given): unavailable, and
	// the context is released.
	fdDir(t, nil)
	if _, err := NewStock(Options{Lib: lib}); !errors.Is(err, backend.ErrUnavailable) {
		t.Errorf("no UVM file: %v", err)
	}
	if fd.Calls("") != 0 {
		t.Errorf("refusals called the driver %d times", fd.Calls(""))
	}
	assertNothingLeft(t, cf, fd)
}

// TestStockChecksThePath: NewStock maps one page and unmaps it before it
// hands the backend out, and leaves nothing of that behind; when the driver
// refuses, NewStock fails and releases everything, whatever call failed.
func TestStockChecksThePath(t *testing.T) {
	b, cf, fd := stockSetup(t, pagesize.Size64K)
	if fd.Calls(stockfake.OpMap) != 1 || fd.Calls(stockfake.OpUnmap) != 1 || fd.Live() != (stockfake.Live{}) {
		t.Errorf("the check made %v and left %s", fd.History(), fd.Live())
	}
	if c := b.Calls(); c.MapCalls != 0 || c.Chunks != 0 {
		t.Errorf("the check shows in the backend's counts: %+v", c)
	}
	stockClean(t, b, cf, fd)
	for _, op := range []string{stockfake.OpCreateRange, stockfake.OpAllocVidmem, stockfake.OpMap, stockfake.OpUnmap, stockfake.OpFreeVidmem, stockfake.OpFreeRange} {
		t.Run(op, func(t *testing.T) {
			cf, lib := cudatest.Fake(t)
			fd := stockfake.New()
			fd.FailOp, fd.FailAt, fd.FailStatus = op, 1, ioctl.NV_ERR_INVALID_DEVICE
			if _, err := NewStock(Options{Lib: lib, StockDriver: fd}); !errors.Is(err, ioctl.NV_ERR_INVALID_DEVICE) {
				t.Errorf("NewStock with %s failing: %v", op, err)
			}
			dl, cl := fd.Live(), cf.Live()
			if op == stockfake.OpFreeRange {
				// UVM still covers the addresses: they stay reserved
				// until the process ends, rather than be reused under it.
				if dl.Ranges != 1 || cl.Reservations != 1 {
					t.Errorf("a range UVM kept: driver %s, CUDA %s", dl, cl)
				}
				dl.Ranges, cl.Reservations = 0, 0
			}
			if dl != (stockfake.Live{}) {
				t.Errorf("driver holds %s", dl)
			}
			if cl != (cudafake.Live{}) {
				t.Errorf("CUDA holds %s", cl)
			}
		})
	}
}

// testFD is the fd tests give CUDA's va_space file.
const testFD = 6

// TestStockUnknownBranch: a driver branch with no ABI table is refused as
// unsupported before any RM or UVM file is touched, and nothing is left.
func TestStockUnknownBranch(t *testing.T) {
	fdDir(t, map[int]string{testFD: DevicePath})
	defer ioctl.SetRawIoctl(func(_ int, cmd uint32, _ unsafe.Pointer) unix.Errno {
		if cmd == ioctl.UVM_PAGEABLE_MEM_ACCESS {
			return 0 // fd 6 is CUDA's va_space file
		}
		return unix.ENOSYS
	})()
	old := driverVersion
	driverVersion = func() (string, error) { return "999.1.2", nil }
	defer func() { driverVersion = old }()
	cf, lib := cudatest.Fake(t)
	_, err := NewStock(Options{Lib: lib})
	if !errors.Is(err, branch.ErrUnknownBranch) || !errors.Is(err, backend.ErrUnavailable) || !strings.Contains(err.Error(), "999.1.2") {
		t.Fatalf("unknown branch: %v", err)
	}
	if live := cf.Live(); live != (cudafake.Live{}) {
		t.Errorf("left %s", live)
	}
}

func TestStockChecksBeforeCalling(t *testing.T) {
	b, cf, fd := stockSetup(t, pagesize.Size64K)
	r, ids, size := withPages(t, b, 8, 4)
	if err := b.Map([]backend.Mapping{{Addr: r.Addr, Page: ids[0]}}); err != nil {
		t.Fatal(err)
	}
	calls := fd.Calls("")
	cases := []struct {
		name string
		err  error
		want error
	}{
		{"map misaligned", b.Map([]backend.Mapping{{Addr: r.Addr + size + 4096, Page: ids[1]}}), backend.ErrMisaligned},
		{"map outside", b.Map([]backend.Mapping{{Addr: r.End(), Page: ids[1]}}), backend.ErrOutOfRange},
		{"map over mapped", b.Map([]backend.Mapping{{Addr: r.Addr, Page: ids[1]}}), backend.ErrAlreadyMapped},
		{"map mapped page", b.Map([]backend.Mapping{{Addr: r.Addr + size, Page: ids[0]}}), backend.ErrAlreadyMapped},
		{"map page twice", b.Map([]backend.Mapping{{Addr: r.Addr + size, Page: ids[1]}, {Addr: r.Addr + 2*size, Page: ids[1]}}), backend.ErrAlreadyMapped},
		{"map address twice", b.Map([]backend.Mapping{{Addr: r.Addr + size, Page: ids[1]}, {Addr: r.Addr + size, Page: ids[2]}}), backend.ErrAlreadyMapped},
		{"map unknown page", b.Map([]backend.Mapping{{Addr: r.Addr + size, Page: 77}}), backend.ErrUnknownPage},
		{"map unknown slot", b.Map([]backend.Mapping{{Addr: r.Addr + size, Page: ids[0] + 1000}}), backend.ErrUnknownPage},
		{"map free slot", b.Map([]backend.Mapping{{Addr: r.Addr + size, Page: ids[3] + 1}}), backend.ErrUnknownPage},
		{"unmap unmapped", b.Unmap([]uint64{r.Addr + size}, 0), backend.ErrNotMapped},
		{"unmap twice", b.Unmap([]uint64{r.Addr, r.Addr}, 0), backend.ErrNotMapped},
		{"unmap misaligned", b.Unmap([]uint64{r.Addr + 1}, 0), backend.ErrMisaligned},
		{"unmap before fence", b.Unmap([]uint64{r.Addr}, 5), backend.ErrFenceNotReached},
		{"free mapped", b.FreePages([]backend.PageID{ids[0]}), backend.ErrPageMapped},
		{"free twice", b.FreePages([]backend.PageID{ids[1], ids[1]}), backend.ErrUnknownPage},
		{"free unknown", b.FreePages([]backend.PageID{ids[3] + 1}), backend.ErrUnknownPage},
		{"release in use", b.Release(r), backend.ErrRegionInUse},
		{"release unknown", b.Release(backend.Region{Addr: r.Addr + size, Size: size}), backend.ErrOutOfRange},
		{"reserve misaligned", func() error { _, err := b.Reserve(size + 4096); return err }(), backend.ErrMisaligned},
		{"reserve zero", func() error { _, err := b.Reserve(0); return err }(), backend.ErrBadArgument},
		{"alloc zero", func() error { _, err := b.AllocPages(0); return err }(), backend.ErrBadArgument},
	}
	for _, c := range cases {
		if !errors.Is(c.err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, c.err, c.want)
		}
	}
	if n := fd.Calls(""); n != calls {
		t.Errorf("refused calls reached the driver: %d calls, %d before", n, calls)
	}
	if _, _, m := b.Held(); m != 1 {
		t.Errorf("%d mapped after refusals", m)
	}
	stockClean(t, b, cf, fd)
	if _, err := b.AllocPages(1); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("after close: %v", err)
	}
}

func TestStockOutOfMemory(t *testing.T) {
	b, cf, fd := stockSetup(t, pagesize.Size64K)
	fd.Limit = 5 << 20 // two 2 MiB chunks and change
	if _, err := b.AllocPages(40); err != nil {
		t.Fatal(err)
	}
	before := fd.Live()
	_, err := b.AllocPages(100) // needs four more chunks; one fits
	if !errors.Is(err, backend.ErrOutOfMemory) || !errors.Is(err, ioctl.NV_ERR_NO_MEMORY) {
		t.Fatalf("over the limit: %v", err)
	}
	if after := fd.Live(); after != before {
		t.Errorf("failed allocation left %s, before %s", after, before)
	}
	if _, p, _ := b.Held(); p != 40 {
		t.Errorf("%d pages held after a failed allocation, want 40", p)
	}
	// The 24 free slots of the second chunk are still usable.
	if _, err := b.AllocPages(24); err != nil {
		t.Fatal(err)
	}
	if c := b.Calls(); c.Chunks != 2 {
		t.Errorf("%d chunks", c.Chunks)
	}
	stockClean(t, b, cf, fd)
}

func TestStockFreeGivesChunksBack(t *testing.T) {
	b, cf, fd := stockSetup(t, pagesize.Size128K)
	ids, err := b.AllocPages(40) // 16 per chunk: three chunks
	if err != nil {
		t.Fatal(err)
	}
	if err := b.FreePages(ids[:20]); err != nil {
		t.Fatal(err)
	}
	if c := b.Calls(); c.Chunks != 2 {
		t.Errorf("after freeing the first chunk's pages and part of the second: %d chunks, want 2", c.Chunks)
	}
	// New pages fill the oldest chunk's free slots first.
	more, err := b.AllocPages(4)
	if err != nil {
		t.Fatal(err)
	}
	if more[0] != ids[16] {
		t.Errorf("new page %#x, want the second chunk's first free slot %#x", uint64(more[0]), uint64(ids[16]))
	}
	if err := b.FreePages(append(ids[20:], more...)); err != nil {
		t.Fatal(err)
	}
	if live := fd.Live(); live != (stockfake.Live{}) {
		t.Errorf("every page freed, driver holds %s", live)
	}
	stockClean(t, b, cf, fd)
}

// TestStockUnmapAllOrNothing: a driver failure on a later run of an Unmap
// batch maps the earlier runs back, so the caller's books (kvcache's slots)
// stay true and a retry of the same batch works.
func TestStockUnmapAllOrNothing(t *testing.T) {
	b, cf, fd := stockSetup(t, pagesize.Size64K)
	r, ids, size := withPages(t, b, 16, 8)
	maps := mapAll(r, ids, size)
	if err := b.Map(maps); err != nil {
		t.Fatal(err)
	}
	// Three runs: pages 0-1, 3-4, 6-7.
	addrs := []uint64{r.Addr, r.Addr + size, r.Addr + 3*size, r.Addr + 4*size, r.Addr + 6*size, r.Addr + 7*size}
	fd.FailOp, fd.FailAt, fd.FailStatus = stockfake.OpUnmap, fd.Calls(stockfake.OpUnmap)+2, ioctl.NV_ERR_INVALID_ARGUMENT
	if err := b.Unmap(addrs, 0); !errors.Is(err, ioctl.NV_ERR_INVALID_ARGUMENT) {
		t.Fatalf("unmap with its second run failing: %v", err)
	}
	if _, _, m := b.Held(); m != 8 {
		t.Errorf("%d pages mapped after a failed unmap, want all 8", m)
	}
	checkBacking(t, b, fd, maps)
	fd.FailAt = 0
	if err := b.Unmap(addrs, 0); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if _, _, m := b.Held(); m != 2 {
		t.Errorf("%d pages mapped after the retry, want 2", m)
	}
	stockClean(t, b, cf, fd)
}

// TestStockFaultSweep fails each driver call of the scenario in turn (and
// CUDA's address calls) and checks that Close leaves nothing behind and that
// the books match the driver after every failure.
func TestStockFaultSweep(t *testing.T) {
	faultSweep(t, func(t *testing.T) (*Stock, *cudafake.Fake, *stockfake.Driver) {
		return stockSetup(t, pagesize.Size64K)
	})
	for _, sym := range []string{"cuMemAddressReserve", "cuMemAddressFree"} {
		t.Run(sym, func(t *testing.T) {
			b, cf, fd := stockSetup(t, pagesize.Size64K)
			cf.Inject(sym, 1, cuda.CUDA_ERROR_OUT_OF_MEMORY)
			stockScenario(b)
			err := b.Close()
			if live := fd.Live(); live != (stockfake.Live{}) {
				t.Errorf("after close the driver holds %s", live)
			}
			live := cf.Live()
			if sym == "cuMemAddressFree" {
				// The one reservation CUDA refused to free is reported; it
				// goes with the context.
				if err == nil || live.Reservations != 1 {
					t.Errorf("close: %v; CUDA holds %s", err, live)
				}
				live.Reservations = 0
			}
			if live != (cudafake.Live{}) {
				t.Errorf("after close CUDA holds %s", live)
			}
		})
	}
}

// TestStockUnderKVCache runs the allocator over the stock backend, checking
// that growing slots maps runs (calls per step well under pages per step)
// and that every page lands where the driver says.
func TestStockUnderKVCache(t *testing.T) {
	for _, mega := range []bool{false, true} {
		t.Run(fmt.Sprintf("megacache=%v", mega), func(t *testing.T) {
			b, cf, fd := stockSetup(t, pagesize.Size64K)
			c, lens := cacheWithRequests(t, b, mega)
			if err := c.Step(lens); err != nil {
				t.Fatal(err)
			}
			st := b.Calls()
			if st.MapPages == 0 || st.MapCalls*2 > st.MapPages {
				t.Errorf("prefill mapped %d pages in %d calls: no runs", st.MapPages, st.MapCalls)
			}
			checkBooks(t, b, fd)
			for range 300 {
				for i := range lens {
					lens[i]++
				}
				if err := c.StepAsync(lens); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			stockClean(t, b, cf, fd)
		})
	}
}
