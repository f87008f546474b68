//go:build gpu

package cudavmm_test

import (
	"slices"
	"testing"
	"time"

	"github.com/vattn/vattn/backend/cudavmm"
	"github.com/vattn/vattn/backend/internal/devicetest"
	"github.com/vattn/vattn/internal/cudatest"
	"github.com/vattn/vattn/kvcache"
)

// The whole allocator on the GPU: kvcache over the cudavmm backend, through
// the test every GPU backend passes (backend/internal/devicetest).

const page = 2 << 20

func llama3(batch, ctx int, mega bool) kvcache.Config { return devicetest.Llama3(batch, ctx, mega) }

func TestDeviceKVCache(t *testing.T) {
	for _, mega := range []bool{false, true} {
		name := "per-layer"
		if mega {
			name = "megacache"
		}
		t.Run(name, func(t *testing.T) {
			gpu := cudatest.Open(t)
			before := gpu.Free(t)
			b, err := cudavmm.New(cudavmm.Options{})
			if err != nil {
				t.Fatal(err)
			}
			devicetest.KVCache(t, b, llama3(16, 8192, mega))
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			if after := gpu.Free(t); after != before {
				t.Errorf("device free memory %d before, %d after Close", before, after)
			}
		})
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
