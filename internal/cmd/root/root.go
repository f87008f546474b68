// Package root assembles the vattnctl command tree and runs it: global flags,
// signal handling, error printing and exit codes.
package root

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/vattn/vattn/driver"
	"github.com/vattn/vattn/internal/cli"
	benchcmd "github.com/vattn/vattn/internal/cmd/bench"
	"github.com/vattn/vattn/internal/cmd/drivercmd"
	"github.com/vattn/vattn/internal/cmd/mapcmd"
	"github.com/vattn/vattn/internal/cmd/selftest"
	"github.com/vattn/vattn/internal/cmd/simulate"
	tracecmd "github.com/vattn/vattn/internal/cmd/trace"
	"github.com/vattn/vattn/internal/cmd/version"
)

// NewCmd builds the whole command tree. format receives the -o flag.
func NewCmd(format *cli.Format) *cobra.Command {
	root := &cobra.Command{
		Use:   "vattnctl",
		Short: "vAttention-style KV-cache memory for NVIDIA GPUs",
		Long: `vattnctl manages vattn's GPU KV-cache memory: it simulates the allocator on
request traces, maps and benchmarks pages on a real GPU, traces mapping
latency with eBPF, and installs the patched nvidia-uvm driver.`,
		Version:       version.Get().Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	*format = cli.Table
	root.PersistentFlags().VarP(format, "output", "o", "output format: table or json")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return cli.WithCode(cli.ExitBadArgument, err)
	})
	root.AddCommand(
		simulate.NewCmd(format),
		version.NewCmd(format),
		mapcmd.NewCmd(format),
	)
	root.AddCommand(tracecmd.NewCmd(format))
	root.AddCommand(benchcmd.NewCmd(format), selftest.NewCmd(format))
	root.AddCommand(drivercmd.NewInstallCmd(format), drivercmd.NewUninstallCmd(format), drivercmd.NewStatusCmd(format))
	// status and install-driver ask the module through backend/uvm's probe.
	driver.ProbeUVM = drivercmd.ProbeUVM
	return root
}

// Main runs vattnctl with args and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var format cli.Format
	cmd := NewCmd(&format)
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	err := cmd.ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "vattnctl: %v\n", err)
	}
	return cli.CodeOf(err)
}
