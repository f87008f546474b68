// Package simulate implements "vattnctl simulate": a request trace through
// a continuous-batching scheduler over vattn's allocator on the simulator
// backend, compared with PagedAttention for the same trace.
package simulate

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/vattn/vattn/internal/cli"
	"github.com/vattn/vattn/pagesize"
	"github.com/vattn/vattn/simulate"
	"github.com/vattn/vattn/workload"
)

// Options are the command's flags.
type Options struct {
	Format     *cli.Format
	Trace      string
	Model      string
	TP         int
	GPUMem     string
	MemUtil    float64
	MaxBatch   int
	MaxContext int
	Requests   int
	Seed       int64
	PageSizes  string
	Layouts    string
	PagedBlock string
	Progress   io.Writer // nil: none
}

// NewCmd returns the simulate command.
func NewCmd(format *cli.Format) *cobra.Command {
	o := &Options{Format: format}
	cmd := &cobra.Command{
		Use:   "simulate",
		Short: "Run a request trace through vattn and PagedAttention on the simulator",
		Long: `simulate drives vattn's real allocator (kvcache) on the simulator backend
with a continuous-batching scheduler: requests are admitted while a slot is
free and their prefill can be mapped, every step each running request grows
by one token, and the newest request is preempted when memory runs out.
It runs every page size and layout asked for, and the PagedAttention
baseline, on the same trace, and reports memory use, waste, preemptions,
mapping calls and the estimated mapping time on the critical path.

The default trace is synthetic, shaped like the arxiv summarization trace;
--trace reads a Sarathi/metron CSV (num_prefill_tokens,num_decode_tokens,...).`,
		Example: `  vattnctl simulate
  vattnctl simulate --page-size 64k,2m --layout per-layer --requests 5000
  vattnctl simulate --trace arxiv.csv --model llama-3-70b --tp 4 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cli.IsTerminal(os.Stderr) {
				o.Progress = cmd.ErrOrStderr()
			}
			return run(cmd, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Trace, "trace", "", "Sarathi/metron trace CSV (default: synthetic)")
	f.StringVar(&o.Model, "model", "llama-3-8b", "model: "+strings.Join(modelNames(), ", "))
	f.IntVar(&o.TP, "tp", 1, "tensor-parallel degree (divides the KV heads)")
	f.StringVar(&o.GPUMem, "gpu-mem", "80GiB", "memory of one GPU")
	f.Float64Var(&o.MemUtil, "mem-util", 0.9, "fraction of GPU memory for weights and KV cache")
	f.IntVar(&o.MaxBatch, "max-batch", 256, "request slots")
	f.IntVar(&o.MaxContext, "max-context", 0, "longest request in tokens (default: the model's context length)")
	f.IntVar(&o.Requests, "requests", 2000, "requests to simulate (with --trace: the first N, 0 = all)")
	f.Int64Var(&o.Seed, "seed", 1, "seed of the synthetic trace")
	f.StringVar(&o.PageSizes, "page-size", "64k,128k,256k,2m", "vattn page sizes, comma-separated")
	f.StringVar(&o.Layouts, "layout", "per-layer,megacache", "vattn layouts: per-layer, megacache")
	f.StringVar(&o.PagedBlock, "paged-block", "16,256", `PagedAttention block sizes in tokens ("none" to skip)`)
	return cmd
}

func modelNames() []string {
	var names []string
	for _, m := range workload.Models() {
		names = append(names, strings.ToLower(m.Name))
	}
	return names
}

func (o *Options) config() (simulate.Config, error) {
	var cfg simulate.Config
	m, err := workload.Lookup(o.Model)
	if err != nil {
		return cfg, cli.WithCode(cli.ExitBadArgument, err)
	}
	sharded, err := m.ShardTP(o.TP)
	if err != nil {
		return cfg, cli.WithCode(cli.ExitBadArgument, err)
	}
	gpu, err := cli.ParseBytes(o.GPUMem)
	if err != nil {
		return cfg, cli.Usagef("--gpu-mem: %v", err)
	}
	sizes, err := pagesize.ParseList(o.PageSizes)
	if err != nil {
		return cfg, cli.Usagef("--page-size: %v", err)
	}
	var layouts []simulate.Layout
	for _, l := range strings.Split(o.Layouts, ",") {
		switch simulate.Layout(strings.TrimSpace(l)) {
		case simulate.PerLayer, simulate.Megacache:
			layouts = append(layouts, simulate.Layout(strings.TrimSpace(l)))
		default:
			return cfg, cli.Usagef("--layout: unknown layout %q (valid: per-layer, megacache)", l)
		}
	}
	blocks := []int{}
	if o.PagedBlock != "none" && o.PagedBlock != "" {
		for _, b := range strings.Split(o.PagedBlock, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(b))
			if err != nil || n <= 0 {
				return cfg, cli.Usagef("--paged-block: %q is not a positive token count", b)
			}
			blocks = append(blocks, n)
		}
	}
	if o.MaxBatch <= 0 || o.MaxContext < 0 || o.Requests < 0 {
		return cfg, cli.Usagef("--max-batch must be positive, --max-context and --requests not negative")
	}
	if o.MemUtil <= 0 || o.MemUtil > 1 {
		return cfg, cli.Usagef("--mem-util must be in (0, 1]")
	}
	var trace workload.Trace
	if o.Trace != "" {
		trace, err = workload.LoadCSV(o.Trace)
		if err != nil {
			return cfg, cli.WithCode(cli.ExitNotFound, err)
		}
		if o.Requests > 0 && o.Requests < len(trace.Requests) {
			trace.Requests = trace.Requests[:o.Requests]
		}
	} else {
		if o.Requests == 0 {
			return cfg, cli.Usagef("--requests must be positive for a synthetic trace")
		}
		trace, err = workload.Synthetic(workload.SyntheticConfig{Requests: o.Requests, Seed: o.Seed})
		if err != nil {
			return cfg, err
		}
	}
	return simulate.Config{
		Model: sharded, Trace: trace, MaxBatch: o.MaxBatch, MaxContext: o.MaxContext,
		GPUMemory: gpu, MemUtil: o.MemUtil, PageSizes: sizes, Layouts: layouts, PagedBlock: blocks,
	}, nil
}

func run(cmd *cobra.Command, o *Options) error {
	cfg, err := o.config()
	if err != nil {
		return err
	}
	if o.Progress != nil {
		cfg.Progress = func(name string, done, total int) {
			fmt.Fprintf(o.Progress, "\r\033[K%s: %d/%d requests done", name, done, total)
		}
	}
	rep, err := simulate.Run(cmd.Context(), cfg)
	if o.Progress != nil {
		fmt.Fprint(o.Progress, "\r\033[K")
	}
	if errors.Is(err, simulate.ErrConfig) {
		return cli.WithCode(cli.ExitBadArgument, err)
	}
	if err != nil {
		return err
	}
	if *o.Format == cli.JSON {
		return cli.WriteJSON(cmd.OutOrStdout(), rep)
	}
	return printTable(cmd.OutOrStdout(), rep)
}

func printTable(w io.Writer, rep *simulate.Report) error {
	fmt.Fprintf(w, "model %s (tp %d), trace %s: %d requests, KV budget %s per GPU, max batch %d, max context %d\n\n",
		rep.Model, rep.TP, rep.Trace, rep.Requests, cli.FormatBytes(rep.KVBudget), rep.MaxBatch, rep.MaxContext)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "CONFIG\tTOKENS/PAGE\tPEAK MAPPED\tMEAN MAPPED\tPEAK LIVE\tWASTE\tMAX BATCH\tPREEMPT\tMAP CALLS\tCRIT SYNC\tCRIT ASYNC\tWALL\t")
	assumed := false
	for _, r := range rep.Results {
		crit := func(s float64) string {
			if r.Layout == simulate.Paged {
				return "-"
			}
			mark := ""
			if r.LatencyAssumed {
				mark, assumed = "*", true
			}
			return fmt.Sprintf("%.3fs%s", s, mark)
		}
		calls := "-"
		if r.Layout != simulate.Paged {
			calls = strconv.FormatUint(r.MapCalls, 10)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%.2f%%\t%d\t%d\t%s\t%s\t%s\t%.2fs\t\n",
			r.Name, r.PageTokens, cli.FormatBytes(r.PeakMappedBytes), cli.FormatBytes(r.MeanMappedBytes),
			cli.FormatBytes(r.PeakLiveBytes), 100*r.WasteFraction, r.MaxBatchReached, r.Preemptions,
			calls, crit(r.CriticalSecondsSync), crit(r.CriticalSecondsAsync), r.WallSeconds)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, u := range rep.Unavailable {
		fmt.Fprintf(w, "not run: %s\n", u)
	}
	fmt.Fprintln(w, "\nWASTE: mapped memory under running requests that holds no token. CRIT: estimated mapping time")
	fmt.Fprintln(w, "on the critical path, from the simulator's latency model: CUDA VMM measured on an H100 for 2 MiB,")
	fmt.Fprintln(w, "the stock nvidia-uvm path measured on an H200 below (one driver call per run of pages).")
	if assumed {
		fmt.Fprintln(w, "* assumed latencies: no measurement for this page size.")
	}
	return nil
}
