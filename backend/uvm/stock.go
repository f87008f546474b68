package uvm

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/backend/internal/eventfence"
	"github.com/vattn/vattn/backend/internal/gpumem"
	"github.com/vattn/vattn/cuda"
	"github.com/vattn/vattn/ioctl"
	"github.com/vattn/vattn/ioctl/branch"
	"github.com/vattn/vattn/pagesize"
)

// The stock path: small pages with NVIDIA's unmodified driver.
//
// Virtual ranges come from cuMemAddressReserve, so CUDA owns the addresses
// and nothing else lands there; each becomes one UVM external range. Physical
// pages are slices of video memory that the process allocates from RM, on
// its own RM client, in chunks of ChunkBytes; a page is (chunk, slot), and
// slot k of a chunk lies at byte k×PageSize of its allocation. Mapping puts a
// slice of a chunk at an address with UVM_MAP_EXTERNAL_ALLOCATION on CUDA's
// own UVM file, which writes the page tables CUDA kernels walk.
//
// A driver call costs about the same whatever its length (measured on an
// H200: ~20 µs per call plus ~1 µs per page of a run), so Map sends one call
// per run — addresses that follow each other in one range, backed by slots
// that follow each other in one chunk — and Unmap one per run of addresses.
// Page IDs are ordered so that consecutive IDs are consecutive slots: a
// caller that maps ascending IDs at ascending addresses gets runs.

// DefaultChunkBytes is the size of the RM allocations pages are carved from.
const DefaultChunkBytes = 64 << 20

const (
	rmPageBig  = 64 << 10 // RM's "big" GPU page: what 64–256 KiB pages are made of
	rmPageHuge = 2 << 20  // RM's "huge" page, for 2 MiB pages
	slotFree   = 0        // chunk slot state: not handed out
	slotIdle   = 1        // handed out, unmapped; any other value is the address it is mapped at
)

// StockCalls counts the driver calls the stock path made, for reports of
// calls per step: the cost that matters on this path.
type StockCalls struct {
	MapCalls, MapPages     uint64
	UnmapCalls, UnmapPages uint64
	Chunks                 int    // RM allocations held now
	ChunkBytes             uint64 // their bytes
}

type chunk struct {
	handle uint32
	bytes  uint64
	slots  []uint64 // per page: slotFree, slotIdle or the address it is mapped at
	used   int      // slots handed out
}

type stockRegion struct {
	backend.Region
	reserved uint64 // bytes of the reservation and the external range: Size rounded up to 2 MiB
	mapped   int    // pages mapped in it
	noRange  bool   // the external range is gone, only the address reservation is left
}

// Stock implements backend.Backend on the stock driver. Create it with
// NewStock (or Open, which picks the path).
type Stock struct {
	mu         sync.Mutex
	lib        *cuda.Lib
	ctx        *cuda.Ctx
	dev        cuda.DeviceInfo
	uuid       [16]byte
	drv        StockDriver
	batch      BatchDriver // drv with the vattn module's batched commands; nil on the stock path
	batchWhy   string      // why there is no batch driver, for status lines
	size       uint64      // page bytes
	rmPage     uint64
	chunkBytes uint64
	regions    []stockRegion // sorted by Addr
	chunks     map[uint32]*chunk
	order      []uint32 // chunk IDs, ascending: AllocPages fills the oldest first
	nextChunk  uint32
	mapped     map[uint64]backend.PageID
	calls      StockCalls
	stream     cuda.Stream // the stream the fence records on
	fence      *eventfence.Fence
	verify     *gpumem.Verifier
	closed     bool
}

var (
	_ backend.Backend     = (*Stock)(nil)
	_ backend.CallCounter = (*Stock)(nil)
)

// NewStock opens the GPU, retains its primary context, finds CUDA's UVM file
// and opens the process's own RM client for the GPU (opts.StockDriver, when
// set, stands in for RM and UVM). It fails with backend.ErrUnavailable where
// the GPU or the driver cannot give small pages, saying why.
func NewStock(opts Options) (_ *Stock, err error) {
	lib, dev, size, err := opts.device()
	if err != nil {
		return nil, err
	}
	if dev.ComputeMajor < 6 {
		// Before Pascal the GPU's big pages were 128 KiB by default: no
		// 64 KiB granularity to map at.
		return nil, fmt.Errorf("uvm: GPU %d (%s) is compute capability %d.%d; small pages need Pascal (6.0) or newer: %w",
			dev.Index, dev.Name, dev.ComputeMajor, dev.ComputeMinor, backend.ErrUnavailable)
	}
	chunkBytes := opts.ChunkBytes
	if chunkBytes == 0 {
		chunkBytes = DefaultChunkBytes
	}
	if chunkBytes%(2<<20) != 0 || chunkBytes < size.Bytes() {
		return nil, fmt.Errorf("uvm: chunk of %d bytes: want a multiple of 2 MiB, at least one page: %w", chunkBytes, backend.ErrBadArgument)
	}
	b := &Stock{
		lib: lib, dev: dev, size: size.Bytes(), rmPage: rmPageBig, chunkBytes: chunkBytes,
		chunks: map[uint32]*chunk{}, nextChunk: 1, mapped: map[uint64]backend.PageID{},
	}
	if size == pagesize.Size2M {
		b.rmPage = rmPageHuge
	}
	copy(b.uuid[:], uuidBytes(dev))
	if b.ctx, err = lib.Retain(dev); err != nil {
		return nil, fmt.Errorf("uvm: %w", err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, b.ctx.Release())
		}
	}()
	// Making the context current has CUDA open its UVM file and register
	// the GPU in that va_space.
	if err := b.ctx.Do(func(bd cuda.Bound) error { _, _, err := bd.MemGetInfo(); return err }); err != nil {
		return nil, fmt.Errorf("uvm: %w", err)
	}
	if err := b.openDriver(opts.StockDriver); err != nil {
		return nil, fmt.Errorf("uvm: GPU %d: %w", dev.Index, err)
	}
	if err := b.pickPath(opts.Mode); err != nil {
		return nil, errors.Join(fmt.Errorf("uvm: GPU %d: %w", dev.Index, err), b.drv.Close())
	}
	b.stream = opts.Stream
	b.fence = eventfence.New(b.ctx, opts.Stream)
	// CUDA's copy functions refuse the pages (CUDA did not map them), so
	// the host reads its samples through a kernel.
	b.verify = gpumem.NewGatheringVerifier(b.ctx, dev.Device)
	return b, nil
}

// openDriver sets b.drv: drv when given, else the real driver on the first
// of the process's va_space files where one page maps (checkPath). A process
// can hold more than one va_space file; only the one whose va_space holds
// the GPU's registration, CUDA's, maps.
func (b *Stock) openDriver(drv StockDriver) error {
	if drv != nil {
		if err := b.checkPath(drv); err != nil {
			return errors.Join(err, drv.Close())
		}
		b.drv = drv
		return nil
	}
	fds, err := VASpaceFDs()
	if err != nil {
		return err
	}
	var tried []error
	for _, fd := range fds {
		drv, err := OpenStockDriver(StockTarget{UVMFD: fd, UUID: b.uuid})
		if errors.Is(err, branch.ErrUnknownBranch) {
			return fmt.Errorf("%w: %w", err, backend.ErrUnavailable)
		}
		if err != nil {
			return err
		}
		err = b.checkPath(drv)
		if err == nil {
			b.drv = drv
			return nil
		}
		tried = append(tried, fmt.Errorf("UVM file fd %d: %w", fd, err))
		if cerr := drv.Close(); cerr != nil {
			return errors.Join(append(tried, cerr)...)
		}
		if !errors.Is(err, ioctl.NV_ERR_INVALID_DEVICE) && !errors.Is(err, ioctl.NV_ERR_ILLEGAL_ACTION) {
			break
		}
	}
	return fmt.Errorf("no va_space file of this process maps pages for this GPU: %w", errors.Join(tried...))
}

// pickPath decides, once, which calls Map and Unmap make: the vattn module's
// batched commands where mode allows them and the module answers, else one
// stock call per run. ModePatched without the module is ErrNotPatched.
func (b *Stock) pickPath(mode string) error {
	if mode == ModeStock {
		b.batchWhy = "stock path asked for"
		return nil
	}
	if bd, ok := b.drv.(BatchDriver); ok {
		b.batch = bd
	} else {
		b.batch, b.batchWhy = batchDriver(b.drv)
	}
	if b.batch == nil && mode == ModePatched {
		return fmt.Errorf("%w (%s)", ErrNotPatched, b.batchWhy)
	}
	return nil
}

// checkPath maps one page through drv and unmaps it again, in an external
// range of its own: the path works end to end before the backend is handed
// out, and a va_space file without the GPU is told apart. It leaves nothing.
func (b *Stock) checkPath(drv StockDriver) (err error) {
	const span = 2 << 20
	var p cuda.DevicePtr
	if err := b.ctx.Do(func(bd cuda.Bound) (err error) { p, err = bd.AddressReserve(span, span); return err }); err != nil {
		return fmt.Errorf("check the small-page path: %w", err)
	}
	ranged := false // an external range covers p: the addresses must stay reserved
	defer func() {
		if ranged {
			if ferr := drv.FreeRange(uint64(p), span); ferr != nil {
				// UVM still covers the addresses: keep them reserved
				// (the process's end frees both) rather than let CUDA
				// hand them out under a live range.
				err = errors.Join(err, fmt.Errorf("check the small-page path: %w", ferr))
				return
			}
		}
		if ferr := b.ctx.Do(func(bd cuda.Bound) error { return bd.AddressFree(p, span) }); ferr != nil {
			err = errors.Join(err, fmt.Errorf("check the small-page path: %w", ferr))
		}
	}()
	if err := drv.CreateRange(uint64(p), span); err != nil {
		return fmt.Errorf("check the small-page path: %w", err)
	}
	ranged = true
	h, err := drv.AllocVidmem(span, b.rmPage)
	if err != nil {
		return fmt.Errorf("check the small-page path: %w", err)
	}
	defer func() { err = errors.Join(err, drv.FreeVidmem(h)) }()
	if err := drv.Map(uint64(p), b.size, h, 0); err != nil {
		return fmt.Errorf("check the small-page path: %w", err)
	}
	return drv.Unmap(uint64(p), b.size)
}

// Name implements backend.Backend.
func (b *Stock) Name() string { return "uvm" }

// Mode says which path of nvidia-uvm the backend drives: ModePatched when the
// vattn module's batched commands issue the mappings, else ModeStock.
func (b *Stock) Mode() string {
	if b.batch != nil {
		return ModePatched
	}
	return ModeStock
}

// Path names the calls Map and Unmap make, for status lines: "batched" (the
// vattn module, one call per batch) or "stock" (one call per run).
func (b *Stock) Path() string {
	if b.batch != nil {
		return PathBatched
	}
	return PathStock
}

// PathDetail says why the path is what it is.
func (b *Stock) PathDetail() string {
	if b.batch != nil {
		return fmt.Sprintf("vattn module: batches of up to %d runs in one call", b.batch.MaxBatch())
	}
	return "stock driver: one call per run (" + b.batchWhy + ")"
}

// PageSize implements backend.Backend.
func (b *Stock) PageSize() pagesize.Size { return pagesize.Size(b.size) }

// Device returns the GPU.
func (b *Stock) Device() cuda.DeviceInfo { return b.dev }

// Context returns the retained primary context.
func (b *Stock) Context() *cuda.Ctx { return b.ctx }

// Driver returns what stands for RM and UVM.
func (b *Stock) Driver() StockDriver { return b.drv }

// Fence implements backend.Backend.
func (b *Stock) Fence() backend.Fence { return b.fence }

// MemInfo implements backend.Backend.
func (b *Stock) MemInfo() (backend.MemInfo, error) { return gpumem.MemInfo(b.ctx) }

// Calls returns the driver calls made so far and the chunks held now.
func (b *Stock) Calls() StockCalls {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.calls
	c.Chunks = len(b.chunks)
	for _, ch := range b.chunks {
		c.ChunkBytes += ch.bytes
	}
	return c
}

// DriverCalls implements backend.CallCounter.
func (b *Stock) DriverCalls() (mapCalls, unmapCalls uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls.MapCalls, b.calls.UnmapCalls
}

// Held counts what the backend holds: reserved regions, pages handed out,
// mapped pages.
func (b *Stock) Held() (regions, pages, mapped int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, ch := range b.chunks {
		pages += ch.used
	}
	return len(b.regions), pages, len(b.mapped)
}

// stockErr adds the backend sentinel matching a driver status.
func stockErr(op string, err error) error {
	var st ioctl.Status
	if errors.As(err, &st) {
		switch st {
		case ioctl.NV_ERR_NO_MEMORY, ioctl.NV_ERR_INSUFFICIENT_RESOURCES:
			return fmt.Errorf("%s: %w: %w", op, backend.ErrOutOfMemory, err)
		case ioctl.NV_ERR_INVALID_ADDRESS, ioctl.NV_ERR_UVM_ADDRESS_IN_USE:
			return fmt.Errorf("%s: %w: %w", op, backend.ErrOutOfRange, err)
		}
	}
	return fmt.Errorf("%s: %w", op, err)
}

func (b *Stock) regionIndex(addr uint64) int {
	i, found := slices.BinarySearchFunc(b.regions, addr, func(x stockRegion, a uint64) int { return cmp.Compare(x.Addr, a) })
	if !found {
		i--
	}
	if i >= 0 && i < len(b.regions) && b.regions[i].Contains(addr, b.size) && !b.regions[i].noRange {
		return i
	}
	return -1
}

// Reserve implements backend.Backend: a CUDA address reservation, 2 MiB
// aligned, made one external range.
func (b *Stock) Reserve(size uint64) (backend.Region, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return backend.Region{}, backend.ErrClosed
	}
	if err := gpumem.CheckReserveSize(size, b.size); err != nil {
		return backend.Region{}, err
	}
	// CUDA reserves in multiples of its 2 MiB granularity.
	reserved := (size + (2 << 20) - 1) / (2 << 20) * (2 << 20)
	var p cuda.DevicePtr
	if err := b.ctx.Do(func(bd cuda.Bound) (err error) { p, err = bd.AddressReserve(reserved, 2<<20); return err }); err != nil {
		return backend.Region{}, fmt.Errorf("reserve %d bytes: %w", size, err)
	}
	if err := b.drv.CreateRange(uint64(p), reserved); err != nil {
		err = stockErr(fmt.Sprintf("reserve %d bytes: create external range", size), err)
		if ferr := b.ctx.Do(func(bd cuda.Bound) error { return bd.AddressFree(p, reserved) }); ferr != nil {
			err = errors.Join(err, fmt.Errorf("free the address reservation: %w", ferr))
		}
		return backend.Region{}, err
	}
	r := stockRegion{Region: backend.Region{Addr: uint64(p), Size: size}, reserved: reserved}
	i, _ := slices.BinarySearchFunc(b.regions, r.Addr, func(x stockRegion, a uint64) int { return cmp.Compare(x.Addr, a) })
	b.regions = slices.Insert(b.regions, i, r)
	return r.Region, nil
}

// Release implements backend.Backend: the external range goes first, then
// the addresses.
func (b *Stock) Release(r backend.Region) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return backend.ErrClosed
	}
	i, found := slices.BinarySearchFunc(b.regions, r.Addr, func(x stockRegion, a uint64) int { return cmp.Compare(x.Addr, a) })
	if !found || b.regions[i].Region != r {
		return fmt.Errorf("release region %#x+%#x: %w", r.Addr, r.Size, backend.ErrOutOfRange)
	}
	if b.regions[i].mapped > 0 {
		return fmt.Errorf("release region %#x+%#x: %w (%d pages)", r.Addr, r.Size, backend.ErrRegionInUse, b.regions[i].mapped)
	}
	reserved := b.regions[i].reserved
	if !b.regions[i].noRange {
		if err := b.drv.FreeRange(r.Addr, reserved); err != nil {
			return stockErr(fmt.Sprintf("release region %#x+%#x: free external range", r.Addr, r.Size), err)
		}
		b.regions[i].noRange = true
	}
	if err := b.ctx.Do(func(bd cuda.Bound) error { return bd.AddressFree(cuda.DevicePtr(r.Addr), reserved) }); err != nil {
		// The range is gone; Close retries the reservation.
		return fmt.Errorf("release region %#x+%#x: %w", r.Addr, r.Size, err)
	}
	b.regions = slices.Delete(b.regions, i, i+1)
	return nil
}

func pageID(chunk uint32, slot int) backend.PageID {
	return backend.PageID(uint64(chunk)<<32 | uint64(slot))
}

// page finds a page's chunk and slot; ok is false for an ID this backend
// never handed out or has freed.
func (b *Stock) page(id backend.PageID) (ch *chunk, slot int, ok bool) {
	ch = b.chunks[uint32(id>>32)]
	slot = int(uint32(id))
	if ch == nil || slot >= len(ch.slots) || ch.slots[slot] == slotFree {
		return nil, 0, false
	}
	return ch, slot, true
}

// AllocPages implements backend.Backend: free slots of the chunks held
// first, oldest chunk and lowest slot first, then new chunks for the rest,
// each ChunkBytes or, for the last, what is left rounded up to 2 MiB. IDs
// come back ascending. On error nothing was allocated.
func (b *Stock) AllocPages(n int) ([]backend.PageID, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, backend.ErrClosed
	}
	if n <= 0 {
		return nil, fmt.Errorf("allocate %d pages: %w", n, backend.ErrBadArgument)
	}
	ids := make([]backend.PageID, 0, n)
	for _, cid := range b.order {
		ch := b.chunks[cid]
		for s := 0; s < len(ch.slots) && ch.used < len(ch.slots) && len(ids) < n; s++ {
			if ch.slots[s] == slotFree {
				ch.slots[s] = slotIdle
				ch.used++
				ids = append(ids, pageID(cid, s))
			}
		}
		if len(ids) == n {
			return ids, nil
		}
	}
	var made []uint32
	undo := func(err error) ([]backend.PageID, error) {
		for _, id := range ids {
			if ch, s, ok := b.page(id); ok {
				ch.slots[s] = slotFree
				ch.used--
			}
		}
		for _, cid := range made {
			if ferr := b.freeChunk(cid); ferr != nil {
				err = errors.Join(err, ferr)
			}
		}
		return nil, err
	}
	for left := n - len(ids); left > 0; left = n - len(ids) {
		bytes := min(b.chunkBytes, (uint64(left)*b.size+(2<<20)-1)/(2<<20)*(2<<20))
		if b.nextChunk == 0 {
			return undo(fmt.Errorf("allocate %d pages: chunk IDs exhausted: %w", n, backend.ErrOutOfMemory))
		}
		h, err := b.drv.AllocVidmem(bytes, b.rmPage)
		if err != nil {
			return undo(stockErr(fmt.Sprintf("allocate %d pages of %s: video memory chunk of %d MiB", n, pagesize.Size(b.size), bytes>>20), err))
		}
		cid := b.nextChunk
		b.nextChunk++
		ch := &chunk{handle: h, bytes: bytes, slots: make([]uint64, bytes/b.size)}
		b.chunks[cid] = ch
		b.order = append(b.order, cid)
		made = append(made, cid)
		for s := 0; s < len(ch.slots) && len(ids) < n; s++ {
			ch.slots[s] = slotIdle
			ch.used++
			ids = append(ids, pageID(cid, s))
		}
	}
	return ids, nil
}

// freeChunk gives a chunk with no page handed out back to RM. On failure
// the chunk stays in the books, so Close tries again.
func (b *Stock) freeChunk(cid uint32) error {
	ch := b.chunks[cid]
	if err := b.drv.FreeVidmem(ch.handle); err != nil {
		return stockErr(fmt.Sprintf("free video memory chunk %d (%d MiB)", cid, ch.bytes>>20), err)
	}
	delete(b.chunks, cid)
	b.order = slices.DeleteFunc(b.order, func(x uint32) bool { return x == cid })
	return nil
}

// FreePages implements backend.Backend. Every page is checked first; a bad
// one frees nothing. A chunk none of whose pages is handed out any more goes
// back to RM at once, so freeing pages (kvcache's Shrink and Trim) gives
// memory back to the device.
func (b *Stock) FreePages(ids []backend.PageID) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return backend.ErrClosed
	}
	seen := make(map[backend.PageID]bool, len(ids))
	for _, id := range ids {
		ch, s, ok := b.page(id)
		switch {
		case !ok || seen[id]:
			return fmt.Errorf("free page %#x: %w", uint64(id), backend.ErrUnknownPage)
		case ch.slots[s] != slotIdle:
			return fmt.Errorf("free page %#x: %w at %#x", uint64(id), backend.ErrPageMapped, ch.slots[s])
		}
		seen[id] = true
	}
	emptied := map[uint32]bool{}
	for _, id := range ids {
		ch, s, _ := b.page(id)
		ch.slots[s] = slotFree
		ch.used--
		if ch.used == 0 {
			emptied[uint32(id>>32)] = true
		}
	}
	var errs []error
	for _, cid := range slices.Sorted(maps.Keys(emptied)) {
		if err := b.freeChunk(cid); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("free %d pages (the pages are freed; their memory is not): %w", len(ids), errors.Join(errs...))
	}
	return nil
}

// run is a stretch of consecutive addresses in one region; for Map, backed
// by consecutive slots of one chunk.
type run struct {
	addr  uint64
	pages int
	chunk uint32
	slot  int
}

// Map implements backend.Backend: the batch is checked in full, sorted by
// address and cut into runs, one driver call each. If a call fails, the runs
// already mapped are unmapped again.
func (b *Stock) Map(maps []backend.Mapping) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return backend.ErrClosed
	}
	if len(maps) == 0 {
		return nil
	}
	addrs := make(map[uint64]bool, len(maps))
	pages := make(map[backend.PageID]bool, len(maps))
	for _, m := range maps {
		if m.Addr%b.size != 0 {
			return fmt.Errorf("map page %#x at %#x: %w", uint64(m.Page), m.Addr, backend.ErrMisaligned)
		}
		if b.regionIndex(m.Addr) < 0 {
			return fmt.Errorf("map page %#x at %#x: %w", uint64(m.Page), m.Addr, backend.ErrOutOfRange)
		}
		if _, busy := b.mapped[m.Addr]; busy || addrs[m.Addr] {
			return fmt.Errorf("map page %#x at %#x: address %w", uint64(m.Page), m.Addr, backend.ErrAlreadyMapped)
		}
		ch, s, ok := b.page(m.Page)
		if !ok {
			return fmt.Errorf("map page %#x at %#x: %w", uint64(m.Page), m.Addr, backend.ErrUnknownPage)
		}
		if ch.slots[s] != slotIdle || pages[m.Page] {
			return fmt.Errorf("map page %#x at %#x: page %w", uint64(m.Page), m.Addr, backend.ErrAlreadyMapped)
		}
		addrs[m.Addr], pages[m.Page] = true, true
	}
	runs := b.mapRuns(maps)
	if b.batch != nil {
		return b.mapBatched(runs, len(maps))
	}
	for k, r := range runs {
		if err := b.mapRun(r); err != nil {
			err = stockErr(fmt.Sprintf("map %d pages (%d runs): run %d of %d pages at %#x", len(maps), len(runs), k, r.pages, r.addr), err)
			// Nothing has run on these pages yet, so no fence is needed.
			for _, done := range runs[:k] {
				if uerr := b.unmapRun(done.addr, done.pages); uerr != nil {
					// The driver keeps this run: it stays in the books, so
					// Close still releases it.
					err = fmt.Errorf("%w (undoing the batch also failed: %v)", err, uerr)
				}
			}
			return err
		}
	}
	return nil
}

// mapBatched maps runs with the batched command, MaxBatch runs a call. A
// failed call mapped nothing; the calls before it are unmapped again.
func (b *Stock) mapBatched(runs []run, pages int) error {
	max := b.batch.MaxBatch()
	for k := 0; k < len(runs); k += max {
		part := runs[k:min(k+max, len(runs))]
		if err := b.mapBatch(part); err != nil {
			err = stockErr(fmt.Sprintf("map %d pages (%d runs): batch of runs %d..%d", pages, len(runs), k, k+len(part)-1), err)
			// Nothing has run on these pages yet, so no fence is needed.
			for j := 0; j < k; j += max {
				done := runs[j:min(j+max, k)]
				if uerr := b.unmapBatch(addrRuns(done)); uerr != nil {
					err = fmt.Errorf("%w (undoing the batch also failed: %v)", err, uerr)
				}
			}
			return err
		}
	}
	return nil
}

// mapBatch issues one batched map call for runs and books them when it
// succeeds.
func (b *Stock) mapBatch(runs []run) error {
	entries := make([]ioctl.UVM_VATTN_MAP_ENTRY, len(runs))
	pages := 0
	for i, r := range runs {
		entries[i] = ioctl.UVM_VATTN_MAP_ENTRY{Base: r.addr, Length: uint64(r.pages) * b.size,
			Offset: uint64(r.slot) * b.size, HMemory: b.chunks[r.chunk].handle}
		pages += r.pages
	}
	b.calls.MapCalls++
	if err := b.batch.MapBatch(entries); err != nil {
		return err
	}
	b.calls.MapPages += uint64(pages)
	for _, r := range runs {
		b.book(r)
	}
	return nil
}

// addrRuns keeps the addresses and lengths of runs.
func addrRuns(runs []run) []run {
	out := make([]run, len(runs))
	for i, r := range runs {
		out[i] = run{addr: r.addr, pages: r.pages}
	}
	return out
}

// unmapBatch issues one batched unmap call for runs of addresses and forgets
// them when it succeeds.
func (b *Stock) unmapBatch(runs []run) error {
	entries := make([]ioctl.UVM_VATTN_UNMAP_ENTRY, len(runs))
	pages := 0
	for i, r := range runs {
		entries[i] = ioctl.UVM_VATTN_UNMAP_ENTRY{Base: r.addr, Length: uint64(r.pages) * b.size}
		pages += r.pages
	}
	b.calls.UnmapCalls++
	if err := b.batch.UnmapBatch(entries); err != nil {
		return err
	}
	b.calls.UnmapPages += uint64(pages)
	for _, r := range runs {
		b.unbook(r.addr, r.pages)
	}
	return nil
}

// mapRuns sorts mappings by address and cuts them into runs: consecutive
// addresses in one region backed by consecutive slots of one chunk.
func (b *Stock) mapRuns(maps []backend.Mapping) []run {
	sorted := slices.SortedFunc(slices.Values(maps), func(x, y backend.Mapping) int { return cmp.Compare(x.Addr, y.Addr) })
	var runs []run
	for _, m := range sorted {
		cid, s := uint32(m.Page>>32), int(uint32(m.Page))
		if n := len(runs); n > 0 {
			last := &runs[n-1]
			end := last.addr + uint64(last.pages)*b.size
			if m.Addr == end && cid == last.chunk && s == last.slot+last.pages && b.regionIndex(last.addr) == b.regionIndex(m.Addr) {
				last.pages++
				continue
			}
		}
		runs = append(runs, run{addr: m.Addr, pages: 1, chunk: cid, slot: s})
	}
	return runs
}

// mapRun issues one map call for a run and books it when it succeeds.
func (b *Stock) mapRun(r run) error {
	b.calls.MapCalls++
	if err := b.drv.Map(r.addr, uint64(r.pages)*b.size, b.chunks[r.chunk].handle, uint64(r.slot)*b.size); err != nil {
		return err
	}
	b.calls.MapPages += uint64(r.pages)
	b.book(r)
	return nil
}

// unmapRun issues one unmap call for n pages from addr and forgets them
// when it succeeds.
func (b *Stock) unmapRun(addr uint64, n int) error {
	b.calls.UnmapCalls++
	if err := b.drv.Unmap(addr, uint64(n)*b.size); err != nil {
		return err
	}
	b.calls.UnmapPages += uint64(n)
	b.unbook(addr, n)
	return nil
}

// book records a mapped run.
func (b *Stock) book(r run) {
	ch := b.chunks[r.chunk]
	b.regions[b.regionIndex(r.addr)].mapped += r.pages
	for i := range r.pages {
		a := r.addr + uint64(i)*b.size
		ch.slots[r.slot+i] = a
		b.mapped[a] = pageID(r.chunk, r.slot+i)
	}
}

// unbook forgets n mapped pages from addr on.
func (b *Stock) unbook(addr uint64, n int) {
	b.regions[b.regionIndex(addr)].mapped -= n
	for i := range n {
		a := addr + uint64(i)*b.size
		id := b.mapped[a]
		ch, s, _ := b.page(id)
		ch.slots[s] = slotIdle
		delete(b.mapped, a)
	}
}

// Unmap implements backend.Backend: checked in full, then one driver call
// per run of consecutive addresses in one region.
func (b *Stock) Unmap(addrs []uint64, fence backend.Epoch) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return backend.ErrClosed
	}
	if err := gpumem.CheckUnmap(b.mapped, b.size, addrs, fence, b.fence.Completed()); err != nil {
		return err
	}
	sorted := slices.Sorted(slices.Values(addrs))
	held := make([]backend.PageID, len(sorted)) // what each address holds, to map back on failure
	for i, a := range sorted {
		held[i] = b.mapped[a]
	}
	var runs []run
	for _, a := range sorted {
		if n := len(runs); n > 0 {
			last := &runs[n-1]
			if a == last.addr+uint64(last.pages)*b.size && b.regionIndex(a) == b.regionIndex(last.addr) {
				last.pages++
				continue
			}
		}
		runs = append(runs, run{addr: a, pages: 1})
	}
	if b.batch != nil {
		max := b.batch.MaxBatch()
		for k := 0; k < len(runs); k += max {
			part := runs[k:min(k+max, len(runs))]
			if err := b.unmapBatch(part); err != nil {
				err = stockErr(fmt.Sprintf("unmap %d pages (%d runs): batch of runs %d..%d", len(addrs), len(runs), k, k+len(part)-1), err)
				return b.undoUnmap(sorted, held, part[0].addr, err)
			}
		}
		return nil
	}
	for k, r := range runs {
		if err := b.unmapRun(r.addr, r.pages); err != nil {
			err = stockErr(fmt.Sprintf("unmap %d pages (%d runs): run %d of %d pages at %#x", len(addrs), len(runs), k, r.pages, r.addr), err)
			return b.undoUnmap(sorted, held, r.addr, err)
		}
	}
	return nil
}

// undoUnmap maps back the pages of a failed Unmap batch that earlier runs
// unmapped (addresses of sorted below stop, which held the pages in held),
// so the batch is all or nothing
// and the caller's books stay true. The GPU work that read them has
// completed (the fence was checked), and their pages are still ours. A page
// that cannot be mapped back stays unmapped in the books, and err says so.
func (b *Stock) undoUnmap(sorted []uint64, held []backend.PageID, stop uint64, err error) error {
	var back []backend.Mapping
	for i, a := range sorted {
		if a >= stop {
			break
		}
		back = append(back, backend.Mapping{Addr: a, Page: held[i]})
	}
	runs := b.mapRuns(back)
	if b.batch != nil {
		if merr := b.mapBatched(runs, len(back)); merr != nil {
			return fmt.Errorf("%w (mapping back %d pages the batch had unmapped also failed: %v; they are unmapped)", err, len(back), merr)
		}
		return err
	}
	for _, r := range runs {
		if merr := b.mapRun(r); merr != nil {
			return fmt.Errorf("%w (mapping back %d pages the batch had unmapped also failed at %#x: %v; they are unmapped)", err, len(back), r.addr, merr)
		}
	}
	return err
}

// Close implements backend.Backend: every external range is freed (UVM drops
// its mappings with it), every chunk goes back to RM, the RM client is
// closed, then the address reservations, the fence's events and the context
// are released. It does not wait for GPU work; the caller must have finished
// using the memory. Every step is tried even when an earlier one fails.
func (b *Stock) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	var errs []error
	for i := range b.regions {
		r := &b.regions[i]
		if r.noRange {
			continue
		}
		if err := b.drv.FreeRange(r.Addr, r.reserved); err != nil {
			errs = append(errs, stockErr(fmt.Sprintf("close: free external range %#x+%#x", r.Addr, r.Size), err))
			continue
		}
		r.noRange = true
	}
	for _, cid := range slices.Clone(b.order) {
		if err := b.freeChunk(cid); err != nil {
			errs = append(errs, fmt.Errorf("close: %w", err))
		}
	}
	if err := b.drv.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close: RM client: %w", err))
	}
	err := b.ctx.Do(func(bd cuda.Bound) error {
		if err := b.verify.Close(bd); err != nil {
			errs = append(errs, fmt.Errorf("close: %w", err))
		}
		for _, r := range b.regions {
			if !r.noRange {
				// UVM still covers these addresses (its range could not be
				// freed): they stay reserved until the process ends.
				continue
			}
			if err := bd.AddressFree(cuda.DevicePtr(r.Addr), r.reserved); err != nil {
				errs = append(errs, fmt.Errorf("close: free addresses %#x: %w", r.Addr, err))
			}
		}
		errs = append(errs, b.fence.Destroy(bd))
		return nil
	})
	errs = append(errs, err, b.ctx.Release())
	b.mapped, b.chunks, b.order, b.regions = nil, nil, nil, nil
	return errors.Join(errs...)
}

// Fill writes Pattern(page, word, tag) over the mapped range [addr,
// addr+size) with a GPU kernel and waits for it.
func (b *Stock) Fill(addr, size uint64, tag uint32) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, err := b.patternRange(addr, size, 0, tag)
	if err != nil {
		return err
	}
	if err := b.verify.Fill(b.stream, r); err != nil {
		return err
	}
	if err := b.ctx.Do(func(bd cuda.Bound) error { return bd.Synchronize() }); err != nil {
		return fmt.Errorf("fill: %w", err)
	}
	return nil
}

// Check verifies what Fill wrote over [addr, addr+size), with page indexes
// counted from page0.
func (b *Stock) Check(addr, size uint64, page0, tag uint32) (CheckResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, err := b.patternRange(addr, size, page0, tag)
	if err != nil {
		return CheckResult{Pages: int(size / b.size)}, err
	}
	return b.verify.Check(b.stream, r)
}

// Spin keeps the fence's stream busy for cycles GPU clocks, so callers can
// test what happens to mappings while GPU work is pending.
func (b *Stock) Spin(cycles uint64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return backend.ErrClosed
	}
	return b.verify.Spin(b.stream, cycles)
}

func (b *Stock) patternRange(addr, size uint64, page0, tag uint32) (cuda.PatternRange, error) {
	if b.closed {
		return cuda.PatternRange{}, backend.ErrClosed
	}
	if err := gpumem.CheckMapped(b.mapped, b.size, addr, size); err != nil {
		return cuda.PatternRange{}, err
	}
	return cuda.PatternRange{Base: cuda.DevicePtr(addr), Bytes: size, PageSize: b.size, Page0: page0, Tag: tag}, nil
}
