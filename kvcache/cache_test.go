package kvcache

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/backend/sim"
	"github.com/vattn/vattn/pagesize"
)

// llama3 is Llama-3-8B's KV shape: 32 layers, 8 KV heads, head dim 128.
func llama3(batch, ctx int) Config {
	return Config{Layers: 32, KVHeads: 8, HeadDim: 128, DTypeBytes: 2, MaxBatch: batch, MaxContext: ctx}
}

func newSim(t testing.TB, ps pagesize.Size, gpu uint64, fence backend.Fence) *sim.Backend {
	t.Helper()
	b, err := sim.New(sim.Config{PageSize: ps, GPUMemory: gpu, Fence: fence})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func newCache(t testing.TB, cfg Config, b backend.Backend) *Cache {
	t.Helper()
	c, err := New(cfg, b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// A manual fence finishes GPU work only when told: play the GPU
		// so Close, which waits for it, ends even after a failed test.
		if f, ok := b.Fence().(*backend.ManualFence); ok {
			closeWithGPU(t, c, f)
		} else {
			_ = c.Close()
		}
	})
	return c
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func lens(batch int, kv ...int) []int {
	l := make([]int, batch)
	for i := 0; i+1 < len(kv); i += 2 {
		l[kv[i]] = kv[i+1]
	}
	return l
}

// checkConsistent verifies the cache against the simulator: pool
// conservation, and every page index of every slot mapped in every range to
// the page the cache thinks, with no page used twice.
func checkConsistent(t testing.TB, c *Cache, b *sim.Backend) {
	t.Helper()
	st := c.Stats()
	if st.FreePages+st.MappedPages != st.ReservedPages {
		t.Fatalf("pool not conserved: free %d + mapped %d != reserved %d", st.FreePages, st.MappedPages, st.ReservedPages)
	}
	bs := b.Stats()
	if bs.PagesMapped != st.MappedPages || bs.PagesAllocated != st.ReservedPages {
		t.Fatalf("backend has %d mapped, %d allocated; cache says %d, %d",
			bs.PagesMapped, bs.PagesAllocated, st.MappedPages, st.ReservedPages)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[backend.PageID]bool{}
	ppi := c.layout.PagesPerIndex
	for i, s := range c.slots {
		if s.mapped > c.layout.IndexesPerSlot {
			t.Fatalf("slot %d: %d indexes mapped, more than a slot has (%d)", i, s.mapped, c.layout.IndexesPerSlot)
		}
		if len(s.pages) != s.mapped*ppi {
			t.Fatalf("slot %d: %d pages for %d indexes", i, len(s.pages), s.mapped)
		}
		if s.active && s.length > s.covered {
			t.Fatalf("slot %d: length %d but only %d tokens covered", i, s.length, s.covered)
		}
		if want := min(c.layout.tokensIn(s.mapped), c.cfg.MaxContext); s.covered != want {
			t.Fatalf("slot %d: covered %d, want %d", i, s.covered, want)
		}
		for j := 0; j < c.layout.IndexesPerSlot; j++ {
			for r := range ppi {
				got, ok := b.Translate(c.addr(r, i, j))
				if j >= s.mapped {
					if ok {
						t.Fatalf("slot %d index %d range %d: mapped but the cache thinks not", i, j, r)
					}
					continue
				}
				if !ok || got != s.pages[j*ppi+r] {
					t.Fatalf("slot %d index %d range %d: backend has %v/%v, cache %v", i, j, r, got, ok, s.pages[j*ppi+r])
				}
				if seen[got] {
					t.Fatalf("page %v mapped twice", got)
				}
				seen[got] = true
			}
		}
	}
	for _, p := range c.pool {
		if seen[p] {
			t.Fatalf("pool page %v is mapped", p)
		}
		seen[p] = true
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	b := newSim(t, pagesize.Size64K, 1<<30, nil)
	good := llama3(4, 1024)
	cases := map[string]func(*Config){
		"zero layers":     func(c *Config) { c.Layers = 0 },
		"negative heads":  func(c *Config) { c.KVHeads = -1 },
		"zero head dim":   func(c *Config) { c.HeadDim = 0 },
		"zero dtype":      func(c *Config) { c.DTypeBytes = 0 },
		"zero batch":      func(c *Config) { c.MaxBatch = 0 },
		"zero context":    func(c *Config) { c.MaxContext = 0 },
		"untileable":      func(c *Config) { c.HeadDim = 3 },
		"huge context":    func(c *Config) { c.MaxContext = 1 << 62 },
		"huge batch":      func(c *Config) { c.MaxBatch = 1 << 40 },
		"negative batch":  func(c *Config) { c.MaxMapBatch = -1 },
		"negative margin": func(c *Config) { c.GrowMargin = -1 },
		"negative limit":  func(c *Config) { c.GrowLimit = -1 },
		"negative pages":  func(c *Config) { c.GrowLimitPages = -1 },
		"overflow shapes": func(c *Config) { c.KVHeads, c.HeadDim = 1<<40, 1<<40 },
	}
	for name, mutate := range cases {
		cfg := good
		mutate(&cfg)
		if _, err := New(cfg, b); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%s: err = %v, want ErrBadConfig", name, err)
		}
	}
	if _, err := New(good, nil); !errors.Is(err, ErrBadConfig) {
		t.Errorf("nil backend: %v", err)
	}
	if n := b.Stats().Regions; n != 0 {
		t.Fatalf("failed New left %d regions", n)
	}
}

func TestNewReleasesRangesWhenReserveFails(t *testing.T) {
	b := newSim(t, pagesize.Size64K, 1<<30, nil)
	b.InjectFault(sim.OpReserve, 5)
	if _, err := New(llama3(2, 1024), b); !errors.Is(err, ErrBackend) || !errors.Is(err, backend.ErrInjected) {
		t.Fatalf("err = %v", err)
	}
	if st := b.Stats(); st.Regions != 0 || st.ReservedBytes != 0 {
		t.Fatalf("left %d regions, %d bytes", st.Regions, st.ReservedBytes)
	}
}

func TestLayout(t *testing.T) {
	for _, tc := range []struct {
		ps        pagesize.Size
		mega      bool
		ranges    int
		perPage   int
		slotBytes uint64
	}{
		{pagesize.Size64K, false, 64, 32, 4096 * 2048},
		{pagesize.Size2M, false, 64, 1024, 4096 * 2048},
		{pagesize.Size2M, true, 2, 32, 4096 * 2048 * 32},
		{pagesize.Size256K, true, 2, 4, 4096 * 2048 * 32},
	} {
		b := newSim(t, tc.ps, 1<<34, nil)
		c := newCache(t, llama3(2, 4096), b)
		_ = c
		cfg := llama3(2, 4096)
		cfg.Megacache = tc.mega
		c = newCache(t, cfg, b)
		l := c.Layout()
		if l.Ranges != tc.ranges || l.PagesPerIndex != tc.ranges || l.TokensPerPage != tc.perPage || l.SlotBytes != tc.slotBytes {
			t.Errorf("%s mega=%v: layout %+v", tc.ps, tc.mega, l)
		}
		if got := l.IndexesPerSlot; uint64(got)*tc.ps.Bytes() != l.SlotBytes {
			t.Errorf("%s: %d indexes per slot", tc.ps, got)
		}
		// K and V of every layer lie inside the reserved ranges, apart.
		seen := map[uint64]bool{}
		for layer := 0; layer < 32; layer++ {
			k, err := c.K(layer)
			must(t, err)
			v, err := c.V(layer)
			must(t, err)
			for _, a := range []uint64{k, v} {
				inside := false
				for _, r := range c.Ranges() {
					inside = inside || r.Contains(a, l.LayerBytes)
				}
				if !inside || seen[a] {
					t.Fatalf("%s mega=%v layer %d: address %#x inside=%v dup=%v", tc.ps, tc.mega, layer, a, inside, seen[a])
				}
				seen[a] = true
			}
		}
		for _, layer := range []int{-1, 32, math.MinInt, math.MaxInt} {
			for name, fn := range map[string]func(int) (uint64, error){"K": c.K, "V": c.V} {
				if a, err := fn(layer); !errors.Is(err, ErrLayerRange) || a != 0 {
					t.Errorf("%s(%d) = %#x, %v; want 0, ErrLayerRange", name, layer, a, err)
				}
			}
		}
	}
}

func TestStepMapsAndReuses(t *testing.T) {
	b := newSim(t, pagesize.Size64K, 1<<32, nil)
	c := newCache(t, llama3(4, 4096), b)
	must(t, c.ReservePhysical(64<<20)) // 1024 pages = 16 page indexes
	i, err := c.AllocBatchIdx(100)
	must(t, err)
	must(t, c.Step(lens(4, i, 100))) // 100 tokens: 4 indexes of 32 tokens
	checkConsistent(t, c, b)
	if st := c.Stats(); st.MappedPages != 4*64 || st.Foreground.Map.Calls != 1 || st.LiveTokens != 100 {
		t.Fatalf("stats %+v", st)
	}
	// Growing inside the mapped pages maps nothing.
	must(t, c.Step(lens(4, i, 128)))
	if c.Stats().Foreground.Map.Calls != 1 {
		t.Fatal("a step inside mapped pages called the backend")
	}
	must(t, c.FreeBatchIdx(i))
	// Deferred reclamation: a request that fits reuses the slot without mapping.
	j, err := c.AllocBatchIdx(90)
	must(t, err)
	if j != i {
		t.Fatalf("best fit chose slot %d, want %d", j, i)
	}
	must(t, c.Step(lens(4, j, 90)))
	if c.Stats().Foreground.Map.Calls != 1 {
		t.Fatal("reused slot needed mapping")
	}
	checkConsistent(t, c, b)
}

func TestBestFit(t *testing.T) {
	b := newSim(t, pagesize.Size64K, 1<<32, nil)
	c := newCache(t, llama3(4, 4096), b)
	must(t, c.ReservePhysical(256<<20))
	// Slots 0..2 hold 2, 5 and 3 page indexes, then go idle.
	for i, n := range []int{64, 160, 96} {
		s, err := c.AllocBatchIdx(n)
		must(t, err)
		if s != i {
			t.Fatalf("slot %d", s)
		}
		l := make([]int, 4)
		l[s] = n
		must(t, c.Step(l))
	}
	for i := range 3 {
		must(t, c.FreeBatchIdx(i))
	}
	for _, tc := range []struct{ n, want int }{
		{70, 2},  // 3 indexes: slot 2 fits exactly
		{40, 0},  // 2 indexes: slot 0
		{200, 1}, // 7 indexes: nobody covers; the largest (slot 1, 5)
		{1, 3},   // only the empty slot is left
	} {
		got, err := c.AllocBatchIdx(tc.n)
		must(t, err)
		if got != tc.want {
			t.Fatalf("AllocBatchIdx(%d) = %d, want %d", tc.n, got, tc.want)
		}
	}
	if _, err := c.AllocBatchIdx(1); !errors.Is(err, ErrNoFreeSlot) {
		t.Fatalf("full cache: %v", err)
	}
}

func TestArgumentErrors(t *testing.T) {
	b := newSim(t, pagesize.Size64K, 1<<32, nil)
	c := newCache(t, llama3(2, 1000), b)
	must(t, c.ReservePhysical(128<<20))
	if _, err := c.AllocBatchIdx(-1); !errors.Is(err, ErrBadLength) {
		t.Error(err)
	}
	if _, err := c.AllocBatchIdx(1001); !errors.Is(err, ErrContextTooLong) {
		t.Error(err)
	}
	for _, bad := range []uint64{0, maxReserve + 1, math.MaxUint64} {
		if err := c.ReservePhysical(bad); !errors.Is(err, ErrBadSize) || errors.Is(err, ErrBadLength) {
			t.Errorf("ReservePhysical(%d) = %v, want ErrBadSize", bad, err)
		}
	}
	i, _ := c.AllocBatchIdx(10)
	for name, tc := range map[string]struct {
		lens []int
		want error
	}{
		"too many":  {[]int{1, 1, 1}, ErrSlotRange},
		"negative":  {lens(2, i, -1), ErrBadLength},
		"too long":  {lens(2, i, 1001), ErrContextTooLong},
		"inactive":  {lens(2, 1-i, 5), ErrSlotInactive},
		"mixed bad": {lens(2, i, 5, 1-i, 5), ErrSlotInactive},
	} {
		before := c.Stats()
		if err := c.Step(tc.lens); !errors.Is(err, tc.want) {
			t.Errorf("%s: Step = %v, want %v", name, err, tc.want)
		}
		if err := c.StepAsync(tc.lens); !errors.Is(err, tc.want) {
			t.Errorf("%s: StepAsync = %v, want %v", name, err, tc.want)
		}
		if after := c.Stats(); after.MappedPages != before.MappedPages || after.LiveTokens != before.LiveTokens {
			t.Errorf("%s: failed step changed the cache", name)
		}
	}
	// A shorter slice means zero for the rest; the exact max context is fine.
	must(t, c.Step(lens(i+1, i, 1000)))
	for _, bad := range []int{-1, 2} {
		if err := c.FreeBatchIdx(bad); !errors.Is(err, ErrSlotRange) {
			t.Errorf("free %d: %v", bad, err)
		}
	}
	if err := c.FreeBatchIdx(1 - i); !errors.Is(err, ErrSlotInactive) {
		t.Errorf("free of a never-used slot: %v", err)
	}
	must(t, c.FreeBatchIdx(i))
	if err := c.FreeBatchIdx(i); !errors.Is(err, ErrSlotInactive) {
		t.Errorf("double free: %v", err)
	}
	checkConsistent(t, c, b)
}

func TestOutOfPagesLeavesCacheUnchanged(t *testing.T) {
	b := newSim(t, pagesize.Size64K, 1<<32, nil)
	c := newCache(t, llama3(2, 4096), b)
	must(t, c.ReservePhysical(3*64*64<<10)) // 3 page indexes
	i, _ := c.AllocBatchIdx(64)
	must(t, c.Step(lens(2, i, 64)))
	j, _ := c.AllocBatchIdx(64)
	err := c.Step(lens(2, i, 64, j, 64))
	if !errors.Is(err, ErrOutOfPages) {
		t.Fatalf("Step = %v, want ErrOutOfPages", err)
	}
	if s := c.Slots(); s[i].MappedIndex != 2 || s[j].MappedIndex != 0 || s[j].Length != 0 {
		t.Fatalf("slots after failed step: %+v", s)
	}
	checkConsistent(t, c, b)
	// With GrowPool the step allocates what it lacks.
	cfg := llama3(2, 4096)
	cfg.GrowPool = true
	g := newCache(t, cfg, b)
	k, _ := g.AllocBatchIdx(64)
	must(t, g.Step(lens(2, k, 64)))
	if st := g.Stats(); st.ReservedPages != 128 || st.Alloc.Calls != 1 {
		t.Fatalf("grow pool: %+v", st)
	}
	// And fails cleanly when the device itself is full.
	small := newSim(t, pagesize.Size64K, 4<<20, nil) // 64 pages: one index
	g2 := newCache(t, cfg, small)
	k, _ = g2.AllocBatchIdx(64)
	if err := g2.Step(lens(2, k, 64)); !errors.Is(err, ErrOutOfPages) || !errors.Is(err, backend.ErrOutOfMemory) {
		t.Fatalf("device full: %v", err)
	}
	checkConsistent(t, g2, small)
}

func TestBackendFailureRollsBack(t *testing.T) {
	b := newSim(t, pagesize.Size64K, 1<<32, nil)
	cfg := llama3(2, 4096)
	cfg.MaxMapBatch = 100 // a 3-index step (192 pages) takes two Map calls
	c := newCache(t, cfg, b)
	must(t, c.ReservePhysical(64<<20))
	i, _ := c.AllocBatchIdx(10)
	must(t, c.Step(lens(2, i, 10)))
	before := b.Stats().Ops[sim.OpMap].Calls
	for nth := 1; nth <= 2; nth++ {
		b.InjectFault(sim.OpMap, nth)
		if err := c.Step(lens(2, i, 96)); !errors.Is(err, ErrBackend) || !errors.Is(err, backend.ErrInjected) {
			t.Fatalf("fault on map call %d: %v", nth, err)
		}
		if s := c.Slots()[i]; s.MappedIndex != 1 || s.Length != 10 {
			t.Fatalf("fault on map call %d left slot %+v", nth, s)
		}
		checkConsistent(t, c, b)
	}
	if b.Stats().Ops[sim.OpMap].Calls == before {
		t.Fatal("no map was attempted")
	}
	must(t, c.Step(lens(2, i, 96)))
	checkConsistent(t, c, b)
}

// autoWaitFence completes an epoch when someone waits for it: a GPU that
// finishes whatever the CPU waits for. It counts the waits.
type autoWaitFence struct {
	*backend.ManualFence
	waits int
}

func (f *autoWaitFence) Wait(ctx context.Context, e backend.Epoch) error {
	if f.Completed() < e {
		f.waits++
		if err := f.Complete(e); err != nil {
			return err
		}
	}
	return f.ManualFence.Wait(ctx, e)
}

func TestFenceOrdersReuse(t *testing.T) {
	fence := backend.NewManualFence(false)
	b := newSim(t, pagesize.Size64K, 1<<32, fence)
	c := newCache(t, llama3(2, 4096), b)
	must(t, c.ReservePhysical(2*64*64<<10)) // 2 page indexes
	i, _ := c.AllocBatchIdx(64)
	must(t, c.Step(lens(2, i, 64)))
	must(t, c.FreeBatchIdx(i)) // records epoch 1, not complete
	j, _ := c.AllocBatchIdx(0) // the empty slot: no wait
	if j == i {
		t.Fatal("reused a slot whose pages the GPU may still read")
	}
	// j needs i's pages: Step must wait for epoch 1 before unmapping them.
	done := make(chan error, 1)
	go func() { done <- c.Step(lens(2, j, 33)) }()
	select {
	case err := <-done:
		t.Fatalf("step did not wait for the GPU: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	must(t, fence.Complete(1))
	must(t, <-done)
	if c.Stats().FenceWaits == 0 {
		t.Fatal("no fence wait counted")
	}
	checkConsistent(t, c, b)
	// AllocBatchIdx waits too before handing over pages the GPU may read,
	// when no other slot is free.
	f2 := backend.NewManualFence(false)
	b2 := newSim(t, pagesize.Size64K, 1<<32, f2)
	one := newCache(t, llama3(1, 4096), b2)
	must(t, one.ReservePhysical(8<<20))
	s, _ := one.AllocBatchIdx(64)
	must(t, one.Step(lens(1, s, 64)))
	must(t, one.FreeBatchIdx(s))
	go func() { _, err := one.AllocBatchIdx(64); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("alloc did not wait for the GPU: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	f2.CompleteAll()
	must(t, <-done)
}

// closeWithGPU closes c while playing the GPU: Close waits for the work
// submitted so far, which a manual fence only finishes when told.
func closeWithGPU(t testing.TB, c *Cache, f *backend.ManualFence) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- c.Close() }()
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("close: %v", err)
			}
			return
		case <-time.After(time.Millisecond):
			f.CompleteAll()
		}
	}
}

func TestCloseReleasesEverything(t *testing.T) {
	for _, mega := range []bool{false, true} {
		b := newSim(t, pagesize.Size64K, 1<<32, nil)
		cfg := llama3(3, 2048)
		cfg.Megacache = mega
		cfg.GrowPool = true
		c, err := New(cfg, b)
		must(t, err)
		must(t, c.ReservePhysical(32<<20))
		i, _ := c.AllocBatchIdx(500)
		must(t, c.StepAsync(lens(3, i, 500)))
		k, _ := c.AllocBatchIdx(50)
		must(t, c.Step(lens(3, i, 501, k, 50)))
		must(t, c.FreeBatchIdx(k))
		must(t, c.Close())
		if st := b.Stats(); st.PagesAllocated != 0 || st.PagesMapped != 0 || st.Regions != 0 || st.DeviceBytesClaimed != 0 {
			t.Fatalf("mega=%v: left %+v", mega, st)
		}
		must(t, c.Close())
		if _, err := c.AllocBatchIdx(1); !errors.Is(err, ErrClosed) {
			t.Fatal(err)
		}
		if err := c.Step(nil); !errors.Is(err, ErrClosed) {
			t.Fatal(err)
		}
	}
}

func TestCloseReportsBackendFailure(t *testing.T) {
	b := newSim(t, pagesize.Size64K, 1<<32, nil)
	c := newCache(t, llama3(2, 1024), b)
	must(t, c.ReservePhysical(16<<20))
	i, _ := c.AllocBatchIdx(100)
	must(t, c.Step(lens(2, i, 100)))
	b.InjectFault(sim.OpUnmap, 1)
	if err := c.Close(); !errors.Is(err, ErrBackend) {
		t.Fatalf("Close = %v", err)
	}
	// The pages that could not be unmapped stay with the backend; its own
	// Close releases them.
	must(t, b.Close())
}

func TestStepAsyncMapsAhead(t *testing.T) {
	b := newSim(t, pagesize.Size64K, 1<<32, nil)
	c := newCache(t, llama3(8, 4096), b)
	must(t, c.ReservePhysical(256<<20))
	l := make([]int, 8)
	for range 8 {
		s, _ := c.AllocBatchIdx(32)
		l[s] = 32 // exactly one index full: the next token needs a new one
	}
	must(t, c.StepAsync(l))
	fg := c.Stats().Foreground.Map.Calls
	for i := range l {
		l[i]++
	}
	must(t, c.Step(l)) // waits for the mapper, which already mapped these
	st := c.Stats()
	if st.Foreground.Map.Calls != fg || st.Background.Map.Calls == 0 {
		t.Fatalf("decode pages not mapped in the background: %+v", st)
	}
	checkConsistent(t, c, b)
}

func TestStepAsyncBackgroundFailureIsRecovered(t *testing.T) {
	b := newSim(t, pagesize.Size64K, 1<<32, nil)
	c := newCache(t, llama3(2, 4096), b)
	must(t, c.ReservePhysical(64<<20))
	i, _ := c.AllocBatchIdx(32)
	b.InjectFault(sim.OpMap, 2) // the background call
	must(t, c.StepAsync(lens(2, i, 32)))
	must(t, c.Step(lens(2, i, 33)))
	st := c.Stats()
	if st.BackgroundErrors != 1 || st.LastBackgroundError == "" || st.Foreground.Map.Calls != 2 {
		t.Fatalf("stats %+v", st)
	}
	checkConsistent(t, c, b)
}

func TestReclaimPolicies(t *testing.T) {
	for _, tc := range []struct {
		name           string
		eager, trickle bool
		idleAfter      int // idle page indexes left after two more steps
	}{
		{"deferred", false, false, 4},
		{"trickle", false, true, 2},
		{"eager", true, false, 0},
	} {
		b := newSim(t, pagesize.Size64K, 1<<32, nil)
		cfg := llama3(2, 4096)
		cfg.EagerReclaim, cfg.TrickleReclaim = tc.eager, tc.trickle
		c := newCache(t, cfg, b)
		must(t, c.ReservePhysical(64<<20))
		i, _ := c.AllocBatchIdx(128)
		must(t, c.Step(lens(2, i, 128)))
		must(t, c.FreeBatchIdx(i))
		j, _ := c.AllocBatchIdx(0)
		if j == i {
			t.Fatal("empty request took the idle slot")
		}
		must(t, c.Step(lens(2, j, 1)))
		must(t, c.Step(lens(2, j, 2)))
		if got := c.Stats().IdlePages / 64; got != tc.idleAfter {
			t.Errorf("%s: %d idle indexes, want %d", tc.name, got, tc.idleAfter)
		}
		checkConsistent(t, c, b)
	}
}

func TestTrim(t *testing.T) {
	b := newSim(t, pagesize.Size64K, 1<<32, nil)
	c := newCache(t, llama3(2, 4096), b)
	must(t, c.ReservePhysical(16<<20))
	i, _ := c.AllocBatchIdx(32)
	must(t, c.Step(lens(2, i, 32)))
	n, err := c.Trim()
	must(t, err)
	if n != 256-64 || c.Stats().ReservedPages != 64 {
		t.Fatalf("trimmed %d, stats %+v", n, c.Stats())
	}
	checkConsistent(t, c, b)
	if n, err := c.Trim(); n != 0 || err != nil {
		t.Fatalf("empty trim: %d %v", n, err)
	}
	must(t, c.ReservePhysical(1<<20))
	b.InjectFault(sim.OpFree, 1)
	if n, err := c.Trim(); n != 0 || !errors.Is(err, ErrBackend) {
		t.Fatalf("failed trim: %d %v", n, err)
	}
	if st := c.Stats(); st.FreePages != 16 || st.ReservedPages != 64+16 {
		t.Fatalf("failed trim changed the pool: %+v", st)
	}
	checkConsistent(t, c, b)
	if err := c.ReservePhysical(^uint64(0)); !errors.Is(err, ErrBadSize) {
		t.Fatalf("reserve of 2^64-1 bytes: %v", err)
	}
}

// recordFailFence fails Record once armed.
type recordFailFence struct {
	*backend.ManualFence
	fail bool
}

func (f *recordFailFence) Record() (backend.Epoch, error) {
	if f.fail {
		return 0, errors.New("event create failed")
	}
	return f.ManualFence.Record()
}

func TestCloseLeavesPagesWhenTheGPUCannotBeWaitedFor(t *testing.T) {
	fence := &recordFailFence{ManualFence: backend.NewManualFence(false)}
	b := newSim(t, pagesize.Size64K, 1<<32, fence)
	c, err := New(llama3(2, 1024), b)
	must(t, err)
	must(t, c.ReservePhysical(16<<20))
	i, _ := c.AllocBatchIdx(100)
	must(t, c.Step(lens(2, i, 100)))
	must(t, c.FreeBatchIdx(i)) // epoch 1, still running
	fence.fail = true
	if err := c.Close(); !errors.Is(err, ErrBackend) {
		t.Fatalf("Close = %v", err)
	}
	if st := b.Stats(); st.PagesMapped != 256 {
		t.Fatalf("Close unmapped pages the GPU may read: %+v", st)
	}
	fence.CompleteAll()
	must(t, b.Close())
}

func TestBackgroundMapperNeverWaitsForTheGPU(t *testing.T) {
	fence := backend.NewManualFence(false)
	b := newSim(t, pagesize.Size64K, 1<<32, fence)
	c := newCache(t, llama3(2, 4096), b)
	must(t, c.ReservePhysical(2*64*64<<10)) // 2 page indexes
	i, _ := c.AllocBatchIdx(32)
	must(t, c.Step(lens(2, i, 32)))
	must(t, c.FreeBatchIdx(i)) // epoch 1, not complete: its page is not reusable
	j, _ := c.AllocBatchIdx(0)
	must(t, c.StepAsync(lens(2, j, 32))) // the lookahead needs i's page
	done := make(chan Stats, 1)
	go func() { c.Wait(); done <- c.Stats() }()
	select {
	case st := <-done:
		if st.BackgroundErrors != 1 || st.FenceWaits != 0 {
			t.Fatalf("stats %+v", st)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the background mapper blocked on the GPU")
	}
	checkConsistent(t, c, b)
}

func TestDataFollowsPages(t *testing.T) {
	b := newSim(t, pagesize.Size64K, 1<<32, nil)
	c := newCache(t, llama3(2, 4096), b)
	must(t, c.ReservePhysical(64*64<<10)) // one page index only
	i, _ := c.AllocBatchIdx(32)
	must(t, c.Step(lens(2, i, 32)))
	k5, err := c.K(5)
	must(t, err)
	must(t, b.Write(k5, 0xA))
	must(t, c.FreeBatchIdx(i))
	j, _ := c.AllocBatchIdx(0)
	must(t, c.Step(lens(2, j, 10))) // takes slot i's page index
	slot := c.Layout().SlotBytes
	if _, err := b.Read(k5 + uint64(i)*slot); !errors.Is(err, backend.ErrNotMapped) {
		t.Fatalf("old owner's address still mapped: %v", err)
	}
	must(t, b.Write(k5+uint64(j)*slot, 0xB))
	if v, err := b.Read(k5 + uint64(j)*slot); err != nil || v != 0xB {
		t.Fatalf("new owner reads %x, %v", v, err)
	}
}

func TestActiveSurplusIsReclaimed(t *testing.T) {
	b := newSim(t, pagesize.Size64K, 1<<32, nil)
	c := newCache(t, llama3(2, 4096), b)
	must(t, c.ReservePhysical(6*64*64<<10)) // 6 page indexes
	i, _ := c.AllocBatchIdx(192)
	must(t, c.Step(lens(2, i, 192))) // 6 indexes
	must(t, c.FreeBatchIdx(i))
	j, _ := c.AllocBatchIdx(10) // reuses slot i and its 6 indexes
	if j != i {
		t.Fatalf("slot %d", j)
	}
	must(t, c.Step(lens(2, j, 10)))
	if got := c.FreeIndexes(); got != 5 {
		t.Fatalf("FreeIndexes = %d, want 5 (all but the one the request uses)", got)
	}
	// A second request needs 4 indexes: they come from j's surplus, from
	// its tail, and no more than needed.
	k, _ := c.AllocBatchIdx(128)
	must(t, c.Step(lens(2, j, 10, k, 128)))
	if s := c.Slots(); s[j].MappedIndex != 2 || s[k].MappedIndex != 4 {
		t.Fatalf("slots %+v", s)
	}
	checkConsistent(t, c, b)
	// Never below what the request used, plus one token of lookahead.
	must(t, c.Step(lens(2, j, 33, k, 128)))
	if s := c.Slots(); s[j].MappedIndex != 2 {
		t.Fatalf("slot j has %d indexes", s[j].MappedIndex)
	}
	l := lens(2, j, 33, k, 160)
	if err := c.Step(l); !errors.Is(err, ErrOutOfPages) {
		t.Fatalf("step beyond memory: %v", err)
	}
	checkConsistent(t, c, b)
}

// TestStepAsyncRace runs StepAsync's background mapper against a caller
// and a Stats reader; run with -race.
func TestStepAsyncRace(t *testing.T) {
	b := newSim(t, pagesize.Size64K, 8<<30, nil)
	cfg := llama3(16, 2048)
	cfg.TrickleReclaim = true
	c := newCache(t, cfg, b)
	must(t, c.ReservePhysical(2<<30))
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				_ = c.Stats()
				_ = c.Slots()
				_ = c.FreeIndexes()
			}
		}
	}()
	l := make([]int, 16)
	for step := range 400 {
		if step%7 == 0 {
			if s, err := c.AllocBatchIdx(1 + step%300); err == nil {
				l[s] = 1 + step%300
			}
		}
		if step%11 == 0 {
			for s := range l {
				if l[s] > 0 && (l[s]+step)%3 == 0 {
					must(t, c.FreeBatchIdx(s))
					l[s] = 0
				}
			}
		}
		for s := range l {
			if l[s] > 0 && l[s] < 2048 {
				l[s]++
			}
		}
		if err := c.StepAsync(l); err != nil && !errors.Is(err, ErrOutOfPages) {
			t.Fatal(err)
		}
	}
	c.wait()
	checkConsistent(t, c, b)
}

// Wait returns once the background mapping is done: Stats then shows it
// without another step; after Close it reports ErrClosed.
func TestWait(t *testing.T) {
	b := newSim(t, pagesize.Size64K, 1<<32, nil)
	c, err := New(llama3(2, 4096), b)
	must(t, err)
	must(t, c.ReservePhysical(64<<20))
	s, err := c.AllocBatchIdx(32)
	must(t, err)
	must(t, c.StepAsync(lens(2, s, 32)))
	must(t, c.Wait())
	if st := c.Stats(); st.Background.Map.Calls != 1 {
		t.Fatalf("background map calls after Wait = %d, want 1", st.Background.Map.Calls)
	}
	must(t, c.Wait()) // nothing in flight: returns at once
	must(t, c.Close())
	if err := c.Wait(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait after Close = %v, want ErrClosed", err)
	}
}

func TestShrink(t *testing.T) {
	fence := backend.NewManualFence(false)
	b := newSim(t, pagesize.Size64K, 1<<32, fence)
	c := newCache(t, llama3(3, 4096), b)
	must(t, c.ReservePhysical(64<<20))
	i, _ := c.AllocBatchIdx(300)
	j, _ := c.AllocBatchIdx(100)
	must(t, c.Step(lens(3, i, 300, j, 100)))
	mappedJ := c.Stats().MappedPages
	must(t, c.FreeBatchIdx(i)) // its readers: epoch 1, not complete yet
	// Shrink must wait for the GPU before it unmaps i's pages.
	done := make(chan error, 1)
	go func() { _, err := c.Shrink(); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("shrink did not wait for the GPU: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	must(t, fence.Complete(1))
	must(t, <-done)
	st := c.Stats()
	if st.IdlePages != 0 || st.FreePages != 0 || st.ReservedPages != st.MappedPages {
		t.Fatalf("after shrink: %+v", st)
	}
	if st.MappedPages >= mappedJ {
		t.Fatalf("shrink kept %d pages mapped, had %d with slot %d", st.MappedPages, mappedJ, i)
	}
	if got := b.Stats().PagesAllocated; got != st.ReservedPages {
		t.Fatalf("backend holds %d pages, cache %d", got, st.ReservedPages)
	}
	checkConsistent(t, c, b)
	// The active slot still steps without allocating (it kept what it uses).
	must(t, c.Step(lens(3, j, 101)))
	if n, err := c.Shrink(); n != 0 || err != nil {
		t.Fatalf("second shrink: %d %v", n, err)
	}

	// Failures: an unmap fault leaves every page where it was; a free fault
	// leaves the unmapped pages in the pool. Both keep the books consistent.
	k, _ := c.AllocBatchIdx(0)
	must(t, c.ReservePhysical(32<<20))
	must(t, c.Step(lens(3, j, 101, k, 200)))
	must(t, c.FreeBatchIdx(k))
	fence.CompleteAll()
	before := c.Stats()
	b.InjectFault(sim.OpUnmap, 1)
	if _, err := c.Shrink(); !errors.Is(err, ErrBackend) {
		t.Fatalf("shrink with a failing unmap: %v", err)
	}
	if st := c.Stats(); st.ReservedPages != before.ReservedPages || st.MappedPages != before.MappedPages {
		t.Fatalf("failed unmap changed the books: %+v, before %+v", st, before)
	}
	checkConsistent(t, c, b)
	b.InjectFault(sim.OpFree, 1)
	if _, err := c.Shrink(); !errors.Is(err, ErrBackend) {
		t.Fatalf("shrink with a failing free: %v", err)
	}
	if st := c.Stats(); st.IdlePages != 0 || st.FreePages == 0 || st.ReservedPages != before.ReservedPages {
		t.Fatalf("failed free: %+v", st)
	}
	checkConsistent(t, c, b)
	n, err := c.Shrink()
	if err != nil || n == 0 {
		t.Fatalf("shrink after the faults: %d %v", n, err)
	}
	checkConsistent(t, c, b)
	closeWithGPU(t, c, fence)
	if _, err := c.Shrink(); !errors.Is(err, ErrClosed) {
		t.Fatalf("shrink after close: %v", err)
	}
}
