package kvcache

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/backend/sim"
	"github.com/vattn/vattn/pagesize"
)

// The property test drives the cache with random operations and checks it
// after each one against a plain model (which slots are active, at which
// length) and against the simulator's view of memory (checkConsistent: every
// active slot covered up to its length, no page mapped twice, pool
// conservation). The simulator itself refuses any unmap before its fence.
// Fuzzing explores the op sequences: go test -fuzz=FuzzCache ./kvcache

type opReader struct {
	data []byte
	pos  int
}

func (r *opReader) next() byte {
	if r.pos >= len(r.data) {
		return 0
	}
	b := r.data[r.pos]
	r.pos++
	return b
}

func (r *opReader) done() bool { return r.pos >= len(r.data) }

func runOps(t *testing.T, data []byte) {
	r := &opReader{data: data}
	flags := r.next()
	cfg := Config{Layers: 2, KVHeads: 1, HeadDim: 64, DTypeBytes: 2, MaxBatch: 4, MaxContext: 4096,
		Megacache: flags&1 != 0, EagerReclaim: flags&2 != 0, TrickleReclaim: flags&4 != 0,
		GrowPool: flags&8 != 0}
	if flags&16 != 0 {
		cfg.MaxMapBatch = 7
	}
	if flags&64 != 0 {
		cfg.GrowMargin, cfg.GrowLimit = 50, 3
	}
	if flags&128 != 0 {
		cfg.MapAhead = 2
	}
	ps, gpu := pagesize.Size64K, uint64(4<<20)
	if flags&32 != 0 {
		ps, gpu = pagesize.Size2M, 16<<20
	}
	fence := &autoWaitFence{ManualFence: backend.NewManualFence(false)}
	b, err := sim.New(sim.Config{PageSize: ps, GPUMemory: gpu, Fence: fence})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	c, err := New(cfg, b)
	if err != nil {
		t.Fatal(err)
	}
	model := map[int]int{} // active slot -> length
	// freedAt: slots freed at an epoch, whose old pages GPU work up to that
	// epoch may read. The cache may unmap them or hand them to a new request
	// only once that epoch completed: checked after every operation.
	freedAt := map[int]backend.Epoch{}
	pagesOf := func(s int) []backend.PageID {
		c.mu.Lock()
		defer c.mu.Unlock()
		return slices.Clone(c.slots[s].pages)
	}
	before := map[int][]backend.PageID{}

	// allowed reports whether err is one the operation may return given the
	// state: out of memory and injected backend faults.
	allowed := func(err error) bool {
		return errors.Is(err, ErrOutOfPages) || errors.Is(err, backend.ErrInjected)
	}
	for step := 0; !r.done() && step < 400; step++ {
		for s := range freedAt {
			before[s] = pagesOf(s)
		}
		op := r.next() % 10
		switch op {
		case 0, 1: // alloc
			n := int(r.next()) * 20
			if r.next()%16 == 0 {
				n = 5000 // too long
			}
			s, err := c.AllocBatchIdx(n)
			switch {
			case n > cfg.MaxContext:
				if !errors.Is(err, ErrContextTooLong) {
					t.Fatalf("alloc %d: %v", n, err)
				}
			case len(model) == cfg.MaxBatch:
				if !errors.Is(err, ErrNoFreeSlot) {
					t.Fatalf("alloc with all slots busy: %v", err)
				}
			case err != nil:
				t.Fatalf("alloc %d: %v", n, err)
			default:
				if _, busy := model[s]; busy {
					t.Fatalf("alloc returned active slot %d", s)
				}
				model[s] = 0
			}
		case 2: // free
			s := int(r.next() % 5)
			err := c.FreeBatchIdx(s)
			_, busy := model[s]
			switch {
			case s >= cfg.MaxBatch:
				if !errors.Is(err, ErrSlotRange) {
					t.Fatalf("free %d: %v", s, err)
				}
			case !busy:
				if !errors.Is(err, ErrSlotInactive) {
					t.Fatalf("free inactive %d: %v", s, err)
				}
			case err != nil:
				t.Fatalf("free %d: %v", s, err)
			default:
				delete(model, s)
				freedAt[s] = fence.Recorded()
				before[s] = pagesOf(s)
			}
		case 3, 4, 5: // step, sync or async
			l := make([]int, cfg.MaxBatch)
			for s, n := range model {
				d := int(r.next())
				if d%4 == 0 {
					d *= 20
				} else {
					d %= 3
				}
				l[s] = min(n+d, cfg.MaxContext)
			}
			var want error
			if x := r.next(); x%32 == 0 && len(model) < cfg.MaxBatch {
				for s := range cfg.MaxBatch {
					if _, busy := model[s]; !busy {
						l[s], want = 1, ErrSlotInactive
						break
					}
				}
			} else if x%32 == 1 && len(model) > 0 {
				for s := range model {
					l[s], want = cfg.MaxContext+1, ErrContextTooLong
					break
				}
			}
			if x := r.next(); x%8 == 0 {
				b.InjectFault([]sim.Op{sim.OpMap, sim.OpUnmap, sim.OpAlloc}[x/8%3], 1)
			}
			var err error
			if op == 5 {
				err = c.StepAsync(l)
			} else {
				err = c.Step(l)
			}
			b.ClearFaults()
			switch {
			case want != nil:
				if !errors.Is(err, want) {
					t.Fatalf("step %v: %v, want %v", l, err, want)
				}
			case err == nil:
				for s := range model {
					model[s] = l[s]
				}
			case !allowed(err):
				t.Fatalf("step %v: %v", l, err)
			}
		case 6: // reserve
			n := uint64(r.next()%8) * ps.Bytes()
			err := c.ReservePhysical(n)
			if n == 0 && !errors.Is(err, ErrBadSize) || n > 0 && err != nil && !allowed(err) {
				t.Fatalf("reserve %d: %v", n, err)
			}
		case 7: // the GPU progresses
			if x := r.next(); x%2 == 0 {
				fence.CompleteAll()
			} else if rec := fence.Recorded(); rec > 0 {
				_ = fence.Complete(rec - backend.Epoch(x%3))
			}
		case 8:
			if _, err := c.Trim(); err != nil {
				t.Fatalf("trim: %v", err)
			}
		case 9:
			_, err := c.Shrink()
			switch st := c.Stats(); {
			case err == nil && (st.IdlePages != 0 || st.FreePages != 0):
				t.Fatalf("shrink left %d idle and %d free pages", st.IdlePages, st.FreePages)
			case err != nil && !allowed(err):
				t.Fatalf("shrink: %v", err)
			}
		}
		// Compare with the model once the background mapper is idle.
		c.wait()
		for s, e := range freedAt {
			now := pagesOf(s)
			_, active := model[s]
			old, reused := before[s], active
			if len(now) < len(old) || !slices.Equal(now, old[:min(len(now), len(old))]) {
				reused = true
			}
			if len(old) > 0 && reused && fence.Completed() < e {
				t.Fatalf("op %d: slot %d's pages reused or unmapped before epoch %d completed (completed %d)",
					step, s, e, fence.Completed())
			}
			if active || len(now) == 0 {
				delete(freedAt, s)
			}
		}
		for _, s := range c.Slots() {
			n, busy := model[s.Index]
			if s.Active != busy || busy && s.Length != n {
				t.Fatalf("op %d: slot %d is %+v, model says active=%v length=%d", step, s.Index, s, busy, n)
			}
		}
		checkConsistent(t, c, b)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if st := b.Stats(); st.PagesAllocated != 0 || st.Regions != 0 {
		t.Fatalf("close left %+v", st)
	}
}

func FuzzCache(f *testing.F) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 8 {
		seed := make([]byte, 200)
		for i := range seed {
			seed[i] = byte(rng.Uint32())
		}
		f.Add(seed)
	}
	f.Fuzz(runOps)
}

// TestRandomOps runs many seeded random sequences through the same checks
// as the fuzz target, so plain `go test` covers them.
func TestRandomOps(t *testing.T) {
	n := 300
	if testing.Short() {
		n = 30
	}
	rng := rand.New(rand.NewPCG(42, 7))
	for i := range n {
		data := make([]byte, 100+rng.IntN(400))
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		data[0] = byte(i) // every config combination
		t.Run("", func(t *testing.T) { runOps(t, data) })
	}
}
