package kvcache

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/pagesize"
)

// wide is a small model whose pages hold few tokens (2 KiB per token per
// layer at 64 KiB pages: 32 tokens per-layer, 16 with megacache), so slots
// cross page boundaries often.
func wide(batch, ctx int, mega bool) Config {
	return Config{Layers: 2, KVHeads: 8, HeadDim: 128, DTypeBytes: 2, MaxBatch: batch, MaxContext: ctx, Megacache: mega}
}

// decodeJobs decodes every slot of c in lock step (the worst case: all of
// them cross their page boundaries in the same step) through StepAsync for
// steps steps from length start, and returns, per step, the pages the
// caller's call mapped and the pages its background job mapped.
func decodeJobs(t *testing.T, c *Cache, start, steps int) (fg, bg []uint64) {
	t.Helper()
	batch := c.Config().MaxBatch
	l := make([]int, batch)
	for range batch {
		s, err := c.AllocBatchIdx(start)
		must(t, err)
		l[s] = start
	}
	must(t, c.Step(l))
	for range steps {
		for i := range l {
			l[i] = min(l[i]+1, c.Config().MaxContext)
		}
		before := c.Stats()
		must(t, c.StepAsync(l))
		mid := c.Stats() // waits while the job holds the lock; Wait makes sure
		must(t, c.Wait())
		after := c.Stats()
		fg = append(fg, mid.Foreground.Map.Pages-before.Foreground.Map.Pages)
		bg = append(bg, after.Background.Map.Pages-mid.Background.Map.Pages)
	}
	if st := c.Stats(); st.BackgroundErrors != 0 {
		t.Fatalf("background errors: %d, last %q", st.BackgroundErrors, st.LastBackgroundError)
	}
	return fg, bg
}

func TestGrowMarginSpreadsBursts(t *testing.T) {
	const batch, steps, warm, limit = 16, 400, 150, 4
	for _, mega := range []bool{false, true} {
		for _, ahead := range []int{0, 3} {
			t.Run(fmt.Sprintf("mega=%v/map-ahead=%d", mega, ahead), func(t *testing.T) {
				run := func(margin int) (fg, bg []uint64, c *Cache) {
					b := newSim(t, pagesize.Size64K, 1<<32, nil)
					cfg := wide(batch, 1024, mega)
					cfg.MapAhead, cfg.GrowMargin, cfg.GrowLimit = ahead, margin, limit
					c = newCache(t, cfg, b)
					must(t, c.ReservePhysical(512<<20))
					fg, bg = decodeJobs(t, c, 1, steps)
					checkConsistent(t, c, b)
					return fg, bg, c
				}
				// Without a margin, every slot grows in the same job.
				_, bg, c := run(0)
				ppi := uint64(c.Layout().PagesPerIndex)
				burst := uint64(batch) * ppi
				if m := maxOf(bg); m < burst {
					t.Fatalf("without a margin the biggest job mapped %d pages, want the whole batch's %d", m, burst)
				}
				if got := c.Stats().BackgroundJobMaxPages; got != maxOf(bg) {
					t.Errorf("BackgroundJobMaxPages = %d, the steps saw %d", got, maxOf(bg))
				}
				fg, bg, c := run(64)
				// Past the warm-up, no job maps more than the limit and
				// no step maps on the critical path: growth kept ahead.
				for i := warm; i < steps; i++ {
					if fg[i] != 0 {
						t.Errorf("step %d mapped %d pages on the critical path", i, fg[i])
					}
					if bg[i] > limit*ppi {
						t.Errorf("step %d: background job mapped %d pages, limit %d indexes of %d", i, bg[i], limit, ppi)
					}
				}
				st := c.Stats()
				if st.AheadIndexes == 0 {
					t.Error("no index was mapped ahead")
				}
				// Ahead memory is bounded: margin plus map-ahead per slot.
				l := c.Layout()
				for _, s := range c.Slots() {
					if max := l.indexesFor(s.Length+1+64) + ahead; s.MappedIndex > max {
						t.Errorf("slot %d at %d tokens holds %d indexes, more than %d", s.Index, s.Length, s.MappedIndex, max)
					}
				}
			})
		}
	}
}

// TestGrowLimitPages bounds what background jobs map ahead of need in
// pages: the same bound for either layout, although a page index is 16
// pages per-layer and 2 with megacache here. With GrowLimit too, both
// apply; a bound below one index still lets a job grow one index.
func TestGrowLimitPages(t *testing.T) {
	const batch, steps, warm = 16, 300, 150
	cases := []struct {
		name              string
		limit, limitPages int
		maxPages          func(ppi int) int // the most one job may map ahead
		keepsUp           bool              // growth stays off the critical path in both layouts
	}{
		{"pages", 0, 24, func(ppi int) int { return 24 / ppi * ppi }, true},
		{"below one index", 0, 1, func(ppi int) int { return ppi }, false},
		{"both, indexes tighter", 1, 1000, func(ppi int) int { return ppi }, false},
		{"both, pages tighter", 1000, 24, func(ppi int) int { return 24 / ppi * ppi }, true},
	}
	for _, tc := range cases {
		for _, mega := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/mega=%v", tc.name, mega), func(t *testing.T) {
				b := newSim(t, pagesize.Size64K, 1<<32, nil)
				cfg := wide(batch, 1024, mega)
				cfg.Layers = 8 // 16 pages per index per-layer, 2 with megacache
				cfg.GrowMargin, cfg.GrowLimit, cfg.GrowLimitPages = 64, tc.limit, tc.limitPages
				c := newCache(t, cfg, b)
				must(t, c.ReservePhysical(1<<30))
				ppi := uint64(c.Layout().PagesPerIndex)
				limit := uint64(tc.maxPages(int(ppi)))
				l := make([]int, batch)
				for range batch {
					s, err := c.AllocBatchIdx(1)
					must(t, err)
					l[s] = 1
				}
				must(t, c.Step(l))
				var most uint64
				for step := range steps {
					for i := range l {
						l[i]++
					}
					before := c.Stats()
					must(t, c.StepAsync(l))
					mid := c.Stats()
					must(t, c.Wait())
					after := c.Stats()
					ahead := (after.AheadIndexes - before.AheadIndexes) * ppi
					most = max(most, ahead)
					if ahead > limit {
						t.Errorf("step %d: the job mapped %d pages ahead of need, limit %d (%d pages per index)", step, ahead, limit, ppi)
					}
					if fg := mid.Foreground.Map.Pages - before.Foreground.Map.Pages; tc.keepsUp && step >= warm && fg != 0 {
						t.Errorf("step %d mapped %d pages on the critical path", step, fg)
					}
				}
				if most == 0 {
					t.Error("nothing was mapped ahead")
				}
				if st := c.Stats(); st.BackgroundErrors != 0 {
					t.Fatalf("background errors: %d, last %q", st.BackgroundErrors, st.LastBackgroundError)
				}
				checkConsistent(t, c, b)
			})
		}
	}
}

func maxOf(v []uint64) uint64 {
	var m uint64
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

// TestGrowMarginStopsAtTheSlotEnd decodes to MaxContext with a margin and
// map-ahead far beyond it: no slot maps past its last index.
func TestGrowMarginStopsAtTheSlotEnd(t *testing.T) {
	for _, mega := range []bool{false, true} {
		b := newSim(t, pagesize.Size64K, 1<<32, nil)
		cfg := wide(4, 200, mega)
		cfg.GrowMargin, cfg.MapAhead, cfg.GrowLimit = 1000, 50, 1000
		c := newCache(t, cfg, b)
		must(t, c.ReservePhysical(256<<20))
		decodeJobs(t, c, 1, 250)
		checkConsistent(t, c, b)
		for _, s := range c.Slots() {
			if s.MappedIndex != c.Layout().IndexesPerSlot || s.Length != 200 {
				t.Errorf("mega=%v: slot %+v", mega, s)
			}
		}
	}
}

// TestAheadPagesAreSurplus: what a slot holds ahead of need goes back to a
// step short of pages, and mapping ahead never takes another active slot's
// pages nor allocates without GrowPool.
func TestAheadPagesAreSurplus(t *testing.T) {
	b := newSim(t, pagesize.Size64K, 1<<32, nil)
	cfg := wide(2, 1024, false) // 32 tokens per index, 4 pages per index
	cfg.GrowMargin, cfg.GrowLimit = 100, 8
	c := newCache(t, cfg, b)
	must(t, c.ReservePhysical(8*4*64<<10)) // 8 indexes
	i, _ := c.AllocBatchIdx(0)
	must(t, c.StepAsync(lens(2, i, 10)))
	must(t, c.Wait())
	// Next length 11, margin 100: 111 tokens, 4 indexes.
	if s := c.Slots()[i]; s.MappedIndex != 4 {
		t.Fatalf("slot %+v, want 4 indexes", s)
	}
	// A second request needs 6 indexes: 4 from the pool, 2 of i's ahead.
	j, _ := c.AllocBatchIdx(0)
	must(t, c.Step(lens(2, i, 11, j, 190)))
	s := c.Slots()
	if s[i].MappedIndex != 2 || s[j].MappedIndex != 6 {
		t.Fatalf("slots %+v", s)
	}
	checkConsistent(t, c, b)
	// Now the pool is empty: neither slot is grown ahead at the other's
	// expense, and nothing is allocated.
	must(t, c.StepAsync(lens(2, i, 12, j, 191)))
	must(t, c.Wait())
	s = c.Slots()
	if s[i].MappedIndex != 2 || s[j].MappedIndex != 6 {
		t.Fatalf("mapping ahead took pages it should not: %+v", s)
	}
	if st := c.Stats(); st.ReservedPages != 32 || st.BackgroundErrors != 0 {
		t.Fatalf("stats %+v", st)
	}
	// Freeing j makes its pages usable ahead once the GPU is done with them
	// (the simulator's fence completes at once).
	must(t, c.FreeBatchIdx(j))
	must(t, c.StepAsync(lens(2, i, 13)))
	must(t, c.Wait())
	if s := c.Slots()[i]; s.MappedIndex != 4 {
		t.Fatalf("slot %+v, want 4 indexes from the idle slot's pages", s)
	}
	checkConsistent(t, c, b)
}

// TestReclaimPoliciesKeepAheadPages: EagerReclaim and TrickleReclaim take
// idle slots' pages, not what an active slot holds ahead.
func TestReclaimPoliciesKeepAheadPages(t *testing.T) {
	for _, eager := range []bool{false, true} {
		b := newSim(t, pagesize.Size64K, 1<<32, nil)
		cfg := wide(2, 1024, false)
		cfg.MapAhead, cfg.EagerReclaim, cfg.TrickleReclaim = 3, eager, !eager
		c := newCache(t, cfg, b)
		must(t, c.ReservePhysical(64<<20))
		i, _ := c.AllocBatchIdx(0)
		for n := 1; n < 5; n++ {
			must(t, c.Step(lens(2, i, n)))
			if s := c.Slots()[i]; s.MappedIndex != 4 {
				t.Fatalf("eager=%v after step %d: slot %+v, want 4 indexes", eager, n, s)
			}
		}
		if st := c.Stats(); st.ReclaimedPages != 0 {
			t.Errorf("eager=%v: %d pages reclaimed", eager, st.ReclaimedPages)
		}
	}
}

// A step's own need comes before the next step's lookahead: with the pool
// empty, a new request takes the page index StepAsync mapped ahead for an
// active slot (that slot maps it again when it gets there), rather than
// failing with ErrOutOfPages while pages that hold no token sit mapped.
func TestStepTakesLookaheadWhenPoolIsShort(t *testing.T) {
	for _, mega := range []bool{false, true} {
		t.Run(fmt.Sprintf("mega=%v", mega), func(t *testing.T) {
			b := newSim(t, pagesize.Size64K, 1<<32, nil)
			c := newCache(t, wide(2, 1024, mega), b)
			lay := c.Layout()
			tpp := lay.TokensPerPage
			// Two page indexes in all.
			must(t, c.ReservePhysical(uint64(2*lay.PagesPerIndex)*uint64(lay.PageSize)))
			a, err := c.AllocBatchIdx(tpp)
			must(t, err)
			// Slot a holds a whole index; the job maps its next one ahead.
			must(t, c.StepAsync(lens(2, a, tpp)))
			must(t, c.Wait())
			if st := c.Stats(); st.FreePages != 0 || st.MappedPages != 2*lay.PagesPerIndex {
				t.Fatalf("after the lookahead: %d pages free, %d mapped; want 0 and all", st.FreePages, st.MappedPages)
			}
			// The lookahead counts as free: a step can take it.
			if got := c.FreeIndexes(); got != 1 {
				t.Fatalf("after the lookahead, FreeIndexes = %d, want 1", got)
			}
			first := c.slots[a].pages[:lay.PagesPerIndex:lay.PagesPerIndex]
			first = append([]backend.PageID(nil), first...)
			b2, err := c.AllocBatchIdx(1)
			must(t, err)
			l := lens(2, a, tpp, b2, 1)
			must(t, c.Step(l))
			checkConsistent(t, c, b)
			// Slot a kept the index that holds its tokens.
			if got := c.slots[a].pages[:lay.PagesPerIndex]; !slices.Equal(got, first) {
				t.Fatalf("slot a's first index changed pages: %v, was %v", got, first)
			}
			// Slot a needs its second index now: nothing is left, and
			// the error says so.
			l[a] = tpp + 1
			if err := c.Step(l); !errors.Is(err, ErrOutOfPages) {
				t.Fatalf("growing past the budget: %v, want ErrOutOfPages", err)
			}
			checkConsistent(t, c, b)
			must(t, c.FreeBatchIdx(b2))
			must(t, c.Step(lens(2, a, tpp+1)))
			checkConsistent(t, c, b)
		})
	}
	// With GrowPool the pool is never short: a step allocates, and the
	// lookahead stays mapped.
	t.Run("grow-pool", func(t *testing.T) {
		b := newSim(t, pagesize.Size64K, 1<<32, nil)
		cfg := wide(2, 1024, false)
		cfg.GrowPool = true
		c := newCache(t, cfg, b)
		lay := c.Layout()
		tpp := lay.TokensPerPage
		a, err := c.AllocBatchIdx(tpp)
		must(t, err)
		must(t, c.StepAsync(lens(2, a, tpp)))
		must(t, c.Wait())
		b2, err := c.AllocBatchIdx(1)
		must(t, err)
		must(t, c.Step(lens(2, a, tpp, b2, 1)))
		if got := c.slots[a].mapped; got != 2 {
			t.Fatalf("with GrowPool, slot a has %d indexes mapped after the step, want its lookahead kept (2)", got)
		}
		checkConsistent(t, c, b)
	})
}
