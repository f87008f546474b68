// Package cudavmm is the Backend on the stock NVIDIA driver's virtual memory
// management API: physical pages are cuMemCreate allocations of 2 MiB of
// pinned device memory, mapping is cuMemMap plus cuMemSetAccess into ranges
// from cuMemAddressReserve, and the fence is CUDA events recorded on the
// caller's stream.
//
// The driver does not wait for running kernels when a page is unmapped
// (a 128 MB unmap was measured returning while a kernel read it), so the
// backend refuses to unmap pages whose fence epoch has not completed.
package cudavmm

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/backend/internal/eventfence"
	"github.com/vattn/vattn/backend/internal/gpumem"
	"github.com/vattn/vattn/cuda"
	"github.com/vattn/vattn/pagesize"
)

// AccessMode says how Map sets access on newly mapped pages.
type AccessMode int

const (
	// AccessPerRun calls cuMemSetAccess once per run of contiguous pages in
	// a batch. Measured on an H100 it is the faster mode (docs/results.md),
	// so it is the default.
	AccessPerRun AccessMode = iota
	// AccessPerPage calls cuMemSetAccess once per page, as vAttention does.
	AccessPerPage
)

func (m AccessMode) String() string {
	if m == AccessPerPage {
		return "page"
	}
	return "run"
}

// Options configure a backend.
type Options struct {
	// Device is the GPU: an index or UUID as nvidia-smi's -i takes; "" is GPU 0.
	Device string
	// PageSize must be 2 MiB (the default when zero): the stock driver maps
	// nothing smaller.
	PageSize pagesize.Size
	// Stream is the stream whose work the fence tracks. 0 is the legacy
	// default stream, which orders after work on every blocking stream of
	// the context, so a fence recorded there covers all such work.
	Stream cuda.Stream
	// Access chooses how access is set; AccessPerRun by default.
	Access AccessMode
	// Lib is the driver to use; nil loads libcuda (tests pass a fake).
	Lib *cuda.Lib
}

// Backend implements backend.Backend on the CUDA VMM API.
type Backend struct {
	mu      sync.Mutex
	lib     *cuda.Lib
	ctx     *cuda.Ctx
	dev     cuda.DeviceInfo
	size    uint64
	prop    cuda.AllocationProp
	access  cuda.AccessDesc
	mode    AccessMode
	regions []backend.Region // sorted by address
	pages   pageTable
	mapped  map[uint64]backend.PageID
	fence   *eventfence.Fence
	verify  *gpumem.Verifier
	closed  bool

	gen           uint64 // Map calls so far, for page marks
	scratch       []backend.Mapping
	scratchRegion []uint64
	scratchPages  []*page
	handles       []cuda.MemHandle
}

var _ backend.Backend = (*Backend)(nil)

// New opens the GPU, retains its primary context and checks that it can map
// pages of the asked-for size. Errors match backend.ErrUnavailable when the
// machine cannot run it (no libcuda, no GPU, no VMM support), and
// cuda.ErrDeviceNotFound for a GPU that does not exist.
func New(opts Options) (_ *Backend, err error) {
	lib := opts.Lib
	if lib == nil {
		if lib, err = cuda.Load(); err != nil {
			return nil, fmt.Errorf("cudavmm: %w", err)
		}
	}
	dev, err := lib.SelectDevice(opts.Device)
	if err != nil {
		return nil, fmt.Errorf("cudavmm: %w", err)
	}
	if !dev.VMM {
		return nil, fmt.Errorf("cudavmm: GPU %d (%s) does not support virtual memory management: %w", dev.Index, dev.Name, backend.ErrUnavailable)
	}
	size := opts.PageSize
	if size == 0 {
		size = pagesize.Size2M
	}
	b := &Backend{
		lib:    lib,
		dev:    dev,
		size:   size.Bytes(),
		prop:   cuda.DeviceProp(dev.Device),
		mode:   opts.Access,
		mapped: map[uint64]backend.PageID{},
	}
	b.access = cuda.AccessDesc{Location: b.prop.Location, Flags: cuda.CU_MEM_ACCESS_FLAGS_PROT_READWRITE}
	if b.ctx, err = lib.Retain(dev); err != nil {
		return nil, fmt.Errorf("cudavmm: %w", err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, b.ctx.Release())
		}
	}()
	var gran uint64
	err = b.ctx.Do(func(bd cuda.Bound) error {
		var err error
		gran, err = bd.Granularity(&b.prop, cuda.CU_MEM_ALLOC_GRANULARITY_MINIMUM)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cudavmm: allocation granularity: %w", err)
	}
	if size.Bytes() != gran {
		return nil, fmt.Errorf("cudavmm: page size %s on GPU %d: the CUDA VMM API maps %s pages (its granularity); smaller pages go through nvidia-uvm (the uvm backend, on the stock driver): %w",
			size, dev.Index, pagesize.Size(gran), pagesize.ErrUnsupported)
	}
	b.fence = eventfence.New(b.ctx, opts.Stream)
	b.verify = gpumem.NewVerifier(b.ctx, dev.Device)
	return b, nil
}

// Name implements backend.Backend.
func (b *Backend) Name() string { return "cudavmm" }

// PageSize implements backend.Backend.
func (b *Backend) PageSize() pagesize.Size { return pagesize.Size(b.size) }

// Device returns the GPU the backend maps on.
func (b *Backend) Device() cuda.DeviceInfo { return b.dev }

// Context returns the retained primary context, for launching work on the
// mapped memory.
func (b *Backend) Context() *cuda.Ctx { return b.ctx }

// Access returns how Map sets access.
func (b *Backend) Access() AccessMode { return b.mode }

// Fence implements backend.Backend.
func (b *Backend) Fence() backend.Fence { return b.fence }

// Reserve implements backend.Backend.
func (b *Backend) Reserve(size uint64) (backend.Region, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return backend.Region{}, backend.ErrClosed
	}
	if err := gpumem.CheckReserveSize(size, b.size); err != nil {
		return backend.Region{}, err
	}
	var p cuda.DevicePtr
	err := b.ctx.Do(func(bd cuda.Bound) error {
		var err error
		p, err = bd.AddressReserve(size, b.size)
		return err
	})
	if err != nil {
		return backend.Region{}, fmt.Errorf("reserve %d bytes: %w", size, err)
	}
	r := backend.Region{Addr: uint64(p), Size: size}
	i, _ := slices.BinarySearchFunc(b.regions, r.Addr, func(x backend.Region, a uint64) int { return cmp.Compare(x.Addr, a) })
	b.regions = slices.Insert(b.regions, i, r)
	return r, nil
}

// Release implements backend.Backend.
func (b *Backend) Release(r backend.Region) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return backend.ErrClosed
	}
	i, found := slices.BinarySearchFunc(b.regions, r.Addr, func(x backend.Region, a uint64) int { return cmp.Compare(x.Addr, a) })
	if !found || b.regions[i] != r {
		return fmt.Errorf("release region %#x+%#x: %w", r.Addr, r.Size, backend.ErrOutOfRange)
	}
	for a := range b.mapped {
		if r.Contains(a, b.size) {
			return fmt.Errorf("release region %#x+%#x: %w", r.Addr, r.Size, backend.ErrRegionInUse)
		}
	}
	err := b.ctx.Do(func(bd cuda.Bound) error { return bd.AddressFree(cuda.DevicePtr(r.Addr), r.Size) })
	if err != nil {
		return fmt.Errorf("release region %#x+%#x: %w", r.Addr, r.Size, err)
	}
	b.regions = slices.Delete(b.regions, i, i+1)
	return nil
}

// AllocPages implements backend.Backend: n cuMemCreate calls, all undone if
// one fails.
func (b *Backend) AllocPages(n int) ([]backend.PageID, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, backend.ErrClosed
	}
	if n <= 0 {
		return nil, fmt.Errorf("allocate %d pages: %w", n, backend.ErrBadArgument)
	}
	if cap(b.handles) < n {
		b.handles = make([]cuda.MemHandle, n)
	}
	handles := b.handles[:n]
	bd, err := b.ctx.Enter()
	if err != nil {
		return nil, fmt.Errorf("allocate %d pages: %w", n, err)
	}
	for i := range handles {
		if err := bd.MemCreateAt(&handles[i], b.size, &b.prop); err != nil {
			undo := []error{err}
			for _, h := range handles[:i] {
				undo = append(undo, bd.MemRelease(h))
			}
			b.ctx.Exit()
			return nil, fmt.Errorf("allocate %d pages of %s: %w", n, pagesize.Size(b.size), errors.Join(undo...))
		}
	}
	b.ctx.Exit()
	ids := make([]backend.PageID, n)
	for i, h := range handles {
		ids[i] = b.pages.add(h)
	}
	return ids, nil
}

// FreePages implements backend.Backend. Every page is checked first; a bad
// one frees nothing.
func (b *Backend) FreePages(ids []backend.PageID) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return backend.ErrClosed
	}
	b.gen++
	for _, id := range ids {
		p := b.pages.get(id)
		switch {
		case p == nil || p.mark == b.gen:
			return fmt.Errorf("free page %d: %w", id, backend.ErrUnknownPage)
		case p.addr != 0:
			return fmt.Errorf("free page %d: %w at %#x", id, backend.ErrPageMapped, p.addr)
		}
		p.mark = b.gen
	}
	bd, err := b.ctx.Enter()
	if err != nil {
		return fmt.Errorf("free pages: %w", err)
	}
	defer b.ctx.Exit()
	var errs []error
	for _, id := range ids {
		if err := bd.MemRelease(b.pages.get(id).handle); err != nil {
			errs = append(errs, fmt.Errorf("free page %d: %w", id, err))
			continue
		}
		b.pages.remove(id)
	}
	return errors.Join(errs...)
}

// regionOf returns the region holding [addr, addr+size).
func (b *Backend) regionOf(addr uint64) (backend.Region, bool) {
	i, found := slices.BinarySearchFunc(b.regions, addr, func(x backend.Region, a uint64) int { return cmp.Compare(x.Addr, a) })
	if !found {
		i--
	}
	if i < 0 || i >= len(b.regions) || !b.regions[i].Contains(addr, b.size) {
		return backend.Region{}, false
	}
	return b.regions[i], true
}

// Map implements backend.Backend. The batch is checked in full before the
// driver is called; if a driver call fails, every mapping the batch made is
// undone.
func (b *Backend) Map(maps []backend.Mapping) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return backend.ErrClosed
	}
	if len(maps) == 0 {
		return nil
	}
	// Scratch space and page marks are reused across calls so that the hot
	// path (one page per call, as vAttention maps) allocates nothing.
	b.gen++
	sorted := append(b.scratch[:0], maps...)
	if !slices.IsSortedFunc(sorted, func(x, y backend.Mapping) int { return cmp.Compare(x.Addr, y.Addr) }) {
		slices.SortFunc(sorted, func(x, y backend.Mapping) int { return cmp.Compare(x.Addr, y.Addr) })
	}
	b.scratch = sorted
	if cap(b.scratchRegion) < len(sorted) {
		b.scratchRegion = make([]uint64, len(sorted))
		b.scratchPages = make([]*page, len(sorted))
	}
	regionOf := b.scratchRegion[:len(sorted)] // region start of each: runs end at region ends
	pages := b.scratchPages[:len(sorted)]
	for i, m := range sorted {
		if m.Addr%b.size != 0 {
			return fmt.Errorf("map page %d at %#x: %w", m.Page, m.Addr, backend.ErrMisaligned)
		}
		r, ok := b.regionOf(m.Addr)
		if !ok {
			return fmt.Errorf("map page %d at %#x: %w", m.Page, m.Addr, backend.ErrOutOfRange)
		}
		regionOf[i] = r.Addr
		if _, busy := b.mapped[m.Addr]; busy || (i > 0 && sorted[i-1].Addr == m.Addr) {
			return fmt.Errorf("map page %d at %#x: address %w", m.Page, m.Addr, backend.ErrAlreadyMapped)
		}
		p := b.pages.get(m.Page)
		if p == nil {
			return fmt.Errorf("map page %d at %#x: %w", m.Page, m.Addr, backend.ErrUnknownPage)
		}
		if p.addr != 0 || p.mark == b.gen {
			return fmt.Errorf("map page %d at %#x: page %w", m.Page, m.Addr, backend.ErrAlreadyMapped)
		}
		p.mark = b.gen
		pages[i] = p
	}
	bd, err := b.ctx.Enter()
	if err != nil {
		return fmt.Errorf("map %d pages: %w", len(maps), err)
	}
	defer b.ctx.Exit()
	done, err := b.mapRuns(bd, sorted, regionOf, pages) // sorted[:done] are mapped in the driver
	if err != nil {
		var undo []error
		for _, m := range sorted[:done] {
			undo = append(undo, bd.MemUnmap(cuda.DevicePtr(m.Addr), b.size))
		}
		if undoErr := errors.Join(undo...); undoErr != nil {
			// The driver kept mappings we could not undo: record them so
			// Close still unmaps them, and say so.
			for i, m := range sorted[:done] {
				b.mapped[m.Addr] = m.Page
				pages[i].addr = m.Addr
			}
			return fmt.Errorf("%w (undoing the batch also failed: %v)", err, undoErr)
		}
		return err
	}
	for i, m := range sorted {
		b.mapped[m.Addr] = m.Page
		pages[i].addr = m.Addr
	}
	return nil
}

// mapRuns maps sorted (checked by Map) and sets access once per run of
// contiguous pages in one region (AccessPerRun) or once per page. It
// returns how many pages it mapped, for undoing.
func (b *Backend) mapRuns(bd cuda.Bound, sorted []backend.Mapping, regionOf []uint64, pages []*page) (done int, err error) {
	for start := 0; start < len(sorted); {
		end := start + 1
		if b.mode == AccessPerRun {
			for end < len(sorted) && sorted[end].Addr == sorted[end-1].Addr+b.size && regionOf[end] == regionOf[start] {
				end++
			}
		}
		for i := start; i < end; i++ {
			m := sorted[i]
			if err := bd.MemMap(cuda.DevicePtr(m.Addr), b.size, pages[i].handle); err != nil {
				return done, fmt.Errorf("map page %d at %#x: %w", m.Page, m.Addr, err)
			}
			done++
		}
		first := sorted[start].Addr
		if err := bd.SetAccess(cuda.DevicePtr(first), uint64(end-start)*b.size, &b.access); err != nil {
			return done, fmt.Errorf("set access on %d pages at %#x: %w", end-start, first, err)
		}
		start = end
	}
	return done, nil
}

// Unmap implements backend.Backend.
func (b *Backend) Unmap(addrs []uint64, fence backend.Epoch) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return backend.ErrClosed
	}
	// Completed polls the driver: an unmap with no readers (fence 0) skips it.
	if fence != 0 {
		if err := gpumem.CheckFence(len(addrs), fence, b.fence.Completed()); err != nil {
			return err
		}
	}
	b.gen++
	for _, a := range addrs {
		if a%b.size != 0 {
			return fmt.Errorf("unmap %#x: %w", a, backend.ErrMisaligned)
		}
		id, ok := b.mapped[a]
		if !ok || b.pages.get(id).mark == b.gen {
			return fmt.Errorf("unmap %#x: %w", a, backend.ErrNotMapped)
		}
		b.pages.get(id).mark = b.gen
	}
	bd, err := b.ctx.Enter()
	if err != nil {
		return fmt.Errorf("unmap: %w", err)
	}
	defer b.ctx.Exit()
	var errs []error
	for _, a := range addrs {
		if err := bd.MemUnmap(cuda.DevicePtr(a), b.size); err != nil {
			errs = append(errs, fmt.Errorf("unmap %#x: %w", a, err))
			continue
		}
		b.pages.get(b.mapped[a]).addr = 0
		delete(b.mapped, a)
	}
	return errors.Join(errs...)
}

// MemInfo implements backend.Backend.
func (b *Backend) MemInfo() (backend.MemInfo, error) { return gpumem.MemInfo(b.ctx) }

// Held counts what the backend holds: reserved regions, pages, mapped pages.
func (b *Backend) Held() (regions, pages, mapped int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.regions), b.pages.live, len(b.mapped)
}

// Close implements backend.Backend: it unmaps every page, releases every
// page and region, destroys the fence's events and drops the context. It
// does not wait for GPU work; the caller must have finished using the
// memory. Every step is tried even when an earlier one fails.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	var errs []error
	err := b.ctx.Do(func(bd cuda.Bound) error {
		if err := b.verify.Close(bd); err != nil {
			errs = append(errs, fmt.Errorf("close: %w", err))
		}
		for a := range b.mapped {
			if err := bd.MemUnmap(cuda.DevicePtr(a), b.size); err != nil {
				errs = append(errs, fmt.Errorf("close: unmap %#x: %w", a, err))
			}
		}
		b.pages.each(func(id backend.PageID, p *page) {
			if err := bd.MemRelease(p.handle); err != nil {
				errs = append(errs, fmt.Errorf("close: free page %d: %w", id, err))
			}
		})
		for _, r := range b.regions {
			if err := bd.AddressFree(cuda.DevicePtr(r.Addr), r.Size); err != nil {
				errs = append(errs, fmt.Errorf("close: release region %#x: %w", r.Addr, err))
			}
		}
		errs = append(errs, b.fence.Destroy(bd))
		return nil
	})
	errs = append(errs, err, b.ctx.Release())
	b.mapped, b.pages, b.regions = nil, pageTable{}, nil
	return errors.Join(errs...)
}
