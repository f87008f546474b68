package cmdtest

import (
	"errors"
	"fmt"
	"testing"

	"github.com/spf13/cobra"

	"github.com/vattn/vattn/cuda"
	"github.com/vattn/vattn/internal/cli"
)

func newCmd() *cobra.Command {
	var fail bool
	cmd := &cobra.Command{
		Use: "probe",
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprint(cmd.OutOrStdout(), "out ", args)
			fmt.Fprint(cmd.ErrOrStderr(), "warn; ")
			if fail {
				return cli.WithCode(cli.ExitNotFound, errors.New("no such thing"))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&fail, "fail", false, "")
	return cmd
}

func TestRun(t *testing.T) {
	for _, c := range []struct {
		args           []string
		code           int
		stdout, stderr string
	}{
		{[]string{"a"}, cli.ExitOK, "out [a]", "warn; "},
		{[]string{"--fail"}, cli.ExitNotFound, "out []", "warn; no such thing"},
		{[]string{"--nope"}, cli.ExitBadArgument, "", "unknown flag: --nope"},
	} {
		code, stdout, stderr := Run(t, newCmd(), c.args...)
		if code != c.code || stdout != c.stdout || stderr != c.stderr {
			t.Errorf("%v: %d %q %q, want %d %q %q", c.args, code, stdout, stderr, c.code, c.stdout, c.stderr)
		}
	}
}

func TestFakeCUDA(t *testing.T) {
	errOriginal := errors.New("the test's own loader")
	load := func() (*cuda.Lib, error) { return nil, errOriginal }
	t.Run("swapped", func(t *testing.T) {
		f := FakeCUDA(t, &load)
		lib, err := load()
		if err != nil {
			t.Fatal(err)
		}
		if devs, err := lib.Devices(); err != nil || len(devs) != 1 || devs[0].Name != f.GPUs[0].Name {
			t.Errorf("devices %+v %v", devs, err)
		}
	})
	if _, err := load(); !errors.Is(err, errOriginal) {
		t.Errorf("the loader was not put back when the test ended: %v", err)
	}
}
