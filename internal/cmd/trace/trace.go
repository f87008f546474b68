// Package trace implements "vattnctl trace": live latency histograms of
// KV-cache memory mapping (CUDA VMM calls, UVM ioctls, the patched driver's
// events), printed like bcc's funclatency, as JSON, or served to Prometheus.
package trace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/vattn/vattn/internal/cli"
	"github.com/vattn/vattn/trace"
)

// Options are the command's flags.
type Options struct {
	Sources    string
	Lib        string
	Device     string
	PID        int
	GPU        string
	Ops        []string
	Unit       string
	Interval   time.Duration
	Count      int
	Duration   time.Duration
	Prometheus string
	Format     cli.Format

	// listening, when set, is told the Prometheus listener's address.
	listening func(net.Addr)
}

// NewCmd returns the trace command; format receives the global -o flag.
func NewCmd(format *cli.Format) *cobra.Command {
	opts := &Options{}
	cmd := &cobra.Command{
		Use:   "trace",
		Short: "Show KV-cache mapping latency live, with eBPF",
		Long: `trace attaches eBPF probes and shows, per operation, a log2 latency histogram
(as bcc's funclatency does) and count, average, p50 and p99. Percentiles are
estimated from the log2 buckets, so they are only as precise as a bucket is
wide (a factor of two).

Sources (--source, all by default):
  cuda        uprobes on libcuda's cuMemCreate, cuMemMap, cuMemSetAccess,
              cuMemUnmap, cuMemRelease, cuMemAddressReserve, cuMemAddressFree
  ioctl       ioctl(2) calls on the UVM device (--device), by command
  tracepoint  the patched nvidia-uvm's vattn:* events (per GPU)
A source that cannot attach is reported with the reason; the others run.
Needs root or CAP_BPF+CAP_PERFMON.`,
		Example: `  vattnctl trace --duration 10s
  vattnctl trace --source cuda -p 1234 --interval 1s --count 5
  vattnctl trace --unit ns -o json --interval 1s
  vattnctl trace --prometheus :9400`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Format = *format
			return Run(cmd.Context(), opts, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Sources, "source", "all", "sources to attach: all or a list of cuda, ioctl, tracepoint")
	f.StringVar(&opts.Lib, "lib", "", "libcuda path (default: found via the ldconfig cache and usual locations)")
	f.StringVar(&opts.Device, "device", "", "UVM character device, MAJ:MIN or path (default "+trace.DefaultDevice+")")
	f.IntVarP(&opts.PID, "pid", "p", 0, "trace only this process")
	f.StringVarP(&opts.GPU, "id", "i", "", "trace only this GPU (index or UUID), for sources that know the GPU")
	f.StringSliceVar(&opts.Ops, "ops", nil, "show only these operations (cuMemMap, UVM_VATTN_MAP, ioctl_37, map, ...)")
	f.StringVar(&opts.Unit, "unit", "us", "histogram unit: ns, us or ms")
	f.DurationVar(&opts.Interval, "interval", 0, "print every interval (default: once, at the end)")
	f.IntVar(&opts.Count, "count", 0, "stop after this many intervals")
	f.DurationVar(&opts.Duration, "duration", 0, "stop after this long (default: until Ctrl-C)")
	f.StringVar(&opts.Prometheus, "prometheus", "", "serve Prometheus metrics on this address (host:port) at /metrics")
	return cmd
}

var units = map[string]time.Duration{"ns": time.Nanosecond, "us": time.Microsecond, "µs": time.Microsecond, "ms": time.Millisecond}

// Run traces until ctx ends, --duration passes or --count intervals were
// printed, then prints the last interval.
func Run(ctx context.Context, opts *Options, out, errOut io.Writer) error {
	topts, err := opts.traceOptions()
	if err != nil {
		return err
	}
	gpus, err := trace.GPUs()
	if err != nil {
		return err
	}
	if opts.GPU != "" {
		if topts.GPU, err = trace.ResolveGPU(opts.GPU, gpus); err != nil {
			if errors.Is(err, trace.ErrNoGPU) {
				return cli.WithCode(cli.ExitNotFound, err)
			}
			return cli.WithCode(cli.ExitBadArgument, err)
		}
	}
	t, err := trace.Open(topts)
	switch {
	case errors.Is(err, trace.ErrPermission):
		return cli.WithCode(cli.ExitNoPermission, err)
	case errors.Is(err, trace.ErrNoSource):
		return cli.WithCode(cli.ExitNotSupported, err)
	case err != nil:
		return err
	}
	defer t.Close()

	rep := &reporter{out: out, format: opts.Format, unit: topts.Unit, status: t.Status(), gpus: gpus}
	for _, st := range t.Status() {
		fmt.Fprintln(errOut, st)
	}
	if opts.Prometheus != "" {
		stop, err := serveMetrics(opts.Prometheus, t, gpus, errOut, opts.listening)
		if err != nil {
			return err
		}
		defer stop()
	}
	fmt.Fprintln(errOut, "Tracing... Hit Ctrl-C to end.")

	prev, err := t.Snapshot()
	if err != nil {
		return err
	}
	var tick <-chan time.Time
	if opts.Interval > 0 {
		tk := time.NewTicker(opts.Interval)
		defer tk.Stop()
		tick = tk.C
	}
	var end <-chan time.Time
	if opts.Duration > 0 {
		tm := time.NewTimer(opts.Duration)
		defer tm.Stop()
		end = tm.C
	}
	for printed := 0; ; {
		final := false
		select {
		case <-ctx.Done():
			final = true
		case <-end:
			final = true
		case <-tick:
		}
		snap, err := t.Snapshot()
		if err != nil {
			return err
		}
		if err := rep.print(snap.Sub(prev), snap.Time.Sub(prev.Time), final); err != nil {
			return err
		}
		prev = snap
		printed++
		if final || (opts.Count > 0 && printed >= opts.Count) {
			return nil
		}
	}
}

func (o *Options) traceOptions() (trace.Options, error) {
	srcs, err := trace.ParseSources(o.Sources)
	if err != nil {
		return trace.Options{}, cli.WithCode(cli.ExitBadArgument, err)
	}
	unit, ok := units[strings.ToLower(o.Unit)]
	if !ok {
		return trace.Options{}, cli.Usagef("--unit %q: want ns, us or ms", o.Unit)
	}
	if o.Interval < 0 || o.Duration < 0 || o.Count < 0 || o.PID < 0 {
		return trace.Options{}, cli.Usagef("--interval, --duration, --count and --pid must not be negative")
	}
	if o.Count > 0 && o.Interval == 0 {
		return trace.Options{}, cli.Usagef("--count needs --interval")
	}
	if o.Device != "" {
		// An explicit device must exist; the default one may be absent
		// (no nvidia-uvm loaded), which only leaves the ioctl source out.
		if _, err := trace.ParseDevice(o.Device); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return trace.Options{}, cli.WithCode(cli.ExitNotFound, fmt.Errorf("--device: %w", err))
			}
			return trace.Options{}, cli.WithCode(cli.ExitBadArgument, fmt.Errorf("--device: %w", err))
		}
	}
	if o.Lib != "" {
		if _, err := os.Stat(o.Lib); err != nil {
			return trace.Options{}, cli.WithCode(cli.ExitLibraryMissing, fmt.Errorf("--lib: %w", err))
		}
	}
	return trace.Options{
		Sources: srcs, LibPath: o.Lib, Device: o.Device, PID: o.PID, Ops: o.Ops, Unit: unit,
	}, nil
}

// serveMetrics serves the tracer's metrics at addr/metrics until stop.
func serveMetrics(addr string, t *trace.Tracer, gpus []string, errOut io.Writer, listening func(net.Addr)) (stop func(), err error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(trace.NewCollector(t, gpus)); err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, cli.WithCode(cli.ExitBadArgument, fmt.Errorf("--prometheus: %w", err))
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(errOut, "prometheus: %v\n", err)
		}
	}()
	fmt.Fprintf(errOut, "Serving Prometheus metrics at http://%s/metrics\n", ln.Addr())
	if listening != nil {
		listening(ln.Addr())
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	}, nil
}
