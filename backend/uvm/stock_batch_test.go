package uvm

import (
	"errors"
	"testing"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/cuda/cudafake"
	"github.com/vattn/vattn/internal/cudatest"
	"github.com/vattn/vattn/ioctl"
	"github.com/vattn/vattn/pagesize"

	"github.com/vattn/vattn/backend/uvm/stockfake"
)

func TestPathChoice(t *testing.T) {
	cf, lib := cudatest.Fake(t)
	// The stock driver: ModePatched is refused, ModeAuto takes the stock path.
	_, err := NewStock(Options{Lib: lib, Mode: ModePatched, StockDriver: stockfake.New()})
	if !errors.Is(err, ErrNotPatched) || !errors.Is(err, backend.ErrUnavailable) {
		t.Errorf("patched mode on the stock driver: %v", err)
	}
	b, err := Open(Options{Lib: lib, StockDriver: stockfake.New()})
	if err != nil || b.Path() != PathStock || b.Mode() != ModeStock {
		t.Fatalf("auto on the stock driver: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// The module: ModeAuto batches, ModeStock does not.
	fd := stockfake.New()
	b, err = Open(Options{Lib: lib, StockDriver: stockfake.Batched{Driver: fd}})
	if err != nil || b.Path() != PathBatched {
		t.Fatalf("auto on the module: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b, err = Open(Options{Lib: lib, Mode: ModeStock, StockDriver: stockfake.Batched{Driver: stockfake.New()}})
	if err != nil || b.Path() != PathStock {
		t.Fatalf("stock mode on the module: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if live := cf.Live(); live != (cudafake.Live{}) {
		t.Errorf("CUDA holds %s", live)
	}
}

// TestBatchedOneCallPerBatch: the same pages as TestStockRunsAreOneCallEach,
// one driver call per Map or Unmap, however scattered.
func TestBatchedOneCallPerBatch(t *testing.T) {
	b, cf, fd := batchedSetup(t, pagesize.Size64K, 0)
	stockMaps, stockUnmaps := fd.Calls(stockfake.OpMap), fd.Calls(stockfake.OpUnmap) // the open's path check
	r, ids, size := withPages(t, b, 64, 48)
	// Scattered: every page its own run.
	var maps []backend.Mapping
	for i, id := range ids {
		maps = append(maps, backend.Mapping{Addr: r.Addr + uint64(63-i)*size, Page: id})
	}
	if err := b.Map(maps); err != nil {
		t.Fatal(err)
	}
	if n := fd.Calls(stockfake.OpMapBatch); n != 1 {
		t.Errorf("48 scattered pages took %d batched calls, want 1", n)
	}
	checkBacking(t, b, fd, maps)
	var addrs []uint64
	for i := 0; i < 48; i += 3 {
		addrs = append(addrs, maps[i].Addr)
	}
	if err := b.Unmap(addrs, 0); err != nil {
		t.Fatal(err)
	}
	c := b.Calls()
	if c.MapCalls != 1 || c.MapPages != 48 || c.UnmapCalls != 1 || c.UnmapPages != 16 {
		t.Errorf("calls %+v", c)
	}
	if fd.Calls(stockfake.OpUnmapBatch) != 1 || fd.Calls(stockfake.OpUnmap) != stockUnmaps || fd.Calls(stockfake.OpMap) != stockMaps {
		t.Errorf("unmap calls: %v", fd.History())
	}
	if got := fd.Live().Mapped / size; got != 32 {
		t.Errorf("driver maps %d pages, want 32", got)
	}
	stockClean(t, b, cf, fd)
}

// TestBatchedSplitsAtMaxBatch: more runs than one call takes go in several
// calls; a failed later call undoes the earlier ones (all or nothing).
func TestBatchedSplitsAtMaxBatch(t *testing.T) {
	b, cf, fd := batchedSetup(t, pagesize.Size64K, 2)
	r, ids, size := withPages(t, b, 16, 5)
	var maps []backend.Mapping
	for i, id := range ids {
		maps = append(maps, backend.Mapping{Addr: r.Addr + uint64(3*i)*size, Page: id})
	}
	fd.FailOp, fd.FailAt, fd.FailStatus = stockfake.OpMapBatch, 3, ioctl.NV_ERR_NO_MEMORY
	if err := b.Map(maps); !errors.Is(err, backend.ErrOutOfMemory) && !errors.Is(err, ioctl.NV_ERR_NO_MEMORY) {
		t.Errorf("third call failing: %v", err)
	}
	if got := fd.Live().Mapped; got != 0 {
		t.Errorf("a failed Map left %d bytes mapped", got)
	}
	if _, _, m := b.Held(); m != 0 {
		t.Errorf("books hold %d mapped pages", m)
	}
	fd.FailAt = 0
	if err := b.Map(maps); err != nil {
		t.Fatal(err)
	}
	if n := fd.Calls(stockfake.OpMapBatch); n != 6 {
		t.Errorf("%d batched map calls, want 3 + 3", n)
	}
	checkBacking(t, b, fd, maps)
	stockClean(t, b, cf, fd)
}

// TestBatchedFaultSweep: the stock path's sweep over the batched path.
func TestBatchedFaultSweep(t *testing.T) {
	faultSweep(t, func(t *testing.T) (*Stock, *cudafake.Fake, *stockfake.Driver) {
		return batchedSetup(t, pagesize.Size64K, 3)
	})
}

// TestBatchedUnderKVCache: the allocator over the batched path makes one
// driver call per Map and per Unmap it issues.
func TestBatchedUnderKVCache(t *testing.T) {
	b, cf, fd := batchedSetup(t, pagesize.Size64K, 0)
	c, lens := cacheWithRequests(t, b, false)
	for range 200 {
		for i := range lens {
			lens[i] += 3
		}
		before := b.Calls().MapCalls
		if err := c.Step(lens); err != nil {
			t.Fatal(err)
		}
		if n := b.Calls().MapCalls - before; n > 1 {
			t.Fatalf("a step made %d map calls, want at most 1", n)
		}
	}
	if st := b.Calls(); st.MapPages < 8*st.MapCalls {
		t.Errorf("%d pages in %d calls", st.MapPages, st.MapCalls)
	}
	checkBooks(t, b, fd)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	stockClean(t, b, cf, fd)
}
