// Package eventfence is the backend.Fence of the two backends on a CUDA
// context, cudavmm and uvm. Neither the VMM API nor nvidia-uvm sees CUDA
// streams, so both unmap pages only after a CUDA event recorded on the
// caller's stream shows that the GPU work that read them has finished.
package eventfence

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/cuda"
)

// Fence is a backend.Fence on CUDA events: Record records an event on
// the stream, Completed queries pending events oldest first (work on one
// stream completes in order), Wait polls with a growing sleep so that a
// cancelled ctx is noticed within a millisecond and waiting costs no CPU.
// Events are pooled: a completed one is reused by the next Record.
type Fence struct {
	ctx    *cuda.Ctx
	stream cuda.Stream

	mu        sync.Mutex
	recorded  backend.Epoch
	completed backend.Epoch
	pending   []pendingEvent // oldest first
	pool      []cuda.Event
	err       error // a failed query: the work behind it will never complete
}

type pendingEvent struct {
	epoch backend.Epoch
	ev    cuda.Event
}

var _ backend.Fence = (*Fence)(nil)

// New returns a fence recording events on stream s of ctx.
func New(ctx *cuda.Ctx, s cuda.Stream) *Fence {
	return &Fence{ctx: ctx, stream: s}
}

// Stream returns the stream the fence records on: work launched there is
// what Record covers.
func (f *Fence) Stream() cuda.Stream { return f.stream }

// Record implements backend.Fence.
func (f *Fence) Record() (backend.Epoch, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return 0, fmt.Errorf("record fence: %w", f.err)
	}
	var e backend.Epoch
	err := f.ctx.Do(func(b cuda.Bound) error {
		var ev cuda.Event
		if n := len(f.pool); n > 0 {
			ev = f.pool[n-1]
			f.pool = f.pool[:n-1]
		} else {
			var err error
			if ev, err = b.EventCreate(cuda.CU_EVENT_DISABLE_TIMING); err != nil {
				return err
			}
		}
		if err := b.EventRecord(ev, f.stream); err != nil {
			f.pool = append(f.pool, ev)
			return err
		}
		f.recorded++
		e = f.recorded
		f.pending = append(f.pending, pendingEvent{epoch: e, ev: ev})
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("record fence: %w", err)
	}
	return e, nil
}

// poll retires completed events. f.mu is held.
func (f *Fence) poll() {
	if len(f.pending) == 0 || f.err != nil {
		return
	}
	err := f.ctx.Do(func(b cuda.Bound) error {
		for len(f.pending) > 0 {
			p := f.pending[0]
			done, err := b.EventQuery(p.ev)
			if err != nil {
				return err
			}
			if !done {
				return nil
			}
			f.completed = p.epoch
			f.pool = append(f.pool, p.ev)
			f.pending = f.pending[1:]
		}
		return nil
	})
	if err != nil {
		f.err = err
	}
}

// Completed implements backend.Fence. If the driver reports an error for
// the work (a faulting kernel), nothing after it completes; Wait and Record
// return that error.
func (f *Fence) Completed() backend.Epoch {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.poll()
	return f.completed
}

// Wait implements backend.Fence.
func (f *Fence) Wait(ctx context.Context, e backend.Epoch) error {
	sleep := 20 * time.Microsecond
	for {
		f.mu.Lock()
		if e > f.recorded {
			r := f.recorded
			f.mu.Unlock()
			return fmt.Errorf("wait for epoch %d: only %d recorded", e, r)
		}
		f.poll()
		done, err := f.completed >= e, f.err
		f.mu.Unlock()
		if done {
			return nil
		}
		if err != nil {
			return fmt.Errorf("wait for epoch %d: %w", e, err)
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("wait for epoch %d: %w", e, err)
		}
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("wait for epoch %d: %w", e, ctx.Err())
		case <-t.C:
		}
		if sleep < time.Millisecond {
			sleep *= 2
		}
	}
}

// Destroy releases every event; b must be bound to the fence's context.
// The backends call it from Close.
func (f *Fence) Destroy(b cuda.Bound) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	for _, p := range f.pending {
		errs = append(errs, b.EventDestroy(p.ev))
	}
	for _, ev := range f.pool {
		errs = append(errs, b.EventDestroy(ev))
	}
	f.pending, f.pool = nil, nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close: destroy events: %w", err)
	}
	return nil
}
