package kvcache

import (
	"fmt"
	"math"
	"math/bits"

	"github.com/vattn/vattn/pagesize"
)

// Config describes the KV cache of one model shard.
type Config struct {
	Layers     int // transformer layers
	KVHeads    int // key/value heads on this GPU (after tensor parallelism)
	HeadDim    int // elements per head
	DTypeBytes int // bytes per element: 2 for fp16/bf16, 1 for fp8
	MaxBatch   int // request slots
	MaxContext int // tokens a request may grow to

	// Megacache lays K (and V) out as one range for all layers,
	// [batch, ctx, layers, heads, dim], instead of one range per layer:
	// 2 mappings per page index instead of 2×Layers, and a page holds
	// Layers times fewer tokens.
	Megacache bool

	// EagerReclaim unmaps a freed slot's pages as soon as the GPU is done
	// with them, instead of keeping them for the next request (vAttention's
	// deferred reclamation, the default).
	EagerReclaim bool
	// TrickleReclaim returns one page index of one idle slot to the pool at
	// every step, so idle memory drains slowly while the pool is not dry.
	TrickleReclaim bool
	// GrowPool lets a step allocate physical pages from the backend when the
	// pool and every reclaimable page are exhausted. Without it, a step that
	// needs more than ReservePhysical gave fails with ErrOutOfPages.
	GrowPool bool
	// MapAhead is how many page indexes beyond what a step needs a growing
	// slot gets in the same call (0: none). On backends whose cost is per
	// driver call rather than per page (the stock-driver small-page path),
	// a slot's pages in each range then map as one run of MapAhead+1 pages,
	// so a slot grows once every MapAhead+1 page boundaries instead of at
	// every one. The memory given up is at most MapAhead indexes per active
	// slot; under memory pressure those pages are the first reclaimed.
	MapAhead int
	// GrowMargin, in tokens, makes StepAsync's background job also grow,
	// ahead of need, every active slot whose mapped pages end within
	// GrowMargin tokens of its next length (0: the job maps only what the
	// next step needs). Such a slot grows to hold GrowMargin tokens more
	// than its next length, plus MapAhead indexes. Growth then happens a few
	// steps before a slot crosses its boundary, so slots that would all
	// cross in one step are grown over several jobs instead (GrowLimit),
	// off the critical path. The memory given up is at most GrowMargin
	// tokens (rounded up to a page index) plus MapAhead indexes per active
	// slot; those pages are surplus that a step short of pages reclaims
	// first. Mapping ahead uses the pool, idle slots whose GPU readers are
	// done and, with GrowPool, new pages; it never takes another active
	// slot's pages and never waits for the GPU. Step and StepLayered do not
	// map ahead.
	GrowMargin int
	// GrowLimit bounds the page indexes one background job maps ahead of
	// need for GrowMargin (what the next step needs is never bounded), so
	// that no job balloons when many slots near their ends at once: the
	// slots nearest to their ends go first and the rest wait for the next
	// job. GrowLimitPages bounds the same in physical pages: a page index is
	// Layout.PagesPerIndex pages (2×Layers per-layer, 2 with megacache), so
	// the same number of indexes is Layers times more driver work per-layer.
	// Pages bound the driver calls too: a call maps at least one page (on
	// the CUDA VMM path exactly one; on the stock small-page path one run
	// per range of each slot grown). Where both are set, both apply;
	// GrowLimitPages is rounded down to whole indexes, at least one. Both 0
	// means twice what MaxBatch slots decoding one token each need per step
	// on average (in pages, about the same for either layout), and at least
	// one growth of MapAhead+1 indexes.
	GrowLimit      int
	GrowLimitPages int
	// MaxMapBatch bounds the mappings passed to one Backend.Map call
	// (default 4096). A step that needs more makes several calls and, if a
	// later one fails, undoes the earlier ones.
	MaxMapBatch int
}

// Layout tells kernels where a token's K or V vectors live.
//
// The K tensor of layer l starts at Cache.K(l); the element (slot b, token t,
// head h, dim d) is at K(l) + b*SlotBytes + t*TokenBytes + h*HeadBytes +
// d*DTypeBytes. The same holds for V. With Megacache, all layers share one
// range and K(l) is offset by l*LayerBytes within each token's row.
type Layout struct {
	PageSize   pagesize.Size `json:"page_size"`
	Megacache  bool          `json:"megacache"`
	Ranges     int           `json:"ranges"`      // virtual ranges: 2×Layers, or 2 with Megacache
	SlotBytes  uint64        `json:"slot_bytes"`  // stride between request slots (page-aligned)
	TokenBytes uint64        `json:"token_bytes"` // stride between tokens of one slot
	LayerBytes uint64        `json:"layer_bytes"` // K or V of one token in one layer
	HeadBytes  uint64        `json:"head_bytes"`  // one head's vector
	// PagesPerIndex is the number of physical pages that back one page
	// index of a slot: one in every range.
	PagesPerIndex int `json:"pages_per_index"`
	// IndexesPerSlot is the number of page indexes a full slot uses.
	IndexesPerSlot int `json:"indexes_per_slot"`
	// TokensPerPage is how many tokens one page holds (0 when one token
	// spans several pages).
	TokensPerPage int `json:"tokens_per_page"`
}

func (cfg *Config) validate(ps pagesize.Size) error {
	positive := []struct {
		name string
		v    int
	}{
		{"layers", cfg.Layers}, {"kv heads", cfg.KVHeads}, {"head dim", cfg.HeadDim},
		{"dtype bytes", cfg.DTypeBytes}, {"max batch", cfg.MaxBatch}, {"max context", cfg.MaxContext},
	}
	for _, p := range positive {
		if p.v <= 0 {
			return fmt.Errorf("%w: %s must be positive, got %d", ErrBadConfig, p.name, p.v)
		}
	}
	if !ps.Valid() {
		return fmt.Errorf("%w: backend page size %s: %w", ErrBadConfig, ps, pagesize.ErrUnsupported)
	}
	if cfg.MapAhead < 0 {
		return fmt.Errorf("%w: map ahead must not be negative, got %d", ErrBadConfig, cfg.MapAhead)
	}
	if cfg.GrowMargin < 0 || cfg.GrowLimit < 0 || cfg.GrowLimitPages < 0 {
		return fmt.Errorf("%w: grow margin, grow limit and grow limit pages must not be negative, got %d, %d and %d",
			ErrBadConfig, cfg.GrowMargin, cfg.GrowLimit, cfg.GrowLimitPages)
	}
	if cfg.MaxMapBatch < 0 {
		return fmt.Errorf("%w: max map batch must not be negative", ErrBadConfig)
	}
	if cfg.MaxMapBatch == 0 {
		cfg.MaxMapBatch = 4096
	}
	// Guard the size arithmetic: the whole reservation must stay below
	// 2^56 bytes, far beyond any GPU's address space, so nothing overflows.
	ranges := uint64(2 * cfg.Layers)
	if cfg.Megacache {
		ranges = 2
	}
	token, ok := mulLimit(uint64(cfg.KVHeads), uint64(cfg.HeadDim), uint64(cfg.DTypeBytes))
	if cfg.Megacache && ok {
		token, ok = mulLimit(token, uint64(cfg.Layers))
	}
	if !ok {
		return fmt.Errorf("%w: the per-token size overflows", ErrBadConfig)
	}
	p := ps.Bytes()
	if p%token != 0 && token%p != 0 {
		return fmt.Errorf("%w: one token takes %d bytes per range, which does not tile %s pages "+
			"(a page must hold a whole number of tokens, or a token a whole number of pages)",
			ErrBadConfig, token, ps)
	}
	slot, ok := mulLimit(token, uint64(cfg.MaxContext))
	if ok {
		_, ok = mulLimit(ps.RoundUp(slot), uint64(cfg.MaxBatch), ranges)
	}
	if !ok {
		return fmt.Errorf("%w: %d slots of %d tokens of %d bytes in %d ranges overflow the address space",
			ErrBadConfig, cfg.MaxBatch, cfg.MaxContext, token, ranges)
	}
	return nil
}

func (cfg *Config) layout(ps pagesize.Size) Layout {
	l := Layout{PageSize: ps, Megacache: cfg.Megacache}
	l.HeadBytes = uint64(cfg.HeadDim) * uint64(cfg.DTypeBytes)
	l.LayerBytes = l.HeadBytes * uint64(cfg.KVHeads)
	l.TokenBytes = l.LayerBytes
	l.Ranges = 2 * cfg.Layers
	if cfg.Megacache {
		l.TokenBytes *= uint64(cfg.Layers)
		l.Ranges = 2
	}
	l.PagesPerIndex = l.Ranges
	l.SlotBytes = ps.RoundUp(uint64(cfg.MaxContext) * l.TokenBytes)
	l.IndexesPerSlot = int(l.SlotBytes / ps.Bytes())
	if ps.Bytes() >= l.TokenBytes {
		l.TokensPerPage = int(ps.Bytes() / l.TokenBytes)
	}
	return l
}

// growLimit returns the page indexes one background job may map ahead of
// need: Config.GrowLimit and Config.GrowLimitPages (in whole indexes, at
// least one), whichever are set, or the default when neither is.
func (cfg *Config) growLimit(l *Layout) int {
	if cfg.GrowLimit == 0 && cfg.GrowLimitPages == 0 {
		return max(2*l.indexesFor(cfg.MaxBatch), cfg.MapAhead+1)
	}
	limit := math.MaxInt
	if cfg.GrowLimit > 0 {
		limit = cfg.GrowLimit
	}
	if cfg.GrowLimitPages > 0 {
		limit = min(limit, max(cfg.GrowLimitPages/l.PagesPerIndex, 1))
	}
	return limit
}

// indexesFor returns the page indexes a slot needs to hold n tokens.
func (l *Layout) indexesFor(n int) int {
	return int(l.PageSize.Pages(uint64(n) * l.TokenBytes))
}

// tokensIn returns how many whole tokens k page indexes hold.
func (l *Layout) tokensIn(k int) int {
	return int(uint64(k) * l.PageSize.Bytes() / l.TokenBytes)
}

// mulLimit multiplies positive factors and reports whether the product
// stays below 2^56.
func mulLimit(factors ...uint64) (uint64, bool) {
	const limit = uint64(1) << 56
	p := uint64(1)
	for _, f := range factors {
		hi, lo := bits.Mul64(p, f)
		if hi != 0 || lo >= limit {
			return 0, false
		}
		p = lo
	}
	return p, true
}
