package cudavmm

import (
	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/backend/internal/gpumem"
	"github.com/vattn/vattn/cuda"
)

// Pattern checks prove that mapped pages hold data (see package gpumem, which
// the uvm backend shares).

// CheckResult reports a pattern check.
type CheckResult = gpumem.CheckResult

// patternRange checks that [addr, addr+size) can be filled or checked. b.mu
// is held.
func (b *Backend) patternRange(addr, size uint64, tag uint32) (cuda.PatternRange, error) {
	if b.closed {
		return cuda.PatternRange{}, backend.ErrClosed
	}
	if err := gpumem.CheckMapped(b.mapped, b.size, addr, size); err != nil {
		return cuda.PatternRange{}, err
	}
	return cuda.PatternRange{Base: cuda.DevicePtr(addr), Bytes: size, PageSize: b.size, Tag: tag}, nil
}

// Fill launches the fill kernel over the mapped range [addr, addr+size) on
// the backend's stream: page i of the range gets Pattern(i, word, tag).
// Record a fence afterwards before unmapping the range.
func (b *Backend) Fill(addr, size uint64, tag uint32) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, err := b.patternRange(addr, size, tag)
	if err != nil {
		return err
	}
	return b.verify.Fill(b.fence.Stream(), r)
}

// Check verifies the pattern Fill wrote over [addr, addr+size): every word
// on the GPU, and gpumem.HostSampleWords at each end of every page from the
// host. It waits for the backend's stream.
func (b *Backend) Check(addr, size uint64, tag uint32) (CheckResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, err := b.patternRange(addr, size, tag)
	if err != nil {
		return CheckResult{Pages: int(size / b.size)}, err
	}
	return b.verify.Check(b.fence.Stream(), r)
}

// Spin keeps the backend's stream busy for cycles GPU clocks (about a
// second per 2e9 on an H100), so callers can test what happens to mappings
// while GPU work is pending.
func (b *Backend) Spin(cycles uint64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return backend.ErrClosed
	}
	return b.verify.Spin(b.fence.Stream(), cycles)
}
