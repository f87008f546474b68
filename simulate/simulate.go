// Package simulate runs request traces through a continuous-batching
// scheduler over KV-cache memory managers — vattn's kvcache on the
// simulator backend at several page sizes and layouts, and the
// PagedAttention baseline — and reports what each costs in memory and
// mapping work for the same trace.
//
// The scheduler: requests wait in trace order. Each iteration admits waiting
// requests while a slot is free and the memory for their prefill can be
// mapped now, keeping a watermark of free memory; then every running
// request grows by one decode token. When a step does not fit, the newest
// running request is preempted: its memory is released and it is recomputed
// later (prefill plus what it had generated), as vLLM does.
package simulate

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vattn/vattn/backend/sim"
	"github.com/vattn/vattn/kvcache"
	"github.com/vattn/vattn/pagesize"
	"github.com/vattn/vattn/workload"
)

// Shape is the KV-cache shape of one model shard.
type Shape struct {
	Layers, KVHeads, HeadDim, DTypeBytes int
	MaxBatch, MaxContext                 int
}

// TokenBytes is the K and V of one token over all layers.
func (s Shape) TokenBytes() uint64 {
	return 2 * uint64(s.Layers) * uint64(s.KVHeads) * uint64(s.HeadDim) * uint64(s.DTypeBytes)
}

// Config is one simulation: a model, a trace, and the memory managers to
// compare.
type Config struct {
	Model      workload.Model // already sharded for tensor parallelism (Model.ShardTP)
	Trace      workload.Trace
	DTypeBytes int // default 2
	MaxBatch   int // default 256
	MaxContext int // default the model's context length

	GPUMemory uint64  // bytes per GPU, default 80 GiB
	MemUtil   float64 // fraction of GPUMemory for weights + KV, default 0.9
	Watermark float64 // free fraction kept when admitting, default 0.01

	PageSizes  []pagesize.Size // vattn page sizes; default 64k,128k,256k,2m
	Layouts    []Layout        // default per-layer and megacache
	PagedBlock []int           // PagedAttention block sizes in tokens; default 16, 256

	// Progress, if set, is called now and then with the configuration
	// being run and how far it is.
	Progress func(config string, done, total int)
}

// Layout is a vattn virtual layout.
type Layout string

// The layouts.
const (
	PerLayer  Layout = "per-layer"
	Megacache Layout = "megacache"
	Paged     Layout = "paged"
)

// Result is what one memory manager did with the trace.
type Result struct {
	Name        string        `json:"name"`
	Layout      Layout        `json:"layout"`
	PageSize    pagesize.Size `json:"page_size,omitempty"`
	BlockTokens int           `json:"block_tokens,omitempty"`
	// PageTokens is how many tokens one page (or block) holds; 0 when one
	// token spans PagesPerToken pages.
	PageTokens    int `json:"page_tokens"`
	PagesPerToken int `json:"pages_per_token,omitempty"`

	PeakMappedBytes uint64  `json:"peak_mapped_bytes"` // backed memory under running requests
	MeanMappedBytes uint64  `json:"mean_mapped_bytes"`
	PeakLiveBytes   uint64  `json:"peak_live_bytes"` // memory holding live tokens
	MeanLiveBytes   uint64  `json:"mean_live_bytes"`
	PeakIdleBytes   uint64  `json:"peak_idle_bytes"` // kept mapped by finished requests (deferred reclamation)
	WasteFraction   float64 `json:"waste_fraction"`  // 1 - live/mapped, over all steps

	MaxBatchReached int     `json:"max_batch_reached"`
	MeanBatch       float64 `json:"mean_batch"` // running requests per step: how many fit at once
	Preemptions     int     `json:"preemptions"`
	Steps           int     `json:"steps"`
	Completed       int     `json:"completed"`
	Skipped         int     `json:"skipped"` // longer than max context, without decode tokens, or larger than the whole KV budget

	MapCalls    uint64 `json:"map_calls"`
	MappedPages uint64 `json:"mapped_pages"`
	UnmapCalls  uint64 `json:"unmap_calls"`
	// Driver calls under those: runs of consecutive pages, one ioctl each
	// on the stock nvidia-uvm path (small pages).
	DriverMapCalls   uint64 `json:"driver_map_calls"`
	DriverUnmapCalls uint64 `json:"driver_unmap_calls"`
	// Estimated seconds of mapping work on the critical path from the
	// simulator's latency model: with synchronous steps everything, with
	// StepAsync only what could not be done ahead.
	CriticalSecondsSync  float64 `json:"critical_path_map_seconds_sync"`
	CriticalSecondsAsync float64 `json:"critical_path_map_seconds_async"`
	LatencyAssumed       bool    `json:"latency_assumed"`

	WallSeconds float64 `json:"wall_seconds"`
}

// Report is a whole simulation.
type Report struct {
	Model      string `json:"model"`
	TP         int    `json:"tp"`
	Trace      string `json:"trace"`
	Requests   int    `json:"requests"`
	MaxBatch   int    `json:"max_batch"`
	MaxContext int    `json:"max_context"`
	GPUMemory  uint64 `json:"gpu_memory_bytes"`
	KVBudget   uint64 `json:"kv_budget_bytes"`
	TokenBytes uint64 `json:"token_bytes"`
	// TooLong counts the requests longer than MaxContext and NoDecode those
	// without a decode token; every configuration skips both.
	TooLong  int      `json:"skipped_too_long"`
	NoDecode int      `json:"skipped_no_decode"`
	Results  []Result `json:"results"`
	// Best names the configuration that ran the most requests at once on
	// average in the same memory (ties: fewer preemptions, then less waste).
	Best string `json:"best,omitempty"`
	// Interrupted: the context was cancelled; Results holds the
	// configurations that finished before.
	Interrupted bool `json:"interrupted,omitempty"`
	// Unavailable lists configurations that cannot exist for this model
	// (e.g. a token that does not tile the page), with the reason.
	Unavailable []string `json:"unavailable,omitempty"`
	WallSeconds float64  `json:"wall_seconds"`
}

// ErrConfig is returned for a simulation that cannot be set up.
var ErrConfig = errors.New("bad simulation config")

func (cfg *Config) defaults() error {
	if cfg.DTypeBytes == 0 {
		cfg.DTypeBytes = 2
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = 256
	}
	if cfg.MaxContext == 0 {
		cfg.MaxContext = cfg.Model.MaxContext
	}
	if cfg.GPUMemory == 0 {
		cfg.GPUMemory = 80 << 30
	}
	if cfg.MemUtil == 0 {
		cfg.MemUtil = 0.9
	}
	if cfg.Watermark == 0 {
		cfg.Watermark = 0.01
	}
	if cfg.PageSizes == nil {
		cfg.PageSizes = pagesize.All()
	}
	if cfg.Layouts == nil {
		cfg.Layouts = []Layout{PerLayer, Megacache}
	}
	if cfg.PagedBlock == nil {
		cfg.PagedBlock = []int{16, 256}
	}
	switch {
	case cfg.MaxBatch < 0 || cfg.MaxContext <= 0 || cfg.DTypeBytes < 0:
		return fmt.Errorf("%w: max batch %d, max context %d", ErrConfig, cfg.MaxBatch, cfg.MaxContext)
	// Written so that NaN, which fails every comparison, is refused.
	case !(cfg.MemUtil > 0 && cfg.MemUtil <= 1) || !(cfg.Watermark >= 0 && cfg.Watermark < 1):
		return fmt.Errorf("%w: memory utilization %g, watermark %g", ErrConfig, cfg.MemUtil, cfg.Watermark)
	case len(cfg.Trace.Requests) > workload.MaxRequests:
		return fmt.Errorf("%w: %d requests, at most %d", ErrConfig, len(cfg.Trace.Requests), workload.MaxRequests)
	}
	for _, b := range cfg.PagedBlock {
		if b <= 0 {
			return fmt.Errorf("%w: paged block size %d", ErrConfig, b)
		}
	}
	for _, l := range cfg.Layouts {
		if l != PerLayer && l != Megacache {
			return fmt.Errorf("%w: layout %q (valid: per-layer, megacache)", ErrConfig, l)
		}
	}
	return nil
}

// Run simulates every configured memory manager on the trace. When ctx is
// cancelled it returns the report of the configurations that finished, with
// Interrupted set, and the context's error.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if len(cfg.Trace.Requests) == 0 {
		return nil, fmt.Errorf("%w: the trace has no requests", ErrConfig)
	}
	start := time.Now()
	budget, _ := cfg.budget()
	// More slots than requests change nothing but cost a walk over every
	// slot each step: simulate only as many as can ever be busy.
	slots := min(cfg.MaxBatch, len(cfg.Trace.Requests))
	shape := cfg.shape(slots)
	rep := &Report{
		Model: cfg.Model.Name, TP: cfg.Model.TP, Trace: cfg.Trace.Name, Requests: len(cfg.Trace.Requests),
		MaxBatch: cfg.MaxBatch, MaxContext: cfg.MaxContext, GPUMemory: cfg.GPUMemory,
		KVBudget: budget, TokenBytes: shape.TokenBytes(),
	}
	for _, r := range cfg.Trace.Requests {
		switch {
		case r.Prefill+r.Decode-1 > cfg.MaxContext:
			rep.TooLong++
		case r.Decode <= 0:
			rep.NoDecode++
		}
	}
	sched := cfg
	sched.MaxBatch = slots
	type run struct {
		name string
		res  Result
		mk   func() (memory, error)
	}
	var runs []run
	for _, l := range cfg.Layouts {
		for _, ps := range cfg.PageSizes {
			ps, mega := ps, l == Megacache
			lat := sim.DefaultLatency(ps)
			name := fmt.Sprintf("vattn %s %s", ps.Short(), l)
			res := Result{Name: name, Layout: l, PageSize: ps, LatencyAssumed: lat.Assumed}
			runs = append(runs, run{name, res, func() (memory, error) {
				return newVattnMemory(shape, ps, mega, true, rep.KVBudget, nil)
			}})
		}
	}
	for _, bt := range cfg.PagedBlock {
		name := fmt.Sprintf("paged block %d", bt)
		res := Result{Name: name, Layout: Paged, BlockTokens: bt, PageTokens: bt}
		runs = append(runs, run{name, res, func() (memory, error) { return newPagedMemory(shape, bt, rep.KVBudget) }})
	}
	for _, r := range runs {
		mem, err := r.mk()
		if err != nil {
			if errors.Is(err, kvcache.ErrBadConfig) {
				// e.g. a token larger than a page and not a multiple: the
				// layout cannot exist; say so in the report and go on.
				rep.Unavailable = append(rep.Unavailable, fmt.Sprintf("%s: %v", r.name, err))
				continue
			}
			return nil, fmt.Errorf("%s: %w", r.name, err)
		}
		res := r.res
		err = schedule(ctx, &sched, mem, &res, func(done, total int) {
			if cfg.Progress != nil {
				cfg.Progress(r.name, done, total)
			}
		})
		if vm, ok := mem.(*vattnMemory); ok && err == nil {
			_ = vm.cache.Wait()
			lay := vm.cache.Layout()
			res.PageTokens = lay.TokensPerPage
			if lay.TokensPerPage == 0 {
				res.PagesPerToken = int(lay.PageSize.Pages(lay.TokenBytes))
			}
			st := vm.cache.Stats()
			res.MapCalls = st.Foreground.Map.Calls + st.Background.Map.Calls
			res.MappedPages = st.Foreground.Map.Pages + st.Background.Map.Pages
			res.UnmapCalls = st.Foreground.Unmap.Calls + st.Background.Unmap.Calls
			res.DriverMapCalls = st.Foreground.Map.DriverCalls + st.Background.Map.DriverCalls
			res.DriverUnmapCalls = st.Foreground.Unmap.DriverCalls + st.Background.Unmap.DriverCalls
			lat := sim.DefaultLatency(res.PageSize)
			fg, bg := st.Foreground, st.Background
			res.CriticalSecondsAsync = cost(lat, sim.OpMap, fg.Map) + cost(lat, sim.OpUnmap, fg.Unmap)
			res.CriticalSecondsSync = res.CriticalSecondsAsync + cost(lat, sim.OpMap, bg.Map) + cost(lat, sim.OpUnmap, bg.Unmap)
		}
		if cerr := mem.close(); err == nil && cerr != nil {
			err = fmt.Errorf("%s: close: %w", r.name, cerr)
		}
		if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			rep.Interrupted = true
			rep.Best = best(rep.Results)
			rep.WallSeconds = time.Since(start).Seconds()
			return rep, fmt.Errorf("%s: interrupted: %w", r.name, err)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.name, err)
		}
		rep.Results = append(rep.Results, res)
	}
	rep.Best = best(rep.Results)
	rep.WallSeconds = time.Since(start).Seconds()
	return rep, nil
}

// best names the result that kept the most requests running at once on
// average — the one that fits the most requests in the same memory — with
// fewer preemptions, then less waste, breaking ties; "" when none ran any.
func best(results []Result) string {
	var b *Result
	for i := range results {
		r := &results[i]
		if r.Completed == 0 {
			continue
		}
		if b == nil || r.MeanBatch > b.MeanBatch ||
			r.MeanBatch == b.MeanBatch && (r.Preemptions < b.Preemptions ||
				r.Preemptions == b.Preemptions && r.WasteFraction < b.WasteFraction) {
			b = r
		}
	}
	if b == nil {
		return ""
	}
	return b.Name
}

// cost applies the latency model to a call count: each call (each driver
// call, where the model charges per run) costs its per-call part plus its
// per-page part for every page.
func cost(m sim.LatencyModel, op sim.Op, c kvcache.CallStats) float64 {
	calls := c.Calls
	if m.PerRun {
		calls = c.DriverCalls
	}
	return m.CostRuns(op, int(c.Pages), int(calls)).Seconds()
}
