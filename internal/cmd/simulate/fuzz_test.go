package simulate

import (
	"strings"
	"testing"

	"github.com/vattn/vattn/internal/cli"
)

// FuzzFlags runs arbitrary command lines through simulate's real flag set
// and its checks (everything before the trace is read or generated): it
// must never panic; a refused line is a bad argument with a short one-line
// message; an accepted one is a configuration the simulator accepts.
// Arguments are separated by NUL in the fuzz input. The seeds under
// testdata/fuzz/FuzzFlags run with go test.
func FuzzFlags(f *testing.F) {
	for _, seed := range []string{
		"--requests\x0050\x00--page-size\x0064k",
		"--gpu-mem\x0080\x00--mem-util\x00NaN",
		"--max-batch\x00100000000\x00--page-size\x0064k",
		"--page-size\x0064k\x00--page-size\x002m",
		"--model\x00yi-34b-200k\x00--tp\x008\x00--paged-block\x00none",
		"--layout=megacache,per-layer\x00--max-context\x00-1",
		"--trace\x00x.csv\x00--seed\x003",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, line string) {
		args := strings.Split(line, "\x00")
		format := cli.Table
		cmd, o := newCmd(&format)
		cli.RefuseRepeats(cmd)
		var err error
		if err = cmd.ParseFlags(args); err != nil {
			err = cli.FlagError(err) // as the root command does
		} else {
			cfg, serr := o.settings(cmd.Flags().Changed)
			err = serr
			if err == nil {
				if cerr := cfg.Check(); cerr != nil {
					t.Fatalf("%q: accepted, but the simulator refuses it: %v", args, cerr)
				}
				return
			}
			if cli.CodeOf(err) != cli.ExitBadArgument {
				t.Fatalf("%q: exit %d for %v", args, cli.CodeOf(err), err)
			}
		}
		if msg := err.Error(); strings.Contains(msg, "\n") || len(msg) > 600 {
			t.Fatalf("%q: message of %d bytes: %.200q", args, len(msg), msg)
		}
	})
}
