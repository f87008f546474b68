// Package bench implements "vattnctl bench": map/unmap latency and throughput
// per backend and page size, and kvcache Step/StepAsync costs at several batch
// sizes, as a table or JSON. The measuring is in package bench; this file picks
// the backend and prints.
package bench

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/backend/cudavmm"
	"github.com/vattn/vattn/backend/sim"
	"github.com/vattn/vattn/backend/uvm"
	"github.com/vattn/vattn/bench"
	"github.com/vattn/vattn/cuda"
	"github.com/vattn/vattn/internal/cli"
	"github.com/vattn/vattn/pagesize"
)

// cudaLib loads the driver; tests replace it with a fake.
var cudaLib = cuda.Load

type flags struct {
	backend     string
	uvmMode     string
	pageSizes   string
	device      string
	pages       int
	mapBatches  []int
	steps       []int
	iterations  int
	growth      bool
	growthSteps int
	compute     time.Duration
	mapAhead    []int
	growMargin  []int
	growLimit   int
	growPages   int
}

// NewCmd returns the bench command.
func NewCmd(format *cli.Format) *cobra.Command {
	f := flags{backend: "sim"}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Microbenchmarks: map/unmap latency and GB/s, kvcache step costs",
		Long: `bench measures, for one backend and each page size, the latency and throughput
of Map and Unmap calls (--pages pages in calls of each --map-batch), and what
kvcache's Step costs at each --step-batch: a step that maps nothing, a step
where every slot needs a new page index, and StepAsync's critical path.

--backend sim needs no GPU: the driver's share comes from the simulator's
latency model, so those rows are marked as estimates (measured allocator time
plus modelled driver time). cudavmm and uvm run on the GPU chosen with -i.`,
		Example: `  vattnctl bench
  vattnctl bench --backend cudavmm -i 0 -o json
  vattnctl bench --backend uvm --page-size 64k,256k`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rep, err := run(f)
			if rep != nil {
				if werr := write(cmd.OutOrStdout(), *format, rep); werr != nil && err == nil {
					err = werr
				}
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.backend, "backend", f.backend, "backends to measure, comma-separated, in one run: sim, cudavmm, uvm")
	fl.StringVar(&f.uvmMode, "uvm-mode", "", "uvm: stock or patched (default: patched where loaded, else stock)")
	fl.BoolVar(&f.growth, "growth", false, "add decode runs across page boundaries (256 staggered slots) per layout, --map-ahead and Step/StepAsync: driver calls and mapping time per step, memory held ahead")
	fl.IntVar(&f.growthSteps, "growth-steps", 256, "decode steps per growth run")
	fl.DurationVar(&f.compute, "compute", 5*time.Millisecond, "emulated forward pass between growth steps (not slept on sim)")
	fl.IntSliceVar(&f.mapAhead, "map-ahead", []int{0, 1, 3, 7}, "page indexes mapped ahead per growth, to compare")
	fl.IntSliceVar(&f.growMargin, "grow-margin", []int{0}, "StepAsync rows: tokens from a slot's mapped end within which the background job grows it ahead of need, to compare")
	fl.IntVar(&f.growLimit, "grow-limit", 0, "page indexes one background job may map ahead of need with --grow-margin (0: no index bound; both 0: the allocator's default)")
	fl.IntVar(&f.growPages, "grow-limit-pages", 0, "physical pages one background job may map ahead of need with --grow-margin, whole indexes, at least one (0: no page bound)")
	fl.StringVar(&f.pageSizes, "page-size", "", "page sizes, comma-separated (default: sim and uvm all of 64k,128k,256k,2m; cudavmm 2m)")
	fl.StringVarP(&f.device, "id", "i", "", "GPU index or UUID (as nvidia-smi -i); default GPU 0")
	fl.IntVar(&f.pages, "pages", 256, "pages mapped and unmapped per map measurement")
	fl.IntSliceVar(&f.mapBatches, "map-batch", []int{1, 64}, "pages per Map/Unmap call")
	fl.IntSliceVar(&f.steps, "step-batch", []int{1, 32, 256}, "kvcache batch sizes (request slots)")
	fl.IntVar(&f.iterations, "iterations", 8, "timed steps per step measurement")
	return cmd
}

func run(f flags) (*bench.Report, error) {
	o := bench.Options{Pages: f.pages, MapBatches: f.mapBatches, StepBatches: f.steps, Iterations: f.iterations}
	for _, n := range append(append([]int{f.pages, f.iterations}, f.mapBatches...), f.steps...) {
		if n <= 0 {
			return nil, cli.Usagef("--pages, --iterations, --map-batch and --step-batch must be positive, got %d", n)
		}
	}
	if f.growth {
		if f.growthSteps <= 0 || f.compute < 0 {
			return nil, cli.Usagef("--growth-steps must be positive and --compute not negative")
		}
		for _, k := range f.mapAhead {
			if k < 0 {
				return nil, cli.Usagef("--map-ahead %d: want 0 or more", k)
			}
		}
		for _, g := range f.growMargin {
			if g < 0 {
				return nil, cli.Usagef("--grow-margin %d: want 0 or more", g)
			}
		}
		if f.growLimit < 0 || f.growPages < 0 {
			return nil, cli.Usagef("--grow-limit %d, --grow-limit-pages %d: want 0 or more", f.growLimit, f.growPages)
		}
		o.Growth = &bench.GrowthOptions{Steps: f.growthSteps, Compute: f.compute, MapAhead: f.mapAhead,
			GrowMargin: f.growMargin, GrowLimit: f.growLimit, GrowLimitPages: f.growPages}
	}
	switch f.uvmMode {
	case uvm.ModeAuto, uvm.ModeStock, uvm.ModePatched:
	default:
		return nil, cli.Usagef("--uvm-mode %s: want stock or patched", cli.Quote(f.uvmMode))
	}
	var explicit []pagesize.Size
	if f.pageSizes != "" {
		ps, err := pagesize.ParseList(f.pageSizes)
		if err != nil {
			return nil, cli.WithCode(cli.ExitBadArgument, fmt.Errorf("--page-size: %w", err))
		}
		explicit = ps
	}
	names := strings.Split(f.backend, ",")
	var lib *cuda.Lib
	total := &bench.Report{Backend: f.backend}
	for _, name := range names {
		var open bench.Opener
		o.PageSizes = explicit
		switch name {
		case "sim":
			if o.PageSizes == nil {
				o.PageSizes = pagesize.All()
			}
			for _, ps := range o.PageSizes {
				if uint64(f.pages) > sim.DefaultGPUMemory/ps.Bytes() {
					return nil, cli.Usagef("--pages %d of %s is %s; the simulated GPU has %s (at most %d pages)", f.pages, ps,
						cli.FormatBytes(uint64(f.pages)*ps.Bytes()), cli.FormatBytes(sim.DefaultGPUMemory), sim.DefaultGPUMemory/ps.Bytes())
				}
			}
			open = func(ps pagesize.Size) (backend.Backend, error) { return sim.New(sim.Config{PageSize: ps}) }
			total.Device = "simulated H100 80GB (latency model: backend/sim DefaultLatency)"
		case "cudavmm", "uvm":
			if lib == nil {
				var err error
				if lib, err = cudaLib(); err != nil {
					return nil, cli.WithCode(cli.ExitLibraryMissing, fmt.Errorf("bench: %w (no usable GPU here: --backend sim gives estimates without one)", err))
				}
				total.Driver = fmt.Sprintf("CUDA %s (%s)", lib.DriverVersionString(), lib.Path)
				if dev, err := lib.SelectDevice(f.device); err == nil {
					total.Device = fmt.Sprintf("GPU %d: %s (%s)", dev.Index, dev.Name, dev.UUID)
				}
			}
			if name == "cudavmm" {
				if o.PageSizes == nil {
					o.PageSizes = []pagesize.Size{pagesize.Size2M}
				}
				open = func(ps pagesize.Size) (backend.Backend, error) {
					return cudavmm.New(cudavmm.Options{Device: f.device, PageSize: ps, Lib: lib})
				}
			} else {
				if o.PageSizes == nil {
					o.PageSizes = pagesize.All()
				}
				open = func(ps pagesize.Size) (backend.Backend, error) {
					opts := uvm.Options{Device: f.device, PageSize: ps, Lib: lib, Mode: f.uvmMode}
					if newStockDriver != nil {
						opts.StockDriver = newStockDriver()
					}
					return uvm.Open(opts)
				}
			}
		default:
			return nil, cli.Usagef("--backend %q: want sim, cudavmm or uvm, or a comma-separated list of them", name)
		}
		for _, ps := range o.PageSizes {
			if uint64(f.pages) > maxBenchBytes/ps.Bytes() {
				return nil, cli.Usagef("--pages %d of %s: more than any GPU's memory (at most %d)", f.pages, ps, maxBenchBytes/ps.Bytes())
			}
		}
		rep, err := bench.Run(name, fitsDevice(open, f.pages), o)
		if cli.CodeOf(err) == cli.ExitBadArgument || exitCode(err) == cli.ExitBadArgument {
			return nil, err // a flag the device refuses: no partial report
		}
		if rep != nil {
			total.Map = append(total.Map, rep.Map...)
			total.Steps = append(total.Steps, rep.Steps...)
			total.Growth = append(total.Growth, rep.Growth...)
			total.Skipped = append(total.Skipped, rep.Skipped...)
		}
		if err != nil {
			return total, cli.WithCode(exitCode(err), fmt.Errorf("bench: %w", err))
		}
	}
	if len(total.Map) == 0 && len(total.Steps) == 0 {
		return total, cli.WithCode(cli.ExitNotSupported, fmt.Errorf("bench: nothing could run: %s", strings.Join(total.Skipped, "; ")))
	}
	return total, nil
}

// newStockDriver, when set, makes what stands in for RM and UVM on the
// stock path, one per backend opened; tests set it.
var newStockDriver func() uvm.StockDriver

// maxBenchBytes bounds --pages before any backend is opened: 1 PiB.
const maxBenchBytes = 1 << 50

// fitsDevice checks, as each backend opens, that --pages pages fit in its
// device's memory, so that no row is an estimate for memory that does not
// exist.
func fitsDevice(open bench.Opener, pages int) bench.Opener {
	return func(ps pagesize.Size) (backend.Backend, error) {
		b, err := open(ps)
		if err != nil {
			return nil, err
		}
		if mi, err := b.MemInfo(); err == nil && mi.Total > 0 && uint64(pages) > mi.Total/ps.Bytes() {
			return nil, errors.Join(cli.Usagef("--pages %d of %s is %s; the device has %s (at most %d pages)",
				pages, ps, cli.FormatBytes(uint64(pages)*ps.Bytes()), cli.FormatBytes(mi.Total), mi.Total/ps.Bytes()), b.Close())
		}
		return b, nil
	}
}

func exitCode(err error) int {
	var ee *cli.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.Code
	case errors.Is(err, cuda.ErrDeviceNotFound), errors.Is(err, cuda.ErrNoDevice):
		return cli.ExitNotFound
	case errors.Is(err, backend.ErrUnavailable):
		return cli.ExitNotSupported
	}
	return cli.ExitFailure
}

func write(w io.Writer, format cli.Format, rep *bench.Report) error {
	if format == cli.JSON {
		return cli.WriteJSON(w, rep)
	}
	fmt.Fprintf(w, "backend %s", rep.Backend)
	if rep.Device != "" {
		fmt.Fprintf(w, "  %s", rep.Device)
	}
	if rep.Driver != "" {
		fmt.Fprintf(w, "  driver %s", rep.Driver)
	}
	fmt.Fprintln(w)
	est := func(e bool) string {
		if e {
			return "estimate"
		}
		return "measured"
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	if len(rep.Map) > 0 {
		fmt.Fprintln(tw, "page\top\tbatch\tcalls\tp50 µs\tp99 µs\tµs/page\tGB/s\t\t")
		for _, r := range rep.Map {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.1f\t%.1f\t%.2f\t%.1f\t%s\t\n", r.PageSize.Short(), r.Op, r.Batch, r.Calls, r.P50us, r.P99us, r.UsPerPage, r.GBps, est(r.Estimate))
		}
		fmt.Fprintln(tw, "\t\t\t\t\t\t\t\t\t")
	}
	if len(rep.Steps) > 0 {
		fmt.Fprintln(tw, "page\tcase\tbatch\tcalls\tpages/call\tp50 µs\tmean µs\tmax µs\t\t")
		for _, r := range rep.Steps {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.0f\t%.1f\t%.1f\t%.1f\t%s\t\n", r.PageSize.Short(), r.Case, r.Batch, r.Calls, r.PagesPerCall, r.P50us, r.MeanUs, r.MaxUs, est(r.Estimate))
		}
	}
	if len(rep.Growth) > 0 {
		fmt.Fprintln(tw, "\t\t\t\t\t\t\t\t\t")
		fmt.Fprintln(tw, "backend\tpage\tlayout\tahead\tmargin\tmode\tcalls/step\tcrit µs/step\tbg µs/step\tbg max pages/job\tcall p50 µs\tcall p99 µs\tcall max µs\tahead MiB\t\t")
		for _, r := range rep.Growth {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%.1f\t%.0f\t%.0f\t%d\t%.1f\t%.1f\t%.1f\t%.0f (%.1f%%)\t%s\t\n", r.Backend, r.PageSize, r.Layout, r.MapAhead, r.GrowMargin, r.Mode,
				r.DriverCallsPerStep, r.CriticalMapUs, r.BackgroundMapUs, r.BackgroundJobMaxPages, r.CallP50us, r.CallP99us, r.CallMaxUs, float64(r.AheadBytes)/(1<<20), 100*r.AheadFraction, est(r.Estimate))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, r := range rep.Map {
		if r.Source != "" && !seen[r.Source] {
			seen[r.Source] = true
			fmt.Fprintf(w, "estimates %s: %s\n", r.PageSize.Short(), r.Source)
		}
	}
	for _, s := range rep.Skipped {
		fmt.Fprintf(w, "skipped: %s\n", s)
	}
	return nil
}
