package eventfence

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/vattn/vattn/cuda"
	"github.com/vattn/vattn/cuda/cudafake"
	"github.com/vattn/vattn/internal/cudatest"
)

// newFence returns a fence on the fake driver's default stream and the
// context it is bound to. The test destroys the fence itself.
func newFence(t *testing.T) (*Fence, *cuda.Ctx, *cudafake.Fake) {
	t.Helper()
	f, lib := cudatest.Fake(t)
	gpu := cudatest.Retain(t, lib)
	return New(gpu.Ctx, 0), gpu.Ctx, f
}

func destroy(fence *Fence, ctx *cuda.Ctx) error {
	return ctx.Do(func(b cuda.Bound) error { return fence.Destroy(b) })
}

// TestCompletesInOrder: epochs complete oldest first, as the stream runs
// them, and completed events are reused rather than created anew.
func TestCompletesInOrder(t *testing.T) {
	fence, ctx, f := newFence(t)
	if fence.Stream() != 0 {
		t.Fatalf("stream %d, want 0", fence.Stream())
	}
	e1, err := fence.Record() // nothing submitted: complete at once
	if err != nil || e1 != 1 {
		t.Fatalf("record: %d %v", e1, err)
	}
	f.Submit()
	e2, err := fence.Record()
	if err != nil || e2 != 2 {
		t.Fatalf("record: %d %v", e2, err)
	}
	if c := fence.Completed(); c != e1 {
		t.Fatalf("completed %d with the second epoch's work pending, want %d", c, e1)
	}
	created := f.Calls("cuEventCreate")
	e3, err := fence.Record() // reuses e1's event
	if err != nil || e3 != 3 || f.Calls("cuEventCreate") != created {
		t.Fatalf("record: %d %v, %d events created", e3, err, f.Calls("cuEventCreate")-created)
	}
	f.Complete()
	if err := fence.Wait(context.Background(), e3); err != nil {
		t.Fatal(err)
	}
	if c := fence.Completed(); c != e3 {
		t.Fatalf("completed %d, want %d", c, e3)
	}
	if err := destroy(fence, ctx); err != nil {
		t.Fatal(err)
	}
	if live := f.Live(); live.Events != 0 {
		t.Errorf("after Destroy the driver still holds %d events", live.Events)
	}
}

func TestWaitErrors(t *testing.T) {
	fence, ctx, _ := newFence(t)
	t.Cleanup(func() {
		if err := destroy(fence, ctx); err != nil {
			t.Error(err)
		}
	})
	if err := fence.Wait(context.Background(), 1); err == nil || !strings.Contains(err.Error(), "only 0 recorded") {
		t.Errorf("wait for an unrecorded epoch: %v", err)
	}
	if err := fence.Wait(context.Background(), 0); err != nil {
		t.Errorf("epoch 0 is always complete: %v", err)
	}
}

func TestWaitCancelled(t *testing.T) {
	fence, ctx, f := newFence(t)
	t.Cleanup(func() {
		if err := destroy(fence, ctx); err != nil {
			t.Error(err)
		}
	})
	f.Submit()
	e, err := fence.Record()
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := fence.Wait(wctx, e); !errors.Is(err, context.Canceled) {
		t.Errorf("wait with a cancelled context: %v", err)
	}
	if c := fence.Completed(); c != 0 {
		t.Errorf("completed %d with the work pending", c)
	}
}

// TestDestroyReports: a failing cuEventDestroy is reported, the other
// events are still destroyed, and the fence holds none afterwards.
func TestDestroyReports(t *testing.T) {
	fence, ctx, f := newFence(t)
	// Two events complete and go to the pool; one is taken again for
	// pending work: the fence holds one pooled event and one pending.
	for range 2 {
		if _, err := fence.Record(); err != nil {
			t.Fatal(err)
		}
	}
	fence.Completed()
	f.Submit()
	if _, err := fence.Record(); err != nil {
		t.Fatal(err)
	}
	if live := f.Live(); live.Events != 2 {
		t.Fatalf("%d events, want 2", live.Events)
	}
	f.Inject("cuEventDestroy_v2", 1, cuda.CUDA_ERROR_INVALID_HANDLE)
	err := destroy(fence, ctx)
	if !errors.Is(err, cuda.ErrInvalidHandle) || !strings.Contains(err.Error(), "close: destroy events") {
		t.Fatalf("destroy: %v", err)
	}
	if live := f.Live(); live.Events != 1 {
		t.Errorf("%d events left, want the one whose destroy failed", live.Events)
	}
	if err := destroy(fence, ctx); err != nil {
		t.Errorf("second destroy: %v", err)
	}
}
