// Package cmdtest drives one vattnctl command in a test: it runs the command
// as the root command would and captures what it prints, and it points a
// command's libcuda loader at the fake driver.
package cmdtest

import (
	"bytes"
	"context"
	"testing"

	"github.com/spf13/cobra"

	"github.com/vattn/vattn/cuda"
	"github.com/vattn/vattn/cuda/cudafake"
	"github.com/vattn/vattn/internal/cli"
)

// Run executes cmd with args set up as internal/cmd/root sets up every
// command: usage and errors are not printed, and a bad flag is
// cli.ExitBadArgument. It returns the exit code, stdout, and stderr with the
// error's text after it, where the root command would print the error.
func Run(t testing.TB, cmd *cobra.Command, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return cli.FlagError(err) })
	err := cmd.ExecuteContext(context.Background())
	if err != nil {
		errOut.WriteString(err.Error())
	}
	return cli.CodeOf(err), out.String(), errOut.String()
}

// FakeCUDA points *load, a command's seam for loading libcuda, at a fresh
// fake driver until the test ends, and returns the fake.
func FakeCUDA(t testing.TB, load *func() (*cuda.Lib, error)) *cudafake.Fake {
	t.Helper()
	f := cudafake.New()
	old := *load
	*load = func() (*cuda.Lib, error) { return cuda.NewLib(f.Driver(), "fake") }
	t.Cleanup(func() { *load = old })
	return f
}
