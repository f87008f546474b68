package kvcache

import (
	"testing"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/pagesize"
)

// A slot that grows by several page indexes in one step gets, in every
// range, consecutive pages at consecutive addresses: one run per range (and
// one more where the pages cross one of the simulator's 2 MiB root chunks),
// which a backend that maps a run per driver call turns into one call.
func TestGrowthMapsRuns(t *testing.T) {
	for _, mega := range []bool{false, true} {
		b := newSim(t, pagesize.Size64K, 0, backend.NewManualFence(true))
		cfg := Config{Layers: 4, KVHeads: 2, HeadDim: 64, DTypeBytes: 2, MaxBatch: 4, MaxContext: 4096, Megacache: mega}
		c := newCache(t, cfg, b)
		l := c.Layout()
		if err := c.ReservePhysical(uint64(40*l.PagesPerIndex) * l.PageSize.Bytes()); err != nil {
			t.Fatal(err)
		}
		s, err := c.AllocBatchIdx(10 * l.TokensPerPage)
		if err != nil {
			t.Fatal(err)
		}
		lens := make([]int, 4)
		lens[s] = 10 * l.TokensPerPage
		if err := c.Step(lens); err != nil {
			t.Fatal(err)
		}
		st := c.Stats().Foreground.Map
		chunks := int(st.Pages*l.PageSize.Bytes()/(2<<20)) + 1
		if st.Pages != uint64(10*l.PagesPerIndex) || st.DriverCalls < uint64(l.Ranges) || st.DriverCalls > uint64(l.Ranges+chunks) {
			t.Errorf("megacache=%v: %d pages in %d runs; want %d ranges' worth (at most %d with chunk crossings)",
				mega, st.Pages, st.DriverCalls, l.Ranges, l.Ranges+chunks)
		}
		// The pages come back to the pool range-major, so a slot growing by
		// the same number of indexes gets runs again.
		if err := c.FreeBatchIdx(s); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Shrink(); err != nil {
			t.Fatal(err)
		}
	}
}

// MapAhead grows a slot MapAhead indexes beyond what a step needs, in the
// same call, and later steps inside those indexes map nothing; it never
// grows past the slot's end.
func TestMapAhead(t *testing.T) {
	b := newSim(t, pagesize.Size64K, 0, backend.NewManualFence(true))
	cfg := Config{Layers: 2, KVHeads: 2, HeadDim: 64, DTypeBytes: 2, MaxBatch: 2, MaxContext: 1024, MapAhead: 3}
	c := newCache(t, cfg, b)
	l := c.Layout()
	tpp := l.TokensPerPage
	if err := c.ReservePhysical(uint64(l.IndexesPerSlot*l.PagesPerIndex) * l.PageSize.Bytes()); err != nil {
		t.Fatal(err)
	}
	s, err := c.AllocBatchIdx(1)
	if err != nil {
		t.Fatal(err)
	}
	lens := []int{0, 0}
	var steps, maps int
	for n := 1; n <= cfg.MaxContext; n++ {
		lens[s] = n
		before := c.Stats().Foreground.Map.Calls
		if err := c.Step(lens); err != nil {
			t.Fatal(err)
		}
		steps++
		if c.Stats().Foreground.Map.Calls != before {
			maps++
		}
		if got, need := c.Slots()[s].MappedIndex, (n+tpp-1)/tpp; got < need || got > min(need+cfg.MapAhead, l.IndexesPerSlot) {
			t.Fatalf("length %d: %d indexes mapped, need %d (+%d ahead, %d in a slot)", n, got, need, cfg.MapAhead, l.IndexesPerSlot)
		}
	}
	// The slot crosses IndexesPerSlot boundaries; it grows once every
	// MapAhead+1 of them.
	if want := (l.IndexesPerSlot + cfg.MapAhead) / (cfg.MapAhead + 1); maps != want {
		t.Errorf("%d growths over %d steps, want %d", maps, steps, want)
	}
	if _, err := New(Config{Layers: 1, KVHeads: 1, HeadDim: 64, DTypeBytes: 2, MaxBatch: 1, MaxContext: 8, MapAhead: -1}, b); err == nil {
		t.Error("a negative MapAhead was accepted")
	}
}

// MapAhead takes only what the pool holds beyond a step's need: with room
// for one index, a step that needs one maps it and no more, instead of
// failing for the pages ahead; with room for two, it maps one ahead.
func TestMapAheadNeverFailsAStep(t *testing.T) {
	for _, room := range []int{1, 2} {
		b := newSim(t, pagesize.Size64K, 0, backend.NewManualFence(true))
		c := newCache(t, Config{Layers: 2, KVHeads: 2, HeadDim: 64, DTypeBytes: 2, MaxBatch: 2, MaxContext: 1024, MapAhead: 3}, b)
		l := c.Layout()
		if err := c.ReservePhysical(uint64(room*l.PagesPerIndex) * l.PageSize.Bytes()); err != nil {
			t.Fatal(err)
		}
		s, err := c.AllocBatchIdx(1)
		if err != nil {
			t.Fatal(err)
		}
		lens := []int{0, 0}
		lens[s] = 1
		if err := c.Step(lens); err != nil {
			t.Fatalf("room for %d indexes: %v", room, err)
		}
		if got := c.Slots()[s].MappedIndex; got != room {
			t.Errorf("room for %d indexes: %d mapped", room, got)
		}
	}
}
