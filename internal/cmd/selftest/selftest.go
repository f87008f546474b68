// Package selftest implements "vattnctl selftest": it proves that small pages
// work on this machine, through whichever path nvidia-uvm offers — NVIDIA's
// stock driver (RM memory in UVM external ranges) or the patched module.
// Pages at every size hold data written by a GPU kernel, follow a remap, are
// released at close, and bad arguments are refused.
//
// Exit codes: 0 every step passed; 1 a step failed; 3 this GPU or driver
// branch cannot do small pages at all (before Pascal, or a branch vattn has no
// ABI tables for); 9 no UVM device (nvidia-uvm not loaded); 12 libcuda missing.
package selftest

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/vattn/vattn/internal/cli"
)

// NewCmd returns the selftest command.
func NewCmd(format *cli.Format) *cobra.Command {
	var device string
	cmd := &cobra.Command{
		Use:   "selftest",
		Short: "Check that small pages work on this machine",
		Long: `selftest checks small pages end to end through the path nvidia-uvm offers:
NVIDIA's stock driver (video memory mapped into UVM external ranges) or the
vattn-patched module. For every page size (64k, 128k, 256k, 2m) it allocates
pages, maps them, writes a pattern with a GPU kernel and reads it back, remaps
a page elsewhere and checks its data followed, unmaps and frees; it closes a
backend with pages still mapped and checks the memory came back; and it sends
arguments the driver must refuse and checks each is refused.

Exit codes: 0 all steps passed; 1 a step failed; 3 this GPU or driver branch
cannot do small pages at all (a GPU before Pascal, or a driver branch vattn has
no ABI tables for); 9 no UVM device (nvidia-uvm not loaded); 12 libcuda
missing.`,
		Example: `  vattnctl selftest
  vattnctl selftest -i 1 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rep, err := Run(device)
			if werr := write(cmd.OutOrStdout(), *format, rep); werr != nil && err == nil {
				err = werr
			}
			return err
		},
	}
	cmd.Flags().StringVarP(&device, "id", "i", "", "GPU index or UUID (as nvidia-smi -i); default GPU 0")
	return cmd
}

func write(w io.Writer, format cli.Format, rep *Report) error {
	if format == cli.JSON {
		return cli.WriteJSON(w, rep)
	}
	if rep.Device != "" {
		fmt.Fprintf(w, "%s\n", rep.Device)
	}
	fmt.Fprintf(w, "driver: %s: %s\n", rep.Probe.State, rep.Probe.Detail)
	for _, s := range rep.Steps {
		mark := "PASS"
		if !s.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "%s  %s", mark, s.Name)
		if s.Detail != "" {
			fmt.Fprintf(w, ": %s", s.Detail)
		}
		fmt.Fprintln(w)
	}
	_, err := fmt.Fprintf(w, "result: %s\n", rep.Result)
	return err
}
