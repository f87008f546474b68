package gpumem

import (
	"encoding/binary"
	"fmt"

	"github.com/vattn/vattn/cuda"
)

// CheckResult reports a pattern check.
type CheckResult struct {
	Pages          int    `json:"pages"`
	GPUMismatches  uint64 `json:"gpu_mismatched_words"`
	HostSampled    int    `json:"host_sampled_words"`
	HostMismatches int    `json:"host_mismatched_words"`
}

// OK reports whether every checked word matched.
func (c CheckResult) OK() bool { return c.GPUMismatches == 0 && c.HostMismatches == 0 }

// HostSampleWords is how many words the host reads at each end of a page.
const HostSampleWords = 64

// Verifier runs the verification kernels on one context, loading them on
// first use (JIT-compiling them costs time that a backend that never
// verifies should not pay). It is not safe for concurrent use: the backend
// owning it calls it under its lock, and only on ranges CheckMapped accepted.
type Verifier struct {
	ctx     *cuda.Ctx
	dev     cuda.Device
	kernels *cuda.Kernels
	// gather: the host reads its samples through a GPU kernel that copies
	// them into CUDA memory, because CUDA's copy functions refuse the
	// pages themselves (memory nvidia-uvm mapped, which CUDA does not know).
	gather bool
}

// NewVerifier returns a verifier for ctx, whose scratch memory goes on dev.
// The host reads samples of the pages straight from their addresses.
func NewVerifier(ctx *cuda.Ctx, dev cuda.Device) *Verifier {
	return &Verifier{ctx: ctx, dev: dev}
}

// NewGatheringVerifier is NewVerifier for pages CUDA's copy functions
// refuse: the host reads its samples after a kernel gathered them into CUDA
// memory.
func NewGatheringVerifier(ctx *cuda.Ctx, dev cuda.Device) *Verifier {
	return &Verifier{ctx: ctx, dev: dev, gather: true}
}

func (v *Verifier) load(bd cuda.Bound) (*cuda.Kernels, error) {
	if v.kernels == nil {
		k, err := cuda.LoadKernels(bd, v.dev)
		if err != nil {
			return nil, err
		}
		v.kernels = k
	}
	return v.kernels, nil
}

// Fill launches the fill kernel over r on stream s: page i of the range gets
// cuda.Pattern(r.Page0+i, word, r.Tag). It does not wait for the kernel.
func (v *Verifier) Fill(s cuda.Stream, r cuda.PatternRange) error {
	return v.ctx.Do(func(bd cuda.Bound) error {
		k, err := v.load(bd)
		if err != nil {
			return fmt.Errorf("fill: %w", err)
		}
		if err := k.Fill(bd, s, r); err != nil {
			return fmt.Errorf("fill: %w", err)
		}
		return nil
	})
}

// Check verifies the pattern Fill wrote over r: every word on the GPU (after
// the work queued on stream s), and HostSampleWords at each end of every
// page from the host.
func (v *Verifier) Check(s cuda.Stream, r cuda.PatternRange) (CheckResult, error) {
	res := CheckResult{Pages: int(r.Bytes / r.PageSize)}
	err := v.ctx.Do(func(bd cuda.Bound) error {
		k, err := v.load(bd)
		if err != nil {
			return err
		}
		res.GPUMismatches, err = k.Mismatches(bd, s, r)
		if err != nil {
			return err
		}
		words := uint32(r.PageSize / 4)
		if v.gather {
			got, err := k.Samples(bd, s, r, HostSampleWords)
			if err != nil {
				return err
			}
			for i, w := range got {
				page, k := uint32(i)/(2*HostSampleWords), uint32(i)%(2*HostSampleWords)
				word := k
				if k >= HostSampleWords {
					word = words - 2*HostSampleWords + k
				}
				res.HostSampled++
				if w != cuda.Pattern(r.Page0+page, word, r.Tag) {
					res.HostMismatches++
				}
			}
			return nil
		}
		buf := make([]byte, 4*HostSampleWords)
		for i := range uint32(res.Pages) {
			page := uint64(r.Base) + uint64(i)*r.PageSize
			for _, first := range []uint32{0, words - HostSampleWords} {
				if err := bd.CopyDtoH(buf, cuda.DevicePtr(page+4*uint64(first))); err != nil {
					return err
				}
				for w := range uint32(HostSampleWords) {
					res.HostSampled++
					if binary.LittleEndian.Uint32(buf[4*w:]) != cuda.Pattern(r.Page0+i, first+w, r.Tag) {
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

// Spin keeps stream s busy for cycles GPU clocks (about a second per 2e9 on
// an H100), so callers can test what happens to mappings while GPU work is
// pending.
func (v *Verifier) Spin(s cuda.Stream, cycles uint64) error {
	return v.ctx.Do(func(bd cuda.Bound) error {
		k, err := v.load(bd)
		if err != nil {
			return fmt.Errorf("spin: %w", err)
		}
		return k.Spin(bd, s, cycles)
	})
}

// Close unloads the kernels if they were loaded; bd must be bound to the
// verifier's context.
func (v *Verifier) Close(bd cuda.Bound) error {
	if v.kernels == nil {
		return nil
	}
	err := v.kernels.Close(bd)
	v.kernels = nil
	if err != nil {
		return fmt.Errorf("verification kernels: %w", err)
	}
	return nil
}
