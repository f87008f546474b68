package uvm

import (
	"fmt"
	"testing"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/backend/uvm/stockfake"
	"github.com/vattn/vattn/cuda/cudafake"
	"github.com/vattn/vattn/internal/cudatest"
	"github.com/vattn/vattn/kvcache"
	"github.com/vattn/vattn/pagesize"
)

// The fixture of the stock path's tests (stock_test.go) and the batched
// path's (stock_batch_test.go): a backend on the fake CUDA driver and the
// fake RM and UVM, and the checks that its books match the driver.

// fakeSetup makes a backend for a test, with the fake drivers under it.
type fakeSetup func(t *testing.T) (*Stock, *cudafake.Fake, *stockfake.Driver)

// fakeStock gives a backend on the fake CUDA driver and on drv, which stands
// for RM and UVM, with 2 MiB chunks so that tests cross chunk boundaries
// cheaply.
func fakeStock(t *testing.T, ps pagesize.Size, drv StockDriver) (*Stock, *cudafake.Fake) {
	t.Helper()
	cf, lib := cudatest.Fake(t)
	b, err := NewStock(Options{Lib: lib, PageSize: ps, ChunkBytes: 2 << 20, StockDriver: drv})
	if err != nil {
		t.Fatal(err)
	}
	return b, cf
}

// stockSetup gives a backend on the stock path: the fake driver without the
// vattn module's commands.
func stockSetup(t *testing.T, ps pagesize.Size) (*Stock, *cudafake.Fake, *stockfake.Driver) {
	t.Helper()
	fd := stockfake.New()
	b, cf := fakeStock(t, ps, fd)
	return b, cf, fd
}

// batchedSetup gives a backend on the batched path: the fake driver with the
// vattn module's commands, max entries a call (0: the ABI's limit).
func batchedSetup(t *testing.T, ps pagesize.Size, max int) (*Stock, *cudafake.Fake, *stockfake.Driver) {
	t.Helper()
	fd := stockfake.New()
	b, cf := fakeStock(t, ps, stockfake.Batched{Driver: fd, Max: max})
	if b.Path() != PathBatched || b.Mode() != ModePatched {
		t.Fatalf("path %s mode %s, want batched", b.Path(), b.Mode())
	}
	return b, cf, fd
}

func stockClean(t *testing.T, b *Stock, cf *cudafake.Fake, fd *stockfake.Driver) {
	t.Helper()
	if err := b.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	assertNothingLeft(t, cf, fd)
}

func assertNothingLeft(t *testing.T, cf *cudafake.Fake, fd *stockfake.Driver) {
	t.Helper()
	if live := fd.Live(); live != (stockfake.Live{}) {
		t.Errorf("after close the driver holds %s", live)
	}
	if live := cf.Live(); live != (cudafake.Live{}) {
		t.Errorf("after close CUDA holds %s", live)
	}
}

// withPages reserves a region of regionPages pages and allocates n pages.
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

func mapAll(r backend.Region, ids []backend.PageID, size uint64) []backend.Mapping {
	ms := make([]backend.Mapping, len(ids))
	for i, id := range ids {
		ms[i] = backend.Mapping{Addr: r.Addr + uint64(i)*size, Page: id}
	}
	return ms
}

// checkBacking asserts that every mapping is where the fake driver has it:
// page id → chunk handle and slot offset.
func checkBacking(t *testing.T, b *Stock, fd *stockfake.Driver, maps []backend.Mapping) {
	t.Helper()
	for _, m := range maps {
		h, off, ok := fd.Backing(m.Addr)
		ch := b.chunks[uint32(m.Page>>32)]
		if !ok || ch == nil || h != ch.handle || off != uint64(uint32(m.Page))*b.size {
			t.Fatalf("page %#x at %#x: driver maps handle %#x offset %#x (mapped %v)", uint64(m.Page), m.Addr, h, off, ok)
		}
	}
}

// checkBooks asserts that the backend's books agree with the driver: every
// mapping it holds is one the backend knows, and the other way round.
func checkBooks(t *testing.T, b *Stock, fd *stockfake.Driver) {
	t.Helper()
	_, _, mapped := b.Held()
	if got := fd.Live().Mapped / b.size; got != uint64(mapped) {
		t.Errorf("driver maps %d pages, backend books %d (history %v)", got, mapped, fd.History())
	}
	for a, id := range b.mapped {
		checkBacking(t, b, fd, []backend.Mapping{{Addr: a, Page: id}})
	}
}

// stockScenario runs a backend through every kind of call, ignoring errors,
// as a caller that keeps going after failures would.
func stockScenario(b *Stock) {
	size := b.PageSize().Bytes()
	r1, _ := b.Reserve(64 * size)
	r2, err := b.Reserve(64 * size)
	ids, _ := b.AllocPages(40)
	if len(ids) == 40 && err == nil {
		var maps []backend.Mapping
		for i := range 20 {
			maps = append(maps, backend.Mapping{Addr: r1.Addr + uint64(i)*size, Page: ids[i]})
			maps = append(maps, backend.Mapping{Addr: r2.Addr + uint64(2*i)*size, Page: ids[20+i]})
		}
		_ = b.Map(maps)
		_ = b.Unmap([]uint64{r1.Addr, r1.Addr + size, r2.Addr}, 0)
		_ = b.FreePages(ids[30:])
	}
	_ = b.Release(r2)
}

// faultSweep fails each driver call of the scenario in turn, one subtest a
// call, on backends from setup: after every failure the books match the
// driver and Close leaves nothing behind.
func faultSweep(t *testing.T, setup fakeSetup) {
	b, cf, fd := setup(t)
	first := fd.Calls("")
	stockScenario(b)
	total := fd.Calls("")
	stockClean(t, b, cf, fd)
	for k := first + 1; k <= total; k++ {
		t.Run(fmt.Sprint(k), func(t *testing.T) {
			b, cf, fd := setup(t)
			fd.FailAt = k
			stockScenario(b)
			checkBooks(t, b, fd)
			fd.FailAt = 0
			if err := b.Close(); err != nil && k != total {
				t.Errorf("close: %v", err)
			}
			assertNothingLeft(t, cf, fd)
		})
	}
}

// cacheWithRequests gives a small model's kvcache over b, 64 MiB of pages
// reserved, with a request of 1000 + 100×i tokens in each of its 8 slots,
// not yet stepped; lens holds the requests' lengths by slot.
func cacheWithRequests(t *testing.T, b backend.Backend, mega bool) (c *kvcache.Cache, lens []int) {
	t.Helper()
	c, err := kvcache.New(kvcache.Config{Layers: 4, KVHeads: 2, HeadDim: 64, DTypeBytes: 2, MaxBatch: 8, MaxContext: 4096, Megacache: mega}, b)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ReservePhysical(64 << 20); err != nil {
		t.Fatal(err)
	}
	lens = make([]int, 8)
	for i := range lens {
		s, err := c.AllocBatchIdx(1000 + 100*i)
		if err != nil {
			t.Fatal(err)
		}
		lens[s] = 1000 + 100*i
	}
	return c, lens
}
