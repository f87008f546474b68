// Package devicetest holds the device tests that every GPU backend must
// pass, written once: the whole allocator (kvcache) over a backend on a real
// GPU, with data written and read back by GPU kernels, fences waited for,
// reclaim, out of pages and background mapping. The backends' own
// -tags gpu tests call it (scripts/gpu-build.sh builds them), so cudavmm at
// 2 MiB and the stock nvidia-uvm path at 64 KiB are held to the same test.
package devicetest

import (
	"errors"
	"testing"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/backend/internal/gpumem"
	"github.com/vattn/vattn/kvcache"
)

// Backend is a GPU backend with what the tests need beside backend.Backend.
type Backend interface {
	backend.Backend
	// Fill writes a per-page pattern over mapped [addr, addr+size).
	Fill(addr, size uint64, tag uint32) error
	// Check verifies what Fill wrote there.
	Check(addr, size uint64, tag uint32) (gpumem.CheckResult, error)
	// Spin keeps the fence's stream busy for cycles GPU clocks.
	Spin(cycles uint64) error
	// Held counts regions, pages and mappings still held.
	Held() (regions, pages, mapped int)
}

// Llama3 is Llama-3-8B's KV shape (32 layers, 8 KV heads of 128, fp16).
func Llama3(batch, ctx int, mega bool) kvcache.Config {
	return kvcache.Config{Layers: 32, KVHeads: 8, HeadDim: 128, DTypeBytes: 2, MaxBatch: batch, MaxContext: ctx, Megacache: mega}
}

// slotData writes (or checks) page indexes [from, to) of slot s in every
// range of c, tagging each range's data differently.
func slotData(t *testing.T, b Backend, c *kvcache.Cache, s, from, to int, owner uint32, write bool) {
	t.Helper()
	l := c.Layout()
	page := b.PageSize().Bytes()
	for r, rg := range c.Ranges() {
		base := rg.Addr + uint64(s)*l.SlotBytes + uint64(from)*page
		size := uint64(to-from) * page
		tag := owner | uint32(r)<<24
		if write {
			if err := b.Fill(base, size, tag); err != nil {
				t.Fatalf("fill slot %d range %d: %v", s, r, err)
			}
			continue
		}
		res, err := b.Check(base, size, tag)
		if err != nil || !res.OK() {
			t.Fatalf("slot %d range %d indexes %d-%d, owner %#x: %+v %v", s, r, from, to, owner, res, err)
		}
	}
}

func mappedIndexes(c *kvcache.Cache, s int) int { return c.Slots()[s].MappedIndex }

// KVCache runs the allocator over b on the GPU: two requests write their
// pages and read them back; one ends while a kernel runs and the other grows
// into its pages (the cache must wait for the fence); a step past the pool
// fails with ErrOutOfPages and works after more is reserved; StepAsync maps
// the next index in the background while a kernel runs; Shrink gives the
// idle pages back; Close leaves nothing in b. b stays open for the caller.
func KVCache(t *testing.T, b Backend, cfg kvcache.Config) {
	page := b.PageSize().Bytes()
	c, err := kvcache.New(cfg, b)
	if err != nil {
		t.Fatal(err)
	}
	l := c.Layout()
	ppi, tpi := l.PagesPerIndex, max(l.TokensPerPage, 1)
	t.Logf("%s pages: %d ranges, %d pages per index, %d tokens per page", b.PageSize(), l.Ranges, ppi, l.TokensPerPage)
	if l.TokensPerPage == 0 || l.IndexesPerSlot < 6 || cfg.MaxBatch < 3 {
		t.Fatalf("layout %+v: the test needs whole tokens per page, 6 indexes per slot and 3 slots", l)
	}
	if err := c.ReservePhysical(uint64(4*ppi) * page); err != nil {
		t.Fatal(err)
	}
	lens := make([]int, cfg.MaxBatch)
	a, err := c.AllocBatchIdx(2 * tpi)
	if err != nil {
		t.Fatal(err)
	}
	o, err := c.AllocBatchIdx(2 * tpi)
	if err != nil {
		t.Fatal(err)
	}
	lens[a], lens[o] = 2*tpi, 2*tpi
	if err := c.Step(lens); err != nil {
		t.Fatal(err)
	}
	if mappedIndexes(c, a) != 2 || mappedIndexes(c, o) != 2 || c.Stats().FreePages != 0 {
		t.Fatalf("after the first step: %+v", c.Stats())
	}
	slotData(t, b, c, a, 0, 2, 0xa, true)
	slotData(t, b, c, o, 0, 2, 0xb, true)
	slotData(t, b, c, a, 0, 2, 0xa, false)
	slotData(t, b, c, o, 0, 2, 0xb, false)

	// Slot a's request ends while a kernel still runs; slot o then grows by
	// two indexes, which needs a's pages. The cache must wait for the GPU.
	if err := b.Spin(1_000_000_000); err != nil {
		t.Fatal(err)
	}
	e0, err := b.Fence().Record()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.FreeBatchIdx(a); err != nil {
		t.Fatal(err)
	}
	lens[a], lens[o] = 0, 4*tpi
	if err := c.Step(lens); err != nil {
		t.Fatal(err)
	}
	if done := b.Fence().Completed(); done < e0 {
		t.Fatalf("a's pages were reused while the kernel ran: completed %d < %d", done, e0)
	}
	st := c.Stats()
	if st.FenceWaits == 0 || st.ReclaimedPages != uint64(2*ppi) || mappedIndexes(c, a) != 0 || mappedIndexes(c, o) != 4 {
		t.Fatalf("after reclaiming: waits %d reclaimed %d, slot a %d slot o %d indexes", st.FenceWaits, st.ReclaimedPages, mappedIndexes(c, a), mappedIndexes(c, o))
	}
	// The new owner's data, in a's old pages, and its own first pages.
	slotData(t, b, c, o, 2, 4, 0xc, true)
	slotData(t, b, c, o, 0, 2, 0xb, false)
	slotData(t, b, c, o, 2, 4, 0xc, false)

	// Out of pages: a typed error, and the cache still works.
	n, err := c.AllocBatchIdx(tpi)
	if err != nil {
		t.Fatal(err)
	}
	lens[n] = tpi
	if err := c.Step(lens); !errors.Is(err, kvcache.ErrOutOfPages) {
		t.Fatalf("step past the pool: %v", err)
	}
	if err := c.ReservePhysical(uint64(2*ppi) * page); err != nil {
		t.Fatal(err)
	}
	if err := c.Step(lens); err != nil {
		t.Fatal(err)
	}
	slotData(t, b, c, n, 0, 1, 0xd, true)
	slotData(t, b, c, n, 0, 1, 0xd, false)

	// StepAsync while the GPU is busy: the next decode step's page index is
	// mapped in the background while the kernel runs. Slot n's request ends
	// first, so that only slot o grows.
	if err := c.FreeBatchIdx(n); err != nil {
		t.Fatal(err)
	}
	lens[n] = 0
	if err := b.Spin(1_000_000_000); err != nil {
		t.Fatal(err)
	}
	e1, err := b.Fence().Record()
	if err != nil {
		t.Fatal(err)
	}
	lens[o] = 4 * tpi // the next step needs index 4 for slot o
	if err := c.StepAsync(lens); err != nil {
		t.Fatal(err)
	}
	if b.Fence().Completed() >= e1 {
		t.Fatal("the kernel finished before StepAsync returned: the test proves nothing")
	}
	lens[o]++
	if err := c.Step(lens); err != nil {
		t.Fatal(err)
	}
	st = c.Stats()
	if st.Background.Map.Pages != uint64(ppi) || st.BackgroundErrors != 0 || mappedIndexes(c, o) != 5 {
		t.Fatalf("background mapping: %+v", st.Background)
	}
	slotData(t, b, c, o, 4, 5, 0xe, true)
	slotData(t, b, c, o, 0, 2, 0xb, false)
	slotData(t, b, c, o, 2, 4, 0xc, false)
	slotData(t, b, c, o, 4, 5, 0xe, false)

	// Shrink: slot n's idle page index and the pool go back to the device;
	// slot o keeps its pages and its data.
	_, held, _ := b.Held()
	freed, err := c.Shrink()
	if err != nil {
		t.Fatal(err)
	}
	if _, after, _ := b.Held(); freed == 0 || after != held-freed {
		t.Fatalf("shrink freed %d pages: backend held %d, now %d", freed, held, after)
	}
	slotData(t, b, c, o, 0, 2, 0xb, false)
	slotData(t, b, c, o, 2, 4, 0xc, false)
	slotData(t, b, c, o, 4, 5, 0xe, false)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if regions, pages, mapped := b.Held(); regions+pages+mapped != 0 {
		t.Errorf("cache Close left %d regions, %d pages, %d mappings in the backend", regions, pages, mapped)
	}
}
