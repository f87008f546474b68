package kvcache

import (
	"errors"
	"runtime"
	"testing"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/backend/sim"
	"github.com/vattn/vattn/pagesize"
)

// mappedAt reports whether slot s's page index j of layer l's K and V are
// mapped on b.
func mappedAt(c *Cache, b *sim.Backend, l, s, j int) (k, v bool) {
	_, k = b.Translate(c.addr(l, s, j))
	_, v = b.Translate(c.addr(c.cfg.Layers+l, s, j))
	return k, v
}

func TestStepLayeredMapsLayerZeroFirst(t *testing.T) {
	b := newSim(t, pagesize.Size64K, 1<<32, nil)
	c := newCache(t, llama3(2, 4096), b)
	must(t, c.ReservePhysical(256<<20))
	s, err := c.AllocBatchIdx(100)
	must(t, err)
	// Before any layered step, WaitLayer returns at once.
	must(t, c.WaitLayer(5))
	must(t, c.StepLayered(lens(2, s, 100))) // 4 page indexes of 32 tokens
	for j := range 4 {
		if k, v := mappedAt(c, b, 0, s, j); !k || !v {
			t.Fatalf("layer 0 index %d not mapped when StepLayered returned (k %v v %v)", j, k, v)
		}
	}
	for l := range c.cfg.Layers {
		must(t, c.WaitLayer(l))
		if k, v := mappedAt(c, b, l, s, 3); !k || !v {
			t.Fatalf("layer %d not mapped after WaitLayer (k %v v %v)", l, k, v)
		}
	}
	must(t, c.Wait())
	st := c.Stats()
	if st.Foreground.Map.Calls != 1 || st.Foreground.Map.Pages != 8 {
		t.Fatalf("foreground mapped %+v, want one call of 8 pages (layer 0's K and V)", st.Foreground.Map)
	}
	if st.Background.Map.Calls != 31 || st.Background.Map.Pages != 31*8 {
		t.Fatalf("background mapped %+v, want 31 calls of 8 pages", st.Background.Map)
	}
	if st.LiveTokens != 100 || st.MappedPages != 4*64 {
		t.Fatalf("after the layered step: %d live tokens, %d mapped pages", st.LiveTokens, st.MappedPages)
	}
	checkConsistent(t, c, b)
	// A decode step after it needs nothing new.
	must(t, c.Step(lens(2, s, 101)))
	if got := c.Stats().Foreground.Map.Calls; got != 1 {
		t.Fatalf("decode step mapped again: %d foreground calls", got)
	}
	checkConsistent(t, c, b)
}

func TestStepLayeredErrors(t *testing.T) {
	b := newSim(t, pagesize.Size64K, 1<<32, nil)
	c := newCache(t, llama3(2, 4096), b)
	s, err := c.AllocBatchIdx(100)
	must(t, err)
	if err := c.StepLayered(lens(2, s, 100)); !errors.Is(err, ErrOutOfPages) {
		t.Fatalf("without pages: %v, want ErrOutOfPages", err)
	}
	if err := c.StepLayered(lens(2, s, 5000)); !errors.Is(err, ErrContextTooLong) {
		t.Fatalf("too long: %v", err)
	}
	if err := c.WaitLayer(32); !errors.Is(err, ErrLayerRange) {
		t.Fatalf("layer 32: %v", err)
	}
	if err := c.WaitLayer(-1); !errors.Is(err, ErrLayerRange) {
		t.Fatalf("layer -1: %v", err)
	}
	must(t, c.ReservePhysical(256<<20))
	// Layer 0 fails: nothing changes.
	b.InjectFault(sim.OpMap, 1)
	if err := c.StepLayered(lens(2, s, 100)); !errors.Is(err, ErrBackend) {
		t.Fatalf("layer 0 map failure: %v", err)
	}
	checkConsistent(t, c, b)
	must(t, c.Close())
	if err := c.StepLayered(lens(2, s, 100)); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
	if err := c.WaitLayer(0); !errors.Is(err, ErrClosed) {
		t.Fatalf("WaitLayer after close: %v, want ErrClosed", err)
	}
}

// A background failure: WaitLayer reports it for the unmapped layers, and
// the next call undoes the mapped ones, so the cache is as before.
func TestStepLayeredBackgroundFailure(t *testing.T) {
	f := backend.NewManualFence(false)
	b := newSim(t, pagesize.Size64K, 1<<32, f)
	c := newCache(t, llama3(2, 4096), b)
	must(t, c.ReservePhysical(256<<20))
	s, err := c.AllocBatchIdx(100)
	must(t, err)
	b.InjectFault(sim.OpMap, 4) // layer 3
	must(t, c.StepLayered(lens(2, s, 100)))
	must(t, c.WaitLayer(2))
	if err := c.WaitLayer(3); !errors.Is(err, ErrBackend) {
		t.Fatalf("WaitLayer(3) = %v, want ErrBackend", err)
	}
	if err := c.WaitLayer(31); !errors.Is(err, ErrBackend) {
		t.Fatalf("WaitLayer(31) = %v, want ErrBackend", err)
	}
	if st := c.Stats(); st.BackgroundErrors != 1 || st.MappedPages != 0 {
		t.Fatalf("after the failure: %d background errors, %d mapped pages in slots", st.BackgroundErrors, st.MappedPages)
	}
	// The next call undoes layers 0-2 once the GPU is done with the step.
	done := make(chan error, 1)
	go func() { done <- c.Step(lens(2, s, 100)) }()
	for f.Recorded() == 0 { // play the GPU: finish the step's work once recorded
		runtime.Gosched()
	}
	f.CompleteAll()
	must(t, <-done)
	checkConsistent(t, c, b)
	if st := c.Stats(); st.LiveTokens != 100 || st.FenceWaits == 0 {
		t.Fatalf("after the retry: %+v", st)
	}
	must(t, c.WaitLayer(31)) // the failure is forgotten
}

func TestStepLayeredMegacache(t *testing.T) {
	b := newSim(t, pagesize.Size64K, 1<<32, nil)
	cfg := llama3(2, 4096)
	cfg.Megacache = true
	c := newCache(t, cfg, b)
	must(t, c.ReservePhysical(256<<20))
	s, err := c.AllocBatchIdx(100)
	must(t, err)
	must(t, c.StepLayered(lens(2, s, 100)))
	for l := range 32 {
		must(t, c.WaitLayer(l))
	}
	st := c.Stats()
	if st.Background.Map.Calls != 0 || st.Foreground.Map.Calls != 1 || st.LiveTokens != 100 {
		t.Fatalf("megacache layered step: %+v", st)
	}
	checkConsistent(t, c, b)
	if err := c.StepLayered(lens(2, s+1, 1)); !errors.Is(err, ErrSlotInactive) {
		t.Fatalf("inactive slot: %v", err)
	}
}

// The background mapper and WaitLayer from another goroutine, under -race.
func TestStepLayeredRace(t *testing.T) {
	b := newSim(t, pagesize.Size64K, 1<<32, nil)
	c := newCache(t, llama3(4, 4096), b)
	must(t, c.ReservePhysical(1<<30))
	for n := range 20 {
		s, err := c.AllocBatchIdx(1)
		must(t, err)
		must(t, c.StepLayered(lens(4, s, 1+n*97)))
		errs := make(chan error, 1)
		go func() {
			for l := range 32 {
				if err := c.WaitLayer(l); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
		_ = c.Stats()
		must(t, <-errs)
		must(t, c.FreeBatchIdx(s))
	}
	checkConsistent(t, c, b)
}
