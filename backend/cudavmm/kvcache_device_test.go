//go:build gpu

package cudavmm_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/vattn/vattn/backend/cudavmm"
	"github.com/vattn/vattn/internal/cudatest"
	"github.com/vattn/vattn/kvcache"
)

// The whole allocator on the GPU: kvcache over the cudavmm backend.

const page = 2 << 20

func llama3(batch, ctx int, mega bool) kvcache.Config {
	return kvcache.Config{Layers: 32, KVHeads: 8, HeadDim: 128, DTypeBytes: 2, MaxBatch: batch, MaxContext: ctx, Megacache: mega}
}

// slotData writes (or checks) page indexes [from, to) of slot s in every
// range of c, tagging each range's data differently.
func slotData(t *testing.T, b *cudavmm.Backend, c *kvcache.Cache, s, from, to int, owner uint32, write bool) {
	t.Helper()
	l := c.Layout()
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

func TestDeviceKVCache(t *testing.T) {
	for _, mega := range []bool{false, true} {
		name := "per-layer"
		if mega {
			name = "megacache"
		}
		t.Run(name, func(t *testing.T) { testKVCache(t, mega) })
	}
}

func testKVCache(t *testing.T, mega bool) {
	gpu := cudatest.Open(t)
	before := gpu.Free(t)
	b, err := cudavmm.New(cudavmm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := kvcache.New(llama3(16, 8192, mega), b)
	if err != nil {
		t.Fatal(err)
	}
	l := c.Layout()
	ppi, tpi := l.PagesPerIndex, l.TokensPerPage
	t.Logf("layout: %d ranges, %d pages per index, %d tokens per page", l.Ranges, ppi, tpi)
	if err := c.ReservePhysical(uint64(4*ppi) * page); err != nil {
		t.Fatal(err)
	}
	lens := make([]int, 16)
	if l.IndexesPerSlot < 6 {
		t.Fatalf("%d indexes per slot: the test needs 6", l.IndexesPerSlot)
	}
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

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if regions, pages, mapped := b.Held(); regions+pages+mapped != 0 {
		t.Errorf("cache Close left %d regions, %d pages, %d mappings in the backend", regions, pages, mapped)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if after := gpu.Free(t); after != before {
		t.Errorf("device free memory %d before, %d after Close", before, after)
	}
}

// TestDeviceKVCacheSteps logs the figures the issue compares with
// vAttention's (no assertion: timings go to docs/results.md).
// Llama-3-8B shapes, batch 256.
func TestDeviceKVCacheSteps(t *testing.T) {
	for _, mega := range []bool{false, true} {
		gpu := cudatest.Open(t)
		before := gpu.Free(t)
		b, err := cudavmm.New(cudavmm.Options{})
		if err != nil {
			t.Fatal(err)
		}
		c, err := kvcache.New(llama3(256, 4096, mega), b)
		if err != nil {
			t.Fatal(err)
		}
		l := c.Layout()
		// Two page indexes for every slot (per-layer: 32768 pages, 64 GiB).
		pool := 2 * 256 * l.PagesPerIndex
		start := time.Now()
		if err := c.ReservePhysical(uint64(pool) * page); err != nil {
			t.Fatal(err)
		}
		reserve := time.Since(start)
		lens := make([]int, 256)
		for range 256 {
			s, err := c.AllocBatchIdx(1)
			if err != nil {
				t.Fatal(err)
			}
			lens[s] = 1
		}
		start = time.Now()
		if err := c.Step(lens); err != nil {
			t.Fatal(err)
		}
		grow1 := time.Since(start)
		var noNew []time.Duration
		for range 2000 {
			s := time.Now()
			if err := c.Step(lens); err != nil {
				t.Fatal(err)
			}
			noNew = append(noNew, time.Since(s))
		}
		// Decode steps up to the end of the first page index, with StepAsync;
		// the sleep stands in for the forward pass the mapping hides behind.
		var async []time.Duration
		for lens[0] < l.TokensPerPage-1 {
			for i := range lens {
				lens[i]++
			}
			s := time.Now()
			if err := c.StepAsync(lens); err != nil {
				t.Fatal(err)
			}
			async = append(async, time.Since(s))
			time.Sleep(200 * time.Microsecond)
			if len(async) >= 3000 {
				break
			}
		}
		// One more index for every slot, synchronously.
		for i := range lens {
			lens[i] = l.TokensPerPage + 1
		}
		start = time.Now()
		if err := c.Step(lens); err != nil {
			t.Fatal(err)
		}
		grow2 := time.Since(start)
		st := c.Stats()
		p := func(d []time.Duration, q float64) time.Duration {
			d = slices.Clone(d)
			slices.Sort(d)
			return d[min(len(d)-1, int(q*float64(len(d))))]
		}
		t.Logf("megacache=%v: %d pages per index; ReservePhysical %d pages %v (%.2f µs/page)", mega, l.PagesPerIndex, pool, reserve, float64(reserve.Microseconds())/float64(pool))
		t.Logf("  Step growing 256 slots by one index (%d pages): first %v (%.2f µs/page), second %v (%.2f µs/page)",
			256*l.PagesPerIndex, grow1, float64(grow1.Microseconds())/float64(256*l.PagesPerIndex), grow2, float64(grow2.Microseconds())/float64(256*l.PagesPerIndex))
		t.Logf("  Step with no new page: p50 %v p99 %v (n=%d)", p(noNew, .5), p(noNew, .99), len(noNew))
		t.Logf("  StepAsync critical path: p50 %v p99 %v max %v (n=%d); background mapped %d pages in %d calls (%.2f s); foreground %d pages",
			p(async, .5), p(async, .99), p(async, 1), len(async), st.Background.Map.Pages, st.Background.Map.Calls, st.Background.Map.Seconds, st.Foreground.Map.Pages)
		t.Logf("  map call latency p50 %v p99 %v", st.MapLatency.P50, st.MapLatency.P99)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if after := gpu.Free(t); after != before {
			t.Errorf("device free memory %d before, %d after Close", before, after)
		}
	}
}
