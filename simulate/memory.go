package simulate

import (
	"errors"
	"fmt"

	"github.com/vattn/vattn/backend/sim"
	"github.com/vattn/vattn/kvcache"
	"github.com/vattn/vattn/pagesize"
)

// errNoMemory is what a memory returns when a step does not fit.
var errNoMemory = errors.New("no memory")

// usage is one sample of a memory's state.
type usage struct {
	mapped uint64 // bytes backed by physical memory under active requests
	idle   uint64 // bytes backed but held by finished requests (reclaimable)
	live   uint64 // bytes holding live tokens
	free   uint64 // bytes a new request could still get
}

// memory is a KV-cache memory manager under the scheduler: vattn's
// kvcache, or the PagedAttention baseline.
type memory interface {
	alloc(tokens int) (int, error) // a free slot, memory comes with step
	// step makes lens fit; errNoMemory (wrapped) leaves it unchanged.
	// admit marks an admission probe, mapped on the spot; the iteration's
	// decode step may map the next step's pages in the background.
	step(lens []int, admit bool) error
	free(slot int) error
	usage() usage
	close() error
}

// vattnMemory drives the real kvcache over the simulator backend.
type vattnMemory struct {
	cache *kvcache.Cache
	be    *sim.Backend
	async bool
	page  uint64
}

func newVattnMemory(shape Shape, ps pagesize.Size, mega, async bool, budget uint64, latency *sim.LatencyModel) (*vattnMemory, error) {
	be, err := sim.New(sim.Config{PageSize: ps, GPUMemory: budget, Latency: latency})
	if err != nil {
		return nil, err
	}
	cfg := kvcache.Config{
		Layers: shape.Layers, KVHeads: shape.KVHeads, HeadDim: shape.HeadDim, DTypeBytes: shape.DTypeBytes,
		MaxBatch: shape.MaxBatch, MaxContext: shape.MaxContext, Megacache: mega,
	}
	c, err := kvcache.New(cfg, be)
	if err != nil {
		_ = be.Close()
		return nil, err
	}
	// Reserve the whole budget in whole page indexes, as vAttention's
	// reserve_physical_pages does, so steps only map.
	idx := budget / (ps.Bytes() * uint64(c.Layout().PagesPerIndex))
	if idx == 0 {
		_ = c.Close()
		_ = be.Close()
		return nil, fmt.Errorf("%s: the KV budget of %d bytes holds not one page index", ps, budget)
	}
	if err := c.ReservePhysical(idx * ps.Bytes() * uint64(c.Layout().PagesPerIndex)); err != nil {
		_ = c.Close()
		_ = be.Close()
		return nil, err
	}
	return &vattnMemory{cache: c, be: be, async: async, page: ps.Bytes()}, nil
}

func (m *vattnMemory) alloc(tokens int) (int, error) { return m.cache.AllocBatchIdx(tokens) }

func (m *vattnMemory) step(lens []int, admit bool) error {
	var err error
	if m.async && !admit {
		err = m.cache.StepAsync(lens)
	} else {
		err = m.cache.Step(lens)
	}
	if errors.Is(err, kvcache.ErrOutOfPages) {
		return fmt.Errorf("%w: %w", errNoMemory, err)
	}
	return err
}

func (m *vattnMemory) free(slot int) error { return m.cache.FreeBatchIdx(slot) }

func (m *vattnMemory) usage() usage {
	// Sample after the background mapper is done, so runs are repeatable.
	_ = m.cache.Wait()
	st := m.cache.Stats()
	return usage{
		mapped: uint64(st.MappedPages-st.IdlePages) * m.page,
		idle:   uint64(st.IdlePages) * m.page,
		live:   st.LiveBytes,
		free:   uint64(m.cache.FreeIndexes()) * uint64(st.Layout.PagesPerIndex) * m.page,
	}
}

func (m *vattnMemory) close() error {
	return errors.Join(m.cache.Close(), m.be.Close())
}

// pagedMemory is the PagedAttention baseline: a pool of fixed blocks of
// blockTokens tokens (all layers, K and V), handed out one at a time,
// returned when a request ends.
type pagedMemory struct {
	blockTokens int
	blockBytes  uint64
	tokenBytes  uint64 // K and V of one token, all layers
	total, used int
	slots       []pagedSlot
}

type pagedSlot struct {
	active bool
	blocks int
	length int
}

func newPagedMemory(shape Shape, blockTokens int, budget uint64) (*pagedMemory, error) {
	tokenBytes := shape.TokenBytes()
	blockBytes := tokenBytes * uint64(blockTokens)
	total := int(budget / blockBytes)
	if total == 0 {
		return nil, fmt.Errorf("paged %d: the KV budget holds not one block", blockTokens)
	}
	return &pagedMemory{blockTokens: blockTokens, blockBytes: blockBytes, tokenBytes: tokenBytes,
		total: total, slots: make([]pagedSlot, shape.MaxBatch)}, nil
}

func (m *pagedMemory) alloc(int) (int, error) {
	for i := range m.slots {
		if !m.slots[i].active {
			m.slots[i] = pagedSlot{active: true}
			return i, nil
		}
	}
	return -1, kvcache.ErrNoFreeSlot
}

func (m *pagedMemory) step(lens []int, _ bool) error {
	need := 0
	for i, n := range lens {
		if b := (n + m.blockTokens - 1) / m.blockTokens; b > m.slots[i].blocks {
			need += b - m.slots[i].blocks
		}
	}
	if m.used+need > m.total {
		return fmt.Errorf("%w: need %d blocks, %d free", errNoMemory, need, m.total-m.used)
	}
	for i, n := range lens {
		s := &m.slots[i]
		if b := (n + m.blockTokens - 1) / m.blockTokens; b > s.blocks {
			m.used += b - s.blocks
			s.blocks = b
		}
		s.length = n
	}
	return nil
}

func (m *pagedMemory) free(slot int) error {
	m.used -= m.slots[slot].blocks
	m.slots[slot] = pagedSlot{}
	return nil
}

func (m *pagedMemory) usage() usage {
	var live uint64
	for _, s := range m.slots {
		live += uint64(s.length)
	}
	return usage{
		mapped: uint64(m.used) * m.blockBytes,
		live:   live * m.tokenBytes,
		free:   uint64(m.total-m.used) * m.blockBytes,
	}
}

func (m *pagedMemory) close() error { return nil }
