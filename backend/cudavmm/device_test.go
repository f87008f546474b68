//go:build gpu

// Device tests: they need an NVIDIA GPU and libcuda.so.1 (the GPU machine;
// scripts/gpu-build.sh builds them, scripts/gpu-run.sh runs them).

package cudavmm

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/cuda"
	"github.com/vattn/vattn/internal/cudatest"
	"github.com/vattn/vattn/pagesize"
)

func newDevice(t *testing.T, opts Options) *Backend {
	t.Helper()
	b, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mapRun(t *testing.T, b *Backend, addr uint64, ids []backend.PageID) {
	t.Helper()
	maps := make([]backend.Mapping, len(ids))
	for i, id := range ids {
		maps[i] = backend.Mapping{Addr: addr + uint64(i)*mib2, Page: id}
	}
	if err := b.Map(maps); err != nil {
		t.Fatal(err)
	}
}

func addrs(addr uint64, n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = addr + uint64(i)*mib2
	}
	return out
}

func TestDeviceInfo(t *testing.T) {
	lib, err := cuda.Load()
	if err != nil {
		t.Fatal(err)
	}
	devs, err := lib.Devices()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range devs {
		t.Logf("GPU %d: %s %s sm_%d%d vmm=%v; driver API %s from %s", d.Index, d.Name, d.UUID, d.ComputeMajor, d.ComputeMinor, d.VMM, lib.DriverVersionString(), lib.Path)
	}
	if _, err := New(Options{PageSize: pagesize.Size64K}); !errors.Is(err, pagesize.ErrUnsupported) {
		t.Errorf("64 KiB pages on the stock driver: %v", err)
	}
	if _, err := New(Options{Device: "GPU-00000000-0000-0000-0000-000000000000"}); !errors.Is(err, cuda.ErrDeviceNotFound) {
		t.Errorf("unknown UUID: %v", err)
	}
	b := newDevice(t, Options{Device: devs[0].UUID})
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestDeviceMapWriteRemapReuse maps pages, writes them from a kernel, reads
// them on the GPU and from the host, moves them to another range (the data
// moves with them), then hands them to a new owner who writes its own data
// and never sees the old owner's.
func TestDeviceMapWriteRemapReuse(t *testing.T) {
	gpu := cudatest.Open(t)
	before := gpu.Free(t)
	for _, mode := range []AccessMode{AccessPerRun, AccessPerPage} {
		b := newDevice(t, Options{Access: mode})
		const n = 16
		a, err := b.Reserve(n * mib2)
		if err != nil {
			t.Fatal(err)
		}
		c, err := b.Reserve(2 * n * mib2)
		if err != nil {
			t.Fatal(err)
		}
		ids, err := b.AllocPages(n)
		if err != nil {
			t.Fatal(err)
		}
		mapRun(t, b, a.Addr, ids)
		if err := b.Fill(a.Addr, a.Size, 0x1111); err != nil {
			t.Fatal(err)
		}
		res, err := b.Check(a.Addr, a.Size, 0x1111)
		if err != nil || !res.OK() || res.HostSampled == 0 {
			t.Fatalf("%s: first owner reads %+v %v", mode, res, err)
		}
		// A wrong tag must be noticed on every word: the check is not vacuous.
		res, err = b.Check(a.Addr, a.Size, 0x2222)
		if err != nil || res.GPUMismatches != n*mib2/4 || res.HostMismatches != res.HostSampled {
			t.Fatalf("%s: wrong tag: %+v %v", mode, res, err)
		}
		e, err := b.Fence().Record()
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Fence().Wait(context.Background(), e); err != nil {
			t.Fatal(err)
		}
		if err := b.Unmap(addrs(a.Addr, n), e); err != nil {
			t.Fatal(err)
		}
		// The same physical pages, at odd positions of another range.
		var maps []backend.Mapping
		for i, id := range ids {
			maps = append(maps, backend.Mapping{Addr: c.Addr + uint64(2*i+1)*mib2, Page: id})
		}
		if err := b.Map(maps); err != nil {
			t.Fatal(err)
		}
		for i := range ids {
			res, err := b.Check(c.Addr+uint64(2*i+1)*mib2, mib2, 0x1111^uint32(i)<<20)
			if err != nil || !res.OK() {
				t.Fatalf("%s: page %d after remapping: %+v %v", mode, i, res, err)
			}
		}
		// New owner: writes its own tag and sees only that.
		for i := range ids {
			if err := b.Fill(c.Addr+uint64(2*i+1)*mib2, mib2, 0x3333); err != nil {
				t.Fatal(err)
			}
		}
		for i := range ids {
			res, err := b.Check(c.Addr+uint64(2*i+1)*mib2, mib2, 0x3333)
			if err != nil || !res.OK() {
				t.Fatalf("%s: new owner page %d: %+v %v", mode, i, res, err)
			}
		}
		// Close with everything still mapped.
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if after := gpu.Free(t); after != before {
		t.Errorf("device free memory %d before, %d after Close", before, after)
	}
}

// TestDeviceFenceWhileKernelRuns keeps the GPU busy and checks that the
// backend refuses to unmap pages the pending work may read.
func TestDeviceFenceWhileKernelRuns(t *testing.T) {
	b := newDevice(t, Options{})
	defer b.Close()
	r, _ := b.Reserve(4 * mib2)
	ids, err := b.AllocPages(4)
	if err != nil {
		t.Fatal(err)
	}
	mapRun(t, b, r.Addr, ids)
	if err := b.Fill(r.Addr, r.Size, 7); err != nil {
		t.Fatal(err)
	}
	// About two seconds at H100 clocks: far longer than the few driver
	// calls below.
	if err := b.Spin(4_000_000_000); err != nil {
		t.Fatal(err)
	}
	e, err := b.Fence().Record()
	if err != nil {
		t.Fatal(err)
	}
	if c := b.Fence().Completed(); c >= e {
		t.Fatalf("epoch %d complete while the spin kernel runs (completed %d)", e, c)
	}
	if err := b.Unmap(addrs(r.Addr, 4), e); !errors.Is(err, backend.ErrFenceNotReached) {
		t.Fatalf("unmap under a running kernel: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Fence().Wait(ctx, e); !errors.Is(err, context.Canceled) {
		t.Fatalf("wait with a cancelled context: %v", err)
	}
	if err := b.Fence().Wait(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if err := b.Unmap(addrs(r.Addr, 4), e); err != nil {
		t.Fatal(err)
	}
	if err := b.FreePages(ids); err != nil {
		t.Fatal(err)
	}
	if err := b.Release(r); err != nil {
		t.Fatal(err)
	}
}

// TestDeviceOutOfMemory asks for more pages than the GPU has: the error is
// backend.ErrOutOfMemory and nothing stays allocated.
func TestDeviceOutOfMemory(t *testing.T) {
	gpu := cudatest.Open(t)
	before := gpu.Free(t)
	b := newDevice(t, Options{})
	mi, err := b.MemInfo()
	if err != nil {
		t.Fatal(err)
	}
	n := int(mi.Total/mib2) + 16
	if _, err := b.AllocPages(n); !errors.Is(err, backend.ErrOutOfMemory) {
		t.Fatalf("allocating %d pages: %v", n, err)
	}
	if _, pages, _ := b.Held(); pages != 0 {
		t.Fatalf("%d pages held after a failed allocation", pages)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if after := gpu.Free(t); after != before {
		t.Errorf("device free memory %d before, %d after", before, after)
	}
}

// TestDeviceMegacache maps the megacache layout (one K and one V range over
// all layers, [batch, ctx, layers, heads, dim]): a 2 MiB page index of a
// slot is one page in K and one in V, so a slot of 4 page indices is 8
// mappings whatever the layer count. Each slot writes and reads its own
// pages; slots reuse one pool.
func TestDeviceMegacache(t *testing.T) {
	gpu := cudatest.Open(t)
	before := gpu.Free(t)
	b := newDevice(t, Options{})
	const slots, perSlot = 16, 4
	k, err := b.Reserve(slots * perSlot * mib2)
	if err != nil {
		t.Fatal(err)
	}
	v, err := b.Reserve(slots * perSlot * mib2)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := b.AllocPages(2 * perSlot * 2) // two slots' worth, reused round-robin
	if err != nil {
		t.Fatal(err)
	}
	prev := map[int][]uint64{}
	for slot := range slots {
		own := pool[(slot%2)*2*perSlot : (slot%2+1)*2*perSlot]
		if old, ok := prev[slot%2]; ok {
			e, err := b.Fence().Record()
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Fence().Wait(context.Background(), e); err != nil {
				t.Fatal(err)
			}
			if err := b.Unmap(old, e); err != nil {
				t.Fatal(err)
			}
		}
		off := uint64(slot*perSlot) * mib2
		mapRun(t, b, k.Addr+off, own[:perSlot])
		mapRun(t, b, v.Addr+off, own[perSlot:])
		prev[slot%2] = append(addrs(k.Addr+off, perSlot), addrs(v.Addr+off, perSlot)...)
		for _, base := range []uint64{k.Addr + off, v.Addr + off} {
			if err := b.Fill(base, perSlot*mib2, uint32(slot)); err != nil {
				t.Fatal(err)
			}
			res, err := b.Check(base, perSlot*mib2, uint32(slot))
			if err != nil || !res.OK() {
				t.Fatalf("slot %d: %+v %v", slot, res, err)
			}
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if after := gpu.Free(t); after != before {
		t.Errorf("device free memory %d before, %d after", before, after)
	}
}

// TestDeviceCallOverhead logs what the binding and the backend add per call
// (no assertion: timings are for docs/results.md, not pass/fail).
// All in one process, so process placement does not enter the comparison.
func TestDeviceCallOverhead(t *testing.T) {
	b := newDevice(t, Options{})
	defer b.Close()
	d := b.ctx.Lib().Driver()
	const n = 20000
	var v int32
	start := time.Now()
	for range n {
		d.DriverGetVersion(&v)
	}
	raw := time.Since(start) / n
	start = time.Now()
	for range n {
		_ = b.ctx.Do(func(cuda.Bound) error { return nil })
	}
	do := time.Since(start) / n
	t.Logf("per call: cuDriverGetVersion through purego %v; Context.Do (lock thread, context already current) %v", raw, do)

	// Does setting the (same) context before each call slow the call down?
	err := b.ctx.Do(func(bd cuda.Bound) error {
		prop := cuda.DeviceProp(b.dev.Device)
		for round := range 3 {
			var with, without time.Duration
			for i := range 2000 {
				set := i%2 == 0
				if set {
					d.CtxSetCurrent(b.ctx.Handle())
				}
				var h cuda.MemHandle
				s := time.Now()
				if r := d.MemCreate(&h, mib2, &prop, 0); r != 0 {
					return fmt.Errorf("cuMemCreate %d", r)
				}
				if set {
					with += time.Since(s)
				} else {
					without += time.Since(s)
				}
				if r := d.MemRelease(h); r != 0 {
					return fmt.Errorf("cuMemRelease %d", r)
				}
			}
			t.Logf("round %d: cuMemCreate right after cuCtxSetCurrent %v, without %v", round, with/1000, without/1000)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	const pages = 512
	r, err := b.Reserve(pages * mib2)
	if err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		// The raw driver entry points, one Do around everything.
		var tCreate, tMap, tUnmap, tRelease time.Duration
		err := b.ctx.Do(func(bd cuda.Bound) error {
			hs := make([]cuda.MemHandle, pages)
			prop := cuda.DeviceProp(b.dev.Device)
			access := cuda.AccessDesc{Location: prop.Location, Flags: cuda.CU_MEM_ACCESS_FLAGS_PROT_READWRITE}
			s := time.Now()
			for i := range hs {
				if r := d.MemCreate(&hs[i], mib2, &prop, 0); r != 0 {
					return fmt.Errorf("cuMemCreate %d", r)
				}
			}
			tCreate = time.Since(s)
			s = time.Now()
			for i, h := range hs {
				p := cuda.DevicePtr(r.Addr + uint64(i)*mib2)
				if r := d.MemMap(p, mib2, 0, h, 0); r != 0 {
					return fmt.Errorf("cuMemMap %d", r)
				}
				if r := d.MemSetAccess(p, mib2, &access, 1); r != 0 {
					return fmt.Errorf("cuMemSetAccess %d", r)
				}
			}
			tMap = time.Since(s)
			s = time.Now()
			for i := range hs {
				if r := d.MemUnmap(cuda.DevicePtr(r.Addr+uint64(i)*mib2), mib2); r != 0 {
					return fmt.Errorf("cuMemUnmap %d", r)
				}
			}
			tUnmap = time.Since(s)
			s = time.Now()
			for _, h := range hs {
				if r := d.MemRelease(h); r != 0 {
					return fmt.Errorf("cuMemRelease %d", r)
				}
			}
			tRelease = time.Since(s)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// The backend, one page per call.
		var bCreate, bMap, bUnmap, bRelease time.Duration
		ids := make([]backend.PageID, 0, pages)
		s := time.Now()
		for range pages {
			id, err := b.AllocPages(1)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id...)
		}
		bCreate = time.Since(s)
		s = time.Now()
		for i, id := range ids {
			if err := b.Map([]backend.Mapping{{Addr: r.Addr + uint64(i)*mib2, Page: id}}); err != nil {
				t.Fatal(err)
			}
		}
		bMap = time.Since(s)
		s = time.Now()
		for i := range ids {
			if err := b.Unmap([]uint64{r.Addr + uint64(i)*mib2}, 0); err != nil {
				t.Fatal(err)
			}
		}
		bUnmap = time.Since(s)
		s = time.Now()
		for _, id := range ids {
			if err := b.FreePages([]backend.PageID{id}); err != nil {
				t.Fatal(err)
			}
		}
		bRelease = time.Since(s)
		per := func(d time.Duration) float64 { return float64(d) / pages / 1e3 }
		t.Logf("round %d, µs/page, raw purego vs backend (1 page per call): create %.2f vs %.2f, map+access %.2f vs %.2f, unmap %.2f vs %.2f, release %.2f vs %.2f",
			round, per(tCreate), per(bCreate), per(tMap), per(bMap), per(tUnmap), per(bUnmap), per(tRelease), per(bRelease))
	}
}
