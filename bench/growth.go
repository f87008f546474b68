package bench

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/backend/sim"
	"github.com/vattn/vattn/kvcache"
)

// Growth measures what decoding costs while slots cross page boundaries:
// Batch slots at staggered lengths (spread over Window tokens, so that a
// steady share of them crosses a boundary at every step) decode Steps
// tokens each, with Compute of emulated forward pass between calls, through
// Step (sync) or StepAsync (async), with MapAhead extra page indexes mapped
// per growth and, for StepAsync, GrowMargin tokens within which the
// background job grows a slot ahead of need. The rows say, per step: driver
// calls, mapping time on the critical path, the call's own time (p50, p99,
// max), the biggest background job, and the memory that mapping ahead holds
// beyond what the lengths need.
type GrowthOptions struct {
	Batch    int           // request slots (256)
	Steps    int           // decode steps measured (256)
	Window   int           // tokens the starting lengths spread over (256)
	Compute  time.Duration // emulated forward pass between calls (0: none; the CLI's default is 5 ms); not slept on the simulator
	MapAhead []int         // map-ahead settings to compare ({0, 1, 3, 7})
	// GrowMargin lists kvcache.Config.GrowMargin settings (tokens) to
	// compare in StepAsync rows ({0}); Step rows run without, as Step does
	// not map ahead. GrowLimit and GrowLimitPages are kvcache.Config's
	// (both 0: its default).
	GrowMargin     []int
	GrowLimit      int
	GrowLimitPages int
	// MemoryLimit skips a row whose pool would exceed it (0: no limit).
	MemoryLimit uint64
}

// Defaults fills what is unset.
func (o *GrowthOptions) Defaults() {
	if o.Batch <= 0 {
		o.Batch = 256
	}
	if o.Steps <= 0 {
		o.Steps = 256
	}
	if o.Window <= 0 {
		o.Window = 256
	}
	if len(o.MapAhead) == 0 {
		o.MapAhead = []int{0, 1, 3, 7}
	}
	if len(o.GrowMargin) == 0 {
		o.GrowMargin = []int{0}
	}
}

// GrowthRow is one configuration's decode run.
type GrowthRow struct {
	Backend  string `json:"backend"`
	PageSize string `json:"page_size"`
	Layout   string `json:"layout"` // "per-layer" or "megacache"
	MapAhead int    `json:"map_ahead"`
	// GrowMargin is kvcache.Config.GrowMargin (StepAsync rows only) and
	// GrowLimit and GrowLimitPages the per-job limits it ran with (both 0:
	// kvcache's default).
	GrowMargin     int    `json:"grow_margin"`
	GrowLimit      int    `json:"grow_limit,omitempty"`
	GrowLimitPages int    `json:"grow_limit_pages,omitempty"`
	Mode           string `json:"mode"` // "sync" (Step) or "async" (StepAsync)
	Steps          int    `json:"steps"`
	// Per step, averaged over the run.
	DriverCallsPerStep float64 `json:"driver_calls_per_step"` // map and unmap
	PagesPerStep       float64 `json:"pages_mapped_per_step"`
	CriticalMapUs      float64 `json:"critical_map_us_per_step"`   // mapping inside the caller's calls
	BackgroundMapUs    float64 `json:"background_map_us_per_step"` // mapping the background mapper did
	// The caller's call (Step or StepAsync, including any wait for the
	// background mapper): p50, p99, max.
	CallP50us float64 `json:"call_p50_us"`
	CallP99us float64 `json:"call_p99_us"`
	CallMaxUs float64 `json:"call_max_us"`
	// BackgroundJobMaxPages is the most pages one background job mapped:
	// the biggest burst of growth, which on the GPU must fit in the
	// compute time to stay off the critical path. With a grow margin it
	// includes the warm-up's jobs (each within the grow limit).
	BackgroundJobMaxPages uint64 `json:"background_job_max_pages"`
	// AheadBytes is what is mapped under active slots beyond what their
	// lengths need, at the end of the run; AheadFraction its share of all
	// mapped memory.
	AheadBytes    uint64  `json:"ahead_bytes"`
	AheadFraction float64 `json:"ahead_fraction"`
	Estimate      bool    `json:"estimate"` // simulator: mapping times from the latency model
	Source        string  `json:"source,omitempty"`
}

// GrowthConfig is the model growth rows use: Llama-3-8B's KV shape.
func GrowthConfig(batch, ctx int, mega bool, mapAhead int) kvcache.Config {
	c := StepConfig(batch, ctx)
	c.Megacache, c.MapAhead = mega, mapAhead
	return c
}

// MeasureGrowth runs one configuration on b, with growMargin (tokens) as
// kvcache.Config.GrowMargin and o.GrowLimit as its GrowLimit. m, when set
// (the simulator), turns the driver calls into estimated times; the compute
// is not slept.
func MeasureGrowth(b backend.Backend, o GrowthOptions, mega bool, mapAhead, growMargin int, async bool, m model) (row GrowthRow, err error) {
	o.Defaults()
	row = GrowthRow{Backend: b.Name(), PageSize: b.PageSize().Short(), Layout: "per-layer", MapAhead: mapAhead, GrowMargin: growMargin, Mode: "sync", Steps: o.Steps}
	if mega {
		row.Layout = "megacache"
	}
	if async {
		row.Mode = "async"
	}
	probe, err := kvcache.New(GrowthConfig(1, 1, mega, 0), b)
	if err != nil {
		return row, err
	}
	l := probe.Layout()
	if err := probe.Close(); err != nil {
		return row, err
	}
	tpi := max(l.TokensPerPage, 1)
	base := 2 * tpi
	ctx := base + o.Window + o.Steps + 2
	cfg := GrowthConfig(o.Batch, ctx, mega, mapAhead)
	cfg.GrowMargin, cfg.GrowLimit, cfg.GrowLimitPages = growMargin, o.GrowLimit, o.GrowLimitPages
	c, err := kvcache.New(cfg, b)
	if err != nil {
		return row, err
	}
	if growMargin > 0 {
		row.GrowLimit, row.GrowLimitPages = o.GrowLimit, o.GrowLimitPages
	}
	defer func() { err = errors.Join(err, c.Close()) }()
	l = c.Layout()
	page := b.PageSize().Bytes()
	indexes := func(n int) int { return int((uint64(n)*l.TokenBytes + page - 1) / page) }
	need := uint64(o.Batch) * uint64(min(indexes(ctx)+mapAhead, l.IndexesPerSlot)) * uint64(l.PagesPerIndex) * page
	if o.MemoryLimit > 0 && need > o.MemoryLimit {
		return row, fmt.Errorf("%w: the pool would take %d MiB, more than the %d MiB allowed", errSkip, need>>20, o.MemoryLimit>>20)
	}
	if err := c.ReservePhysical(need); err != nil {
		return row, err
	}
	lens := make([]int, o.Batch)
	for i := range o.Batch {
		s, err := c.AllocBatchIdx(base)
		if err != nil {
			return row, err
		}
		lens[s] = base + i*o.Window/o.Batch
	}
	if err := c.Step(lens); err != nil {
		return row, err
	}
	if err := c.Wait(); err != nil {
		return row, err
	}
	if growMargin > 0 {
		// Measure the steady state: first let the background jobs bring
		// every slot to its margin, at the starting lengths (a server that
		// has decoded for a while), as a limited number of indexes per job.
		for range 4096 {
			was := c.Stats().AheadIndexes
			if err := c.StepAsync(lens); err != nil {
				return row, err
			}
			if err := c.Wait(); err != nil {
				return row, err
			}
			if c.Stats().AheadIndexes == was {
				break
			}
		}
	}
	before := c.Stats()
	var calls []time.Duration
	for range o.Steps {
		for i := range lens {
			lens[i]++
		}
		s := time.Now()
		if async {
			err = c.StepAsync(lens)
		} else {
			err = c.Step(lens)
		}
		calls = append(calls, time.Since(s))
		if err != nil {
			return row, err
		}
		if m == nil {
			time.Sleep(o.Compute)
		}
	}
	if err := c.Wait(); err != nil {
		return row, err
	}
	after := c.Stats()
	steps := float64(o.Steps)
	delta := func(a, b kvcache.CallStats) kvcache.CallStats {
		return kvcache.CallStats{Calls: a.Calls - b.Calls, Pages: a.Pages - b.Pages, DriverCalls: a.DriverCalls - b.DriverCalls, Seconds: a.Seconds - b.Seconds}
	}
	fm, fu := delta(after.Foreground.Map, before.Foreground.Map), delta(after.Foreground.Unmap, before.Foreground.Unmap)
	bm, bu := delta(after.Background.Map, before.Background.Map), delta(after.Background.Unmap, before.Background.Unmap)
	driver := func(c kvcache.CallStats) uint64 {
		if c.DriverCalls > 0 {
			return c.DriverCalls
		}
		return c.Calls
	}
	row.DriverCallsPerStep = float64(driver(fm)+driver(fu)+driver(bm)+driver(bu)) / steps
	row.PagesPerStep = float64(fm.Pages+bm.Pages) / steps
	seconds := func(op sim.Op, c kvcache.CallStats) float64 {
		if m == nil {
			return c.Seconds
		}
		return m.CostRuns(op, int(c.Pages), int(driver(c))).Seconds()
	}
	row.CriticalMapUs = (seconds(sim.OpMap, fm) + seconds(sim.OpUnmap, fu)) / steps * 1e6
	row.BackgroundMapUs = (seconds(sim.OpMap, bm) + seconds(sim.OpUnmap, bu)) / steps * 1e6
	if m != nil {
		// The call's time is the allocator's (measured) plus the driver's
		// mean share per step on the critical path (modelled): on the
		// simulator the call percentiles are the allocator's spread, not
		// the steps' bursts (those show in the GPU rows). A background job
		// longer than the compute would add its excess, which the
		// simulator's compute of zero cannot tell, so it is left out.
		for i := range calls {
			calls[i] += time.Duration(row.CriticalMapUs * 1e3)
		}
		row.Estimate, row.Source = true, m.Source
	}
	row.CallP50us, row.CallP99us, row.CallMaxUs = us(percentile(calls, 0.5)), us(percentile(calls, 0.99)), us(slices.Max(calls))
	row.BackgroundJobMaxPages = after.BackgroundJobMaxPages
	var needed uint64
	for i, n := range lens {
		if n > 0 && c.Slots()[i].Active {
			needed += uint64(indexes(n)) * uint64(l.PagesPerIndex) * page
		}
	}
	if after.MappedBytes > needed {
		row.AheadBytes = after.MappedBytes - needed
	}
	if after.MappedBytes > 0 {
		row.AheadFraction = float64(row.AheadBytes) / float64(after.MappedBytes)
	}
	return row, nil
}

// errSkip marks a configuration that was not run (too big for the device).
var errSkip = errors.New("skipped")

// measureGrowth adds every layout, map-ahead setting and mode to rep, and
// for StepAsync every grow margin.
func measureGrowth(rep *Report, b backend.Backend, o GrowthOptions, m model) error {
	o.Defaults()
	slots := b.PageSize().Short()
	for _, mega := range []bool{false, true} {
		for _, k := range o.MapAhead {
			for _, async := range []bool{false, true} {
				margins := o.GrowMargin
				if !async {
					margins = []int{0}
				}
				for _, g := range margins {
					row, err := MeasureGrowth(b, o, mega, k, g, async, m)
					what := fmt.Sprintf("growth %s %s map-ahead %d grow-margin %d %s", slots, row.Layout, k, g, row.Mode)
					if errors.Is(err, errSkip) {
						rep.Skipped = append(rep.Skipped, fmt.Sprintf("%s: %v", what, err))
						continue
					}
					if err != nil {
						return fmt.Errorf("%s: %w", what, err)
					}
					rep.Growth = append(rep.Growth, row)
				}
			}
		}
	}
	return nil
}
