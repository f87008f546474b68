// Package bench holds the microbenchmarks behind "vattnctl bench": what one
// backend call costs (map and unmap latency and throughput, per page size and
// batch) and what the allocator's steps cost on top (kvcache Step and StepAsync
// at several batch sizes). On the simulator the driver's share comes from its
// latency model, so those rows are estimates and say so.
package bench

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/backend/sim"
	"github.com/vattn/vattn/kvcache"
	"github.com/vattn/vattn/pagesize"
)

// Options choose what to measure.
type Options struct {
	PageSizes   []pagesize.Size
	Pages       int   // pages mapped and unmapped per map row
	MapBatches  []int // pages per Map/Unmap call
	StepBatches []int // kvcache batch sizes (request slots)
	Iterations  int   // timed Step calls per step row
	// Growth, when set, adds decode runs across page boundaries per layout,
	// map-ahead setting and step mode (see GrowthOptions).
	Growth *GrowthOptions
}

// Defaults fills what is unset.
func (o *Options) Defaults() {
	if o.Pages <= 0 {
		o.Pages = 256
	}
	if len(o.MapBatches) == 0 {
		o.MapBatches = []int{1, 64}
	}
	if len(o.StepBatches) == 0 {
		o.StepBatches = []int{1, 32, 256}
	}
	if o.Iterations <= 0 {
		o.Iterations = 8
	}
}

// MapRow is one map or unmap measurement.
type MapRow struct {
	Backend   string        `json:"backend"`
	PageSize  pagesize.Size `json:"page_size"`
	Op        string        `json:"op"` // "map", "unmap"
	Batch     int           `json:"batch"`
	Calls     int           `json:"calls"`
	P50us     float64       `json:"p50_us"`
	P99us     float64       `json:"p99_us"`
	UsPerPage float64       `json:"us_per_page"`
	GBps      float64       `json:"gb_per_s"`
	Estimate  bool          `json:"estimate"`         // from a latency model, not measured
	Source    string        `json:"source,omitempty"` // where an estimate's figures come from
}

// Step cases.
const (
	CaseNoNewPage  = "step-no-new-page"   // every slot inside its mapped pages
	CaseNewPage    = "step-new-page"      // every slot crosses into a new page index
	CaseAsyncCrit  = "stepasync-critical" // StepAsync's foreground part, decode steps
	stepTokensBase = 100
)

// StepRow is one kvcache step measurement.
type StepRow struct {
	Backend      string        `json:"backend"`
	PageSize     pagesize.Size `json:"page_size"`
	Batch        int           `json:"batch"`
	Case         string        `json:"case"`
	Calls        int           `json:"calls"`
	PagesPerCall float64       `json:"pages_mapped_per_call"`
	P50us        float64       `json:"p50_us"`
	MeanUs       float64       `json:"mean_us"`
	MaxUs        float64       `json:"max_us"`
	// AllocatorUs is the measured time outside the driver's modelled share
	// (sim only: the allocator's own cost); DriverUs the modelled share.
	AllocatorUs float64 `json:"allocator_us,omitempty"`
	DriverUs    float64 `json:"driver_est_us,omitempty"`
	Estimate    bool    `json:"estimate"`
	Source      string  `json:"source,omitempty"`
}

// Report is a whole run.
type Report struct {
	Backend string      `json:"backend"`
	Device  string      `json:"device,omitempty"`
	Driver  string      `json:"driver,omitempty"`
	Map     []MapRow    `json:"map"`
	Steps   []StepRow   `json:"steps"`
	Growth  []GrowthRow `json:"growth,omitempty"`
	Skipped []string    `json:"skipped,omitempty"` // what could not run, and why
}

// Opener makes a backend of one page size; the caller closes it.
type Opener func(ps pagesize.Size) (backend.Backend, error)

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1)+0.5)]
}

// MeasureMap maps o.Pages pages in calls of batch pages and unmaps them again,
// timing each call, and leaves the backend as it found it.
func MeasureMap(b backend.Backend, pages, batch int) (mapRow, unmapRow MapRow, err error) {
	ps := b.PageSize().Bytes()
	r, err := b.Reserve(uint64(pages) * ps)
	if err != nil {
		return mapRow, unmapRow, fmt.Errorf("measure map: %w", err)
	}
	ids, err := b.AllocPages(pages)
	if err != nil {
		return mapRow, unmapRow, errors.Join(fmt.Errorf("measure map: %w", err), b.Release(r))
	}
	var mapT, unmapT []time.Duration
	var mapTotal, unmapTotal time.Duration
	mapped := 0
	for lo := 0; lo < pages && err == nil; lo += batch {
		hi := min(lo+batch, pages)
		ms := make([]backend.Mapping, 0, hi-lo)
		for i := lo; i < hi; i++ {
			ms = append(ms, backend.Mapping{Addr: r.Addr + uint64(i)*ps, Page: ids[i]})
		}
		t := time.Now()
		err = b.Map(ms)
		d := time.Since(t)
		if err == nil {
			mapT, mapTotal, mapped = append(mapT, d), mapTotal+d, hi
		}
	}
	if err == nil {
		for lo := 0; lo < pages && err == nil; lo += batch {
			hi := min(lo+batch, pages)
			as := make([]uint64, 0, hi-lo)
			for i := lo; i < hi; i++ {
				as = append(as, r.Addr+uint64(i)*ps)
			}
			t := time.Now()
			err = b.Unmap(as, 0)
			d := time.Since(t)
			if err == nil {
				unmapT, unmapTotal = append(unmapT, d), unmapTotal+d
				mapped = 0
			}
		}
	}
	if err != nil {
		// Leave nothing behind: unmap what is still mapped, one page at a time.
		var undo []error
		for i := range mapped {
			if uerr := b.Unmap([]uint64{r.Addr + uint64(i)*ps}, 0); uerr != nil && !errors.Is(uerr, backend.ErrNotMapped) {
				undo = append(undo, uerr)
			}
		}
		err = errors.Join(append([]error{fmt.Errorf("measure map: %w", err)}, undo...)...)
	}
	err = errors.Join(err, b.FreePages(ids), b.Release(r))
	if err != nil {
		return mapRow, unmapRow, err
	}
	row := func(op string, ds []time.Duration, total time.Duration) MapRow {
		return MapRow{Backend: b.Name(), PageSize: b.PageSize(), Op: op, Batch: batch, Calls: len(ds),
			P50us: us(percentile(ds, 0.5)), P99us: us(percentile(ds, 0.99)),
			UsPerPage: us(total) / float64(pages), GBps: float64(uint64(pages)*ps) / total.Seconds() / 1e9}
	}
	return row("map", mapT, mapTotal), row("unmap", unmapT, unmapTotal), nil
}

// EstimateMap is MeasureMap for the simulator: the sim's latency model for
// the page size, marked as an estimate.
func EstimateMap(ps pagesize.Size, pages, batch int) (mapRow, unmapRow MapRow) {
	m := sim.DefaultLatency(ps)
	row := func(op string, o sim.Op) MapRow {
		calls := (pages + batch - 1) / batch
		var total time.Duration
		for lo := 0; lo < pages; lo += batch {
			total += m.Cost(o, min(batch, pages-lo))
		}
		return MapRow{Backend: "sim", PageSize: ps, Op: op, Batch: batch, Calls: calls,
			P50us: us(m.Cost(o, batch)), P99us: us(m.Cost(o, batch)),
			UsPerPage: us(total) / float64(pages), GBps: float64(uint64(pages)*ps.Bytes()) / total.Seconds() / 1e9,
			Estimate: true, Source: m.Source}
	}
	return row("map", sim.OpMap), row("unmap", sim.OpUnmap)
}

// StepConfig is the model the step rows use: Llama-3-8B's KV shape (32 layers,
// 8 KV heads of 128, fp16) in one megacache range per K and V, so one page
// index of a slot is 2 pages whatever the page size.
func StepConfig(batch, ctx int) kvcache.Config {
	return kvcache.Config{Layers: 32, KVHeads: 8, HeadDim: 128, DTypeBytes: 2, MaxBatch: batch, MaxContext: ctx, Megacache: true}
}

// model, when set, estimates the driver's share of each call from the
// cache's foreground map/unmap counters (the simulator's calls cost nothing).
type model = *sim.LatencyModel

func driverCost(m model, before, after kvcache.Stats) time.Duration {
	if m == nil {
		return 0
	}
	dm := after.Foreground.Map
	du := after.Foreground.Unmap
	bm, bu := before.Foreground.Map, before.Foreground.Unmap
	return time.Duration(dm.Calls-bm.Calls)*m.PerCall[sim.OpMap] + time.Duration(dm.Pages-bm.Pages)*m.PerPage[sim.OpMap] +
		time.Duration(du.Calls-bu.Calls)*m.PerCall[sim.OpUnmap] + time.Duration(du.Pages-bu.Pages)*m.PerPage[sim.OpUnmap]
}

// MeasureSteps runs the three step cases at one batch size on b. With m set
// (the simulator), each call's time is the measured allocator time plus the
// model's cost of the driver calls it made, and the rows are estimates.
func MeasureSteps(b backend.Backend, batch, iters int, m model) ([]StepRow, error) {
	var rows []StepRow
	for _, cs := range []string{CaseNoNewPage, CaseNewPage, CaseAsyncCrit} {
		row, err := measureStep(b, batch, iters, cs, m)
		if err != nil {
			return rows, fmt.Errorf("%s at batch %d: %w", cs, batch, err)
		}
		rows = append(rows, row)
	}
	return rows, nil
}

func measureStep(b backend.Backend, batch, iters int, cs string, m model) (row StepRow, err error) {
	probe, err := kvcache.New(StepConfig(1, 1), b)
	if err != nil {
		return row, err
	}
	tpp := probe.Layout().TokensPerPage
	if err := probe.Close(); err != nil {
		return row, err
	}
	if tpp == 0 {
		tpp = 1
	}
	ctx := stepTokensBase + (iters+2)*tpp
	c, err := kvcache.New(StepConfig(batch, ctx), b)
	if err != nil {
		return row, err
	}
	defer func() { err = errors.Join(err, c.Close()) }()
	pagesPerIndex := uint64(c.Layout().PagesPerIndex)
	// The pool holds every page the run maps, so steps only map.
	need := uint64(batch) * pagesPerIndex * uint64((ctx+tpp-1)/tpp+1) * b.PageSize().Bytes()
	if err := c.ReservePhysical(need); err != nil {
		return row, err
	}
	lens := make([]int, batch)
	for range batch {
		s, err := c.AllocBatchIdx(stepTokensBase)
		if err != nil {
			return row, err
		}
		lens[s] = stepTokensBase
	}
	if err := c.Step(lens); err != nil {
		return row, err
	}
	var ds []time.Duration
	var alloc, drv time.Duration
	var pages uint64
	for range iters {
		switch cs {
		case CaseNewPage:
			for i := range lens {
				lens[i] += tpp
			}
		case CaseAsyncCrit:
			for i := range lens {
				lens[i]++
			}
		}
		before := c.Stats()
		t := time.Now()
		if cs == CaseAsyncCrit {
			err = c.StepAsync(lens)
		} else {
			err = c.Step(lens)
		}
		d := time.Since(t)
		if err != nil {
			return row, err
		}
		after := c.Stats()
		dc := driverCost(m, before, after)
		alloc += d
		drv += dc
		pages += after.Foreground.Map.Pages - before.Foreground.Map.Pages
		ds = append(ds, d+dc)
		c.Wait() // the forward pass would cover the background mapping
	}
	var total time.Duration
	for _, d := range ds {
		total += d
	}
	row = StepRow{Backend: b.Name(), PageSize: b.PageSize(), Batch: batch, Case: cs, Calls: iters,
		PagesPerCall: float64(pages) / float64(iters),
		P50us:        us(percentile(ds, 0.5)), MeanUs: us(total) / float64(iters), MaxUs: us(slices.Max(ds))}
	if m != nil {
		row.Estimate, row.Source = true, m.Source
		row.AllocatorUs, row.DriverUs = us(alloc)/float64(iters), us(drv)/float64(iters)
	}
	return row, nil
}

// Run measures one backend at every page size: map rows at every map batch
// and step rows at every step batch. A page size the backend cannot open is
// listed in Skipped; other errors end the run.
func Run(name string, open Opener, o Options) (*Report, error) {
	o.Defaults()
	rep := &Report{Backend: name}
	for _, ps := range o.PageSizes {
		if name == "sim" {
			for _, batch := range o.MapBatches {
				mr, ur := EstimateMap(ps, o.Pages, batch)
				rep.Map = append(rep.Map, mr, ur)
			}
		}
		b, err := open(ps)
		if err != nil {
			if errors.Is(err, backend.ErrUnavailable) || errors.Is(err, pagesize.ErrUnsupported) {
				rep.Skipped = append(rep.Skipped, fmt.Sprintf("%s %s: %v", name, ps, err))
				continue
			}
			return rep, err
		}
		err = runOne(rep, name, b, ps, o)
		if cerr := b.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close %s backend: %w", name, cerr))
		}
		if err != nil {
			return rep, err
		}
	}
	return rep, nil
}

func runOne(rep *Report, name string, b backend.Backend, ps pagesize.Size, o Options) error {
	var m model
	if name == "sim" {
		lm := sim.DefaultLatency(ps)
		m = &lm
	} else {
		for _, batch := range o.MapBatches {
			mr, ur, err := MeasureMap(b, o.Pages, batch)
			if err != nil {
				return fmt.Errorf("%s %s batch %d: %w", name, ps, batch, err)
			}
			rep.Map = append(rep.Map, mr, ur)
		}
	}
	for _, batch := range o.StepBatches {
		rows, err := MeasureSteps(b, batch, o.Iterations, m)
		rep.Steps = append(rep.Steps, rows...)
		if err != nil {
			return fmt.Errorf("%s %s: %w", name, ps, err)
		}
	}
	if o.Growth != nil {
		g := *o.Growth
		if g.MemoryLimit == 0 {
			if mi, err := b.MemInfo(); err == nil {
				g.MemoryLimit = mi.Free / 10 * 8
			}
		}
		if err := measureGrowth(rep, b, g, m); err != nil {
			return fmt.Errorf("%s %s: %w", name, ps, err)
		}
	}
	return nil
}
