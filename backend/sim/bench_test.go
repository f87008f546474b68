package sim

import (
	"testing"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/pagesize"
)

// benchMap maps batches of batch pages at fresh addresses, as the allocator
// does when sequences grow, and unmaps everything (untimed) when the region
// is full.
func benchMap(b *testing.B, batch int) {
	be := newSim(b, Config{PageSize: pagesize.Size64K})
	const batches = 1024
	r := mustReserve(b, be, uint64(batches*batch)*k64)
	pages := mustAlloc(b, be, batches*batch)
	maps := make([]backend.Mapping, len(pages))
	addrs := make([]uint64, len(pages))
	for i := range pages {
		addrs[i] = r.Addr + uint64(i)*k64
		maps[i] = backend.Mapping{Addr: addrs[i], Page: pages[i]}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		j := i % batches
		if j == 0 && i > 0 {
			b.StopTimer()
			if err := be.Unmap(addrs, 0); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		if err := be.Map(maps[j*batch : (j+1)*batch]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/page")
}

// BenchmarkMap64K maps batches of 64 pages of 64 KiB: one page index of
// Llama-3-8B (32 layers × K,V).
func BenchmarkMap64K(b *testing.B) { benchMap(b, 64) }

// BenchmarkMapOne maps one page per call: the per-call overhead.
func BenchmarkMapOne(b *testing.B) { benchMap(b, 1) }

// BenchmarkMapUnmap maps and unmaps a batch of 64 pages per iteration.
func BenchmarkMapUnmap(b *testing.B) {
	be := newSim(b, Config{PageSize: pagesize.Size64K})
	r := mustReserve(b, be, 1<<30)
	pages := mustAlloc(b, be, 64)
	maps := make([]backend.Mapping, len(pages))
	addrs := make([]uint64, len(pages))
	for i := range pages {
		addrs[i] = r.Addr + uint64(i)*2*k64
		maps[i] = backend.Mapping{Addr: addrs[i], Page: pages[i]}
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := be.Map(maps); err != nil {
			b.Fatal(err)
		}
		if err := be.Unmap(addrs, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAllocFree makes and destroys 64 pages per iteration.
func BenchmarkAllocFree(b *testing.B) {
	be := newSim(b, Config{PageSize: pagesize.Size64K})
	b.ReportAllocs()
	for b.Loop() {
		p, err := be.AllocPages(64)
		if err != nil {
			b.Fatal(err)
		}
		if err := be.FreePages(p); err != nil {
			b.Fatal(err)
		}
	}
}
