package cudavmm

import (
	"testing"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/cuda"
	"github.com/vattn/vattn/cuda/cudafake"
)

// nullDriver answers every call at once: benchmarks on it measure what the
// backend itself adds per call, without a driver behind it.
func nullDriver() *cuda.Driver {
	d := cudafake.New().Driver()
	var next uint64 = 1 << 40
	var h cuda.MemHandle
	d.MemCreate = func(p *cuda.MemHandle, size uint64, prop *cuda.AllocationProp, flags uint64) cuda.Result {
		h++
		*p = h
		return 0
	}
	d.MemRelease = func(cuda.MemHandle) cuda.Result { return 0 }
	d.MemMap = func(cuda.DevicePtr, uint64, uint64, cuda.MemHandle, uint64) cuda.Result { return 0 }
	d.MemUnmap = func(cuda.DevicePtr, uint64) cuda.Result { return 0 }
	d.MemSetAccess = func(cuda.DevicePtr, uint64, *cuda.AccessDesc, uint64) cuda.Result { return 0 }
	d.CtxSetCurrent = func(cuda.Context) cuda.Result { return 0 }
	d.MemAddressReserve = func(p *cuda.DevicePtr, size, align uint64, at cuda.DevicePtr, flags uint64) cuda.Result {
		*p = cuda.DevicePtr(next)
		next += size
		return 0
	}
	d.MemAddressFree = func(cuda.DevicePtr, uint64) cuda.Result { return 0 }
	d.MemGetAllocationGranularity = func(g *uint64, _ *cuda.AllocationProp, _ int32) cuda.Result {
		*g = cudafake.Granularity
		return 0
	}
	return d
}

func BenchmarkBackendOverhead(b *testing.B) {
	lib, err := cuda.NewLib(nullDriver(), "null")
	if err != nil {
		b.Fatal(err)
	}
	be, err := New(Options{Lib: lib})
	if err != nil {
		b.Fatal(err)
	}
	defer be.Close()
	r, err := be.Reserve(1024 * mib2)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.Run("alloc+free", func(b *testing.B) {
		for b.Loop() {
			ids, err := be.AllocPages(1)
			if err != nil {
				b.Fatal(err)
			}
			if err := be.FreePages(ids); err != nil {
				b.Fatal(err)
			}
		}
	})
	ids, _ := be.AllocPages(1)
	m := []backend.Mapping{{Addr: r.Addr, Page: ids[0]}}
	a := []uint64{r.Addr}
	b.Run("map+unmap", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := be.Map(m); err != nil {
				b.Fatal(err)
			}
			if err := be.Unmap(a, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
}
