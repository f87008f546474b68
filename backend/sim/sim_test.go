package sim

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/pagesize"
)

const (
	k64 = uint64(pagesize.Size64K)
	m2  = uint64(pagesize.Size2M)
)

func newSim(t testing.TB, cfg Config) *Backend {
	t.Helper()
	if cfg.PageSize == 0 {
		cfg.PageSize = pagesize.Size64K
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func mustReserve(t testing.TB, b *Backend, size uint64) backend.Region {
	t.Helper()
	r, err := b.Reserve(size)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustAlloc(t testing.TB, b *Backend, n int) []backend.PageID {
	t.Helper()
	ids, err := b.AllocPages(n)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func mustMap(t testing.TB, b *Backend, maps ...backend.Mapping) {
	t.Helper()
	if err := b.Map(maps); err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("got error %v, want %v", err, want)
	}
}

// snapshot is the state a failed call must leave untouched.
type snapshot struct {
	mapped, allocated, chunks, regions int
	reserved                           uint64
}

func snap(b *Backend) snapshot {
	s := b.Stats()
	return snapshot{s.PagesMapped, s.PagesAllocated, s.RootChunksUsed, s.Regions, s.ReservedBytes}
}

func TestNewRejectsBadConfig(t *testing.T) {
	neg := DefaultLatency(pagesize.Size64K)
	neg.PerPage[OpMap] = -1
	cases := []struct {
		name string
		cfg  Config
		want error
	}{
		{"no page size", Config{}, pagesize.ErrUnsupported},
		{"odd page size", Config{PageSize: 4096}, pagesize.ErrUnsupported},
		{"tiny gpu", Config{PageSize: pagesize.Size64K, GPUMemory: 1 << 20}, backend.ErrBadArgument},
		{"odd va size", Config{PageSize: pagesize.Size64K, VASize: 3 << 20}, backend.ErrBadArgument},
		{"va overflows", Config{PageSize: pagesize.Size64K, VASize: ^uint64(0) &^ (m2 - 1)}, backend.ErrBadArgument},
		{"too many pages", Config{PageSize: pagesize.Size64K, GPUMemory: 1 << 50}, backend.ErrBadArgument},
		{"sleep without model", Config{PageSize: pagesize.Size64K, Sleep: true}, backend.ErrBadArgument},
		{"negative latency", Config{PageSize: pagesize.Size64K, Latency: &neg}, backend.ErrBadArgument},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := New(c.cfg)
			if b != nil || !errors.Is(err, c.want) {
				t.Fatalf("New: %v, want %v", err, c.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	b := newSim(t, Config{})
	if b.Name() != "sim" || b.PageSize() != pagesize.Size64K {
		t.Fatalf("name %q page size %s", b.Name(), b.PageSize())
	}
	mi, err := b.MemInfo()
	if err != nil || mi.Total != 80<<30 || mi.Free != 80<<30 {
		t.Fatalf("meminfo %+v %v", mi, err)
	}
	e, _ := b.Fence().Record()
	if b.Fence().Completed() != e {
		t.Fatal("default fence is not automatic")
	}
	if b.Latency() != nil {
		t.Fatal("latency model without one configured")
	}
	// The default address space is 128 TiB: all of it can be reserved at once.
	r := mustReserve(t, b, DefaultVASize)
	if _, err := b.Reserve(k64); !errors.Is(err, backend.ErrOutOfMemory) {
		t.Fatalf("reserve beyond the address space: %v", err)
	}
	if err := b.Release(r); err != nil {
		t.Fatal(err)
	}
}

func TestReserveRelease(t *testing.T) {
	b := newSim(t, Config{VASize: 16 << 20})
	r1 := mustReserve(t, b, k64)
	r2 := mustReserve(t, b, 3*m2)
	r3 := mustReserve(t, b, 5*k64)
	if r1.Addr != vaBase || r1.Size != k64 {
		t.Fatalf("first region %#x+%#x", r1.Addr, r1.Size)
	}
	for _, r := range []backend.Region{r1, r2, r3} {
		if r.Addr%m2 != 0 {
			t.Fatalf("region %#x not 2 MiB aligned", r.Addr)
		}
	}
	if r2.Addr < r1.End() || r3.Addr < r2.End() {
		t.Fatalf("regions overlap: %+v %+v %+v", r1, r2, r3)
	}
	s := b.Stats()
	if s.Regions != 3 || s.ReservedBytes != 6*k64+3*m2 {
		t.Fatalf("stats %+v", s)
	}

	before := snap(b)
	_, err := b.Reserve(0)
	wantErr(t, err, backend.ErrBadArgument)
	_, err = b.Reserve(k64 + 4096)
	wantErr(t, err, backend.ErrMisaligned)
	_, err = b.Reserve(16 << 20) // more than is left
	wantErr(t, err, backend.ErrOutOfMemory)
	// Enough bytes are left in total (16-6.375 MiB), but no 2 MiB-aligned gap
	// holds 8 MiB.
	_, err = b.Reserve(8 << 20)
	wantErr(t, err, backend.ErrOutOfMemory)
	if snap(b) != before {
		t.Fatal("failed reserve changed state")
	}

	wantErr(t, b.Release(backend.Region{Addr: r2.Addr + m2, Size: m2}), backend.ErrOutOfRange)
	wantErr(t, b.Release(backend.Region{Addr: 0x1000, Size: m2}), backend.ErrOutOfRange)
	wantErr(t, b.Release(backend.Region{Addr: r2.Addr, Size: m2}), backend.ErrBadArgument)
	p := mustAlloc(t, b, 1)
	mustMap(t, b, backend.Mapping{Addr: r2.Addr + m2, Page: p[0]})
	wantErr(t, b.Release(r2), backend.ErrRegionInUse)
	if snap(b).regions != 3 {
		t.Fatal("failed release removed the region")
	}
	if err := b.Unmap([]uint64{r2.Addr + m2}, 0); err != nil {
		t.Fatal(err)
	}
	if err := b.Release(r2); err != nil {
		t.Fatal(err)
	}
	wantErr(t, b.Release(r2), backend.ErrOutOfRange)
	if _, ok := b.Translate(r2.Addr + m2); ok {
		t.Fatal("released region still translates")
	}
	// First fit: the freed gap is used again.
	r4 := mustReserve(t, b, m2)
	if r4.Addr != r2.Addr {
		t.Fatalf("released space not reused: %#x, want %#x", r4.Addr, r2.Addr)
	}
	st := b.Stats()
	if st.Ops[OpReserve].Calls != 4 || st.Ops[OpReserve].Failed != 4 || st.Ops[OpRelease].Calls != 1 || st.Ops[OpRelease].Failed != 5 {
		t.Fatalf("reserve/release counts %+v %+v", st.Ops[OpReserve], st.Ops[OpRelease])
	}
}

func TestMapTranslate(t *testing.T) {
	b := newSim(t, Config{})
	r := mustReserve(t, b, 64*k64)
	p := mustAlloc(t, b, 3)
	mustMap(t, b,
		backend.Mapping{Addr: r.Addr, Page: p[0]},
		backend.Mapping{Addr: r.Addr + 63*k64, Page: p[1]},
	)
	for _, c := range []struct {
		addr uint64
		page backend.PageID
		ok   bool
	}{
		{r.Addr, p[0], true}, {r.Addr + k64 - 1, p[0], true}, {r.Addr + k64, 0, false},
		{r.Addr + 63*k64 + 17, p[1], true}, {r.End(), 0, false}, {r.Addr - 1, 0, false}, {0, 0, false},
	} {
		got, ok := b.Translate(c.addr)
		if ok != c.ok || got != c.page {
			t.Errorf("Translate(%#x) = %#x %v, want %#x %v", c.addr, got, ok, c.page, c.ok)
		}
	}
	s := b.Stats()
	if s.PagesMapped != 2 || s.Ops[OpMap].Calls != 1 || s.Ops[OpMap].Pages != 2 {
		t.Fatalf("stats %+v", s)
	}
}

func TestMapErrorsChangeNothing(t *testing.T) {
	b := newSim(t, Config{})
	r := mustReserve(t, b, 8*k64)
	other := mustReserve(t, b, 8*k64)
	p := mustAlloc(t, b, 4)
	freed := mustAlloc(t, b, 1)
	if err := b.FreePages(freed); err != nil {
		t.Fatal(err)
	}
	mustMap(t, b, backend.Mapping{Addr: r.Addr, Page: p[0]})
	ok := backend.Mapping{Addr: r.Addr + k64, Page: p[1]}
	cases := []struct {
		name  string
		batch []backend.Mapping
		want  error
	}{
		{"address taken", []backend.Mapping{ok, {Addr: r.Addr, Page: p[2]}}, backend.ErrAlreadyMapped},
		{"page mapped elsewhere", []backend.Mapping{ok, {Addr: other.Addr, Page: p[0]}}, backend.ErrAlreadyMapped},
		{"page twice in batch", []backend.Mapping{ok, {Addr: r.Addr + 2*k64, Page: p[1]}}, backend.ErrAlreadyMapped},
		{"address twice in batch", []backend.Mapping{ok, {Addr: r.Addr + k64, Page: p[2]}}, backend.ErrAlreadyMapped},
		{"misaligned", []backend.Mapping{ok, {Addr: r.Addr + 2*k64 + 4096, Page: p[2]}}, backend.ErrMisaligned},
		{"past the end", []backend.Mapping{ok, {Addr: r.End(), Page: p[2]}}, backend.ErrOutOfRange},
		{"below every region", []backend.Mapping{ok, {Addr: 1 << 30, Page: p[2]}}, backend.ErrOutOfRange},
		{"between regions", []backend.Mapping{ok, {Addr: r.Addr + m2 - k64, Page: p[2]}}, backend.ErrOutOfRange},
		{"freed page", []backend.Mapping{ok, {Addr: r.Addr + 2*k64, Page: freed[0]}}, backend.ErrUnknownPage},
		{"unknown page", []backend.Mapping{ok, {Addr: r.Addr + 2*k64, Page: 12345}}, backend.ErrUnknownPage},
		{"page zero", []backend.Mapping{ok, {Addr: r.Addr + 2*k64, Page: 0}}, backend.ErrUnknownPage},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := snap(b)
			wantErr(t, b.Map(c.batch), c.want)
			if snap(b) != before {
				t.Fatalf("failed map changed state: %+v -> %+v", before, snap(b))
			}
			if _, mapped := b.Translate(ok.Addr); mapped {
				t.Fatal("first mapping of a failed batch remains")
			}
			if got, _ := b.Translate(r.Addr); got != p[0] {
				t.Fatal("earlier mapping disturbed")
			}
		})
	}
	// The pages of the failed batches are still usable.
	mustMap(t, b, ok, backend.Mapping{Addr: r.Addr + 2*k64, Page: p[2]})
	if s := b.Stats(); s.Ops[OpMap].Failed != uint64(len(cases)) || s.PagesMapped != 3 {
		t.Fatalf("stats %+v", s.Ops[OpMap])
	}
}

func TestUnmapErrorsChangeNothing(t *testing.T) {
	b := newSim(t, Config{})
	r := mustReserve(t, b, 8*k64)
	p := mustAlloc(t, b, 2)
	mustMap(t, b, backend.Mapping{Addr: r.Addr, Page: p[0]}, backend.Mapping{Addr: r.Addr + k64, Page: p[1]})
	cases := []struct {
		name  string
		addrs []uint64
		want  error
	}{
		{"not mapped", []uint64{r.Addr, r.Addr + 2*k64}, backend.ErrNotMapped},
		{"twice in batch", []uint64{r.Addr, r.Addr + k64, r.Addr}, backend.ErrNotMapped},
		{"misaligned", []uint64{r.Addr, r.Addr + k64 + 8}, backend.ErrMisaligned},
		{"out of range", []uint64{r.Addr, r.End()}, backend.ErrOutOfRange},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := snap(b)
			wantErr(t, b.Unmap(c.addrs, 0), c.want)
			if snap(b) != before {
				t.Fatal("failed unmap changed state")
			}
			if got, _ := b.Translate(r.Addr); got != p[0] {
				t.Fatal("first address of a failed batch was unmapped")
			}
		})
	}
	if err := b.Unmap([]uint64{r.Addr, r.Addr + k64}, 0); err != nil {
		t.Fatal(err)
	}
	wantErr(t, b.Unmap([]uint64{r.Addr}, 0), backend.ErrNotMapped)
	if s := b.Stats(); s.PagesMapped != 0 || s.Ops[OpUnmap].Calls != 1 || s.Ops[OpUnmap].Pages != 2 {
		t.Fatalf("stats %+v", s)
	}
	// Unmapped pages can be mapped again, elsewhere.
	mustMap(t, b, backend.Mapping{Addr: r.Addr + 5*k64, Page: p[0]})
}

func TestFreeErrorsChangeNothing(t *testing.T) {
	b := newSim(t, Config{})
	r := mustReserve(t, b, 8*k64)
	p := mustAlloc(t, b, 3)
	mustMap(t, b, backend.Mapping{Addr: r.Addr, Page: p[2]})
	stale := mustAlloc(t, b, 1)
	if err := b.FreePages(stale); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		pages []backend.PageID
		want  error
	}{
		{"mapped", []backend.PageID{p[0], p[2]}, backend.ErrPageMapped},
		{"twice in batch", []backend.PageID{p[0], p[1], p[0]}, backend.ErrUnknownPage},
		{"already freed", []backend.PageID{p[0], stale[0]}, backend.ErrUnknownPage},
		{"never made", []backend.PageID{p[0], 1<<32 | 999}, backend.ErrUnknownPage},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := snap(b)
			wantErr(t, b.FreePages(c.pages), c.want)
			if snap(b) != before {
				t.Fatal("failed free changed state")
			}
		})
	}
	if err := b.FreePages(p[:2]); err != nil {
		t.Fatal(err)
	}
	wantErr(t, b.FreePages(p[:1]), backend.ErrUnknownPage)
	// A freed ID stays dead after its slot is reused by a new page.
	fresh := mustAlloc(t, b, 2)
	for _, f := range fresh {
		if f == p[0] || f == p[1] {
			t.Fatalf("a freed ID %#x was handed out again", f)
		}
	}
	wantErr(t, b.FreePages(p[:1]), backend.ErrUnknownPage)
	wantErr(t, b.Map([]backend.Mapping{{Addr: r.Addr + k64, Page: p[1]}}), backend.ErrUnknownPage)
	if s := b.Stats(); s.PagesAllocated != 3 {
		t.Fatalf("allocated %d", s.PagesAllocated)
	}
}

func TestBadCountsAndEmptyBatches(t *testing.T) {
	b := newSim(t, Config{})
	for _, n := range []int{0, -1} {
		ids, err := b.AllocPages(n)
		wantErr(t, err, backend.ErrBadArgument)
		if ids != nil {
			t.Fatal("ids returned on error")
		}
	}
	if err := b.Map(nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Unmap(nil, 99); err != nil {
		t.Fatal(err)
	}
	if err := b.FreePages(nil); err != nil {
		t.Fatal(err)
	}
	s := b.Stats()
	if s.Ops[OpMap].Calls != 0 || s.Ops[OpUnmap].Calls != 0 || s.Ops[OpFree].Calls != 0 || s.Ops[OpAlloc].Failed != 2 {
		t.Fatalf("empty batches counted as calls: %+v", s.Ops)
	}
}

func TestRootChunkCarving(t *testing.T) {
	b := newSim(t, Config{})
	p := mustAlloc(t, b, 33)
	s := b.Stats()
	if s.RootChunksUsed != 2 || s.RootChunksPartial != 1 || s.DeviceBytesClaimed != 4<<20 || s.PagesAllocated != 33 {
		t.Fatalf("33 pages of 64K: %+v", s)
	}
	mi, _ := b.MemInfo()
	if mi.Free != 80<<30-4<<20 {
		t.Fatalf("free %d", mi.Free)
	}
	// Free every other page of the first chunk: both chunks partly used.
	var odd []backend.PageID
	for i := 1; i < 32; i += 2 {
		odd = append(odd, p[i])
	}
	if err := b.FreePages(odd); err != nil {
		t.Fatal(err)
	}
	s = b.Stats()
	if s.RootChunksUsed != 2 || s.RootChunksPartial != 2 || s.PagesAllocated != 17 {
		t.Fatalf("after freeing 16: %+v", s)
	}
	// New pages fill the fuller chunk (16 of 32) before the emptier one
	// (1 of 32), and no third chunk is claimed.
	q := mustAlloc(t, b, 16)
	s = b.Stats()
	if s.RootChunksUsed != 2 || s.RootChunksPartial != 1 {
		t.Fatalf("refill: %+v", s)
	}
	// Freeing all pages of a chunk gives it back to the GPU.
	if err := b.FreePages([]backend.PageID{p[32]}); err != nil {
		t.Fatal(err)
	}
	s = b.Stats()
	if s.RootChunksUsed != 1 || s.RootChunksPartial != 0 || s.DeviceBytesClaimed != 2<<20 || s.PeakDeviceBytesClaimed != 4<<20 {
		t.Fatalf("after emptying a chunk: %+v", s)
	}
	var rest []backend.PageID
	for i := 0; i < 32; i += 2 {
		rest = append(rest, p[i])
	}
	if err := b.FreePages(append(rest, q...)); err != nil {
		t.Fatal(err)
	}
	s = b.Stats()
	if s.RootChunksUsed != 0 || s.PagesAllocated != 0 || s.DeviceBytesClaimed != 0 {
		t.Fatalf("after freeing all: %+v", s)
	}
	if mi, _ := b.MemInfo(); mi.Free != mi.Total {
		t.Fatalf("memory not returned: %+v", mi)
	}
}

func TestFullestChunkFirst(t *testing.T) {
	b := newSim(t, Config{PageSize: pagesize.Size256K}) // 8 pages per chunk
	p := mustAlloc(t, b, 24)                            // three full chunks
	// Leave chunk 0 with 2 pages, chunk 1 with 6, chunk 2 with 4.
	free := append(append(append([]backend.PageID{}, p[0:6]...), p[8:10]...), p[16:20]...)
	if err := b.FreePages(free); err != nil {
		t.Fatal(err)
	}
	if s := b.Stats(); s.RootChunksPartial != 3 {
		t.Fatalf("partial %d", s.RootChunksPartial)
	}
	// 2 new pages complete chunk 1 (the fullest): two partial chunks remain.
	mustAlloc(t, b, 2)
	if s := b.Stats(); s.RootChunksPartial != 2 || s.RootChunksUsed != 3 {
		t.Fatalf("after 2: %+v", s)
	}
	// 4 more complete chunk 2 (4 of 8 used), not chunk 0 (2 of 8).
	mustAlloc(t, b, 4)
	if s := b.Stats(); s.RootChunksPartial != 1 || s.PagesAllocated != 18 {
		t.Fatalf("after 6: %+v", s)
	}
}

func TestTwoMegPagesAreRootChunks(t *testing.T) {
	b := newSim(t, Config{PageSize: pagesize.Size2M, GPUMemory: 8 << 20})
	p := mustAlloc(t, b, 3)
	s := b.Stats()
	if s.RootChunksUsed != 3 || s.RootChunksPartial != 0 || s.DeviceBytesClaimed != 6<<20 {
		t.Fatalf("%+v", s)
	}
	if err := b.FreePages(p[1:2]); err != nil {
		t.Fatal(err)
	}
	if s := b.Stats(); s.RootChunksUsed != 2 {
		t.Fatalf("%+v", s)
	}
	r := mustReserve(t, b, 2*m2)
	_, err := b.Reserve(m2 + k64)
	wantErr(t, err, backend.ErrMisaligned)
	wantErr(t, b.Map([]backend.Mapping{{Addr: r.Addr + k64, Page: p[0]}}), backend.ErrMisaligned)
	mustMap(t, b, backend.Mapping{Addr: r.Addr + m2, Page: p[0]})
}

func TestOutOfMemory(t *testing.T) {
	// 5 MiB holds two root chunks: the spare MiB is never claimed.
	b := newSim(t, Config{GPUMemory: 5 << 20})
	_, err := b.AllocPages(65)
	wantErr(t, err, backend.ErrOutOfMemory)
	if !strings.Contains(err.Error(), "65 pages") || !strings.Contains(err.Error(), "64 fit") {
		t.Fatalf("message does not say what was asked and what fits: %v", err)
	}
	if s := b.Stats(); s.PagesAllocated != 0 || s.RootChunksUsed != 0 {
		t.Fatalf("failed alloc created pages: %+v", s)
	}
	p := mustAlloc(t, b, 40)
	_, err = b.AllocPages(25)
	wantErr(t, err, backend.ErrOutOfMemory)
	if !strings.Contains(err.Error(), "24 fit") {
		t.Fatalf("message: %v", err)
	}
	mustAlloc(t, b, 24)
	mi, _ := b.MemInfo()
	if mi.Free != 1<<20 || mi.Total != 5<<20 {
		t.Fatalf("meminfo %+v", mi)
	}
	_, err = b.AllocPages(1)
	wantErr(t, err, backend.ErrOutOfMemory)
	if err := b.FreePages(p[:1]); err != nil {
		t.Fatal(err)
	}
	mustAlloc(t, b, 1)
}

func TestFaultInjection(t *testing.T) {
	b := newSim(t, Config{})
	r := mustReserve(t, b, 16*k64)
	p := mustAlloc(t, b, 4)

	b.InjectFault(OpMap, 2)
	b.InjectFault(OpMap, 3)
	mustMap(t, b, backend.Mapping{Addr: r.Addr, Page: p[0]})
	if err := b.Map(nil); err != nil { // empty: not a call
		t.Fatal(err)
	}
	before := snap(b)
	wantErr(t, b.Map([]backend.Mapping{{Addr: r.Addr + k64, Page: p[1]}}), backend.ErrInjected)
	wantErr(t, b.Map([]backend.Mapping{{Addr: r.Addr + k64, Page: p[1]}}), backend.ErrInjected)
	if snap(b) != before {
		t.Fatal("injected failure changed state")
	}
	mustMap(t, b, backend.Mapping{Addr: r.Addr + k64, Page: p[1]})

	b.InjectFault(OpUnmap, 1)
	wantErr(t, b.Unmap([]uint64{r.Addr}, 0), backend.ErrInjected)
	b.InjectFault(OpAlloc, 1)
	_, err := b.AllocPages(1)
	wantErr(t, err, backend.ErrInjected)
	b.InjectFault(OpFree, 1)
	wantErr(t, b.FreePages(p[2:3]), backend.ErrInjected)
	b.InjectFault(OpReserve, 1)
	_, err = b.Reserve(k64)
	wantErr(t, err, backend.ErrInjected)
	b.InjectFault(OpRelease, 1)
	wantErr(t, b.Release(r), backend.ErrInjected) // would fail anyway; the fault comes first
	if snap(b) != before2(before) {
		t.Fatalf("injected failures changed state: %+v", snap(b))
	}
	s := b.Stats()
	for op := range NumOps {
		if s.Ops[op].Failed == 0 {
			t.Errorf("%s: failure not counted", Op(op))
		}
	}
	if s.Ops[OpMap].Failed != 2 || s.Ops[OpMap].Calls != 2 {
		t.Fatalf("map stats %+v", s.Ops[OpMap])
	}
	// No fault left pending: everything works again.
	if err := b.Unmap([]uint64{r.Addr}, 0); err != nil {
		t.Fatal(err)
	}
	if err := b.FreePages(p[2:3]); err != nil {
		t.Fatal(err)
	}

	for _, bad := range []func(){func() { b.InjectFault(OpMap, 0) }, func() { b.InjectFault(Op(NumOps), 1) }} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("bad InjectFault did not panic")
				}
			}()
			bad()
		}()
	}
}

// before2 is the state after the one successful map that follows before.
func before2(s snapshot) snapshot { s.mapped++; return s }

func TestFenceOrdersUnmap(t *testing.T) {
	f := backend.NewManualFence(false)
	b := newSim(t, Config{Fence: f})
	if b.Fence() != backend.Fence(f) {
		t.Fatal("fence not the configured one")
	}
	r := mustReserve(t, b, 4*k64)
	p := mustAlloc(t, b, 2)
	mustMap(t, b, backend.Mapping{Addr: r.Addr, Page: p[0]}, backend.Mapping{Addr: r.Addr + k64, Page: p[1]})
	e1, _ := f.Record()
	e2, _ := f.Record()
	wantErr(t, b.Unmap([]uint64{r.Addr}, e1), backend.ErrFenceNotReached)
	if _, ok := b.Translate(r.Addr); !ok {
		t.Fatal("unmapped before the fence")
	}
	if err := f.Complete(e1); err != nil {
		t.Fatal(err)
	}
	wantErr(t, b.Unmap([]uint64{r.Addr}, e2), backend.ErrFenceNotReached)
	if err := b.Unmap([]uint64{r.Addr}, e1); err != nil {
		t.Fatal(err)
	}
	// Epoch 0 is always complete.
	if err := b.Unmap([]uint64{r.Addr + k64}, 0); err != nil {
		t.Fatal(err)
	}
}

func TestDataFollowsPage(t *testing.T) {
	b := newSim(t, Config{})
	r := mustReserve(t, b, 4*k64)
	p := mustAlloc(t, b, 2)
	_, err := b.Read(r.Addr)
	wantErr(t, err, backend.ErrNotMapped)
	wantErr(t, b.Write(r.Addr, 1), backend.ErrNotMapped)
	mustMap(t, b, backend.Mapping{Addr: r.Addr, Page: p[0]})
	if v, err := b.Read(r.Addr + 100); err != nil || v != 0 {
		t.Fatalf("new page reads %d %v", v, err)
	}
	if err := b.Write(r.Addr+8, 0xfeed); err != nil {
		t.Fatal(err)
	}
	// Remapped elsewhere, the page keeps its data.
	if err := b.Unmap([]uint64{r.Addr}, 0); err != nil {
		t.Fatal(err)
	}
	mustMap(t, b, backend.Mapping{Addr: r.Addr + 3*k64, Page: p[0]}, backend.Mapping{Addr: r.Addr, Page: p[1]})
	if v, _ := b.Read(r.Addr + 3*k64); v != 0xfeed {
		t.Fatalf("data did not follow the page: %#x", v)
	}
	if v, _ := b.Read(r.Addr); v != 0 {
		t.Fatalf("other page shows data %#x", v)
	}
	// Freed and made again (same slot, new ID): zeroed, as drivers do.
	if err := b.Unmap([]uint64{r.Addr + 3*k64}, 0); err != nil {
		t.Fatal(err)
	}
	if err := b.FreePages(p[:1]); err != nil {
		t.Fatal(err)
	}
	q := mustAlloc(t, b, 1)
	if uint32(q[0]) != uint32(p[0]) {
		t.Fatalf("slot not reused: %#x after %#x", q[0], p[0])
	}
	mustMap(t, b, backend.Mapping{Addr: r.Addr + 3*k64, Page: q[0]})
	if v, _ := b.Read(r.Addr + 3*k64); v != 0 {
		t.Fatalf("new owner sees old data %#x", v)
	}
}

func TestClose(t *testing.T) {
	f := backend.NewManualFence(false)
	b, err := New(Config{PageSize: pagesize.Size128K, Fence: f, Latency: new(DefaultLatency(pagesize.Size128K))})
	if err != nil {
		t.Fatal(err)
	}
	r := mustReserve(t, b, 8<<20)
	p := mustAlloc(t, b, 5)
	mustMap(t, b, backend.Mapping{Addr: r.Addr, Page: p[0]}, backend.Mapping{Addr: r.Addr + 128<<10, Page: p[1]})
	b.InjectFault(OpMap, 1)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	s := b.Stats()
	if s.PagesAllocated != 0 || s.PagesMapped != 0 || s.RootChunksUsed != 0 || s.RootChunksPartial != 0 ||
		s.DeviceBytesClaimed != 0 || s.Regions != 0 || s.ReservedBytes != 0 {
		t.Fatalf("state held after close: %+v", s)
	}
	if s.Ops[OpMap].Calls != 1 || s.PeakPagesMapped != 2 || s.PeakDeviceBytesClaimed != 2<<20 {
		t.Fatalf("history lost on close: %+v", s)
	}
	_, err = b.Reserve(m2)
	wantErr(t, err, backend.ErrClosed)
	wantErr(t, b.Release(r), backend.ErrClosed)
	_, err = b.AllocPages(1)
	wantErr(t, err, backend.ErrClosed)
	wantErr(t, b.FreePages(p), backend.ErrClosed)
	wantErr(t, b.FreePages(nil), backend.ErrClosed)
	wantErr(t, b.Map([]backend.Mapping{{Addr: r.Addr, Page: p[2]}}), backend.ErrClosed)
	wantErr(t, b.Map(nil), backend.ErrClosed)
	wantErr(t, b.Unmap([]uint64{r.Addr}, 0), backend.ErrClosed)
	wantErr(t, b.Unmap(nil, 0), backend.ErrClosed)
	_, err = b.MemInfo()
	wantErr(t, err, backend.ErrClosed)
	_, err = b.Read(r.Addr)
	wantErr(t, err, backend.ErrClosed)
	wantErr(t, b.Write(r.Addr, 1), backend.ErrClosed)
	if _, ok := b.Translate(r.Addr); ok {
		t.Fatal("translate after close")
	}
}

func TestConcurrentStats(t *testing.T) {
	b := newSim(t, Config{})
	r := mustReserve(t, b, 1<<30)
	p := mustAlloc(t, b, 64)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			s := b.Stats()
			if s.PagesMapped < 0 || s.PagesMapped > 64 {
				t.Errorf("mapped %d", s.PagesMapped)
				return
			}
			_, _ = b.MemInfo()
			_, _ = b.Translate(r.Addr)
		}
	})
	maps := make([]backend.Mapping, len(p))
	addrs := make([]uint64, len(p))
	for i := 0; i < 200; i++ {
		for j := range p {
			addrs[j] = r.Addr + uint64(i%100*64+j)*k64
			maps[j] = backend.Mapping{Addr: addrs[j], Page: p[j]}
		}
		if err := b.Map(maps); err != nil {
			t.Error(err)
			break
		}
		if err := b.Unmap(addrs, 0); err != nil {
			t.Error(err)
			break
		}
	}
	close(stop)
	wg.Wait()
}

func TestLatencyModel(t *testing.T) {
	m := DefaultLatency(pagesize.Size2M)
	if m.Assumed || !strings.Contains(m.Source, "measured") {
		t.Fatalf("2 MiB figures marked %v %q", m.Assumed, m.Source)
	}
	if got := m.Cost(OpMap, 2); got != 2*39700*time.Nanosecond {
		t.Fatalf("map cost %v", got)
	}
	if got := m.Cost(OpAlloc, 1); got != 16500*time.Nanosecond {
		t.Fatalf("alloc cost %v", got)
	}
	if m.Cost(Op(-1), 1) != 0 {
		t.Fatal("cost of an unknown op")
	}
	for _, ps := range []pagesize.Size{pagesize.Size64K, pagesize.Size128K, pagesize.Size256K} {
		s := DefaultLatency(ps)
		if s.Assumed || !strings.Contains(s.Source, "measured") || !strings.Contains(s.Source, "H200") || !s.PerRun {
			t.Fatalf("%s figures: assumed %v, per run %v, %q", ps, s.Assumed, s.PerRun, s.Source)
		}
		// Runs must pay: 64 pages in one run cost less than in 64 runs.
		if s.CostRuns(OpMap, 64, 1) >= s.CostRuns(OpMap, 64, 64) || s.CostRuns(OpMap, 64, 64) != 64*s.Cost(OpMap, 1) {
			t.Fatalf("%s: no per-run cost", ps)
		}
	}
	if DefaultLatency(pagesize.Size256K).PerPage[OpAlloc] <= DefaultLatency(pagesize.Size64K).PerPage[OpAlloc] {
		t.Fatal("allocating a larger page is not dearer")
	}

	b := newSim(t, Config{PageSize: pagesize.Size2M, Latency: &m})
	r := mustReserve(t, b, 4*m2)
	p := mustAlloc(t, b, 3)
	mustMap(t, b, backend.Mapping{Addr: r.Addr, Page: p[0]}, backend.Mapping{Addr: r.Addr + m2, Page: p[1]})
	_ = b.Map([]backend.Mapping{{Addr: r.Addr, Page: p[2]}}) // fails: not charged
	s := b.Stats()
	if s.Ops[OpMap].ModelledTime != m.Cost(OpMap, 2) || s.Ops[OpAlloc].ModelledTime != m.Cost(OpAlloc, 3) {
		t.Fatalf("modelled %+v", s.Ops)
	}
	if s.ModelledTime() != m.Cost(OpMap, 2)+m.Cost(OpAlloc, 3)+m.Cost(OpReserve, 4) {
		t.Fatalf("total %v", s.ModelledTime())
	}
	if s.Latency == nil || *s.Latency != m {
		t.Fatal("stats do not carry the model")
	}
}

func TestSleepWaitsModelledTime(t *testing.T) {
	var m LatencyModel
	m.PerCall[OpMap] = 3 * time.Millisecond
	m.PerPage[OpMap] = 20 * time.Microsecond
	b := newSim(t, Config{Latency: &m, Sleep: true})
	r := mustReserve(t, b, 64*k64)
	p := mustAlloc(t, b, 50)
	maps := make([]backend.Mapping, len(p))
	for i := range p {
		maps[i] = backend.Mapping{Addr: r.Addr + uint64(i)*k64, Page: p[i]}
	}
	start := time.Now()
	mustMap(t, b, maps...)
	if el := time.Since(start); el < m.Cost(OpMap, 50) {
		t.Fatalf("map returned after %v, modelled %v", el, m.Cost(OpMap, 50))
	}
	start = time.Now()
	wait(30 * time.Microsecond) // below the spin threshold
	if el := time.Since(start); el < 30*time.Microsecond {
		t.Fatalf("short wait took %v", el)
	}
}

func TestOpNamesAndJSON(t *testing.T) {
	want := []string{"reserve", "release", "alloc", "free", "map", "unmap"}
	for i, w := range want {
		if Op(i).String() != w {
			t.Errorf("op %d is %q", i, Op(i))
		}
		var o Op
		if err := o.UnmarshalText([]byte(w)); err != nil || o != Op(i) {
			t.Errorf("unmarshal %q: %v %v", w, o, err)
		}
	}
	if Op(9).String() != "op(9)" {
		t.Error(Op(9).String())
	}
	if _, err := Op(9).MarshalText(); err == nil {
		t.Error("marshalled an unknown op")
	}
	var o Op
	if err := o.UnmarshalText([]byte("mmap")); err == nil {
		t.Error("unmarshalled an unknown op")
	}
	m := DefaultLatency(pagesize.Size64K)
	b := newSim(t, Config{Latency: &m})
	mustAlloc(t, b, 1)
	out, err := json.Marshal(b.Stats())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`"page_size":"64KiB"`, `"op":"alloc","calls":1`, `"per_run":true`, `"assumed":false`, `"root_chunks_used":1`} {
		if !strings.Contains(string(out), s) {
			t.Errorf("json lacks %s: %s", s, out)
		}
	}
	var back Stats
	if err := json.Unmarshal(out, &back); err != nil || back.Ops[OpAlloc].Calls != 1 || back.PageSize != pagesize.Size64K {
		t.Fatalf("round trip: %v %+v", err, back.Ops)
	}
}
