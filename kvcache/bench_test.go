package kvcache

import (
	"testing"

	"github.com/vattn/vattn/backend/sim"
	"github.com/vattn/vattn/pagesize"
)

// Benchmarks on the simulator without a latency model: they measure the
// allocator's own cost (plus the simulator's bookkeeping), the part vattn
// adds on top of the driver. DESIGN.md's targets: Step with no new page
// ≤ 2 µs and StepAsync's critical path ≤ 10 µs at batch 256.

func benchCache(b *testing.B, batch, ctx int, ps pagesize.Size, pool uint64) (*Cache, []int) {
	be, err := sim.New(sim.Config{PageSize: ps, GPUMemory: 80 << 30})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = be.Close() })
	cfg := llama3(batch, ctx)
	cfg.GrowPool = true
	c, err := New(cfg, be)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	if err := c.ReservePhysical(pool); err != nil {
		b.Fatal(err)
	}
	l := make([]int, batch)
	for range batch {
		s, err := c.AllocBatchIdx(100)
		if err != nil {
			b.Fatal(err)
		}
		l[s] = 100
	}
	if err := c.Step(l); err != nil {
		b.Fatal(err)
	}
	return c, l
}

// BenchmarkStepNoNewPage: batch 256, every slot inside its mapped pages.
func BenchmarkStepNoNewPage(b *testing.B) {
	c, l := benchCache(b, 256, 4096, pagesize.Size64K, 8<<30)
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Step(l); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStepAsyncCriticalPath: batch 256, decode steps whose next page
// (when one is needed) the background mapper maps; the time is what the
// serving loop waits.
func BenchmarkStepAsyncCriticalPath(b *testing.B) {
	c, l := benchCache(b, 256, 4096, pagesize.Size64K, 8<<30)
	b.ReportAllocs()
	for b.Loop() {
		if err := c.StepAsync(l); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		c.wait() // the GPU's forward pass would cover this
		b.StartTimer()
	}
}

// benchGrow measures a step that maps one new page index (64 pages of
// 64 KiB for Llama-3-8B) for `grow` slots of a batch of 256, from a pool
// reserved up front as a server does.
func benchGrow(b *testing.B, grow int) {
	const ctx = 2048
	var c *Cache
	var l []int
	b.ReportAllocs()
	for b.Loop() {
		if c == nil || l[0]+32 > ctx {
			b.StopTimer()
			if c != nil {
				_ = c.Close()
			}
			// The base (4 indexes a slot) plus every step until a refresh.
			pages := uint64(256*4*64 + (ctx-128)/32*grow*64)
			c, l = benchCache(b, 256, ctx, pagesize.Size64K, pages*64<<10)
			for i := range l {
				l[i] = 128 // exactly 4 indexes
			}
			if err := c.Step(l); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		for i := range grow {
			l[i] += 32
		}
		if err := c.Step(l); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(grow*64), "ns/page")
}

func BenchmarkStepNewIndexOneSlot(b *testing.B)  { benchGrow(b, 1) }
func BenchmarkStepNewIndexAllSlots(b *testing.B) { benchGrow(b, 256) }
