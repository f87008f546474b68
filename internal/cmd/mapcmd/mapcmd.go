// Package mapcmd implements "vattnctl map": an admin diagnostic that
// reserves a range, allocates and maps pages through a backend, optionally
// proves they hold data, unmaps and frees them, and prints per-call latency
// percentiles and throughput.
package mapcmd

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/vattn/vattn/internal/cli"
	"github.com/vattn/vattn/pagesize"
)

// NewCmd returns the map command.
func NewCmd(format *cli.Format) *cobra.Command {
	o := Options{PageSize: pagesize.Size2M, Pages: 64, Batch: 1, Access: "run"}
	cmd := &cobra.Command{
		Use:   "map",
		Short: "Map and unmap pages on a GPU and time every call",
		Long: `map reserves a virtual range, allocates --pages physical pages, maps them,
optionally writes a per-page pattern with a GPU kernel and reads it back
(--verify), then unmaps, frees and releases everything, printing latency
percentiles per operation and throughput. It leaves nothing allocated, also
when a step fails or it is interrupted.`,
		Example: `  vattnctl map --pages 1024 --verify
  vattnctl map -i 1 --pages 256 --batch 256 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Backend == "" {
				o.Backend = DefaultBackend(o.PageSize)
			}
			if cmd.Flags().Changed("access") && o.Backend != "cudavmm" {
				return cli.Usagef("--access applies to --backend cudavmm only, not %s", cli.Quote(o.Backend))
			}
			if cmd.Flags().Changed("uvm-mode") && o.Backend != "uvm" {
				return cli.Usagef("--uvm-mode applies to --backend uvm only, not %s", cli.Quote(o.Backend))
			}
			rep, err := Run(cmd.Context(), o)
			if rep != nil && (err == nil || rep.Verify != nil) {
				if werr := write(cmd.OutOrStdout(), *format, rep); werr != nil && err == nil {
					err = werr
				}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Backend, "backend", "", "backend to map through: "+backendNames()+" (default: uvm below 2m pages, else cudavmm)")
	f.Var(&o.PageSize, "page-size", "physical page size: 64k, 128k, 256k (uvm) or 2m (cudavmm, uvm)")
	f.StringVar(&o.UVMMode, "uvm-mode", "", "uvm: stock (NVIDIA's driver as shipped) or patched (the vattn module); default: patched where loaded, else stock")
	f.IntVar(&o.Pages, "pages", o.Pages, "number of pages")
	f.IntVar(&o.Batch, "batch", o.Batch, "pages per allocate/map/unmap/free call")
	f.BoolVar(&o.Verify, "verify", false, "write a per-page pattern with a GPU kernel and check it on the GPU and from the host")
	f.StringVarP(&o.Device, "id", "i", "", "GPU index or UUID (as nvidia-smi -i); default GPU 0")
	f.StringVar(&o.Access, "access", o.Access, "cudavmm: set access once per contiguous run of a batch (run) or per page (page)")
	return cmd
}

func write(w io.Writer, format cli.Format, rep *Report) error {
	if format == cli.JSON {
		return cli.WriteJSON(w, rep)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "backend %s", rep.Backend)
	if rep.Device != "" {
		fmt.Fprintf(w, "  %s", rep.Device)
	}
	if rep.Driver != "" {
		fmt.Fprintf(w, "  driver %s", rep.Driver)
	}
	fmt.Fprintf(w, "\n%d pages of %s (%.2f GiB), %d per call", rep.Pages, rep.PageSize, float64(rep.Bytes)/(1<<30), rep.Batch)
	if rep.Access != "" {
		fmt.Fprintf(w, ", access set per %s", rep.Access)
	}
	fmt.Fprintln(w)
	if len(rep.Ops) > 0 {
		fmt.Fprintln(tw, "op\tcalls\tp50 µs\tp90 µs\tp99 µs\tmax µs\tµs/page\tGB/s\t")
		for _, s := range rep.Ops {
			fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.2f\t%.1f\t\n", s.Op, s.Calls, s.P50us, s.P90us, s.P99us, s.MaxUs, s.UsPerPage, s.GBps)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if v := rep.Verify; v != nil {
		status := "ok"
		if !v.OK {
			status = "FAILED"
		}
		fmt.Fprintf(w, "verify: %s: %d pages", status, v.Pages)
		if v.GPUCheckedWords > 0 {
			fmt.Fprintf(w, ", %d of %d words differ on the GPU", v.GPUMismatchedWords, v.GPUCheckedWords)
		}
		fmt.Fprintf(w, ", %d of %d words read back by the host differ\n", v.HostMismatched, v.HostSampledWords)
	}
	if rep.Leftover != "" {
		_, err := fmt.Fprintf(w, "left allocated: %s\n", rep.Leftover)
		return err
	}
	return nil
}
