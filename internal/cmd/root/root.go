// Package root assembles the vattnctl command tree and runs it: global flags,
// signal handling, error printing and exit codes.
package root

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
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
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return cli.FlagError(err) })
	root.AddCommand(
		simulate.NewCmd(format),
		version.NewCmd(format),
		mapcmd.NewCmd(format),
	)
	root.AddCommand(tracecmd.NewCmd(format))
	root.AddCommand(benchcmd.NewCmd(format), selftest.NewCmd(format))
	root.AddCommand(drivercmd.NewInstallCmd(format), drivercmd.NewUninstallCmd(format), drivercmd.NewStatusCmd(format))
	// The root is runnable so that a stray word reaches rejectArgs (exit 2)
	// instead of cobra's own error or help text with exit 0 or 1.
	root.Args = cobra.ArbitraryArgs
	root.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmd.Help()
		}
		return unknownCommand(cmd, args[0])
	}
	root.SetHelpCommand(newHelpCmd(root))
	usageArgs(root)
	cli.RefuseRepeats(root)
	// status and install-driver ask the module through backend/uvm's probe.
	driver.ProbeUVM = drivercmd.ProbeUVM
	return root
}

// unknownCommand is the bad-argument error for a word that names no
// command, with cobra's spelling suggestions.
func unknownCommand(cmd *cobra.Command, word string) error {
	msg := fmt.Sprintf("unknown command %s for %q", cli.Quote(word), cmd.CommandPath())
	if s := cmd.SuggestionsFor(word); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return cli.Usagef("%s (see 'vattnctl --help')", msg)
}

// newHelpCmd replaces cobra's help command, which prints "Unknown help
// topic" and exits 0.
func newHelpCmd(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "Help about any command",
		Args:  cobra.ArbitraryArgs,
		RunE: func(_ *cobra.Command, args []string) error {
			target, rest, err := root.Find(args)
			if err != nil || len(rest) > 0 || (target == root && len(args) > 0) {
				return unknownCommand(root, strings.Join(args, " "))
			}
			target.InitDefaultHelpFlag()
			return target.Help()
		},
	}
}

// usageArgs makes every command's argument check a bad-argument error:
// cobra's validators return plain errors, which would exit 1.
func usageArgs(cmd *cobra.Command) {
	if check := cmd.Args; check != nil && cmd.HasParent() {
		cmd.Args = func(c *cobra.Command, args []string) error {
			if err := check(c, args); err != nil {
				return cli.Usagef("%v", err)
			}
			return nil
		}
	}
	for _, c := range cmd.Commands() {
		usageArgs(c)
	}
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
