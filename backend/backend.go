// Package backend defines what the allocator needs from a GPU memory driver:
// reserve virtual ranges, create physical pages, map and unmap them in
// batches, and know when GPU work that may read a page has finished (the
// fence). Implementations live in sub-packages: sim (an in-memory model of
// the drivers, runs anywhere), cudavmm (the stock CUDA VMM API, 2 MiB pages)
// and uvm (the patched nvidia-uvm driver, 64–256 KiB pages).
//
// The contract every implementation keeps:
//   - Map is all or nothing: on error no mapping of the batch remains.
//   - Unmap and Release are checked before anything changes: a bad address
//     in a batch changes nothing.
//   - A page is unmapped only after the GPU work that may read it has
//     completed: Unmap takes the epoch after which nothing reads the pages,
//     and fails with ErrFenceNotReached if that epoch has not completed.
//   - Close releases everything the backend still holds, mapped or not.
//
// A Backend is safe for use by one goroutine at a time; kvcache serializes
// its own foreground and background callers.
package backend

import (
	"github.com/vattn/vattn/pagesize"
)

// PageID names one physical page. Its value means something only to the
// backend that made it.
type PageID uint64

// Region is a reserved range of device virtual addresses with no physical
// memory behind it until pages are mapped.
type Region struct {
	Addr uint64 // device virtual address of the first byte: what kernels read
	Size uint64 // bytes, a multiple of the page size
}

// End returns the first address after the region.
func (r Region) End() uint64 { return r.Addr + r.Size }

// Contains reports whether [addr, addr+n) lies inside the region.
func (r Region) Contains(addr, n uint64) bool {
	return addr >= r.Addr && n <= r.Size && addr-r.Addr <= r.Size-n
}

// Mapping places physical page Page at device address Addr, which must be
// page-aligned and inside a reserved region.
type Mapping struct {
	Addr uint64
	Page PageID
}

// Backend is a GPU memory driver as the allocator sees it.
type Backend interface {
	// Name is a short identifier: "sim", "cudavmm", "uvm".
	Name() string
	// PageSize is the size of every physical page this backend makes.
	PageSize() pagesize.Size
	// Reserve sets aside size bytes of virtual address space (a multiple of
	// the page size), with no physical memory behind it.
	Reserve(size uint64) (Region, error)
	// Release returns a reserved region; no page may be mapped in it.
	Release(r Region) error
	// AllocPages creates n physical pages, unmapped, and returns their IDs.
	// On error no page was created.
	AllocPages(n int) ([]PageID, error)
	// FreePages destroys unmapped pages.
	FreePages(pages []PageID) error
	// Map applies a batch of mappings, all or nothing.
	Map(maps []Mapping) error
	// Unmap removes the mappings at the given page addresses. fence is the
	// epoch after which no GPU work reads those pages; it must have
	// completed (Fence().Completed() >= fence), else ErrFenceNotReached and
	// nothing changes. Pass 0 for pages no GPU work was ever given.
	Unmap(addrs []uint64, fence Epoch) error
	// Fence tells how far GPU work has progressed.
	Fence() Fence
	// MemInfo reports the device memory the backend sees.
	MemInfo() (MemInfo, error)
	// Close releases everything still held: mappings, pages, regions.
	// The backend is unusable afterwards.
	Close() error
}

// CallCounter is implemented by backends that cut a Map or Unmap batch into
// several driver calls (the stock nvidia-uvm path maps one run of
// consecutive pages per call, and its cost is per call). Allocators report
// the counts so that the cost of a step can be read in the driver's terms.
type CallCounter interface {
	// DriverCalls returns the driver calls Map and Unmap have made so far.
	DriverCalls() (mapCalls, unmapCalls uint64)
}

// MemInfo is the device memory as a backend sees it.
type MemInfo struct {
	Total uint64 // bytes of device memory
	Free  uint64 // bytes not yet claimed
}
