package cudavmm

import (
	"context"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/cuda"
)

// EventFence is the CUDA-event fence this backend uses, exported for the uvm
// backend, which needs the same thing: the patched driver cannot see CUDA
// streams either, so pages are unmapped only after an event shows the GPU
// work that read them has finished.
type EventFence struct{ f *eventFence }

var _ backend.Fence = EventFence{}

// NewEventFence returns a fence recording events on stream s of ctx.
func NewEventFence(ctx *cuda.Ctx, s cuda.Stream) EventFence {
	return EventFence{&eventFence{ctx: ctx, stream: s}}
}

// Record implements backend.Fence.
func (e EventFence) Record() (backend.Epoch, error) { return e.f.Record() }

// Completed implements backend.Fence.
func (e EventFence) Completed() backend.Epoch { return e.f.Completed() }

// Wait implements backend.Fence.
func (e EventFence) Wait(ctx context.Context, ep backend.Epoch) error { return e.f.Wait(ctx, ep) }

// Destroy releases the fence's events; b must be bound to its context.
func (e EventFence) Destroy(b cuda.Bound) error { return e.f.destroy(b) }
