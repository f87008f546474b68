// Package sim is an in-memory GPU memory driver that behaves like the real
// ones (NVIDIA UVM with the vattn patch, CUDA VMM) without a GPU: it is the
// backend the allocator is tested and simulated on.
//
// It models what the allocator can get wrong or pay for on real hardware:
//   - physical memory taken from the GPU in 2 MiB root chunks and carved into
//     pages the way UVM's physical memory manager does, so device memory is
//     claimed in 2 MiB units and fragmentation across chunks shows;
//   - every check a strict driver makes, each failure a typed error from
//     package backend that leaves the state unchanged;
//   - an optional latency model (per call plus per page), measured for 2 MiB
//     pages and assumed for the smaller ones;
//   - injected failures, so callers can test their error paths;
//   - one word of data per page, so tests can see whose data a mapping shows.
//
// All state sits behind one mutex: a Backend may be used from several
// goroutines, and Stats may run while another goroutine maps.
package sim

import (
	"fmt"
	"sync"
	"time"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/pagesize"
)

// Config describes the simulated GPU.
type Config struct {
	// PageSize is the physical page size; required.
	PageSize pagesize.Size
	// GPUMemory is the device memory in bytes; 0 means 80 GiB. It must hold
	// at least one 2 MiB root chunk; any remainder below 2 MiB is never
	// claimed, as on a real GPU.
	GPUMemory uint64
	// VASize is how much virtual address space may be reserved at once;
	// 0 means 128 TiB (1<<47). It must be a multiple of 2 MiB.
	VASize uint64
	// Latency, if set, gives each operation a modelled duration.
	Latency *LatencyModel
	// Sleep makes each successful call really take its modelled time
	// (needs Latency). The wait happens after the state lock is released.
	Sleep bool
	// Fence tells how far GPU work has progressed; nil means a fence that
	// completes every epoch as soon as it is recorded.
	Fence backend.Fence
}

// DefaultGPUMemory is the device memory of an H100 80GB.
const DefaultGPUMemory = 80 << 30

// DefaultVASize is the address space reservable by default.
const DefaultVASize = 1 << 47

// maxPages bounds the page table so page indices fit in the low 32 bits of
// a PageID and in a region slot (which stores index+1).
const maxPages = 1<<32 - 2

// Backend is the simulated driver. It implements backend.Backend.
type Backend struct {
	ps      pagesize.Size
	shift   uint // log2 of the page size
	gpuMem  uint64
	latency *LatencyModel
	sleep   bool
	fence   backend.Fence

	mu     sync.Mutex
	closed bool
	phys   *physical
	virt   virtual
	batch  uint64 // number of the current batch, for duplicate detection

	mappedPages int
	peakMapped  int
	ops         [NumOps]OpStats
	entered     [NumOps]uint64   // calls that reached the driver, for injection
	faults      [NumOps][]uint64 // entered counts at which a call must fail
}

var (
	_ backend.Backend     = (*Backend)(nil)
	_ backend.CallCounter = (*Backend)(nil)
)

// DriverCalls implements backend.CallCounter: the runs of the Map and Unmap
// batches so far, which is what a driver that maps one run per call (the
// stock nvidia-uvm path) would have been asked.
func (b *Backend) DriverCalls() (mapCalls, unmapCalls uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ops[OpMap].Runs, b.ops[OpUnmap].Runs
}

// New makes a simulated GPU.
func New(cfg Config) (*Backend, error) {
	if !cfg.PageSize.Valid() {
		return nil, fmt.Errorf("sim: page size %s: %w", cfg.PageSize, pagesize.ErrUnsupported)
	}
	if cfg.GPUMemory == 0 {
		cfg.GPUMemory = DefaultGPUMemory
	}
	if cfg.GPUMemory < rootChunkSize {
		return nil, fmt.Errorf("sim: gpu memory %d bytes is less than one 2 MiB root chunk: %w", cfg.GPUMemory, backend.ErrBadArgument)
	}
	if cfg.VASize == 0 {
		cfg.VASize = DefaultVASize
	}
	if cfg.VASize%rootChunkSize != 0 || cfg.VASize > ^uint64(0)-vaBase {
		return nil, fmt.Errorf("sim: virtual address space size %#x: must be a multiple of 2 MiB and at most %#x: %w", cfg.VASize, ^uint64(0)-vaBase, backend.ErrBadArgument)
	}
	perChunk := int(rootChunkSize / cfg.PageSize.Bytes())
	chunks := cfg.GPUMemory / rootChunkSize
	if chunks*uint64(perChunk) > maxPages {
		return nil, fmt.Errorf("sim: gpu memory %d bytes holds more than %d pages of %s: %w", cfg.GPUMemory, uint64(maxPages), cfg.PageSize, backend.ErrBadArgument)
	}
	if cfg.Sleep && cfg.Latency == nil {
		return nil, fmt.Errorf("sim: sleep needs a latency model: %w", backend.ErrBadArgument)
	}
	b := &Backend{
		ps:     cfg.PageSize,
		gpuMem: cfg.GPUMemory,
		sleep:  cfg.Sleep,
		fence:  cfg.Fence,
		phys:   newPhysical(perChunk, uint32(chunks)),
		virt:   virtual{limit: cfg.VASize},
	}
	for cfg.PageSize.Bytes()>>b.shift > 1 {
		b.shift++
	}
	if cfg.Latency != nil {
		if err := cfg.Latency.validate(); err != nil {
			return nil, fmt.Errorf("sim: %w: %w", err, backend.ErrBadArgument)
		}
		m := *cfg.Latency
		b.latency = &m
	}
	if b.fence == nil {
		b.fence = backend.NewManualFence(true)
	}
	for op := range NumOps {
		b.ops[op].Op = Op(op)
	}
	return b, nil
}

// Name implements backend.Backend.
func (b *Backend) Name() string { return "sim" }

// PageSize implements backend.Backend.
func (b *Backend) PageSize() pagesize.Size { return b.ps }

// Fence implements backend.Backend.
func (b *Backend) Fence() backend.Fence { return b.fence }

// Latency returns the latency model in use, or nil.
func (b *Backend) Latency() *LatencyModel {
	if b.latency == nil {
		return nil
	}
	m := *b.latency
	return &m
}

// InjectFault makes the nth call of op from now (1: the next one) fail with
// backend.ErrInjected before it changes anything. Several faults may be
// pending at once. Calls with an empty batch reach no driver and are not
// counted. A count below 1 or an unknown op is a bug in the test and panics.
func (b *Backend) InjectFault(op Op, nth int) {
	if !op.valid() || nth < 1 {
		panic(fmt.Sprintf("sim: InjectFault(%v, %d): need a known op and nth >= 1", op, nth))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.faults[op] = append(b.faults[op], b.entered[op]+uint64(nth))
}

// ClearFaults drops every pending injected fault.
func (b *Backend) ClearFaults() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.faults = [NumOps][]uint64{}
}

// enter counts a call of op and reports whether it must fail; b.mu is held.
// Every operation takes b.mu with a deferred unlock, so that a panic in a
// caller's test cannot leave it locked, and waits out its modelled time
// after the unlock.
func (b *Backend) enter(op Op) error {
	if b.closed {
		return fmt.Errorf("sim %s: %w", op, backend.ErrClosed)
	}
	b.entered[op]++
	f := b.faults[op]
	for i, at := range f {
		if at == b.entered[op] {
			b.faults[op] = append(f[:i], f[i+1:]...)
			b.ops[op].Failed++
			return fmt.Errorf("sim %s: call %d: %w", op, at, backend.ErrInjected)
		}
	}
	return nil
}

// fail counts a failed call; b.mu is held.
func (b *Backend) fail(op Op, err error) error {
	b.ops[op].Failed++
	return err
}

// done records a successful call over pages pages and returns the time the
// caller must wait after releasing b.mu; b.mu is held.
func (b *Backend) done(op Op, pages int) time.Duration { return b.doneRuns(op, pages, 1) }

// doneRuns is done for a Map or Unmap batch that forms runs runs.
func (b *Backend) doneRuns(op Op, pages, runs int) time.Duration {
	s := &b.ops[op]
	s.Calls++
	s.Pages += uint64(pages)
	s.Runs += uint64(runs)
	if b.latency == nil {
		return 0
	}
	d := b.latency.CostRuns(op, pages, runs)
	s.ModelledTime += d
	if !b.sleep {
		return 0
	}
	return d
}

// wait spends d. Timer sleeps overshoot by tens of µs, so the last stretch
// is spun, which keeps short modelled calls close to their real length.
func wait(d time.Duration) {
	if d <= 0 {
		return
	}
	end := time.Now().Add(d)
	const spin = 50 * time.Microsecond
	if d > spin {
		time.Sleep(d - spin)
	}
	for time.Now().Before(end) {
	}
}

// MemInfo implements backend.Backend: Free is the memory in root chunks
// not yet claimed, which is what another process could still get.
func (b *Backend) MemInfo() (backend.MemInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return backend.MemInfo{}, fmt.Errorf("sim meminfo: %w", backend.ErrClosed)
	}
	return backend.MemInfo{Total: b.gpuMem, Free: b.gpuMem - uint64(b.phys.claimed)*rootChunkSize}, nil
}

// Close implements backend.Backend: it drops every mapping, page and region.
// Closing twice is not an error.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	peak := b.phys.peakClaimed
	b.phys = newPhysical(b.phys.perChunk, b.phys.maxChunks)
	b.phys.peakClaimed = peak
	b.virt = virtual{limit: b.virt.limit}
	b.mappedPages = 0
	for op := range NumOps {
		b.faults[op] = nil
	}
	return nil
}

// Reserve implements backend.Backend. Regions start on 2 MiB boundaries at
// the lowest free address from 0x7f0000000000; they never overlap.
func (b *Backend) Reserve(size uint64) (backend.Region, error) {
	r, d, err := b.reserve(size)
	wait(d)
	return r, err
}

func (b *Backend) reserve(size uint64) (backend.Region, time.Duration, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.enter(OpReserve); err != nil {
		return backend.Region{}, 0, err
	}
	switch {
	case size == 0:
		return backend.Region{}, 0, b.fail(OpReserve, fmt.Errorf("sim reserve: size 0: %w", backend.ErrBadArgument))
	case !b.ps.Aligned(size):
		return backend.Region{}, 0, b.fail(OpReserve, fmt.Errorf("sim reserve: size %#x is not a multiple of %s: %w", size, b.ps, backend.ErrMisaligned))
	case size > b.virt.limit-b.virt.reserved:
		return backend.Region{}, 0, b.fail(OpReserve, fmt.Errorf("sim reserve: %#x bytes: %w: virtual address space has %#x of %#x bytes left",
			size, backend.ErrOutOfMemory, b.virt.limit-b.virt.reserved, b.virt.limit))
	}
	base, at, ok := b.virt.place(size)
	if !ok {
		return backend.Region{}, 0, b.fail(OpReserve, fmt.Errorf("sim reserve: %#x bytes: %w: no free virtual range that large", size, backend.ErrOutOfMemory))
	}
	b.virt.insert(at, newRegion(base, size, size>>b.shift))
	return backend.Region{Addr: base, Size: size}, b.done(OpReserve, int(size>>b.shift)), nil
}

// Release implements backend.Backend: the region must be one Reserve
// returned, exactly, with nothing mapped in it.
func (b *Backend) Release(r backend.Region) error {
	d, err := b.release(r)
	wait(d)
	return err
}

func (b *Backend) release(r backend.Region) (time.Duration, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.enter(OpRelease); err != nil {
		return 0, err
	}
	reg := b.virt.find(r.Addr)
	switch {
	case reg == nil || reg.base != r.Addr:
		return 0, b.fail(OpRelease, fmt.Errorf("sim release: no region starts at %#x: %w", r.Addr, backend.ErrOutOfRange))
	case reg.size != r.Size:
		return 0, b.fail(OpRelease, fmt.Errorf("sim release: region at %#x has size %#x, not %#x: %w", r.Addr, reg.size, r.Size, backend.ErrBadArgument))
	case reg.mapped > 0:
		return 0, b.fail(OpRelease, fmt.Errorf("sim release: region at %#x: %w (%d pages)", r.Addr, backend.ErrRegionInUse, reg.mapped))
	}
	b.virt.remove(reg)
	return b.done(OpRelease, int(r.Size>>b.shift)), nil
}

// AllocPages implements backend.Backend. Pages come zeroed. When the GPU
// cannot hold them all, none is made and the error says how many would fit.
func (b *Backend) AllocPages(n int) ([]backend.PageID, error) {
	ids, d, err := b.allocPages(n)
	wait(d)
	return ids, err
}

func (b *Backend) allocPages(n int) ([]backend.PageID, time.Duration, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.enter(OpAlloc); err != nil {
		return nil, 0, err
	}
	if n <= 0 {
		return nil, 0, b.fail(OpAlloc, fmt.Errorf("sim alloc: %d pages: %w", n, backend.ErrBadArgument))
	}
	if room := b.phys.room(); n > room {
		return nil, 0, b.fail(OpAlloc, fmt.Errorf("sim alloc: %d pages of %s: %w: %d fit (%d of %d root chunks claimed)",
			n, b.ps, backend.ErrOutOfMemory, room, b.phys.claimed, b.phys.maxChunks))
	}
	ids := make([]backend.PageID, n)
	for i := range ids {
		ids[i] = backend.PageID(b.phys.create())
	}
	return ids, b.done(OpAlloc, n), nil
}

// FreePages implements backend.Backend. The whole batch is checked first:
// one unknown, freed, repeated or mapped page and nothing is freed.
func (b *Backend) FreePages(pages []backend.PageID) error {
	d, err := b.freePages(pages)
	wait(d)
	return err
}

func (b *Backend) freePages(pages []backend.PageID) (time.Duration, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, fmt.Errorf("sim free: %w", backend.ErrClosed)
	}
	if len(pages) == 0 {
		return 0, nil
	}
	if err := b.enter(OpFree); err != nil {
		return 0, err
	}
	b.batch++
	for i, id := range pages {
		pg := b.phys.lookup(uint64(id))
		switch {
		case pg == nil:
			return 0, b.fail(OpFree, fmt.Errorf("sim free: page %#x (batch entry %d): %w (never made, or already freed)", uint64(id), i, backend.ErrUnknownPage))
		case pg.mark == b.batch:
			return 0, b.fail(OpFree, fmt.Errorf("sim free: page %#x (batch entry %d): %w: listed twice in one batch (double free)", uint64(id), i, backend.ErrUnknownPage))
		case pg.mapped != 0:
			return 0, b.fail(OpFree, fmt.Errorf("sim free: page %#x (batch entry %d): %w at %#x", uint64(id), i, backend.ErrPageMapped, pg.mapped))
		}
		pg.mark = b.batch
	}
	for _, id := range pages {
		b.phys.destroy(uint64(id))
	}
	return b.done(OpFree, len(pages)), nil
}

// Map implements backend.Backend. Each mapping is checked and applied in
// turn; the first bad one undoes those before it, so a failed batch leaves
// nothing mapped.
func (b *Backend) Map(maps []backend.Mapping) error {
	d, err := b.mapBatch(maps)
	wait(d)
	return err
}

func (b *Backend) mapBatch(maps []backend.Mapping) (time.Duration, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, fmt.Errorf("sim map: %w", backend.ErrClosed)
	}
	if len(maps) == 0 {
		return 0, nil
	}
	if err := b.enter(OpMap); err != nil {
		return 0, err
	}
	b.batch++
	for i, m := range maps {
		if err := b.mapOne(m); err != nil {
			b.undoMaps(maps[:i])
			return 0, b.fail(OpMap, fmt.Errorf("sim map: batch entry %d: %w", i, err))
		}
	}
	b.mappedPages += len(maps)
	b.peakMapped = max(b.peakMapped, b.mappedPages)
	// A run: entries that follow each other at consecutive addresses,
	// backed by consecutive slots of one root chunk.
	runs := 1
	for i := 1; i < len(maps); i++ {
		p, q := b.phys.lookup(uint64(maps[i-1].Page)), b.phys.lookup(uint64(maps[i].Page))
		if maps[i].Addr != maps[i-1].Addr+b.ps.Bytes() || p.chunk != q.chunk || q.slot != p.slot+1 || b.virt.find(maps[i].Addr) != b.virt.find(maps[i-1].Addr) {
			runs++
		}
	}
	return b.doneRuns(OpMap, len(maps), runs), nil
}

func (b *Backend) mapOne(m backend.Mapping) error {
	if m.Addr&(b.ps.Bytes()-1) != 0 {
		return fmt.Errorf("address %#x: %w (%s)", m.Addr, backend.ErrMisaligned, b.ps)
	}
	r := b.virt.find(m.Addr)
	if r == nil {
		return fmt.Errorf("address %#x: %w", m.Addr, backend.ErrOutOfRange)
	}
	pg := b.phys.lookup(uint64(m.Page))
	if pg == nil {
		return fmt.Errorf("page %#x: %w (never made, or freed)", uint64(m.Page), backend.ErrUnknownPage)
	}
	if pg.mapped != 0 {
		if pg.mark == b.batch {
			return fmt.Errorf("page %#x: %w: listed twice in one batch (%#x and %#x)", uint64(m.Page), backend.ErrAlreadyMapped, pg.mapped, m.Addr)
		}
		return fmt.Errorf("page %#x: %w at %#x", uint64(m.Page), backend.ErrAlreadyMapped, pg.mapped)
	}
	i := (m.Addr - r.base) >> b.shift
	if v := r.get(i); v != 0 {
		if b.phys.pages[v-1].mark == b.batch {
			return fmt.Errorf("address %#x: %w: listed twice in one batch", m.Addr, backend.ErrAlreadyMapped)
		}
		return fmt.Errorf("address %#x: %w", m.Addr, backend.ErrAlreadyMapped)
	}
	r.set(i, uint32(m.Page)+1)
	r.mapped++
	pg.mapped = m.Addr
	pg.mark = b.batch
	return nil
}

// undoMaps removes mappings that mapOne applied.
func (b *Backend) undoMaps(maps []backend.Mapping) {
	for _, m := range maps {
		r := b.virt.find(m.Addr)
		r.set((m.Addr-r.base)>>b.shift, 0)
		r.mapped--
		b.phys.lookup(uint64(m.Page)).mapped = 0
	}
}

// Unmap implements backend.Backend. The fence and every address are checked
// before anything is unmapped.
func (b *Backend) Unmap(addrs []uint64, fence backend.Epoch) error {
	d, err := b.unmap(addrs, fence)
	wait(d)
	return err
}

func (b *Backend) unmap(addrs []uint64, fence backend.Epoch) (time.Duration, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, fmt.Errorf("sim unmap: %w", backend.ErrClosed)
	}
	if len(addrs) == 0 {
		return 0, nil
	}
	if err := b.enter(OpUnmap); err != nil {
		return 0, err
	}
	if done := b.fence.Completed(); fence > done {
		return 0, b.fail(OpUnmap, fmt.Errorf("sim unmap: epoch %d, completed %d: %w", fence, done, backend.ErrFenceNotReached))
	}
	b.batch++
	for i, a := range addrs {
		if err := b.checkUnmap(a); err != nil {
			return 0, b.fail(OpUnmap, fmt.Errorf("sim unmap: batch entry %d: %w", i, err))
		}
	}
	for _, a := range addrs {
		r := b.virt.find(a)
		i := (a - r.base) >> b.shift
		b.phys.pages[r.get(i)-1].mapped = 0
		r.set(i, 0)
		r.mapped--
	}
	b.mappedPages -= len(addrs)
	runs := 1
	for i := 1; i < len(addrs); i++ {
		if addrs[i] != addrs[i-1]+b.ps.Bytes() || b.virt.find(addrs[i]) != b.virt.find(addrs[i-1]) {
			runs++
		}
	}
	return b.doneRuns(OpUnmap, len(addrs), runs), nil
}

func (b *Backend) checkUnmap(a uint64) error {
	if a&(b.ps.Bytes()-1) != 0 {
		return fmt.Errorf("address %#x: %w (%s)", a, backend.ErrMisaligned, b.ps)
	}
	r := b.virt.find(a)
	if r == nil {
		return fmt.Errorf("address %#x: %w", a, backend.ErrOutOfRange)
	}
	v := r.get((a - r.base) >> b.shift)
	if v == 0 {
		return fmt.Errorf("address %#x: %w", a, backend.ErrNotMapped)
	}
	pg := &b.phys.pages[v-1]
	if pg.mark == b.batch {
		return fmt.Errorf("address %#x: %w: listed twice in one batch", a, backend.ErrNotMapped)
	}
	pg.mark = b.batch
	return nil
}

// Translate returns the page mapped at addr, which may point anywhere
// inside the page.
func (b *Backend) Translate(addr uint64) (backend.PageID, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	pg, idx := b.translate(addr)
	if pg == nil {
		return 0, false
	}
	return backend.PageID(uint64(pg.gen)<<32 | uint64(idx)), true
}

func (b *Backend) translate(addr uint64) (*pageState, uint32) {
	if b.closed {
		return nil, 0
	}
	r := b.virt.find(addr)
	if r == nil {
		return nil, 0
	}
	v := r.get((addr - r.base) >> b.shift)
	if v == 0 {
		return nil, 0
	}
	return &b.phys.pages[v-1], v - 1
}

// Write stores v as the data of the page mapped at addr. The data belongs
// to the physical page: it moves with the page when it is remapped, and a
// newly made page reads 0.
func (b *Backend) Write(addr uint64, v uint64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	pg, err := b.dataPage("write", addr)
	if err != nil {
		return err
	}
	pg.word = v
	return nil
}

// Read returns the data of the page mapped at addr.
func (b *Backend) Read(addr uint64) (uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	pg, err := b.dataPage("read", addr)
	if err != nil {
		return 0, err
	}
	return pg.word, nil
}

func (b *Backend) dataPage(op string, addr uint64) (*pageState, error) {
	if b.closed {
		return nil, fmt.Errorf("sim %s: %w", op, backend.ErrClosed)
	}
	pg, _ := b.translate(addr)
	if pg == nil {
		return nil, fmt.Errorf("sim %s: address %#x: %w", op, addr, backend.ErrNotMapped)
	}
	return pg, nil
}

// OpStats counts the calls of one operation.
type OpStats struct {
	Op     Op     `json:"op"`
	Calls  uint64 `json:"calls"`  // calls that succeeded (empty batches are not calls)
	Failed uint64 `json:"failed"` // calls that returned an error, injected ones included
	Pages  uint64 `json:"pages"`  // pages the successful calls covered
	// Runs counts the runs of Map and Unmap batches (see LatencyModel.PerRun):
	// the driver calls a backend that maps one run per call would make.
	Runs uint64 `json:"runs"`
	// ModelledTime is the latency model's time for the successful calls.
	ModelledTime time.Duration `json:"modelled_ns"`
}

// Stats is a snapshot of the simulated GPU.
type Stats struct {
	PageSize pagesize.Size   `json:"page_size"`
	Ops      [NumOps]OpStats `json:"ops"` // indexed by Op
	Latency  *LatencyModel   `json:"latency,omitempty"`

	PagesAllocated  int `json:"pages_allocated"` // pages made and not freed
	PagesMapped     int `json:"pages_mapped"`
	PeakPagesMapped int `json:"peak_pages_mapped"`
	// RootChunksUsed is the number of 2 MiB root chunks claimed from the GPU.
	RootChunksUsed int `json:"root_chunks_used"`
	// RootChunksPartial counts claimed root chunks with some but not all of
	// their pages in use: memory claimed from the GPU that holds no page.
	RootChunksPartial      int    `json:"root_chunks_partial"`
	DeviceBytesClaimed     uint64 `json:"device_bytes_claimed"`
	PeakDeviceBytesClaimed uint64 `json:"peak_device_bytes_claimed"`
	GPUMemory              uint64 `json:"gpu_memory_bytes"`
	Regions                int    `json:"regions"`
	ReservedBytes          uint64 `json:"reserved_bytes"`
}

// ModelledTime returns the latency model's total over all operations.
func (s Stats) ModelledTime() time.Duration {
	var t time.Duration
	for _, o := range s.Ops {
		t += o.ModelledTime
	}
	return t
}

// Stats returns a snapshot. It is safe to call while other goroutines use
// the backend, and after Close (which leaves nothing held).
func (b *Backend) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.phys
	return Stats{
		PageSize:               b.ps,
		Ops:                    b.ops,
		Latency:                b.Latency(),
		PagesAllocated:         p.livePages,
		PagesMapped:            b.mappedPages,
		PeakPagesMapped:        b.peakMapped,
		RootChunksUsed:         p.claimed,
		RootChunksPartial:      p.partialChunks(),
		DeviceBytesClaimed:     uint64(p.claimed) * rootChunkSize,
		PeakDeviceBytesClaimed: uint64(p.peakClaimed) * rootChunkSize,
		GPUMemory:              b.gpuMem,
		Regions:                len(b.virt.regions),
		ReservedBytes:          b.virt.reserved,
	}
}
