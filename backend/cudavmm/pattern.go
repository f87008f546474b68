package cudavmm

import (
	"encoding/binary"
	"fmt"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/cuda"
)

// Pattern checks prove that mapped pages hold data: a GPU kernel writes a
// word pattern unique to each page and tag, a second kernel counts the words
// that differ, and the host reads samples of every page back over PCIe.

// CheckResult reports a pattern check.
type CheckResult struct {
	Pages          int    `json:"pages"`
	GPUMismatches  uint64 `json:"gpu_mismatched_words"`
	HostSampled    int    `json:"host_sampled_words"`
	HostMismatches int    `json:"host_mismatched_words"`
}

// OK reports whether every checked word matched.
func (c CheckResult) OK() bool { return c.GPUMismatches == 0 && c.HostMismatches == 0 }

// hostSampleWords is how many words the host reads at each end of a page.
const hostSampleWords = 64

// kernelsLocked loads the verification kernels once. b.mu is held.
func (b *Backend) kernelsLocked(bd cuda.Bound) (*cuda.Kernels, error) {
	if b.kernels == nil {
		k, err := cuda.LoadKernels(bd, b.dev.Device)
		if err != nil {
			return nil, err
		}
		b.kernels = k
	}
	return b.kernels, nil
}

// checkMapped makes sure every page of [addr, addr+size) is mapped: a kernel
// touching an unmapped page faults and kills the context.
func (b *Backend) checkMapped(addr, size uint64) error {
	if size == 0 || addr%b.size != 0 || size%b.size != 0 {
		return fmt.Errorf("pattern range %#x+%#x: %w", addr, size, backend.ErrMisaligned)
	}
	for a := addr; a < addr+size; a += b.size {
		if _, ok := b.mapped[a]; !ok {
			return fmt.Errorf("pattern range %#x+%#x: page %#x %w", addr, size, a, backend.ErrNotMapped)
		}
	}
	return nil
}

// Fill launches the fill kernel over the mapped range [addr, addr+size) on
// the backend's stream: page i of the range gets Pattern(i, word, tag).
// Record a fence afterwards before unmapping the range.
func (b *Backend) Fill(addr, size uint64, tag uint32) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return backend.ErrClosed
	}
	if err := b.checkMapped(addr, size); err != nil {
		return err
	}
	return b.ctx.Do(func(bd cuda.Bound) error {
		k, err := b.kernelsLocked(bd)
		if err != nil {
			return fmt.Errorf("fill: %w", err)
		}
		if err := k.Fill(bd, b.fence.stream, cuda.PatternRange{Base: cuda.DevicePtr(addr), Bytes: size, PageSize: b.size, Tag: tag}); err != nil {
			return fmt.Errorf("fill: %w", err)
		}
		return nil
	})
}

// Check verifies the pattern Fill wrote over [addr, addr+size): every word
// on the GPU, and hostSampleWords at each end of every page from the host.
// It waits for the backend's stream.
func (b *Backend) Check(addr, size uint64, tag uint32) (CheckResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	res := CheckResult{Pages: int(size / b.size)}
	if b.closed {
		return res, backend.ErrClosed
	}
	if err := b.checkMapped(addr, size); err != nil {
		return res, err
	}
	err := b.ctx.Do(func(bd cuda.Bound) error {
		k, err := b.kernelsLocked(bd)
		if err != nil {
			return err
		}
		res.GPUMismatches, err = k.Mismatches(bd, b.fence.stream, cuda.PatternRange{Base: cuda.DevicePtr(addr), Bytes: size, PageSize: b.size, Tag: tag})
		if err != nil {
			return err
		}
		buf := make([]byte, 4*hostSampleWords)
		words := uint32(b.size / 4)
		for i := range uint32(res.Pages) {
			page := addr + uint64(i)*b.size
			for _, first := range []uint32{0, words - hostSampleWords} {
				if err := bd.CopyDtoH(buf, cuda.DevicePtr(page+4*uint64(first))); err != nil {
					return err
				}
				for w := range uint32(hostSampleWords) {
					res.HostSampled++
					if binary.LittleEndian.Uint32(buf[4*w:]) != cuda.Pattern(i, first+w, tag) {
						res.HostMismatches++
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("check pattern: %w", err)
	}
	return res, nil
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
	return b.ctx.Do(func(bd cuda.Bound) error {
		k, err := b.kernelsLocked(bd)
		if err != nil {
			return fmt.Errorf("spin: %w", err)
		}
		return k.Spin(bd, b.fence.stream, cycles)
	})
}
