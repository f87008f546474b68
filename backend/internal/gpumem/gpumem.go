// Package gpumem holds what the two backends on a CUDA context (cudavmm and
// uvm) share about the GPU memory behind them: how much of it is free, and
// proof that mapped pages really hold data. For the proof a GPU kernel writes
// a word pattern unique to each page and tag, a second kernel counts the
// words that differ, and the host reads samples of every page back over PCIe.
//
// The two backends map pages in different ways; everything here depends only
// on the context, the page size and which addresses are mapped.
package gpumem

import (
	"fmt"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/cuda"
	"github.com/vattn/vattn/pagesize"
)

// MemInfo reports the free and total memory of the GPU that ctx is on.
func MemInfo(ctx *cuda.Ctx) (backend.MemInfo, error) {
	var mi backend.MemInfo
	err := ctx.Do(func(bd cuda.Bound) error {
		var err error
		mi.Free, mi.Total, err = bd.MemGetInfo()
		return err
	})
	if err != nil {
		return mi, fmt.Errorf("memory info: %w", err)
	}
	return mi, nil
}

// CheckMapped makes sure that [addr, addr+size) is whole pages of pageSize,
// all of them in mapped, before a kernel touches the range: a kernel touching
// an unmapped page faults and kills the context.
func CheckMapped(mapped map[uint64]backend.PageID, pageSize, addr, size uint64) error {
	if size == 0 || addr%pageSize != 0 || size%pageSize != 0 {
		return fmt.Errorf("pattern range %#x+%#x: %w", addr, size, backend.ErrMisaligned)
	}
	for a := addr; a < addr+size; a += pageSize {
		if _, ok := mapped[a]; !ok {
			return fmt.Errorf("pattern range %#x+%#x: page %#x %w", addr, size, a, backend.ErrNotMapped)
		}
	}
	return nil
}

// CheckReserveSize checks the size of a Reserve: whole pages, not zero.
func CheckReserveSize(size, pageSize uint64) error {
	if size == 0 {
		return fmt.Errorf("reserve 0 bytes: %w", backend.ErrBadArgument)
	}
	if size%pageSize != 0 {
		return fmt.Errorf("reserve %d bytes: %w (page size %s)", size, backend.ErrMisaligned, pagesize.Size(pageSize))
	}
	return nil
}

// CheckFence refuses to unmap pages that GPU work up to epoch fence may
// still read while the fence has completed only up to completed. Fence 0
// means no reader: nothing to wait for.
func CheckFence(pages int, fence, completed backend.Epoch) error {
	if fence != 0 && completed < fence {
		return fmt.Errorf("unmap %d pages: epoch %d, completed %d: %w", pages, fence, completed, backend.ErrFenceNotReached)
	}
	return nil
}

// CheckUnmap checks an Unmap batch before anything changes: the readers'
// epoch has completed (fence 0: none), and every address is page-aligned,
// mapped and listed once.
func CheckUnmap(mapped map[uint64]backend.PageID, pageSize uint64, addrs []uint64, fence, completed backend.Epoch) error {
	if err := CheckFence(len(addrs), fence, completed); err != nil {
		return err
	}
	seen := make(map[uint64]bool, len(addrs))
	for _, a := range addrs {
		if a%pageSize != 0 {
			return fmt.Errorf("unmap %#x: %w", a, backend.ErrMisaligned)
		}
		if _, ok := mapped[a]; !ok || seen[a] {
			return fmt.Errorf("unmap %#x: %w", a, backend.ErrNotMapped)
		}
		seen[a] = true
	}
	return nil
}
