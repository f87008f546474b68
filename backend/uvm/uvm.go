// Package uvm is the Backend on the vattn-patched nvidia-uvm driver: physical
// pages of 64 KiB to 2 MiB allocated, mapped, unmapped and freed with the batched
// ioctls of kernel/nvidia-uvm-patch/uvm_vattn_ioctl.h, issued on the CUDA driver's
// own /dev/nvidia-uvm file so that the page tables written are the ones CUDA
// kernels walk. Reserved ranges are managed allocations (cuMemAllocManaged):
// ranges UVM tracks as its own, which is what the module maps into.
//
// It also answers the question every tool asks first — is the patched module
// loaded? — with ProbeDevice (admin tools, no CUDA) and ProbeProcess (inside a
// process with a CUDA context).
//
// The driver waits for its own page-table work (MAP returns once the PTEs and
// the TLB invalidate are done), but cannot see CUDA streams, so, as with the
// cudavmm backend, pages are unmapped only after a CUDA event shows that the GPU
// work reading them has finished.
package uvm

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/backend/cudavmm"
	"github.com/vattn/vattn/backend/internal/gpumem"
	"github.com/vattn/vattn/cuda"
	"github.com/vattn/vattn/ioctl"
	"github.com/vattn/vattn/pagesize"
)

// ErrNotPatched: nvidia-uvm is the stock module, without the vattn commands.
var ErrNotPatched = fmt.Errorf("nvidia-uvm is not patched for vattn; install the patched module with 'vattnctl install-driver': %w", backend.ErrUnavailable)

// Options configure a backend.
type Options struct {
	// Device is the GPU: an index or UUID as nvidia-smi's -i takes; "" is GPU 0.
	Device string
	// PageSize is the physical page size; 64 KiB when zero. The driver says
	// which sizes each GPU supports.
	PageSize pagesize.Size
	// Stream is the stream whose work the fence tracks (0: the legacy default
	// stream, which orders after every blocking stream).
	Stream cuda.Stream
	// Lib is the driver to use; nil loads libcuda (tests pass a fake).
	Lib *cuda.Lib
	// Mode picks the path for Open: ModeAuto (the patched module where it
	// is loaded, else the stock driver), ModeStock or ModePatched.
	Mode string
	// ChunkBytes is the size of the RM allocations the stock path carves
	// pages from (a multiple of 2 MiB); DefaultChunkBytes when zero.
	ChunkBytes uint64
	// StockDriver stands in for RM and UVM on the stock path; nil opens the
	// real driver (tests pass a fake).
	StockDriver StockDriver
}

// device loads libcuda (unless opts.Lib is given), selects the GPU and
// checks the page size (64 KiB when zero): what both paths do first.
func (opts Options) device() (*cuda.Lib, cuda.DeviceInfo, pagesize.Size, error) {
	lib := opts.Lib
	if lib == nil {
		var err error
		if lib, err = cuda.Load(); err != nil {
			return nil, cuda.DeviceInfo{}, 0, fmt.Errorf("uvm: %w", err)
		}
	}
	dev, err := lib.SelectDevice(opts.Device)
	if err != nil {
		return nil, cuda.DeviceInfo{}, 0, fmt.Errorf("uvm: %w", err)
	}
	size := opts.PageSize
	if size == 0 {
		size = pagesize.Size64K
	}
	if !size.Valid() {
		return nil, cuda.DeviceInfo{}, 0, fmt.Errorf("uvm: page size %s: %w", size, pagesize.ErrUnsupported)
	}
	return lib, dev, size, nil
}

type region struct {
	backend.Region
	raw cuda.DevicePtr // what cuMemAllocManaged returned (Addr is rounded up to a page)
}

// Backend implements backend.Backend on the patched nvidia-uvm.
type Backend struct {
	mu       sync.Mutex
	lib      *cuda.Lib
	ctx      *cuda.Ctx
	dev      cuda.DeviceInfo
	uuid     [16]byte
	fd       int // CUDA's va_space file: not ours to close
	probe    ProbeResult
	size     uint64
	maxBatch int
	regions  []region                  // sorted by Addr
	pages    map[backend.PageID]uint64 // handle → address mapped at, 0 when unmapped
	mapped   map[uint64]backend.PageID
	fence    cudavmm.EventFence
	verify   *gpumem.Verifier
	closed   bool
}

var _ backend.Backend = (*Backend)(nil)

// New opens the GPU, retains its primary context, finds CUDA's UVM file and asks
// the driver what it supports. On the stock module it fails with an error
// matching ErrNotPatched (and so backend.ErrUnavailable).
func New(opts Options) (_ *Backend, err error) {
	lib, dev, size, err := opts.device()
	if err != nil {
		return nil, err
	}
	b := &Backend{lib: lib, dev: dev, size: size.Bytes(), pages: map[backend.PageID]uint64{}, mapped: map[uint64]backend.PageID{}}
	if b.ctx, err = lib.Retain(dev); err != nil {
		return nil, fmt.Errorf("uvm: %w", err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, b.ctx.Release())
		}
	}()
	// Making the context current is what has the CUDA driver open and
	// initialize its UVM file and register the GPU in that va_space.
	if err := b.ctx.Do(func(bd cuda.Bound) error { _, _, err := bd.MemGetInfo(); return err }); err != nil {
		return nil, fmt.Errorf("uvm: %w", err)
	}
	b.probe, err = ProbeProcess()
	if err != nil {
		return nil, fmt.Errorf("uvm: %w", err)
	}
	switch b.probe.State {
	case StatePatched:
	case StateStock:
		return nil, fmt.Errorf("uvm: GPU %d: the vattn commands answered %s: %w", dev.Index, b.probe.Errno, ErrNotPatched)
	default:
		return nil, fmt.Errorf("uvm: GPU %d: %s: %w", dev.Index, b.probe.Detail, backend.ErrUnavailable)
	}
	if b.probe.ABIVersion != ioctl.UVM_VATTN_ABI_VERSION {
		return nil, fmt.Errorf("uvm: the patched module speaks ABI %d, this vattn ABI %d; install the matching module with 'vattnctl install-driver': %w",
			b.probe.ABIVersion, ioctl.UVM_VATTN_ABI_VERSION, backend.ErrUnavailable)
	}
	copy(b.uuid[:], uuidBytes(dev))
	g, ok := b.probe.gpu(b.uuid)
	if !ok {
		return nil, fmt.Errorf("uvm: GPU %d (%s) is not registered in CUDA's va_space: %w", dev.Index, dev.UUID, backend.ErrUnavailable)
	}
	if !slices.Contains(g.PageSizes, size) {
		return nil, fmt.Errorf("uvm: page size %s on GPU %d: the driver offers %v: %w", size, dev.Index, g.PageSizes, pagesize.ErrUnsupported)
	}
	b.fd = b.probe.FD
	b.maxBatch = int(b.probe.MaxBatch)
	if b.maxBatch <= 0 || b.maxBatch > ioctl.UVM_VATTN_MAX_BATCH {
		b.maxBatch = ioctl.UVM_VATTN_MAX_BATCH
	}
	b.fence = cudavmm.NewEventFence(b.ctx, opts.Stream)
	b.verify = gpumem.NewVerifier(b.ctx, dev.Device)
	return b, nil
}

// uuidBytes parses the UUID cuda formatted ("GPU-xxxxxxxx-…") back into bytes.
func uuidBytes(d cuda.DeviceInfo) []byte {
	out := make([]byte, 0, 16)
	var hi byte
	n := 0
	for _, c := range []byte(d.UUID[len("GPU-"):]) {
		var v byte
		switch {
		case c >= '0' && c <= '9':
			v = c - '0'
		case c >= 'a' && c <= 'f':
			v = c - 'a' + 10
		default:
			continue
		}
		if n%2 == 0 {
			hi = v << 4
		} else {
			out = append(out, hi|v)
		}
		n++
	}
	return out
}

// Name implements backend.Backend.
func (b *Backend) Name() string { return "uvm" }

// Mode says which path of nvidia-uvm the backend drives: "patched".
func (b *Backend) Mode() string { return ModePatched }

// PageSize implements backend.Backend.
func (b *Backend) PageSize() pagesize.Size { return pagesize.Size(b.size) }

// Device returns the GPU.
func (b *Backend) Device() cuda.DeviceInfo { return b.dev }

// Context returns the retained primary context.
func (b *Backend) Context() *cuda.Ctx { return b.ctx }

// FD returns CUDA's UVM va_space file the backend issues its commands on.
func (b *Backend) FD() int { return b.fd }

// UUID returns the GPU's UUID as the driver takes it.
func (b *Backend) UUID() [16]byte { return b.uuid }

// Probe returns what the driver said when the backend was made.
func (b *Backend) Probe() ProbeResult { return b.probe }

// MaxBatch is the most entries one ioctl takes; larger batches are split.
func (b *Backend) MaxBatch() int { return b.maxBatch }

// Fence implements backend.Backend.
func (b *Backend) Fence() backend.Fence { return b.fence }

// statusErr adds the backend sentinel that matches a driver status, so callers
// branch as with any backend while the status stays in the chain.
func statusErr(op string, err error, notFound error) error {
	var sentinel error
	var st ioctl.Status
	switch {
	case errors.Is(err, ioctl.ErrUnknownCommand):
		sentinel = ErrNotPatched
	case errors.As(err, &st):
		switch st {
		case ioctl.NV_ERR_NO_MEMORY, ioctl.NV_ERR_INSUFFICIENT_RESOURCES:
			sentinel = backend.ErrOutOfMemory
		case ioctl.NV_ERR_OBJECT_NOT_FOUND:
			sentinel = notFound
		case ioctl.NV_ERR_IN_USE:
			sentinel = backend.ErrPageMapped
		case ioctl.NV_ERR_UVM_ADDRESS_IN_USE:
			sentinel = backend.ErrAlreadyMapped
		case ioctl.NV_ERR_INVALID_OFFSET:
			sentinel = backend.ErrMisaligned
		case ioctl.NV_ERR_INVALID_ADDRESS, ioctl.NV_ERR_INVALID_STATE:
			// INVALID_STATE: MAP into a range UVM already manages pages of
			// (the process touched it); the status's text says so.
			sentinel = backend.ErrOutOfRange
		case ioctl.NV_ERR_INVALID_ARGUMENT, ioctl.NV_ERR_INVALID_LIMIT, ioctl.NV_ERR_NOT_SUPPORTED, ioctl.NV_ERR_INVALID_DEVICE:
			sentinel = backend.ErrBadArgument
		}
	}
	if sentinel == nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%s: %w: %w", op, sentinel, err)
}

// inBatches issues one driver call per piece of xs of at most max entries,
// stopping at the first error, and returns how many entries the driver
// applied: all of them, or those of the earlier calls plus the count the
// failing call reported done.
func inBatches[T any](xs []T, max int, call func(batch []T) (done uint32, err error)) (int, error) {
	for lo := 0; lo < len(xs); lo += max {
		if done, err := call(xs[lo:min(lo+max, len(xs))]); err != nil {
			return lo + int(done), err
		}
	}
	return len(xs), nil
}

// The batch calls for inBatches. ALLOC is all-or-nothing (uvm_vattn_ioctl.h):
// a failed call leaves nothing of its batch allocated.

func (b *Backend) allocBatch(hs []uint64) (uint32, error) {
	_, err := ioctl.Alloc(b.fd, b.uuid, b.size, hs)
	return 0, err
}

func (b *Backend) mapBatch(es []ioctl.UVM_VATTN_MAP_ENTRY) (uint32, error) {
	p, err := ioctl.Map(b.fd, es)
	return p.Done, err
}

func (b *Backend) unmapBatch(as []uint64) (uint32, error) {
	p, err := ioctl.Unmap(b.fd, as)
	return p.Done, err
}

func (b *Backend) freeBatch(hs []uint64) (uint32, error) {
	p, err := ioctl.Free(b.fd, hs)
	return p.Done, err
}

// Reserve implements backend.Backend with a managed allocation, aligned to the
// page size (over-allocated by a page when the driver's address is not).
func (b *Backend) Reserve(size uint64) (backend.Region, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return backend.Region{}, backend.ErrClosed
	}
	if err := gpumem.CheckReserveSize(size, b.size); err != nil {
		return backend.Region{}, err
	}
	var r region
	err := b.ctx.Do(func(bd cuda.Bound) error {
		p, err := bd.AllocManaged(size)
		if err != nil {
			return err
		}
		if uint64(p)%b.size == 0 {
			r = region{backend.Region{Addr: uint64(p), Size: size}, p}
			return nil
		}
		if err := bd.MemFree(p); err != nil {
			return err
		}
		if p, err = bd.AllocManaged(size + b.size); err != nil {
			return err
		}
		r = region{backend.Region{Addr: (uint64(p) + b.size - 1) / b.size * b.size, Size: size}, p}
		return nil
	})
	if err != nil {
		return backend.Region{}, fmt.Errorf("reserve %d bytes: %w", size, err)
	}
	i, _ := slices.BinarySearchFunc(b.regions, r.Addr, func(x region, a uint64) int { return cmp.Compare(x.Addr, a) })
	b.regions = slices.Insert(b.regions, i, r)
	return r.Region, nil
}

// Release implements backend.Backend.
func (b *Backend) Release(r backend.Region) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return backend.ErrClosed
	}
	i, found := slices.BinarySearchFunc(b.regions, r.Addr, func(x region, a uint64) int { return cmp.Compare(x.Addr, a) })
	if !found || b.regions[i].Region != r {
		return fmt.Errorf("release region %#x+%#x: %w", r.Addr, r.Size, backend.ErrOutOfRange)
	}
	for a := range b.mapped {
		if r.Contains(a, b.size) {
			return fmt.Errorf("release region %#x+%#x: %w", r.Addr, r.Size, backend.ErrRegionInUse)
		}
	}
	if err := b.ctx.Do(func(bd cuda.Bound) error { return bd.MemFree(b.regions[i].raw) }); err != nil {
		return fmt.Errorf("release region %#x+%#x: %w", r.Addr, r.Size, err)
	}
	b.regions = slices.Delete(b.regions, i, i+1)
	return nil
}

// AllocPages implements backend.Backend: one ALLOC per batch of up to MaxBatch
// pages; if a later batch fails, the earlier ones are freed again.
func (b *Backend) AllocPages(n int) ([]backend.PageID, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, backend.ErrClosed
	}
	if n <= 0 {
		return nil, fmt.Errorf("allocate %d pages: %w", n, backend.ErrBadArgument)
	}
	handles := make([]uint64, n)
	done, err := inBatches(handles, b.maxBatch, b.allocBatch)
	if err != nil {
		err = statusErr(fmt.Sprintf("allocate %d pages of %s", n, pagesize.Size(b.size)), err, backend.ErrUnknownPage)
		if done > 0 {
			if undo := b.freeHandles(handles[:done]); undo != nil {
				return nil, fmt.Errorf("%w (freeing the %d pages already allocated also failed: %v)", err, done, undo)
			}
		}
		return nil, err
	}
	ids := make([]backend.PageID, n)
	for i, h := range handles {
		ids[i] = backend.PageID(h)
		b.pages[ids[i]] = 0
	}
	return ids, nil
}

// freeHandles frees pages that are not in the books yet (an allocation being
// undone). Pages it could not free are recorded so that Close retries.
func (b *Backend) freeHandles(hs []uint64) error {
	freed, err := inBatches(hs, b.maxBatch, b.freeBatch)
	if err != nil {
		for _, h := range hs[freed:] {
			b.pages[backend.PageID(h)] = 0
		}
		return statusErr("free", err, backend.ErrUnknownPage)
	}
	return nil
}

// FreePages implements backend.Backend. Every page is checked first; a bad one
// frees nothing.
func (b *Backend) FreePages(ids []backend.PageID) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return backend.ErrClosed
	}
	seen := make(map[backend.PageID]bool, len(ids))
	hs := make([]uint64, len(ids))
	for i, id := range ids {
		addr, ok := b.pages[id]
		switch {
		case !ok || seen[id]:
			return fmt.Errorf("free page %#x: %w", uint64(id), backend.ErrUnknownPage)
		case addr != 0:
			return fmt.Errorf("free page %#x: %w at %#x", uint64(id), backend.ErrPageMapped, addr)
		}
		seen[id] = true
		hs[i] = uint64(id)
	}
	freed, err := inBatches(hs, b.maxBatch, b.freeBatch)
	for _, h := range hs[:freed] {
		delete(b.pages, backend.PageID(h))
	}
	if err != nil {
		return statusErr(fmt.Sprintf("free %d pages (%d freed)", len(hs), freed), err, backend.ErrUnknownPage)
	}
	return nil
}

func (b *Backend) regionOf(addr uint64) bool {
	i, found := slices.BinarySearchFunc(b.regions, addr, func(x region, a uint64) int { return cmp.Compare(x.Addr, a) })
	if !found {
		i--
	}
	return i >= 0 && i < len(b.regions) && b.regions[i].Contains(addr, b.size)
}

// Map implements backend.Backend: the batch is checked in full, then sent as one
// MAP per MaxBatch entries; if one fails, every mapping the batch made is undone.
func (b *Backend) Map(maps []backend.Mapping) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return backend.ErrClosed
	}
	if len(maps) == 0 {
		return nil
	}
	entries := make([]ioctl.UVM_VATTN_MAP_ENTRY, len(maps))
	addrs := make(map[uint64]bool, len(maps))
	pages := make(map[backend.PageID]bool, len(maps))
	for i, m := range maps {
		if m.Addr%b.size != 0 {
			return fmt.Errorf("map page %#x at %#x: %w", uint64(m.Page), m.Addr, backend.ErrMisaligned)
		}
		if !b.regionOf(m.Addr) {
			return fmt.Errorf("map page %#x at %#x: %w", uint64(m.Page), m.Addr, backend.ErrOutOfRange)
		}
		if _, busy := b.mapped[m.Addr]; busy || addrs[m.Addr] {
			return fmt.Errorf("map page %#x at %#x: address %w", uint64(m.Page), m.Addr, backend.ErrAlreadyMapped)
		}
		at, ok := b.pages[m.Page]
		if !ok {
			return fmt.Errorf("map page %#x at %#x: %w", uint64(m.Page), m.Addr, backend.ErrUnknownPage)
		}
		if at != 0 || pages[m.Page] {
			return fmt.Errorf("map page %#x at %#x: page %w", uint64(m.Page), m.Addr, backend.ErrAlreadyMapped)
		}
		addrs[m.Addr], pages[m.Page] = true, true
		entries[i] = ioctl.UVM_VATTN_MAP_ENTRY{Address: m.Addr, Handle: uint64(m.Page)}
	}
	done, err := inBatches(entries, b.maxBatch, b.mapBatch)
	if err == nil {
		for _, m := range maps {
			b.mapped[m.Addr] = m.Page
			b.pages[m.Page] = m.Addr
		}
		return nil
	}
	err = statusErr(fmt.Sprintf("map %d pages", len(maps)), err, backend.ErrUnknownPage)
	if done == 0 {
		return err
	}
	// Undo what the batch mapped. Nothing has run on these pages yet, so no
	// fence is needed.
	undo := make([]uint64, done)
	for i, e := range entries[:done] {
		undo[i] = e.Address
	}
	undone, uerr := inBatches(undo, b.maxBatch, b.unmapBatch)
	if uerr != nil {
		// The driver keeps mappings we could not undo: record them so Close
		// still releases them, and say so.
		for _, m := range maps[undone:done] {
			b.mapped[m.Addr] = m.Page
			b.pages[m.Page] = m.Addr
		}
		return fmt.Errorf("%w (undoing the batch also failed: %v)", err, uerr)
	}
	return err
}

// Unmap implements backend.Backend.
func (b *Backend) Unmap(addrs []uint64, fence backend.Epoch) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return backend.ErrClosed
	}
	if err := gpumem.CheckUnmap(b.mapped, b.size, addrs, fence, b.fence.Completed()); err != nil {
		return err
	}
	done, err := inBatches(addrs, b.maxBatch, b.unmapBatch)
	for _, a := range addrs[:done] {
		b.pages[b.mapped[a]] = 0
		delete(b.mapped, a)
	}
	if err != nil {
		return statusErr(fmt.Sprintf("unmap %d pages (%d unmapped)", len(addrs), done), err, backend.ErrNotMapped)
	}
	return nil
}

// MemInfo implements backend.Backend.
func (b *Backend) MemInfo() (backend.MemInfo, error) { return gpumem.MemInfo(b.ctx) }

// Held counts what the backend holds: reserved regions, pages, mapped pages.
func (b *Backend) Held() (regions, pages, mapped int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.regions), len(b.pages), len(b.mapped)
}

// Close implements backend.Backend: one RELEASE_RANGE (unmap and free) per
// region, FREE for the pages left unmapped, then the managed ranges, the fence's
// events and the context. It does not wait for GPU work; the caller must have
// finished using the memory. Every step is tried even when an earlier one fails.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	var errs []error
	for _, r := range b.regions {
		if _, err := ioctl.ReleaseRange(b.fd, r.Addr, r.Size, ioctl.UVM_VATTN_RELEASE_FREE); err != nil {
			errs = append(errs, statusErr(fmt.Sprintf("close: release pages of %#x+%#x", r.Addr, r.Size), err, backend.ErrNotMapped))
			continue
		}
		for a, id := range b.mapped {
			if r.Contains(a, b.size) {
				delete(b.mapped, a)
				delete(b.pages, id)
			}
		}
	}
	var left []uint64
	for id, a := range b.pages {
		if a == 0 {
			left = append(left, uint64(id))
		}
	}
	if _, err := inBatches(left, b.maxBatch, b.freeBatch); err != nil {
		errs = append(errs, statusErr("close: free pages", err, backend.ErrUnknownPage))
	}
	err := b.ctx.Do(func(bd cuda.Bound) error {
		if err := b.verify.Close(bd); err != nil {
			errs = append(errs, fmt.Errorf("close: %w", err))
		}
		for _, r := range b.regions {
			if err := bd.MemFree(r.raw); err != nil {
				errs = append(errs, fmt.Errorf("close: release region %#x: %w", r.Addr, err))
			}
		}
		errs = append(errs, b.fence.Destroy(bd))
		return nil
	})
	errs = append(errs, err, b.ctx.Release())
	b.mapped, b.pages, b.regions = nil, nil, nil
	return errors.Join(errs...)
}

// CheckResult reports a pattern check (see package gpumem, which the
// cudavmm backend shares).
type CheckResult = gpumem.CheckResult

// patternRange checks that [addr, addr+size) can be filled or checked. b.mu
// is held.
func (b *Backend) patternRange(addr, size uint64, page0, tag uint32) (cuda.PatternRange, error) {
	if b.closed {
		return cuda.PatternRange{}, backend.ErrClosed
	}
	if err := gpumem.CheckMapped(b.mapped, b.size, addr, size); err != nil {
		return cuda.PatternRange{}, err
	}
	return cuda.PatternRange{Base: cuda.DevicePtr(addr), Bytes: size, PageSize: b.size, Page0: page0, Tag: tag}, nil
}

// Fill writes Pattern(page, word, tag) over the mapped range [addr, addr+size)
// with a GPU kernel on the default stream and waits for it.
func (b *Backend) Fill(addr, size uint64, tag uint32) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, err := b.patternRange(addr, size, 0, tag)
	if err != nil {
		return err
	}
	if err := b.verify.Fill(0, r); err != nil {
		return err
	}
	if err := b.ctx.Do(func(bd cuda.Bound) error { return bd.Synchronize() }); err != nil {
		return fmt.Errorf("fill: %w", err)
	}
	return nil
}

// Check verifies what Fill wrote over [addr, addr+size), with page indexes
// counted from page0: every word on the GPU and samples from the host.
func (b *Backend) Check(addr, size uint64, page0, tag uint32) (CheckResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, err := b.patternRange(addr, size, page0, tag)
	if err != nil {
		return CheckResult{Pages: int(size / b.size)}, err
	}
	return b.verify.Check(0, r)
}
