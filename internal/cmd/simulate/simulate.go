// Package simulate implements "vattnctl simulate": a request trace through
// a continuous-batching scheduler over vattn's allocator on the simulator
// backend, compared with PagedAttention for the same trace.
package simulate

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
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
	cmd, _ := newCmd(format)
	return cmd
}

// newCmd returns the command and the Options its flags fill.
func newCmd(format *cli.Format) (*cobra.Command, *Options) {
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
			if cli.IsTerminal(os.Stderr) && *o.Format != cli.JSON {
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
	return cmd, o
}

func modelNames() []string {
	var names []string
	for _, m := range workload.Models() {
		names = append(names, strings.ToLower(m.Name))
	}
	return names
}

// config turns the flags into a simulation: settings, then the trace.
func (o *Options) config(changed func(string) bool) (simulate.Config, error) {
	cfg, err := o.settings(changed)
	if err != nil {
		return cfg, err
	}
	if o.Trace != "" {
		cfg.Trace, err = workload.LoadCSV(o.Trace)
		if err != nil {
			return cfg, cli.WithCode(traceCode(err), err)
		}
		if o.Requests > 0 && o.Requests < len(cfg.Trace.Requests) {
			cfg.Trace.Requests = cfg.Trace.Requests[:o.Requests]
		}
	} else {
		cfg.Trace, err = workload.Synthetic(workload.SyntheticConfig{Requests: o.Requests, Seed: o.Seed})
		if err != nil {
			return cfg, cli.WithCode(cli.ExitBadArgument, err)
		}
	}
	return cfg, nil
}

// settings checks every flag, and what the sizes imply, before the trace
// is read or generated; changed reports the flags given on the command line.
func (o *Options) settings(changed func(string) bool) (simulate.Config, error) {
	var cfg simulate.Config
	m, err := workload.Lookup(o.Model)
	if err != nil {
		return cfg, cli.Usagef("--model: %v", err)
	}
	sharded, err := m.ShardTP(o.TP)
	if err != nil {
		return cfg, cli.Usagef("--tp: %v", err)
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
			return cfg, cli.Usagef("--layout: unknown layout %s (valid: per-layer, megacache)", cli.Quote(l))
		}
	}
	blocks := []int{}
	if o.PagedBlock != "none" {
		for _, b := range strings.Split(o.PagedBlock, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(b))
			if err != nil || n <= 0 || n > 1<<20 {
				return cfg, cli.Usagef("--paged-block: %s is not a token count from 1 to %d (or \"none\")", cli.Quote(b), 1<<20)
			}
			blocks = append(blocks, n)
		}
	}
	switch {
	case o.MaxBatch <= 0:
		return cfg, cli.Usagef("--max-batch %d: want at least 1", o.MaxBatch)
	case o.MaxContext < 0:
		return cfg, cli.Usagef("--max-context %d: must not be negative (0: the model's context length)", o.MaxContext)
	case o.Requests < 0:
		return cfg, cli.Usagef("--requests %d: must not be negative", o.Requests)
	case o.Requests > workload.MaxRequests:
		return cfg, cli.Usagef("--requests %d: at most %d (each request costs memory and simulation time)", o.Requests, workload.MaxRequests)
	case !(o.MemUtil > 0 && o.MemUtil <= 1): // NaN fails both
		return cfg, cli.Usagef("--mem-util %v: must be in (0, 1]", o.MemUtil)
	case o.Trace != "" && changed("seed"):
		return cfg, cli.Usagef("--seed shapes the synthetic trace; it has no effect with --trace")
	case o.Trace == "" && o.Requests == 0:
		return cfg, cli.Usagef("--requests must be positive for a synthetic trace")
	}
	cfg = simulate.Config{
		Model: sharded, MaxBatch: o.MaxBatch, MaxContext: o.MaxContext,
		GPUMemory: gpu, MemUtil: o.MemUtil, PageSizes: sizes, Layouts: layouts, PagedBlock: blocks,
	}
	if err := cfg.Check(); err != nil {
		var le *simulate.LimitError
		if errors.As(err, &le) {
			return cfg, cli.Usagef("--%s %d: %s; at most %d", strings.ReplaceAll(le.Setting, " ", "-"), le.Value, le.Why, le.Max)
		}
		return cfg, cli.WithCode(cli.ExitBadArgument, err)
	}
	return cfg, nil
}

// traceCode is the exit code for a trace that cannot be read: a missing
// file is not found, an unreadable one no permission, and anything else
// (a malformed CSV, a directory) a bad argument.
func traceCode(err error) int {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return cli.ExitNotFound
	case errors.Is(err, fs.ErrPermission):
		return cli.ExitNoPermission
	}
	return cli.ExitBadArgument
}

func run(cmd *cobra.Command, o *Options) error {
	cfg, err := o.config(cmd.Flags().Changed)
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
	switch {
	case rep != nil && rep.Interrupted:
		if perr := o.print(cmd, rep); perr != nil {
			return perr
		}
		return cli.WithCode(cli.ExitInterrupted, fmt.Errorf("%w; the %d configurations that finished are printed", err, len(rep.Results)))
	case errors.Is(err, simulate.ErrConfig):
		return cli.WithCode(cli.ExitBadArgument, err)
	case err != nil:
		return err
	}
	if len(rep.Results) == 0 {
		return cli.Usagef("no configuration asked for can exist for %s: %s", rep.Model, strings.Join(rep.Unavailable, "; "))
	}
	if err := o.print(cmd, rep); err != nil {
		return err
	}
	for _, r := range rep.Results {
		if r.Completed > 0 {
			return nil
		}
	}
	return cli.WithCode(cli.ExitFailure, fmt.Errorf("no request ran in any configuration: all %d were skipped (see the warnings)", rep.Requests))
}

// print writes the report in the chosen format and the warnings about
// skipped requests to stderr, where they do not mix with JSON.
func (o *Options) print(cmd *cobra.Command, rep *simulate.Report) error {
	for _, w := range warnings(rep, o.MaxContext == 0) {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", w)
	}
	if *o.Format == cli.JSON {
		return cli.WriteJSON(cmd.OutOrStdout(), rep)
	}
	return printTable(cmd.OutOrStdout(), rep)
}

// warnings says why requests were skipped and which flag changes it.
func warnings(rep *simulate.Report, defaultContext bool) []string {
	var ws []string
	if rep.TooLong > 0 {
		ctx := fmt.Sprintf("--max-context %d", rep.MaxContext)
		if defaultContext {
			ctx += fmt.Sprintf(" (%s's context length)", rep.Model)
		}
		ws = append(ws, fmt.Sprintf("%d of %d requests are longer than %s and were skipped in every configuration; raise --max-context or choose a --model with a longer context",
			rep.TooLong, rep.Requests, ctx))
	}
	if rep.NoDecode > 0 {
		ws = append(ws, fmt.Sprintf("%d of %d requests have no decode tokens and were skipped", rep.NoDecode, rep.Requests))
	}
	for _, r := range rep.Results {
		if n := r.Skipped - rep.TooLong - rep.NoDecode; n > 0 {
			ws = append(ws, fmt.Sprintf("%s: %d requests need more than the %s KV budget alone and were skipped; raise --gpu-mem or --mem-util, or split the model with --tp",
				r.Name, n, cli.FormatBytes(rep.KVBudget)))
		}
	}
	return ws
}

func printTable(w io.Writer, rep *simulate.Report) error {
	fmt.Fprintf(w, "model %s (tp %d), trace %s: %d requests, KV budget %s per GPU, max batch %d, max context %d\n\n",
		rep.Model, rep.TP, rep.Trace, rep.Requests, cli.FormatBytes(rep.KVBudget), rep.MaxBatch, rep.MaxContext)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "CONFIG\tTOKENS/PAGE\tPEAK MAPPED\tMEAN MAPPED\tPEAK LIVE\tWASTE\tMEAN BATCH\tMAX BATCH\tPREEMPT\tSKIPPED\tMAP CALLS\tCRIT SYNC\tCRIT ASYNC\tWALL\t")
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
		perPage := strconv.Itoa(r.PageTokens)
		if r.PageTokens == 0 && r.PagesPerToken > 0 {
			perPage = fmt.Sprintf("1/%d", r.PagesPerToken) // one token over several pages
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.2f%%\t%.1f\t%d\t%d\t%d\t%s\t%s\t%s\t%.2fs\t\n",
			r.Name, perPage, cli.FormatBytes(r.PeakMappedBytes), cli.FormatBytes(r.MeanMappedBytes),
			cli.FormatBytes(r.PeakLiveBytes), 100*r.WasteFraction, r.MeanBatch, r.MaxBatchReached, r.Preemptions, r.Skipped,
			calls, crit(r.CriticalSecondsSync), crit(r.CriticalSecondsAsync), r.WallSeconds)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if line := bestLine(rep); line != "" {
		fmt.Fprintln(w, line)
	}
	for _, u := range rep.Unavailable {
		fmt.Fprintf(w, "not run: %s\n", u)
	}
	if rep.Interrupted {
		fmt.Fprintln(w, "interrupted: the configurations above finished; the rest did not run")
	}
	fmt.Fprintln(w, "\nWASTE: mapped memory under running requests that holds no token. MEAN BATCH: requests running")
	fmt.Fprintln(w, "at once, on average. The scheduler admits requests until the KV budget is full, so PEAK MAPPED")
	fmt.Fprintln(w, "reaches the budget whenever requests wait; less waste shows as a larger MEAN BATCH. CRIT:")
	fmt.Fprintln(w, "estimated mapping time on the critical path, from the simulator's latency model: CUDA VMM")
	fmt.Fprintln(w, "measured on an H100 for 2 MiB, the stock nvidia-uvm path measured on an H200 below (one driver")
	fmt.Fprintln(w, "call per run of pages).")
	if assumed {
		fmt.Fprintln(w, "* assumed latencies: no measurement for this page size.")
	}
	return nil
}

// bestLine names the configuration that fits the most requests in the
// same memory, against the best PagedAttention baseline when there is one.
func bestLine(rep *simulate.Report) string {
	var best, paged *simulate.Result
	for i := range rep.Results {
		r := &rep.Results[i]
		if r.Name == rep.Best {
			best = r
		}
		if r.Layout == simulate.Paged && r.Completed > 0 && (paged == nil || r.MeanBatch > paged.MeanBatch) {
			paged = r
		}
	}
	if best == nil {
		return ""
	}
	line := fmt.Sprintf("\nfits the most requests in %s: %s (%.1f running at once on average", cli.FormatBytes(rep.KVBudget), best.Name, best.MeanBatch)
	if paged != nil && paged != best {
		line += fmt.Sprintf("; best PagedAttention: %s, %.1f", paged.Name, paged.MeanBatch)
	}
	return line + ")"
}
