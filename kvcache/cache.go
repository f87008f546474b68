// Package kvcache is vattn's KV-cache allocator, with vAttention's semantics
// over any backend.Backend.
//
// Every layer's K and V cache is one contiguous virtual range (or, with the
// megacache layout, one K and one V range for all layers), reserved up front
// for MaxBatch slots of MaxContext tokens. Physical pages are mapped under a
// slot only as its sequence grows. A page index j of a slot is backed by one
// page in every range, so growing a slot by one page index maps
// Layout.PagesPerIndex pages in one batched backend call.
//
// Finished requests keep their pages mapped (deferred reclamation): a new
// request that fits in an idle slot's pages needs no mapping at all, which is
// why AllocBatchIdx prefers the best-fitting idle slot. Idle pages go back to
// the pool when a step needs them (oldest idle slot first, from its tail), or
// one page index per step with TrickleReclaim, or as soon as the GPU is done
// with them with EagerReclaim.
//
// Pages are only unmapped or handed to a new request once the GPU work that
// may read them has completed: FreeBatchIdx records an epoch on the backend's
// Fence, and reuse waits for it.
//
// Goroutines: every method may be called from any goroutine. The calls that
// change the cache (ReservePhysical, AllocBatchIdx,
// FreeBatchIdx, Step, StepAsync, StepLayered, Wait, Trim, Shrink, Close) are
// serialized: a second one waits for the one in flight, and first for the
// background mapping StepAsync or StepLayered started. Serializing keeps
// the semantics of one caller, but the order in which waiting calls run is
// not defined: goroutines that need their steps in a given order must order
// them themselves. Close waits for the call in flight and the background
// work, then closes; calls after it return ErrClosed. Stats, Slots,
// FreeIndexes, K and V do not queue behind the serialized calls; they take
// the cache's lock briefly, so they wait while a step holds it (including a
// step waiting for the GPU to finish with pages it needs). WaitLayer waits
// for nothing but the layer it names.
package kvcache

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vattn/vattn/backend"
)

type slot struct {
	active   bool
	length   int              // tokens at the last step
	maxLen   int              // the longest length of the current request
	mapped   int              // page indexes [0, mapped) are mapped
	covered  int              // tokens the mapped indexes hold
	pages    []backend.PageID // index j's pages at [j*PagesPerIndex, (j+1)*PagesPerIndex), in range order
	released backend.Epoch    // recorded when the slot was freed
	freedAt  uint64           // free order, for oldest-first reclaim
}

// Cache is a KV cache over one backend. Create it with New.
type Cache struct {
	cfg     Config
	b       backend.Backend
	counter backend.CallCounter // b, where it counts driver calls
	fence   backend.Fence
	layout  Layout
	ranges  []backend.Region // K ranges first, then V ranges

	// call serializes the caller-side methods (see the package doc): it is
	// held from enter until the method returns, so at most one of them, and
	// the background work it started, touches busy and the job channels.
	call sync.Mutex

	mu       sync.Mutex
	slots    []slot
	pool     []backend.PageID // physical pages the cache holds, unmapped
	reserved int              // pages the cache holds, mapped or not
	freed    uint64           // count of FreeBatchIdx calls
	closed   atomic.Bool      // set under mu; read without it by K, V, WaitLayer
	st       counters

	// scratch, reused so steps do not allocate
	grow  []growth
	near  []near
	cuts  []victim
	maps  []backend.Mapping
	addrs []uint64

	// the background mapper
	ctx      context.Context
	cancel   context.CancelFunc
	jobs     chan []int
	jobDone  chan struct{}
	busy     bool  // a job is in flight (touched under call only)
	nextLens []int // the job's input, reused

	lay layered // StepLayered's progress
}

type growth struct{ slot, to int }

// near is a slot within GrowMargin of the end of its pages: slack tokens
// left beyond its next length, to grow to index to.
type near struct{ slot, slack, to int }

// New reserves the virtual ranges for cfg on b and returns an empty cache:
// no physical memory yet (see ReservePhysical). The cache uses b but does not
// own it: Close releases what the cache holds, and the caller closes b.
func New(cfg Config, b backend.Backend) (*Cache, error) {
	if b == nil {
		return nil, fmt.Errorf("%w: nil backend", ErrBadConfig)
	}
	ps := b.PageSize()
	if err := cfg.validate(ps); err != nil {
		return nil, err
	}
	c := &Cache{cfg: cfg, b: b, fence: b.Fence(), layout: cfg.layout(ps)}
	c.counter, _ = b.(backend.CallCounter)
	size := c.layout.SlotBytes * uint64(cfg.MaxBatch)
	for range c.layout.Ranges {
		r, err := b.Reserve(size)
		if err != nil {
			err = fmt.Errorf("%w: reserve %d bytes: %w", ErrBackend, size, err)
			for _, got := range c.ranges {
				if rerr := b.Release(got); rerr != nil {
					err = errors.Join(err, fmt.Errorf("release after failed reserve: %w", rerr))
				}
			}
			return nil, err
		}
		c.ranges = append(c.ranges, r)
	}
	c.slots = make([]slot, cfg.MaxBatch)
	c.nextLens = make([]int, cfg.MaxBatch)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	// One job is in flight at most (the caller waits before the next), so a
	// buffer of one means neither side ever blocks on a hand-off. That
	// matters when the caller is a C thread (libvattn): its goroutine is
	// locked to that thread, and parking it on an unbuffered send costs two
	// OS-thread wake-ups, about 50 µs per StepAsync measured from Python.
	c.jobs = make(chan []int, 1)
	c.jobDone = make(chan struct{}, 1)
	go c.mapper()
	return c, nil
}

// Layout describes where K and V live and how pages back them.
func (c *Cache) Layout() Layout { return c.layout }

// Config returns the configuration the cache was built with (defaults filled).
func (c *Cache) Config() Config { return c.cfg }

// K returns the device address of layer's K tensor. See Layout for strides.
// A layer outside [0, Layers) is ErrLayerRange; after Close, ErrClosed (the
// range is gone, so no address is valid).
func (c *Cache) K(layer int) (uint64, error) { return c.tensor("k", 0, layer) }

// V returns the device address of layer's V tensor, as K does for K.
func (c *Cache) V(layer int) (uint64, error) { return c.tensor("v", 1, layer) }

func (c *Cache) tensor(op string, kv, layer int) (uint64, error) {
	if layer < 0 || layer >= c.cfg.Layers {
		return 0, fmt.Errorf("%s: %w: %d not in [0, %d)", op, ErrLayerRange, layer, c.cfg.Layers)
	}
	if c.closed.Load() {
		return 0, fmt.Errorf("%s: %w", op, ErrClosed)
	}
	if c.cfg.Megacache {
		return c.ranges[kv].Addr + uint64(layer)*c.layout.LayerBytes, nil
	}
	return c.ranges[kv*c.cfg.Layers+layer].Addr, nil
}

// Ranges returns the reserved virtual ranges: K ranges in layer order, then
// V ranges (one of each with Megacache).
func (c *Cache) Ranges() []backend.Region { return slices.Clone(c.ranges) }

// addr returns the device address of page index j of slot s in range r.
func (c *Cache) addr(r, s, j int) uint64 {
	return c.ranges[r].Addr + uint64(s)*c.layout.SlotBytes + uint64(j)*c.layout.PageSize.Bytes()
}

// enter queues behind the caller-side call in flight, waits for background
// work and takes the lock. Every caller-side method starts with it and, when
// it succeeds, unlocks c.call (deferred) and c.mu when done.
func (c *Cache) enter() error {
	c.call.Lock()
	c.wait()
	c.mu.Lock()
	if c.closed.Load() {
		c.mu.Unlock()
		c.call.Unlock()
		return ErrClosed
	}
	if err := c.undoLayered(); err != nil {
		c.mu.Unlock()
		c.call.Unlock()
		return err
	}
	return nil
}

// wait blocks until the background mapper is idle. c.call is held.
func (c *Cache) wait() {
	if c.busy {
		<-c.jobDone
		c.busy = false
	}
}

// Wait blocks until the background mapping a StepAsync started has
// finished. Every other caller-side method waits by itself; Wait is for
// callers that want the mapping done before they read Stats or time a step.
func (c *Cache) Wait() error {
	if err := c.enter(); err != nil {
		return fmt.Errorf("wait: %w", err)
	}
	defer c.call.Unlock()
	c.mu.Unlock()
	return nil
}

// ReservePhysical allocates physical pages worth bytes (rounded up to whole
// pages) into the pool, so steps only map. It may be called again to grow
// the pool. On error the pool is unchanged.
func (c *Cache) ReservePhysical(bytes uint64) error {
	if err := c.enter(); err != nil {
		return err
	}
	defer c.call.Unlock()
	defer c.mu.Unlock()
	if bytes == 0 {
		return fmt.Errorf("reserve physical: %w: zero bytes (want at least one page, %s)", ErrBadSize, c.layout.PageSize)
	}
	if bytes > maxReserve {
		return fmt.Errorf("reserve physical: %w: %d bytes is more than any device has (limit %d)", ErrBadSize, bytes, uint64(maxReserve))
	}
	if err := c.allocPages(int(c.layout.PageSize.Pages(bytes))); err != nil {
		return fmt.Errorf("reserve physical %d bytes: %w", bytes, err)
	}
	return nil
}

// maxReserve bounds one ReservePhysical: 2^50 bytes (1 PiB), beyond any
// GPU, so the page count always fits an int.
const maxReserve = 1 << 50

// allocPages adds n new pages to the pool. Stats count the call whether or
// not it succeeds, and only the pages it got.
func (c *Cache) allocPages(n int) error {
	start := time.Now()
	pages, err := c.b.AllocPages(n)
	got := len(pages)
	if err != nil {
		got = 0 // a failed call created nothing (backend.Backend's contract)
	}
	c.st.alloc.add(1, got, time.Since(start))
	if err != nil {
		if errors.Is(err, backend.ErrOutOfMemory) {
			return fmt.Errorf("%w: allocate %d pages: %w", ErrOutOfPages, n, err)
		}
		return fmt.Errorf("%w: allocate %d pages: %w", ErrBackend, n, err)
	}
	c.pool = append(c.pool, pages...)
	c.reserved += len(pages)
	return nil
}

// Trim returns every unmapped page in the pool to the backend and reports
// how many it freed.
func (c *Cache) Trim() (int, error) {
	if err := c.enter(); err != nil {
		return 0, err
	}
	defer c.call.Unlock()
	defer c.mu.Unlock()
	return c.freePool()
}

// Shrink gives the device back what the cache does not use now: it unmaps
// every idle slot's pages (waiting first for the GPU work that may still read
// them) and active slots' pages beyond their length plus one token, then
// returns those and the rest of the pool to the backend. It reports how many
// pages it freed. Active slots keep what they need, so a server can call it
// whenever load drops; the next growth allocates again (with GrowPool, or
// after ReservePhysical). On a failure the pages already unmapped stay in
// the pool.
func (c *Cache) Shrink() (int, error) {
	if err := c.enter(); err != nil {
		return 0, err
	}
	defer c.call.Unlock()
	defer c.mu.Unlock()
	if err := c.reclaim(math.MaxInt32, true, surplusAhead, nil, &c.st.fg); err != nil {
		return 0, fmt.Errorf("shrink: %w", err)
	}
	n, err := c.freePool()
	if err != nil {
		return 0, fmt.Errorf("shrink: %w", err)
	}
	return n, nil
}

// freePool returns every page of the pool to the backend.
func (c *Cache) freePool() (int, error) {
	n := len(c.pool)
	if n == 0 {
		return 0, nil
	}
	if err := c.b.FreePages(c.pool); err != nil {
		return 0, fmt.Errorf("%w: free %d pages: %w", ErrBackend, n, err)
	}
	c.st.freePages += uint64(n)
	c.pool = c.pool[:0]
	c.reserved -= n
	return n, nil
}

// AllocBatchIdx activates a free slot for a request of seqLen tokens and
// returns its index. It prefers an idle slot whose still-mapped pages already
// hold seqLen tokens (the tightest such fit), else the idle slot with the
// most pages mapped, so the next Step maps as little as possible. Pages are
// mapped by the next Step, not here. If the chosen slot's pages may still be
// read by GPU work, AllocBatchIdx waits for that work first.
func (c *Cache) AllocBatchIdx(seqLen int) (int, error) {
	if err := c.enter(); err != nil {
		return -1, err
	}
	defer c.call.Unlock()
	defer c.mu.Unlock()
	if seqLen < 0 {
		return -1, fmt.Errorf("alloc batch idx: %w: %d", ErrBadLength, seqLen)
	}
	if seqLen > c.cfg.MaxContext {
		return -1, fmt.Errorf("alloc batch idx: %w: %d > %d", ErrContextTooLong, seqLen, c.cfg.MaxContext)
	}
	need := c.layout.indexesFor(seqLen)
	done := c.fence.Completed()
	best, bestReady := -1, false
	for i := range c.slots {
		s := &c.slots[i]
		if s.active {
			continue
		}
		ready := s.mapped == 0 || s.released <= done
		if best < 0 || (ready && !bestReady) || (ready == bestReady && fitsBetter(s.mapped, c.slots[best].mapped, need)) {
			best, bestReady = i, ready
		}
	}
	if best < 0 {
		return -1, fmt.Errorf("alloc batch idx: %w: all %d slots active", ErrNoFreeSlot, c.cfg.MaxBatch)
	}
	s := &c.slots[best]
	if !bestReady {
		c.st.fenceWaits++
		if err := c.fence.Wait(c.ctx, s.released); err != nil {
			return -1, fmt.Errorf("alloc batch idx: wait for slot %d's last readers: %w: %w", best, ErrBackend, err)
		}
	}
	s.active, s.length, s.maxLen = true, 0, 0
	return best, nil
}

// fitsBetter reports whether a slot with a mapped indexes suits a request
// needing need indexes better than one with b: covering beats not covering;
// among covering slots the smaller wins, among the others the larger.
func fitsBetter(a, b, need int) bool {
	ac, bc := a >= need, b >= need
	switch {
	case ac != bc:
		return ac
	case ac:
		return a < b
	default:
		return a > b
	}
}

// FreeBatchIdx ends the request in slot i. Its pages stay mapped for reuse
// until reclaimed; they are not reused before the GPU work submitted so far
// has completed.
func (c *Cache) FreeBatchIdx(i int) error {
	if err := c.enter(); err != nil {
		return err
	}
	defer c.call.Unlock()
	defer c.mu.Unlock()
	if i < 0 || i >= len(c.slots) {
		return fmt.Errorf("free batch idx %d: %w (max batch %d)", i, ErrSlotRange, len(c.slots))
	}
	s := &c.slots[i]
	if !s.active {
		return fmt.Errorf("free batch idx %d: %w (double free?)", i, ErrSlotInactive)
	}
	e, err := c.fence.Record()
	if err != nil {
		return fmt.Errorf("free batch idx %d: record fence: %w: %w", i, ErrBackend, err)
	}
	c.freed++
	s.active, s.length, s.maxLen, s.released, s.freedAt = false, 0, 0, e, c.freed
	return nil
}

// Step makes sure every active slot i has pages for seqLens[i] tokens before
// a forward pass. seqLens has one entry per slot (shorter slices mean zero
// for the rest); inactive slots must have 0. Step is all or nothing: on error
// no slot gained pages.
func (c *Cache) Step(seqLens []int) error {
	if err := c.enter(); err != nil {
		return err
	}
	defer c.call.Unlock()
	defer c.mu.Unlock()
	if err := c.step(seqLens, &c.st.fg); err != nil {
		return fmt.Errorf("step: %w", err)
	}
	c.afterStep(&c.st.fg)
	return nil
}

// StepAsync is Step for the current lengths (the prefill part, which the
// forward pass needs now), and then maps the pages the next decode step will
// need (every active slot one token longer) in the background while the GPU
// computes; with Config.GrowMargin the same background job also grows slots
// near the end of their pages ahead of need, a bounded amount per job. The
// next call on the cache waits for that work. A background failure is not
// an error of this call: the next Step maps what is missing itself and
// reports its own errors; Stats counts background failures.
func (c *Cache) StepAsync(seqLens []int) error {
	if err := c.enter(); err != nil {
		return err
	}
	defer c.call.Unlock()
	if err := c.step(seqLens, &c.st.fg); err != nil {
		c.mu.Unlock()
		return fmt.Errorf("step async: %w", err)
	}
	next := c.nextLens
	for i := range next {
		next[i] = 0
		if i < len(seqLens) && c.slots[i].active && seqLens[i] > 0 {
			next[i] = min(seqLens[i]+1, c.cfg.MaxContext)
		}
	}
	c.mu.Unlock()
	c.busy = true
	c.jobs <- next
	return nil
}

// mapper is the long-lived background goroutine behind StepAsync.
func (c *Cache) mapper() {
	for lens := range c.jobs {
		c.mu.Lock()
		if !c.closed.Load() {
			before := c.st.bg.maps.pages
			err := c.ensure(lens, &c.st.bg)
			if err == nil {
				// What the next step needs comes first: ahead of need
				// only once that is mapped.
				err = c.growAhead(lens, &c.st.bg)
			}
			if err != nil {
				c.st.bgErrors++
				c.st.bgLastError = err.Error()
			}
			c.st.bgJobMaxPages = max(c.st.bgJobMaxPages, c.st.bg.maps.pages-before)
			c.afterStep(&c.st.bg)
		}
		c.mu.Unlock()
		c.jobDone <- struct{}{}
	}
}

// step validates seqLens, maps what is missing and records the lengths.
func (c *Cache) step(seqLens []int, ph *phase) error {
	if err := c.checkLens(seqLens); err != nil {
		return err
	}
	if err := c.ensure(seqLens, ph); err != nil {
		return err
	}
	c.setLengths(seqLens)
	return nil
}

// setLengths records a step's lengths in the active slots (0 past the end
// of lens).
func (c *Cache) setLengths(lens []int) {
	for i := range c.slots {
		s := &c.slots[i]
		if !s.active {
			continue
		}
		s.length = 0
		if i < len(lens) {
			s.length = lens[i]
		}
		s.maxLen = max(s.maxLen, s.length)
	}
}

// checkLens validates a step's lengths.
func (c *Cache) checkLens(seqLens []int) error {
	if len(seqLens) > len(c.slots) {
		return fmt.Errorf("%w: %d lengths for %d slots", ErrSlotRange, len(seqLens), len(c.slots))
	}
	for i, n := range seqLens {
		switch {
		case n < 0:
			return fmt.Errorf("slot %d: %w: %d", i, ErrBadLength, n)
		case n > c.cfg.MaxContext:
			return fmt.Errorf("slot %d: %w: %d > %d", i, ErrContextTooLong, n, c.cfg.MaxContext)
		case n > 0 && !c.slots[i].active:
			return fmt.Errorf("slot %d: %w", i, ErrSlotInactive)
		}
	}
	return nil
}

// ensure maps page indexes so every slot i holds lens[i] tokens. It changes
// no slot unless it succeeds; pages it takes from idle slots stay in the pool.
func (c *Cache) ensure(lens []int, ph *phase) error {
	grow, pages, maps, err := c.plan(lens, ph)
	if err != nil || len(maps) == 0 {
		return err
	}
	if err := c.mapBatches(maps, ph); err != nil {
		c.pool = append(c.pool, pages...)
		return err
	}
	c.commit(grow, pages)
	return nil
}

// plan takes the pages a step needs and builds its mappings. Pages are
// assigned range-major: of the n indexes the step adds, range r gets
// pages[r*n:(r+1)*n], in slot order and index order within a slot, and the
// mappings come in the same order (range r's are maps[r*n:(r+1)*n]). A
// fresh pool (ReservePhysical) hands pages out in ascending ID order, and
// reclaim returns a slot's pages range by range, so a slot that grows by
// several indexes mostly gets consecutive IDs at consecutive addresses in
// every range: one run per range for backends that map a run per call. The
// slices are the cache's scratch.
func (c *Cache) plan(lens []int, ph *phase) ([]growth, []backend.PageID, []backend.Mapping, error) {
	grow := c.grow[:0]
	indexes, ahead := 0, 0
	for i, n := range lens {
		s := &c.slots[i]
		if n <= s.covered {
			continue
		}
		if need := c.layout.indexesFor(n); need > s.mapped {
			grow = append(grow, growth{i, need})
			indexes += need - s.mapped
			ahead += min(need+c.cfg.MapAhead, c.layout.IndexesPerSlot) - need
		}
	}
	c.grow = grow
	if indexes == 0 {
		return nil, nil, nil, nil
	}
	// MapAhead comes only out of what the pool holds beyond the step's
	// need: it never reclaims, allocates or fails a step that would fit
	// without it. Growths get their share in slot order.
	ppi := c.layout.PagesPerIndex
	ahead = max(0, min(ahead, (len(c.pool)-indexes*ppi)/ppi))
	for k := range grow {
		if ahead == 0 {
			break
		}
		g := &grow[k]
		more := min(c.cfg.MapAhead, c.layout.IndexesPerSlot-g.to, ahead)
		g.to += more
		indexes += more
		ahead -= more
	}
	pages, err := c.take(indexes*ppi, lens, ph)
	if err != nil {
		return nil, nil, nil, err
	}
	return grow, pages, c.mappings(grow, pages), nil
}

// mappings lays pages out under the growths, range-major (see plan), in
// the cache's scratch.
func (c *Cache) mappings(grow []growth, pages []backend.PageID) []backend.Mapping {
	ppi := c.layout.PagesPerIndex
	indexes := len(pages) / ppi
	maps := c.maps[:0]
	for r := range ppi {
		k := r * indexes
		for _, g := range grow {
			for j := c.slots[g.slot].mapped; j < g.to; j++ {
				maps = append(maps, backend.Mapping{Addr: c.addr(r, g.slot, j), Page: pages[k]})
				k++
			}
		}
	}
	c.maps = maps
	return maps
}

// growAhead maps, for GrowMargin, page indexes that active slots do not
// need yet for lens (the next step's lengths): slots whose mapped pages end
// within GrowMargin tokens of their length, nearest to their end first, up
// to GrowLimit indexes. It uses only the pool, idle slots whose readers are
// done and, with GrowPool, new pages; when they fall short it maps fewer. It
// changes no slot unless it succeeds.
func (c *Cache) growAhead(lens []int, ph *phase) error {
	if c.cfg.GrowMargin == 0 {
		return nil
	}
	cand := c.near[:0]
	for i, n := range lens {
		s := &c.slots[i]
		if !s.active || n == 0 || s.mapped >= c.layout.IndexesPerSlot {
			continue
		}
		want := min(n+c.cfg.GrowMargin, c.cfg.MaxContext)
		if s.covered >= want {
			continue
		}
		to := min(c.layout.indexesFor(want)+c.cfg.MapAhead, c.layout.IndexesPerSlot)
		cand = append(cand, near{i, s.covered - n, to})
	}
	c.near = cand
	if len(cand) == 0 {
		return nil
	}
	slices.SortFunc(cand, func(a, b near) int {
		return cmp.Or(cmp.Compare(a.slack, b.slack), cmp.Compare(a.slot, b.slot))
	})
	want := 0
	for _, x := range cand {
		want += x.to - c.slots[x.slot].mapped
	}
	ppi := c.layout.PagesPerIndex
	budget := min(want, c.cfg.growLimit(&c.layout))
	if short := budget*ppi - len(c.pool); short > 0 {
		if err := c.reclaim(short, false, idleOnly, nil, ph); err != nil {
			return err
		}
		if short = budget*ppi - len(c.pool); short > 0 && c.cfg.GrowPool {
			if err := c.allocPages(short); err != nil {
				return err
			}
		}
		budget = min(budget, len(c.pool)/ppi)
	}
	grow := c.grow[:0]
	indexes := 0
	for _, x := range cand {
		if indexes == budget {
			break
		}
		from := c.slots[x.slot].mapped
		to := min(x.to, from+budget-indexes)
		grow = append(grow, growth{x.slot, to})
		indexes += to - from
	}
	c.grow = grow
	if indexes == 0 {
		return nil
	}
	pages := c.pool[len(c.pool)-indexes*ppi:]
	c.pool = c.pool[:len(c.pool)-indexes*ppi]
	if err := c.mapBatches(c.mappings(grow, pages), ph); err != nil {
		c.pool = append(c.pool, pages...)
		return err
	}
	c.commit(grow, pages)
	c.st.ahead += uint64(indexes)
	return nil
}

// commit records mapped pages under their slots (index-major: slot page
// j*PagesPerIndex+r is index j's page in range r), from plan's range-major
// assignment.
func (c *Cache) commit(grow []growth, pages []backend.PageID) {
	ppi := c.layout.PagesPerIndex
	indexes := len(pages) / ppi
	off := 0
	for _, g := range grow {
		s := &c.slots[g.slot]
		n := g.to - s.mapped
		for j := range n {
			for r := range ppi {
				s.pages = append(s.pages, pages[r*indexes+off+j])
			}
		}
		off += n
		s.mapped = g.to
		s.covered = min(c.layout.tokensIn(g.to), c.cfg.MaxContext)
	}
}

// broken records an unmap that failed while undoing a failed step: the
// backend holds mappings the cache no longer describes. Nothing is retried;
// Close still releases the regions and the backend's Close the rest.
func (c *Cache) broken(err error) {
	c.st.inconsistencies++
	c.st.bgLastError = err.Error()
}

func (c *Cache) unmap(maps []backend.Mapping, fence backend.Epoch, ph *phase) error {
	addrs := c.addrs[:0]
	for _, m := range maps {
		addrs = append(addrs, m.Addr)
	}
	c.addrs = addrs
	_, u0 := c.driverCalls()
	start := time.Now()
	err := c.b.Unmap(addrs, fence)
	ph.unmaps.add(1, len(addrs), time.Since(start))
	_, u1 := c.driverCalls()
	ph.unmaps.driver += u1 - u0
	return err
}

// driverCalls reads the backend's driver call counts, where it keeps them.
func (c *Cache) driverCalls() (mapCalls, unmapCalls uint64) {
	if c.counter == nil {
		return 0, 0
	}
	return c.counter.DriverCalls()
}

// take removes n pages from the pool for a step to lens, reclaiming idle
// and surplus pages and, with GrowPool, allocating when the pool runs dry.
// On error nothing was taken.
func (c *Cache) take(n int, lens []int, ph *phase) ([]backend.PageID, error) {
	if len(c.pool) < n {
		// Active slots keep one token of lookahead (the next step's page)
		// unless the pool is short without it and cannot grow: a step's
		// own need comes before what the next one may need.
		spare := c.spare(lens, surplusAhead)
		tight := len(c.pool)+spare < n && !c.cfg.GrowPool
		if tight {
			spare = c.spare(lens, surplusTight)
		}
		if len(c.pool)+spare < n && !c.cfg.GrowPool {
			return nil, fmt.Errorf("%w: need %d pages, pool has %d and %d more can be reclaimed (reserve more physical memory or free requests)",
				ErrOutOfPages, n, len(c.pool), spare)
		}
		// Only the caller's own steps wait for the GPU: the background
		// mapper's lookahead is not worth blocking on (the next Step maps
		// what it could not). Lookahead is taken last, only for what the
		// rest does not cover.
		wait := ph == &c.st.fg
		if err := c.reclaim(n-len(c.pool), wait, surplusAhead, lens, ph); err != nil {
			return nil, err
		}
		if short := n - len(c.pool); tight && short > 0 {
			if err := c.reclaim(short, wait, surplusTight, lens, ph); err != nil {
				return nil, err
			}
		}
		if short := n - len(c.pool); short > 0 {
			if !c.cfg.GrowPool {
				return nil, fmt.Errorf("%w: need %d pages, %d free; the rest still in use by the GPU",
					ErrOutOfPages, n, len(c.pool))
			}
			if err := c.allocPages(short); err != nil {
				return nil, err
			}
		}
	}
	// The pages stay in the pool's backing array, past its length: nothing
	// appends to the pool until the caller is done with them, except
	// handing them back, which copies them onto themselves.
	pages := c.pool[len(c.pool)-n:]
	c.pool = c.pool[:len(c.pool)-n]
	return pages, nil
}

// spare counts the pages reclaim could take with kind.
func (c *Cache) spare(lens []int, kind surplusKind) int {
	n := 0
	for _, v := range c.victims(lens, kind) {
		n += (c.slots[v.slot].mapped - v.keep) * c.layout.PagesPerIndex
	}
	return n
}

// victim is a slot holding pages it does not need: all of an idle slot's,
// or an active slot's beyond keep page indexes.
type victim struct{ slot, keep int }

// surplusKind is what reclaim may take besides idle slots' pages.
type surplusKind int

const (
	// idleOnly: idle slots' pages alone.
	idleOnly surplusKind = iota
	// surplusAhead: also active slots' pages beyond what they have used
	// and what lens asks, plus one token of lookahead.
	surplusAhead
	// surplusTight: also active slots' pages beyond what they have used
	// and what lens asks, the lookahead included.
	surplusTight
)

// victims lists the slots pages can be reclaimed from: idle slots,
// oldest-freed first, then, unless kind is idleOnly, active slots mapped
// beyond what they keep (see surplusKind). An active slot gets such surplus
// when it reuses a bigger idle slot's pages, and from MapAhead and
// GrowMargin.
func (c *Cache) victims(lens []int, kind surplusKind) []victim {
	var v []victim
	for i := range c.slots {
		if !c.slots[i].active && c.slots[i].mapped > 0 {
			v = append(v, victim{i, 0})
		}
	}
	slices.SortFunc(v, func(a, b victim) int {
		return cmp.Compare(c.slots[a.slot].freedAt, c.slots[b.slot].freedAt)
	})
	if kind == idleOnly {
		return v
	}
	look := 1
	if kind == surplusTight {
		look = 0
	}
	for i := range c.slots {
		s := &c.slots[i]
		if !s.active {
			continue
		}
		n := s.maxLen
		if i < len(lens) {
			n = max(n, lens[i])
		}
		if keep := c.layout.indexesFor(min(n+look, c.cfg.MaxContext)); s.mapped > keep {
			v = append(v, victim{i, keep})
		}
	}
	return v
}

// reclaim unmaps unneeded pages (see victims; active slots' surplus as kind
// allows), from the tail of each slot, until at least n pages are back
// in the pool or nothing is left. An idle
// slot's pages are taken only once the GPU work that may read them is done:
// with wait, reclaim waits for it; without, it skips them. An active slot's
// surplus pages were never read by its current request, and its previous
// owner's readers were waited for when the slot was handed over.
func (c *Cache) reclaim(n int, wait bool, kind surplusKind, lens []int, ph *phase) error {
	ppi := c.layout.PagesPerIndex
	for n > 0 {
		victims := c.victims(lens, kind)
		done := c.fence.Completed()
		var fence backend.Epoch
		maps := c.maps[:0]
		cuts := c.cuts[:0]
		got := 0
		pending := -1 // the oldest idle slot whose readers may still run
		for _, v := range victims {
			s := &c.slots[v.slot]
			if !s.active {
				if s.released > done {
					if pending < 0 || s.released < c.slots[pending].released {
						pending = v.slot
					}
					continue
				}
				fence = max(fence, s.released)
			}
			k := min(s.mapped-v.keep, (n-got+ppi-1)/ppi)
			// Range-major, so each range's pages are consecutive addresses
			// in the batch: one run each.
			for r := range ppi {
				for j := s.mapped - k; j < s.mapped; j++ {
					maps = append(maps, backend.Mapping{Addr: c.addr(r, v.slot, j), Page: s.pages[j*ppi+r]})
				}
			}
			cuts = append(cuts, victim{v.slot, s.mapped - k})
			got += k * ppi
			if got >= n {
				break
			}
		}
		c.maps, c.cuts = maps, cuts
		if got == 0 {
			if !wait || pending < 0 {
				return nil
			}
			c.st.fenceWaits++
			if err := c.fence.Wait(c.ctx, c.slots[pending].released); err != nil {
				return fmt.Errorf("%w: wait for idle slot %d's last readers: %w", ErrBackend, pending, err)
			}
			continue
		}
		if err := c.unmap(maps, fence, ph); err != nil {
			return fmt.Errorf("%w: reclaim %d pages: %w", ErrBackend, len(maps), err)
		}
		// Back to the pool range-major, each slot's pages of a range in
		// index order: a later growth of the same size takes them as runs.
		for _, ct := range cuts {
			s := &c.slots[ct.slot]
			for r := range ppi {
				for j := ct.keep; j < s.mapped; j++ {
					c.pool = append(c.pool, s.pages[j*ppi+r])
				}
			}
			s.pages = s.pages[:ct.keep*ppi]
			s.mapped = ct.keep
			s.covered = min(c.layout.tokensIn(ct.keep), c.cfg.MaxContext)
		}
		c.st.reclaimed += uint64(got)
		n -= got
	}
	return nil
}

// afterStep applies the optional reclaim policies, never waiting for the GPU.
// They take idle slots' pages only: an active slot's pages beyond its
// length are there on purpose (MapAhead, GrowMargin), and unmapping them at
// every step would undo the mapping ahead that the next step pays for again.
// A failure here is counted, not returned: the step itself succeeded.
func (c *Cache) afterStep(ph *phase) {
	var err error
	switch {
	case c.cfg.EagerReclaim:
		err = c.reclaim(math.MaxInt32, false, idleOnly, nil, ph)
	case c.cfg.TrickleReclaim:
		err = c.reclaim(1, false, idleOnly, nil, ph)
	}
	if err != nil {
		c.st.bgErrors++
		c.st.bgLastError = err.Error()
	}
}

// Close waits for the caller-side call in flight (from another goroutine) and
// for background work, waits for the GPU work submitted so far,
// unmaps every page, frees every page the cache holds and releases its
// ranges. It reports every failure and keeps going, so as little as
// possible is left. Calls after Close return ErrClosed.
func (c *Cache) Close() error {
	c.call.Lock()
	defer c.call.Unlock()
	c.wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return nil
	}
	c.closed.Store(true)
	close(c.jobs)
	defer c.cancel()

	var errs []error
	if err := c.undoLayered(); err != nil {
		errs = append(errs, err)
	}
	var maps []backend.Mapping
	var pages []backend.PageID
	ppi := c.layout.PagesPerIndex
	for i := range c.slots {
		s := &c.slots[i]
		for j := range s.mapped {
			for r := range ppi {
				maps = append(maps, backend.Mapping{Addr: c.addr(r, i, j), Page: s.pages[j*ppi+r]})
			}
		}
	}
	if len(maps) > 0 {
		fence, err := c.fence.Record()
		if err == nil {
			err = c.fence.Wait(c.ctx, fence)
		}
		if err != nil {
			// The GPU may still read these pages: leave them mapped (the
			// backend's own Close releases them) rather than pull memory
			// from under running work.
			errs = append(errs, fmt.Errorf("close: wait for the GPU: %w", err))
			maps = nil
		}
		for start := 0; start < len(maps); start += c.cfg.MaxMapBatch {
			batch := maps[start:min(start+c.cfg.MaxMapBatch, len(maps))]
			if err := c.unmap(batch, fence, &c.st.fg); err != nil {
				errs = append(errs, fmt.Errorf("close: unmap %d pages: %w", len(batch), err))
				continue
			}
			for _, m := range batch {
				pages = append(pages, m.Page)
			}
		}
	}
	for i := range c.slots {
		c.slots[i] = slot{}
	}
	pages = append(pages, c.pool...)
	c.pool = nil
	if len(pages) > 0 {
		if err := c.b.FreePages(pages); err != nil {
			errs = append(errs, fmt.Errorf("close: free %d pages: %w", len(pages), err))
		} else {
			c.reserved -= len(pages)
		}
	}
	for _, r := range c.ranges {
		if err := c.b.Release(r); err != nil {
			errs = append(errs, fmt.Errorf("close: release range %#x: %w", r.Addr, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrBackend, errors.Join(errs...))
	}
	return nil
}
