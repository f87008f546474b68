package kvcache

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/pagesize"
)

// signalFence is a manual fence that tells when someone starts waiting.
type signalFence struct {
	*backend.ManualFence
	waiting chan struct{}
}

func newManualFence() *signalFence {
	return &signalFence{backend.NewManualFence(false), make(chan struct{}, 1)}
}

func (f *signalFence) Wait(ctx context.Context, e backend.Epoch) error {
	select {
	case f.waiting <- struct{}{}:
	default:
	}
	return f.ManualFence.Wait(ctx, e)
}

func (f *signalFence) waitForWaiter() { <-f.waiting }

// small is a 4-layer model: 8 pages per page index at 64 KiB, 32 tokens a page.
func small(batch, ctx int) Config {
	return Config{Layers: 4, KVHeads: 8, HeadDim: 128, DTypeBytes: 2, MaxBatch: batch, MaxContext: ctx}
}

// hammer is one goroutine's share of TestGoroutines: it holds at most one
// slot of its own and steps it with every kind of step, reading stats in
// between, until it has made iters calls or (iters < 0) the cache is
// closed. Only the errors a busy cache may give are accepted: no free
// slot, out of pages, and closed.
func hammer(c *Cache, g, iters int, calls *atomic.Int64) error {
	cfg := c.Config()
	l := make([]int, cfg.MaxBatch)
	slot := -1
	for i := 0; iters < 0 || i < iters; i++ {
		var err error
		op := "alloc"
		switch {
		case slot < 0:
			var s int
			if s, err = c.AllocBatchIdx(1 + (g*37+i)%200); err == nil {
				slot = s
			}
		case (g+i)%13 == 12:
			op = "free"
			if err = c.FreeBatchIdx(slot); err == nil {
				l[slot], slot = 0, -1
			}
		default:
			l[slot] = min(l[slot]+1+(g+i)%40, cfg.MaxContext)
			switch i % 4 {
			case 0:
				op, err = "step", c.Step(l)
			case 1:
				op, err = "step async", c.StepAsync(l)
			case 2:
				op, err = "step layered", c.StepLayered(l)
				if err == nil {
					err = c.WaitLayer(i % cfg.Layers)
				}
			case 3:
				op = "stats"
				st := c.Stats()
				if st.ActiveSlots > cfg.MaxBatch || st.FreePages > st.ReservedPages {
					return fmt.Errorf("goroutine %d: impossible stats %+v", g, st)
				}
				_ = c.Slots()
				_ = c.FreeIndexes()
				if _, err = c.K(g % cfg.Layers); err == nil {
					err = c.Wait()
				}
			}
		}
		calls.Add(1)
		switch {
		case err == nil, errors.Is(err, ErrNoFreeSlot), errors.Is(err, ErrOutOfPages):
		case errors.Is(err, ErrClosed):
			if iters >= 0 {
				return fmt.Errorf("goroutine %d: %s: closed while nobody closes", g, op)
			}
			return nil
		default:
			return fmt.Errorf("goroutine %d call %d: %s: %w", g, i, op, err)
		}
	}
	return nil
}

// TestGoroutines: eight goroutines step, allocate, free and read one cache
// at once, in rounds; in half of them a ninth closes it mid-flight. Run
// under -race (scripts/test.sh does): calls must not race, deadlock or
// corrupt the cache, and Close must wait for the call in flight, then
// release everything, after which every call says ErrClosed.
func TestGoroutines(t *testing.T) {
	rounds := 8
	if testing.Short() {
		rounds = 4
	}
	for round := range rounds {
		closing := round%2 == 1
		t.Run(fmt.Sprintf("round%d-close=%v", round, closing), func(t *testing.T) {
			b := newSim(t, pagesize.Size64K, 1<<30, nil)
			cfg := small(16, 1024)
			cfg.TrickleReclaim = round%4 >= 2
			c, err := New(cfg, b)
			must(t, err)
			// Room for one slot at full length: steps run out of pages
			// and reclaim idle slots' pages.
			must(t, c.ReservePhysical(16<<20))

			var calls atomic.Int64
			errs := make(chan error, 9)
			var wg sync.WaitGroup
			iters := 150
			if closing {
				iters = -1
			}
			for g := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- hammer(c, g, iters, &calls)
				}()
			}
			if closing {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for calls.Load() < int64(100*round) {
						runtime.Gosched()
					}
					errs <- c.Close()
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			if !closing {
				must(t, c.Wait())
				checkConsistent(t, c, b)
				if st := c.Stats(); st.Foreground.Map.Calls == 0 || st.Background.Map.Calls == 0 || st.ReclaimedPages == 0 {
					t.Fatalf("the round did not exercise the cache: %+v", st)
				}
				must(t, c.Close())
			}
			if st := b.Stats(); st.PagesAllocated != 0 || st.PagesMapped != 0 || st.Regions != 0 {
				t.Fatalf("after Close the backend still holds %+v", st)
			}
			checkClosed(t, c)
		})
	}
}

// checkClosed: every call on a closed cache is ErrClosed, and none hands
// out an address.
func checkClosed(t *testing.T, c *Cache) {
	t.Helper()
	l := make([]int, c.Config().MaxBatch)
	for name, err := range map[string]error{
		"Step":            c.Step(l),
		"StepAsync":       c.StepAsync(l),
		"StepLayered":     c.StepLayered(l),
		"WaitLayer":       c.WaitLayer(0),
		"Wait":            c.Wait(),
		"FreeBatchIdx":    c.FreeBatchIdx(0),
		"ReservePhysical": c.ReservePhysical(1 << 20),
		"AllocBatchIdx":   second(c.AllocBatchIdx(1)),
		"Trim":            second(c.Trim()),
		"Shrink":          second(c.Shrink()),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	for name, fn := range map[string]func(int) (uint64, error){"K": c.K, "V": c.V} {
		if a, err := fn(0); a != 0 || !errors.Is(err, ErrClosed) {
			t.Errorf("%s(0) after Close = %#x, %v; want 0, ErrClosed", name, a, err)
		}
	}
	must(t, c.Close()) // a second Close is a no-op
}

func second[T any](_ T, err error) error { return err }

// TestCloseWaitsForTheCallInFlight: a Close from another goroutine while a
// step waits for the GPU returns only after that step has finished, and
// the step is not cut short.
func TestCloseWaitsForTheCallInFlight(t *testing.T) {
	f := newManualFence()
	b := newSim(t, pagesize.Size64K, 1<<30, f)
	c, err := New(small(2, 1024), b)
	must(t, err)
	must(t, c.ReservePhysical(8*64<<10)) // one page index
	i, _ := c.AllocBatchIdx(10)
	must(t, c.Step(lens(2, i, 10)))
	must(t, c.FreeBatchIdx(i)) // its page stays mapped until the GPU is done
	j, _ := c.AllocBatchIdx(0)
	if j == i {
		t.Fatalf("allocation took the slot the GPU still reads")
	}
	stepped := make(chan error, 1)
	go func() { stepped <- c.Step(lens(2, j, 10)) }() // must wait for i's readers
	f.waitForWaiter()
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	f.CompleteAll() // the GPU finishes: the step reclaims i's page, then Close runs
	if err := <-stepped; err != nil {
		t.Fatalf("the step in flight failed: %v", err)
	}
	for {
		select {
		case err := <-closed:
			must(t, err)
			if st := b.Stats(); st.PagesAllocated != 0 || st.Regions != 0 {
				t.Fatalf("after Close the backend still holds %+v", st)
			}
			return
		default:
			f.CompleteAll() // Close waits for the GPU too
			runtime.Gosched()
		}
	}
}

// TestFailedReserveIsNotCounted: a reservation the device cannot hold
// changes neither the pool nor the page counts; the call is counted.
func TestFailedReserveIsNotCounted(t *testing.T) {
	b := newSim(t, pagesize.Size64K, 1<<30, nil)
	c := newCache(t, small(2, 1024), b)
	err := c.ReservePhysical(1 << 40)
	if !errors.Is(err, ErrOutOfPages) {
		t.Fatalf("ReservePhysical(1 TiB) on a 1 GiB device = %v, want ErrOutOfPages", err)
	}
	st := c.Stats()
	if st.ReservedPages != 0 || st.FreePages != 0 || st.Alloc.Pages != 0 || st.Alloc.Calls != 1 {
		t.Fatalf("after a failed reserve: reserved %d free %d alloc %+v", st.ReservedPages, st.FreePages, st.Alloc)
	}
	must(t, c.ReservePhysical(1<<20))
	st = c.Stats()
	if st.ReservedPages != 16 || st.Alloc.Pages != 16 || st.Alloc.Calls != 2 {
		t.Fatalf("after a good reserve: reserved %d alloc %+v", st.ReservedPages, st.Alloc)
	}
	checkConsistent(t, c, b)
}
