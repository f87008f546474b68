package simulate

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/vattn/vattn/internal/cli"
)

// cancelOn cancels a context once a progress line names a configuration.
type cancelOn struct {
	name   string
	cancel context.CancelFunc
}

func (c cancelOn) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(c.name)) {
		c.cancel()
	}
	return len(p), nil
}

func TestInterruptPrintsWhatFinished(t *testing.T) {
	for _, format := range []cli.Format{cli.Table, cli.JSON} {
		ctx, cancel := context.WithCancel(context.Background())
		f := format
		cmd := NewCmd(&f)
		var out, errOut bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&errOut)
		cmd.SetContext(ctx)
		if err := cmd.ParseFlags([]string{"--requests", "200", "--page-size", "2m", "--layout", "per-layer", "--paged-block", "16"}); err != nil {
			t.Fatal(err)
		}
		o := &Options{Format: &f, Model: "llama-3-8b", TP: 1, GPUMem: "80GiB", MemUtil: 0.9, MaxBatch: 64, Requests: 200, Seed: 1,
			PageSizes: "2m", Layouts: "per-layer", PagedBlock: "16", Progress: cancelOn{"paged block 16", cancel}}
		err := run(cmd, o)
		cancel()
		if cli.CodeOf(err) != cli.ExitInterrupted || !strings.Contains(err.Error(), "1 configurations that finished") {
			t.Fatalf("%s: err %v (exit %d)", format, err, cli.CodeOf(err))
		}
		if format == cli.JSON {
			var rep struct {
				Interrupted bool              `json:"interrupted"`
				Results     []json.RawMessage `json:"results"`
			}
			if json.Unmarshal(out.Bytes(), &rep) != nil || !rep.Interrupted || len(rep.Results) != 1 {
				t.Errorf("json: %s", out.String())
			}
		} else if !strings.Contains(out.String(), "vattn 2m per-layer") || strings.Contains(out.String(), "paged block 16") ||
			!strings.Contains(out.String(), "interrupted") {
			t.Errorf("table:\n%s", out.String())
		}
	}
}
