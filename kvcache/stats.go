package kvcache

import (
	"math/bits"
	"time"
)

type callCounter struct {
	calls, pages uint64
	driver       uint64 // driver calls under them (backend.CallCounter)
	time         time.Duration
}

func (c *callCounter) add(calls, pages int, d time.Duration) {
	c.calls += uint64(calls)
	c.pages += uint64(pages)
	c.time += d
}

func (c callCounter) export() CallStats {
	return CallStats{Calls: c.calls, Pages: c.pages, DriverCalls: c.driver, Seconds: c.time.Seconds()}
}

// histogram counts durations in power-of-two nanosecond buckets: bucket i
// holds durations in [2^(i-1), 2^i) ns.
type histogram struct {
	buckets [64]uint64
	count   uint64
	max     time.Duration
}

func (h *histogram) observe(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.buckets[bits.Len64(uint64(d))]++
	h.count++
	h.max = max(h.max, d)
}

// quantile returns the upper bound of the bucket holding quantile q: an
// estimate that is never below the true value by more than a factor of 2.
func (h *histogram) quantile(q float64) time.Duration {
	if h.count == 0 {
		return 0
	}
	rank := uint64(q*float64(h.count-1)) + 1
	var seen uint64
	for i, n := range h.buckets {
		seen += n
		if seen >= rank {
			if i == 0 {
				return 0
			}
			return min(time.Duration(uint64(1)<<i-1), h.max)
		}
	}
	return h.max
}

// phase counts the backend calls made on the caller's critical path (fg)
// or by the background mapper (bg).
type phase struct{ maps, unmaps callCounter }

func (p *phase) export() PhaseStats {
	return PhaseStats{Map: p.maps.export(), Unmap: p.unmaps.export()}
}

type counters struct {
	fg, bg          phase
	alloc           callCounter
	freePages       uint64
	reclaimed       uint64
	ahead           uint64 // page indexes mapped ahead of need (GrowMargin)
	bgJobMaxPages   uint64 // the most pages one background job mapped
	fenceWaits      uint64
	mapLatency      histogram
	bgErrors        uint64
	bgLastError     string
	inconsistencies uint64
}

// CallStats counts backend calls of one kind.
type CallStats struct {
	Calls uint64 `json:"calls"`
	Pages uint64 `json:"pages"`
	// DriverCalls counts the driver calls under those backend calls, where
	// the backend makes several per call (backend.CallCounter: one per run
	// of consecutive pages on the stock nvidia-uvm path); 0 elsewhere.
	DriverCalls uint64  `json:"driver_calls,omitempty"`
	Seconds     float64 `json:"seconds"` // wall time spent in the backend
}

// PhaseStats counts the map and unmap calls of one phase.
type PhaseStats struct {
	Map   CallStats `json:"map"`
	Unmap CallStats `json:"unmap"`
}

// Latency summarizes backend Map call latencies. Percentiles come from
// power-of-two buckets: each is the bucket's upper bound.
type Latency struct {
	Count uint64        `json:"count"`
	P50   time.Duration `json:"p50_ns"`
	P99   time.Duration `json:"p99_ns"`
	Max   time.Duration `json:"max_ns"`
}

// Stats is a snapshot of the cache.
type Stats struct {
	Layout Layout `json:"layout"`

	ReservedPages int `json:"reserved_pages"` // physical pages the cache holds
	FreePages     int `json:"free_pages"`     // held but unmapped (the pool)
	MappedPages   int `json:"mapped_pages"`   // mapped under some slot
	IdlePages     int `json:"idle_pages"`     // mapped under inactive slots: reclaimable

	ActiveSlots int   `json:"active_slots"`
	LiveTokens  int64 `json:"live_tokens"` // tokens of active slots at their last step

	MappedBytes uint64 `json:"mapped_bytes"` // MappedPages × page size
	LiveBytes   uint64 `json:"live_bytes"`   // bytes that hold live tokens' K and V

	// Backend calls made on the caller's critical path (Step, the
	// foreground part of StepAsync, AllocBatchIdx, Close) and by the
	// background mapper.
	Foreground PhaseStats `json:"foreground"`
	Background PhaseStats `json:"background"`
	// Alloc counts backend page allocations (ReservePhysical, GrowPool):
	// every call, failed ones included, and the pages the successful ones
	// delivered.
	Alloc      CallStats `json:"alloc"`
	MapLatency Latency   `json:"map_latency"`

	ReclaimedPages uint64 `json:"reclaimed_pages"`
	// AheadIndexes counts the page indexes StepAsync's background jobs
	// mapped ahead of need for Config.GrowMargin; BackgroundJobMaxPages is
	// the most pages one background job (StepAsync's) mapped, needed and
	// ahead together: the size of the biggest burst of growth.
	AheadIndexes          uint64 `json:"ahead_indexes"`
	BackgroundJobMaxPages uint64 `json:"background_job_max_pages"`
	FreedPages            uint64 `json:"freed_pages"` // returned to the backend by Trim
	FenceWaits            uint64 `json:"fence_waits"` // times the cache waited for the GPU

	BackgroundErrors    uint64 `json:"background_errors"`
	LastBackgroundError string `json:"last_background_error,omitempty"`
	// Inconsistencies counts failed undos: mappings the backend holds that
	// the cache no longer tracks. Non-zero means the backend is failing.
	Inconsistencies uint64 `json:"inconsistencies"`
}

// SlotStats is the state of one batch slot.
type SlotStats struct {
	Index        int  `json:"index"`
	Active       bool `json:"active"`
	Length       int  `json:"length"`        // tokens at the last step
	MappedPages  int  `json:"mapped_pages"`  // physical pages under the slot
	MappedIndex  int  `json:"mapped_index"`  // page indexes mapped
	CoveredToken int  `json:"covered_token"` // tokens the mapped pages hold
	Reusable     bool `json:"reusable"`      // idle, and the GPU is done with its pages
}

// Stats returns a snapshot. It is safe to call from any goroutine.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := Stats{
		Layout:                c.layout,
		ReservedPages:         c.reserved,
		FreePages:             len(c.pool),
		Foreground:            c.st.fg.export(),
		Background:            c.st.bg.export(),
		Alloc:                 c.st.alloc.export(),
		ReclaimedPages:        c.st.reclaimed,
		AheadIndexes:          c.st.ahead,
		BackgroundJobMaxPages: c.st.bgJobMaxPages,
		FreedPages:            c.st.freePages,
		FenceWaits:            c.st.fenceWaits,
		BackgroundErrors:      c.st.bgErrors,
		LastBackgroundError:   c.st.bgLastError,
		Inconsistencies:       c.st.inconsistencies,
		MapLatency: Latency{
			Count: c.st.mapLatency.count,
			P50:   c.st.mapLatency.quantile(0.5),
			P99:   c.st.mapLatency.quantile(0.99),
			Max:   c.st.mapLatency.max,
		},
	}
	ppi := c.layout.PagesPerIndex
	for i := range c.slots {
		s := &c.slots[i]
		st.MappedPages += s.mapped * ppi
		if s.active {
			st.ActiveSlots++
			st.LiveTokens += int64(s.length)
		} else {
			st.IdlePages += s.mapped * ppi
		}
	}
	st.MappedBytes = uint64(st.MappedPages) * c.layout.PageSize.Bytes()
	st.LiveBytes = uint64(st.LiveTokens) * c.layout.TokenBytes * uint64(c.layout.Ranges)
	return st
}

// Slots returns the state of every slot. Safe from any goroutine.
func (c *Cache) Slots() []SlotStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	done := c.fence.Completed()
	out := make([]SlotStats, len(c.slots))
	for i := range c.slots {
		s := &c.slots[i]
		out[i] = SlotStats{
			Index: i, Active: s.active, Length: s.length,
			MappedPages: s.mapped * c.layout.PagesPerIndex, MappedIndex: s.mapped, CoveredToken: s.covered,
			Reusable: !s.active && s.released <= done,
		}
	}
	return out
}

// FreeIndexes returns how many page indexes could be mapped without
// allocating: the pool plus the pages of idle slots and the surplus of
// active ones, the lookahead StepAsync mapped included (a step takes it
// when the pool is short), in whole page indexes (vAttention's
// num_free_kvblocks).
func (c *Cache) FreeIndexes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(c.pool) / c.layout.PagesPerIndex
	for _, v := range c.victims(nil, surplusTight) {
		n += c.slots[v.slot].mapped - v.keep
	}
	return n
}
