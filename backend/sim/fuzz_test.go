package sim

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/pagesize"
)

// model is a plain reference for the simulator: maps instead of tables, and
// the expected error of every call worked out in the order the driver
// checks. The fuzz target runs both side by side.
type model struct {
	ps       uint64
	capacity int // pages the GPU holds
	perChunk int
	live     map[backend.PageID]uint64 // page -> data word
	dead     []backend.PageID          // freed IDs, which must stay unknown
	at       map[uint64]backend.PageID // address -> page
	where    map[backend.PageID]uint64 // page -> address
	regions  []backend.Region
	entered  [NumOps]uint64
	faults   [NumOps][]uint64
	closed   bool
}

func (m *model) region(addr uint64) (backend.Region, bool) {
	for _, r := range m.regions {
		if r.Contains(addr, 1) {
			return r, true
		}
	}
	return backend.Region{}, false
}

// enter mirrors Backend.enter.
func (m *model) enter(op Op) error {
	if m.closed {
		return backend.ErrClosed
	}
	m.entered[op]++
	if i := slices.Index(m.faults[op], m.entered[op]); i >= 0 {
		m.faults[op] = slices.Delete(m.faults[op], i, i+1)
		return backend.ErrInjected
	}
	return nil
}

func (m *model) mapErr(maps []backend.Mapping) error {
	at := map[uint64]bool{}
	used := map[backend.PageID]bool{}
	for _, x := range maps {
		if x.Addr%m.ps != 0 {
			return backend.ErrMisaligned
		}
		if _, ok := m.region(x.Addr); !ok {
			return backend.ErrOutOfRange
		}
		if _, ok := m.live[x.Page]; !ok {
			return backend.ErrUnknownPage
		}
		if _, ok := m.where[x.Page]; ok || used[x.Page] {
			return backend.ErrAlreadyMapped
		}
		if _, ok := m.at[x.Addr]; ok || at[x.Addr] {
			return backend.ErrAlreadyMapped
		}
		at[x.Addr], used[x.Page] = true, true
	}
	return nil
}

func (m *model) unmapErr(addrs []uint64) error {
	seen := map[uint64]bool{}
	for _, a := range addrs {
		if a%m.ps != 0 {
			return backend.ErrMisaligned
		}
		if _, ok := m.region(a); !ok {
			return backend.ErrOutOfRange
		}
		if _, ok := m.at[a]; !ok || seen[a] {
			return backend.ErrNotMapped
		}
		seen[a] = true
	}
	return nil
}

func (m *model) freeErr(pages []backend.PageID) error {
	seen := map[backend.PageID]bool{}
	for _, p := range pages {
		if _, ok := m.live[p]; !ok || seen[p] {
			return backend.ErrUnknownPage
		}
		if _, ok := m.where[p]; ok {
			return backend.ErrPageMapped
		}
		seen[p] = true
	}
	return nil
}

// fuzzInput hands out bytes, zeros once they run out.
type fuzzInput struct {
	data []byte
}

func (in *fuzzInput) next() int {
	if len(in.data) == 0 {
		return 0
	}
	v := in.data[0]
	in.data = in.data[1:]
	return int(v)
}

func (in *fuzzInput) done() bool { return len(in.data) == 0 }

func sameErr(got, want error) error {
	if want == nil && got == nil {
		return nil
	}
	if want == nil || !errors.Is(got, want) {
		return fmt.Errorf("got %v, want %v", got, want)
	}
	return nil
}

// runOps drives a backend and the model with the operations data encodes
// and checks they agree after each one.
func runOps(data []byte) error {
	in := &fuzzInput{data: data}
	ps := pagesize.All()[in.next()%4]
	chunks := 1 + in.next()%3
	fence := backend.NewManualFence(false)
	b, err := New(Config{PageSize: ps, GPUMemory: uint64(chunks) * rootChunkSize, VASize: 64 << 20, Fence: fence})
	if err != nil {
		return err
	}
	defer b.Close()
	perChunk := int(rootChunkSize / ps.Bytes())
	m := &model{
		ps: ps.Bytes(), capacity: chunks * perChunk, perChunk: perChunk,
		live: map[backend.PageID]uint64{}, at: map[uint64]backend.PageID{}, where: map[backend.PageID]uint64{},
	}
	// pickPage returns a live page, a dead one or a made-up ID.
	pickPage := func() backend.PageID {
		v := in.next()
		switch {
		case v%8 == 7:
			return backend.PageID(v)
		case v%8 == 6 && len(m.dead) > 0:
			return m.dead[v%len(m.dead)]
		}
		ids := make([]backend.PageID, 0, len(m.live))
		for id := range m.live {
			ids = append(ids, id)
		}
		if len(ids) == 0 {
			return 0
		}
		slices.Sort(ids)
		return ids[v%len(ids)]
	}
	// pickAddr returns an address in a region, sometimes misaligned or just
	// past the end.
	pickAddr := func() uint64 {
		if len(m.regions) == 0 {
			return vaBase
		}
		r := m.regions[in.next()%len(m.regions)]
		a := r.Addr + uint64(in.next())%(r.Size/m.ps+1)*m.ps
		if in.next()%16 == 0 {
			a += 4096
		}
		return a
	}
	for step := 0; !in.done(); step++ {
		op := in.next() % 10
		var got, want error
		switch op {
		case 0: // reserve
			size := uint64(1+in.next()%40) * m.ps
			var reserved uint64
			for _, r := range m.regions {
				reserved += r.Size
			}
			r, err := b.Reserve(size)
			got = err
			if want = m.enter(OpReserve); want == nil && err == nil {
				for _, o := range m.regions {
					if r.Addr < o.End() && o.Addr < r.End() {
						return fmt.Errorf("step %d: region %+v overlaps %+v", step, r, o)
					}
				}
				if r.Addr%rootChunkSize != 0 || r.Size != size {
					return fmt.Errorf("step %d: region %+v for %#x bytes", step, r, size)
				}
				m.regions = append(m.regions, r)
			} else if want == nil && (reserved+size > 64<<20 || err != nil) {
				// Over the limit it must fail; under it, 2 MiB alignment
				// gaps may still leave no room.
				want = backend.ErrOutOfMemory
			}
		case 1: // release
			if len(m.regions) == 0 {
				continue
			}
			i := in.next() % len(m.regions)
			r := m.regions[i]
			got = b.Release(r)
			if want = m.enter(OpRelease); want == nil {
				for a := range m.at {
					if r.Contains(a, 1) {
						want = backend.ErrRegionInUse
					}
				}
			}
			if want == nil {
				m.regions = slices.Delete(m.regions, i, i+1)
			}
		case 2: // alloc
			n := in.next()%20 - 1
			ids, err := b.AllocPages(n)
			got = err
			want = m.enter(OpAlloc)
			switch {
			case want != nil:
			case n <= 0:
				want = backend.ErrBadArgument
			case len(m.live)+n > m.capacity:
				want = backend.ErrOutOfMemory
			default:
				for _, id := range ids {
					if _, dup := m.live[id]; dup || slices.Contains(m.dead, id) {
						return fmt.Errorf("step %d: alloc returned a used ID %#x", step, id)
					}
					m.live[id] = 0
				}
				if len(ids) != n {
					return fmt.Errorf("step %d: %d ids for %d pages", step, len(ids), n)
				}
			}
		case 3: // free
			pages := make([]backend.PageID, in.next()%4)
			for i := range pages {
				pages[i] = pickPage()
			}
			got = b.FreePages(pages)
			if len(pages) > 0 {
				if want = m.enter(OpFree); want == nil {
					want = m.freeErr(pages)
				}
			}
			if want == nil {
				for _, p := range pages {
					delete(m.live, p)
					m.dead = append(m.dead, p)
				}
			}
		case 4, 5: // map
			maps := make([]backend.Mapping, in.next()%5)
			for i := range maps {
				maps[i] = backend.Mapping{Addr: pickAddr(), Page: pickPage()}
			}
			got = b.Map(maps)
			if len(maps) > 0 {
				if want = m.enter(OpMap); want == nil {
					want = m.mapErr(maps)
				}
			}
			if want == nil {
				for _, x := range maps {
					m.at[x.Addr], m.where[x.Page] = x.Page, x.Addr
				}
			}
		case 6: // unmap
			addrs := make([]uint64, in.next()%4)
			mapped := slices.Sorted(func(yield func(uint64) bool) {
				for a := range m.at {
					if !yield(a) {
						return
					}
				}
			})
			for i := range addrs {
				if v := in.next(); v%4 != 0 && len(mapped) > 0 {
					addrs[i] = mapped[v%len(mapped)]
				} else {
					addrs[i] = pickAddr()
				}
			}
			epoch := backend.Epoch(in.next() % int(fence.Recorded()+1))
			got = b.Unmap(addrs, epoch)
			if len(addrs) > 0 {
				want = m.enter(OpUnmap)
				if want == nil && epoch > fence.Completed() {
					want = backend.ErrFenceNotReached
				}
				if want == nil {
					want = m.unmapErr(addrs)
				}
			}
			if want == nil {
				for _, a := range addrs {
					delete(m.where, m.at[a])
					delete(m.at, a)
				}
			}
		case 7: // fence
			if in.next()%2 == 0 {
				_, _ = fence.Record()
			} else {
				_ = fence.Complete(backend.Epoch(in.next() % int(fence.Recorded()+1)))
			}
		case 8: // inject
			o, nth := Op(in.next()%NumOps), 1+in.next()%3
			b.InjectFault(o, nth)
			m.faults[o] = append(m.faults[o], m.entered[o]+uint64(nth))
		case 9: // data
			a := pickAddr()
			v := uint64(in.next()) + 1
			got = b.Write(a, v)
			p, ok := m.at[a&^(m.ps-1)]
			if !ok {
				want = backend.ErrNotMapped
			} else {
				m.live[p] = v
			}
		}
		if err := sameErr(got, want); err != nil {
			return fmt.Errorf("step %d (op %d): %w", step, op, err)
		}
		if err := m.check(b); err != nil {
			return fmt.Errorf("step %d (op %d): %w", step, op, err)
		}
	}
	return nil
}

// check compares the backend's state with the model's.
func (m *model) check(b *Backend) error {
	s := b.Stats()
	var reserved uint64
	for _, r := range m.regions {
		reserved += r.Size
	}
	switch {
	case s.PagesAllocated != len(m.live):
		return fmt.Errorf("allocated %d, model %d", s.PagesAllocated, len(m.live))
	case s.PagesMapped != len(m.at):
		return fmt.Errorf("mapped %d, model %d", s.PagesMapped, len(m.at))
	case s.Regions != len(m.regions) || s.ReservedBytes != reserved:
		return fmt.Errorf("regions %d/%#x, model %d/%#x", s.Regions, s.ReservedBytes, len(m.regions), reserved)
	case s.DeviceBytesClaimed > s.GPUMemory || s.DeviceBytesClaimed != uint64(s.RootChunksUsed)*rootChunkSize:
		return fmt.Errorf("claimed %d of %d", s.DeviceBytesClaimed, s.GPUMemory)
	case s.RootChunksUsed*m.perChunk < len(m.live) || s.RootChunksUsed > len(m.live):
		return fmt.Errorf("%d root chunks for %d pages", s.RootChunksUsed, len(m.live))
	case s.RootChunksPartial > s.RootChunksUsed:
		return fmt.Errorf("%d partial of %d chunks", s.RootChunksPartial, s.RootChunksUsed)
	}
	for a, p := range m.at {
		got, ok := b.Translate(a + m.ps - 1)
		if !ok || got != p {
			return fmt.Errorf("translate %#x: %#x %v, model %#x", a, got, ok, p)
		}
		v, err := b.Read(a)
		if err != nil || v != m.live[p] {
			return fmt.Errorf("read %#x: %d %v, model %d", a, v, err, m.live[p])
		}
	}
	return nil
}

func FuzzBackend(f *testing.F) {
	f.Add([]byte{0, 0, 0, 10, 2, 5, 4, 2, 0, 1, 0, 1, 0, 1, 2, 6, 1, 1, 0, 0, 3, 1, 0})
	f.Add([]byte{1, 2, 0, 3, 2, 19, 8, 4, 2, 4, 3, 0, 1, 2, 0, 3, 2, 0, 1, 4, 7, 0, 6, 2, 1, 0, 1, 1, 7, 1, 1, 6, 2, 1, 0, 1, 1})
	f.Add([]byte{3, 1, 0, 5, 2, 2, 2, 2, 2, 2, 4, 2, 0, 0, 0, 0, 0, 0, 3, 1, 0, 3, 2, 6, 0, 1, 9, 0, 0, 0, 9, 3, 1, 3, 1, 7})
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := runOps(data); err != nil {
			t.Fatal(err)
		}
	})
}

// TestRandomOps runs the fuzz target's model check over pseudo-random
// inputs, so the comparison covers long sequences in every plain test run.
func TestRandomOps(t *testing.T) {
	x := uint64(0x9e3779b97f4a7c15)
	for seed := range 200 {
		data := make([]byte, 400)
		for i := range data {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			data[i] = byte(x)
		}
		if err := runOps(data); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
	}
}
