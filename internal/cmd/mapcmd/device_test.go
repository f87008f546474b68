//go:build gpu

package mapcmd

import (
	"context"
	"errors"
	"testing"

	"github.com/vattn/vattn/internal/cudatest"
)

// TestDeviceMapInterrupted interrupts a real run after each step (as Ctrl-C
// does) and checks that the GPU's free memory is back where it started,
// within the same process.
func TestDeviceMapInterrupted(t *testing.T) {
	gpu := cudatest.Open(t)
	before := gpu.Free(t)
	for _, step := range []string{"reserve", "alloc", "map", "verify", "unmap", "free"} {
		ctx, cancel := context.WithCancel(context.Background())
		old := afterStep
		afterStep = func(s string) {
			if s == step {
				cancel()
			}
		}
		rep, err := Run(ctx, Options{Backend: "cudavmm", Pages: 64, Batch: 8, Verify: true})
		afterStep = old
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("interrupt after %s: %v", step, err)
		}
		if after := gpu.Free(t); after != before {
			t.Errorf("interrupted after %s: free memory %d before, %d after", step, before, after)
		}
		if rep == nil || rep.Leftover == "nothing" {
			t.Errorf("interrupted after %s: report %+v", step, rep)
		}
	}
	rep, err := Run(context.Background(), Options{Backend: "cudavmm", Pages: 64, Batch: 64, Verify: true})
	if err != nil || rep.Verify == nil || !rep.Verify.OK || rep.Leftover != "nothing" {
		t.Fatalf("full run: %+v %v", rep, err)
	}
	if after := gpu.Free(t); after != before {
		t.Errorf("full run: free memory %d before, %d after", before, after)
	}
}
