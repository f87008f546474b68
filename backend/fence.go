package backend

import (
	"context"
	"fmt"
	"sync"
)

// Epoch numbers points in the stream of GPU work, in submission order. The
// epoch returned by Fence.Record covers all work submitted before the call.
// Epoch 0 is "before any work": it is always complete.
type Epoch uint64

// Fence orders page reuse after the GPU work that may still read a page.
//
// The allocator records an epoch when a slot stops being used (its pages may
// be read by work submitted up to then), and unmaps or hands those pages to
// another slot only once that epoch has completed. GPU backends implement
// Record with a CUDA event on the caller's stream; the simulator and callers
// without a GPU use a ManualFence that the caller advances.
type Fence interface {
	// Record marks the current end of submitted work and returns its epoch.
	// Epochs are strictly increasing.
	Record() (Epoch, error)
	// Completed returns the highest epoch whose work has finished. It never
	// blocks.
	Completed() Epoch
	// Wait blocks until epoch e has completed or ctx is done.
	Wait(ctx context.Context, e Epoch) error
}

// ManualFence is a Fence whose completion the caller reports: Record returns
// the next epoch, and Complete declares work up to an epoch finished. With
// Auto set, every recorded epoch is complete at once (a GPU that is never
// behind), which is what a caller that synchronizes after each step has.
type ManualFence struct {
	mu        sync.Mutex
	cond      *sync.Cond
	recorded  Epoch
	completed Epoch
	auto      bool
}

// NewManualFence returns a fence at epoch 0. With auto, work completes as
// soon as it is recorded.
func NewManualFence(auto bool) *ManualFence {
	f := &ManualFence{auto: auto}
	f.cond = sync.NewCond(&f.mu)
	return f
}

// Record implements Fence.
func (f *ManualFence) Record() (Epoch, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.recorded++
	if f.auto {
		f.completed = f.recorded
		f.cond.Broadcast()
	}
	return f.recorded, nil
}

// Recorded returns the newest epoch handed out by Record.
func (f *ManualFence) Recorded() Epoch {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.recorded
}

// Completed implements Fence.
func (f *ManualFence) Completed() Epoch {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.completed
}

// Complete declares all work up to epoch e finished. Completing an epoch
// that was never recorded is an error; completing an older one is a no-op.
func (f *ManualFence) Complete(e Epoch) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e > f.recorded {
		return fmt.Errorf("complete epoch %d: only %d recorded", e, f.recorded)
	}
	if e > f.completed {
		f.completed = e
		f.cond.Broadcast()
	}
	return nil
}

// CompleteAll declares every recorded epoch finished.
func (f *ManualFence) CompleteAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.completed = f.recorded
	f.cond.Broadcast()
}

// Wait implements Fence. An epoch that was never recorded would never
// complete, so waiting for one is an error rather than a hang.
func (f *ManualFence) Wait(ctx context.Context, e Epoch) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e > f.recorded {
		return fmt.Errorf("wait for epoch %d: only %d recorded", e, f.recorded)
	}
	if f.completed >= e {
		return nil
	}
	stop := context.AfterFunc(ctx, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.cond.Broadcast()
	})
	defer stop()
	for f.completed < e {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("wait for epoch %d: %w", e, err)
		}
		f.cond.Wait()
	}
	return nil
}
