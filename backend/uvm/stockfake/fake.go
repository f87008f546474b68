// Package stockfake is a StockDriver for tests: an in-memory model of what
// NVIDIA's resource manager and nvidia-uvm check and keep for the stock
// small-page path (video memory allocations, external ranges, mappings of
// allocation slices), with failure injection at any call and a count of
// everything still held, so tests can prove nothing leaks after a failure.
//
// It is stricter than the real driver where the backend must never rely on
// leniency: mapping over a mapped address is refused (UVM would replace the
// old mapping), and every address, length and offset must be 64 KiB aligned
// (UVM takes 4 KiB; vattn never maps less than 64 KiB).
package stockfake

import (
	"fmt"
	"sync"

	"github.com/vattn/vattn/ioctl"
)

const unit = 64 << 10 // the smallest page vattn maps, and the fake's granule

// Ops a failure can be injected into.
const (
	OpAllocVidmem = "alloc-vidmem"
	OpFreeVidmem  = "free-vidmem"
	OpCreateRange = "create-range"
	OpMap         = "map"
	OpUnmap       = "unmap"
	OpFreeRange   = "free-range"
	OpClose       = "close"
)

type alloc struct {
	bytes, rmPage uint64
	freed         bool // RM handle freed; memory lives on while UVM maps it
	maps          int  // units of it mapped
}

type extent struct{ base, length uint64 }

type target struct {
	handle uint32
	offset uint64
}

// Driver is the fake. The zero value is not usable; call New.
type Driver struct {
	mu sync.Mutex

	// Limit is the video memory RM hands out before NV_ERR_NO_MEMORY (0: no limit).
	Limit uint64
	// FailAt makes the FailAt-th call (counting every call from 1) fail
	// with FailStatus; 0 never. FailOp, when set, counts only calls of that op.
	FailAt     int
	FailOp     string
	FailStatus ioctl.Status

	calls   int
	ops     map[string]int
	allocs  map[uint32]*alloc
	next    uint32
	used    uint64
	ranges  []extent
	mapped  map[uint64]target // unit address → backing
	closed  bool
	history []string
}

// New returns an empty driver.
func New() *Driver {
	return &Driver{ops: map[string]int{}, allocs: map[uint32]*alloc{}, next: 0xcaf00001, mapped: map[uint64]target{}, FailStatus: ioctl.NV_ERR_INVALID_ARGUMENT}
}

// Branch implements uvm.StockDriver.
func (d *Driver) Branch() string { return "fake" }

// enter counts a call and decides whether it fails. d.mu is held.
func (d *Driver) enter(op string) error {
	if d.closed {
		return fmt.Errorf("stockfake %s: driver closed", op)
	}
	d.ops[op]++
	d.history = append(d.history, op)
	n := d.calls + 1
	if d.FailOp != "" {
		if op != d.FailOp {
			return nil
		}
		n = d.ops[op]
	} else {
		d.calls++
	}
	if d.FailAt > 0 && n == d.FailAt {
		return fmt.Errorf("stockfake %s (injected): %w", op, d.FailStatus)
	}
	return nil
}

// Calls returns how many calls of op were made ("" for all).
func (d *Driver) Calls(op string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if op == "" {
		n := 0
		for _, c := range d.ops {
			n += c
		}
		return n
	}
	return d.ops[op]
}

// History returns the ops called, in order.
func (d *Driver) History() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.history...)
}

// Live is what the driver still holds.
type Live struct {
	Allocs  int    // RM allocations whose memory is alive (handle held or still mapped)
	Bytes   uint64 // their bytes
	Ranges  int    // external ranges
	Mapped  uint64 // bytes mapped
	Handles int    // RM handles not freed
}

func (l Live) String() string {
	return fmt.Sprintf("%d allocations (%d bytes, %d handles), %d external ranges, %d bytes mapped", l.Allocs, l.Bytes, l.Handles, l.Ranges, l.Mapped)
}

// Live reports what is held.
func (d *Driver) Live() Live {
	d.mu.Lock()
	defer d.mu.Unlock()
	var l Live
	for _, a := range d.allocs {
		l.Allocs++
		l.Bytes += a.bytes
		if !a.freed {
			l.Handles++
		}
	}
	l.Ranges = len(d.ranges)
	l.Mapped = uint64(len(d.mapped)) * unit
	return l
}

// Backing returns the allocation and offset mapped at addr, as the GPU would
// see it.
func (d *Driver) Backing(addr uint64) (handle uint32, offset uint64, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, ok := d.mapped[addr/unit*unit]
	return t.handle, t.offset + addr%unit, ok
}

// AllocVidmem implements uvm.StockDriver.
func (d *Driver) AllocVidmem(bytes, rmPage uint64) (uint32, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.enter(OpAllocVidmem); err != nil {
		return 0, err
	}
	if bytes == 0 || bytes%(2<<20) != 0 || (rmPage != 64<<10 && rmPage != 2<<20) {
		return 0, fmt.Errorf("stockfake alloc %d bytes in %d-byte pages: %w", bytes, rmPage, ioctl.NV_ERR_INVALID_ARGUMENT)
	}
	if d.Limit > 0 && d.used+bytes > d.Limit {
		return 0, fmt.Errorf("stockfake alloc %d bytes (%d of %d used): %w", bytes, d.used, d.Limit, ioctl.NV_ERR_NO_MEMORY)
	}
	h := d.next
	d.next++
	d.allocs[h] = &alloc{bytes: bytes, rmPage: rmPage}
	d.used += bytes
	return h, nil
}

// FreeVidmem implements uvm.StockDriver.
func (d *Driver) FreeVidmem(h uint32) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.enter(OpFreeVidmem); err != nil {
		return err
	}
	a, ok := d.allocs[h]
	if !ok || a.freed {
		return fmt.Errorf("stockfake free handle %#x: %w", h, ioctl.NV_ERR_OBJECT_NOT_FOUND)
	}
	a.freed = true
	d.drop(h)
	return nil
}

// drop forgets an allocation once its handle is freed and nothing maps it.
func (d *Driver) drop(h uint32) {
	if a := d.allocs[h]; a != nil && a.freed && a.maps == 0 {
		d.used -= a.bytes
		delete(d.allocs, h)
	}
}

// rangeOf returns the index of the external range holding [base, base+n).
func (d *Driver) rangeOf(base, n uint64) int {
	for i, r := range d.ranges {
		if base >= r.base && n <= r.length && base-r.base <= r.length-n {
			return i
		}
	}
	return -1
}

// CreateRange implements uvm.StockDriver.
func (d *Driver) CreateRange(base, length uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.enter(OpCreateRange); err != nil {
		return err
	}
	if base == 0 || length == 0 || base%unit != 0 || length%unit != 0 {
		return fmt.Errorf("stockfake create range %#x+%#x: %w", base, length, ioctl.NV_ERR_INVALID_ADDRESS)
	}
	for _, r := range d.ranges {
		if base < r.base+r.length && r.base < base+length {
			return fmt.Errorf("stockfake create range %#x+%#x: %w", base, length, ioctl.NV_ERR_UVM_ADDRESS_IN_USE)
		}
	}
	d.ranges = append(d.ranges, extent{base, length})
	return nil
}

// Map implements uvm.StockDriver.
func (d *Driver) Map(base, length uint64, h uint32, offset uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.enter(OpMap); err != nil {
		return err
	}
	if length == 0 || base%unit != 0 || length%unit != 0 || offset%unit != 0 || d.rangeOf(base, length) < 0 {
		return fmt.Errorf("stockfake map %#x+%#x: %w", base, length, ioctl.NV_ERR_INVALID_ADDRESS)
	}
	a, ok := d.allocs[h]
	if !ok || a.freed {
		return fmt.Errorf("stockfake map handle %#x: %w", h, ioctl.NV_ERR_OBJECT_NOT_FOUND)
	}
	if offset+length > a.bytes || offset+length < offset {
		return fmt.Errorf("stockfake map %#x bytes at offset %#x of %#x: %w", length, offset, a.bytes, ioctl.NV_ERR_INVALID_LIMIT)
	}
	for u := base; u < base+length; u += unit {
		if _, busy := d.mapped[u]; busy {
			return fmt.Errorf("stockfake map over mapped %#x: %w", u, ioctl.NV_ERR_UVM_ADDRESS_IN_USE)
		}
	}
	for u := uint64(0); u < length; u += unit {
		d.mapped[base+u] = target{h, offset + u}
	}
	a.maps += int(length / unit)
	return nil
}

// unmapRange removes every mapping in [base, base+length).
func (d *Driver) unmapRange(base, length uint64) {
	for u := base; u < base+length; u += unit {
		t, ok := d.mapped[u]
		if !ok {
			continue
		}
		delete(d.mapped, u)
		d.allocs[t.handle].maps--
		d.drop(t.handle)
	}
}

// Unmap implements uvm.StockDriver: like UVM, it may split mappings and
// unmaps whatever lies in the range.
func (d *Driver) Unmap(base, length uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.enter(OpUnmap); err != nil {
		return err
	}
	if length == 0 || base%unit != 0 || length%unit != 0 || d.rangeOf(base, length) < 0 {
		return fmt.Errorf("stockfake unmap %#x+%#x: %w", base, length, ioctl.NV_ERR_INVALID_ADDRESS)
	}
	d.unmapRange(base, length)
	return nil
}

// FreeRange implements uvm.StockDriver.
func (d *Driver) FreeRange(base, length uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.enter(OpFreeRange); err != nil {
		return err
	}
	for i, r := range d.ranges {
		if r.base == base && r.length == length {
			d.unmapRange(base, length)
			d.ranges = append(d.ranges[:i], d.ranges[i+1:]...)
			return nil
		}
	}
	return fmt.Errorf("stockfake free range %#x+%#x: %w", base, length, ioctl.NV_ERR_INVALID_ADDRESS)
}

// Close implements uvm.StockDriver: like closing the RM client, it frees
// every handle still held; ranges belong to CUDA's UVM file and stay.
func (d *Driver) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.enter(OpClose); err != nil {
		// Even a failed close leaves the client gone, as the file is closed.
		d.release()
		return err
	}
	d.release()
	return nil
}

func (d *Driver) release() {
	d.closed = true
	for h, a := range d.allocs {
		if !a.freed {
			a.freed = true
			d.drop(h)
		}
	}
}

// Ops of the batched module's commands (Batched).
const (
	OpMapBatch   = "map-batch"
	OpUnmapBatch = "unmap-batch"
)

// Batched is the fake with the vattn module's batched commands on top: the
// same driver, plus MapBatch and UnmapBatch, each one call that applies every
// entry or none (what UVM_VATTN_MAP_BATCH and UVM_VATTN_UNMAP_BATCH promise).
// Max is MaxBatch's answer (ioctl.UVM_VATTN_MAX_BATCH when 0).
type Batched struct {
	*Driver
	Max int
}

// MaxBatch implements uvm.BatchDriver.
func (b Batched) MaxBatch() int {
	if b.Max > 0 {
		return b.Max
	}
	return ioctl.UVM_VATTN_MAX_BATCH
}

// MapBatch maps every run, all or nothing: entries are checked as Map checks
// them, against the state before the call and against each other.
func (b Batched) MapBatch(runs []ioctl.UVM_VATTN_MAP_ENTRY) error {
	d := b.Driver
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.enter(OpMapBatch); err != nil {
		return err
	}
	// In the module's order: arguments, then ranges and what is mapped, then
	// memory.
	for i, r := range runs {
		if r.Reserved != 0 {
			return fmt.Errorf("stockfake map batch entry %d: %w", i, ioctl.NV_ERR_INVALID_ARGUMENT)
		}
		if r.Length == 0 || r.Base%unit != 0 || r.Length%unit != 0 || r.Base+r.Length < r.Base {
			return fmt.Errorf("stockfake map batch entry %d %#x+%#x: %w", i, r.Base, r.Length, ioctl.NV_ERR_INVALID_ADDRESS)
		}
		if r.Offset%unit != 0 {
			return fmt.Errorf("stockfake map batch entry %d: %w", i, ioctl.NV_ERR_INVALID_OFFSET)
		}
	}
	seen := map[uint64]bool{}
	for i, r := range runs {
		for u := r.Base; u < r.Base+r.Length; u += unit {
			if seen[u] {
				return fmt.Errorf("stockfake map batch entry %d overlaps another at %#x: %w", i, u, ioctl.NV_ERR_INVALID_ARGUMENT)
			}
			seen[u] = true
		}
	}
	for i, r := range runs {
		if d.rangeOf(r.Base, r.Length) < 0 {
			return fmt.Errorf("stockfake map batch entry %d %#x+%#x: %w", i, r.Base, r.Length, ioctl.NV_ERR_INVALID_ADDRESS)
		}
		for u := r.Base; u < r.Base+r.Length; u += unit {
			if _, busy := d.mapped[u]; busy {
				return fmt.Errorf("stockfake map batch entry %d over mapped %#x: %w", i, u, ioctl.NV_ERR_UVM_ADDRESS_IN_USE)
			}
		}
	}
	for i, r := range runs {
		a, ok := d.allocs[r.HMemory]
		if !ok || a.freed {
			return fmt.Errorf("stockfake map batch entry %d handle %#x: %w", i, r.HMemory, ioctl.NV_ERR_INVALID_OBJECT_HANDLE)
		}
		if r.Offset+r.Length > a.bytes || r.Offset+r.Length < r.Offset {
			return fmt.Errorf("stockfake map batch entry %d: %w", i, ioctl.NV_ERR_INVALID_OFFSET)
		}
	}
	for _, r := range runs {
		for u := uint64(0); u < r.Length; u += unit {
			d.mapped[r.Base+u] = target{r.HMemory, r.Offset + u}
		}
		d.allocs[r.HMemory].maps += int(r.Length / unit)
	}
	return nil
}

// UnmapBatch unmaps whatever lies in each entry, all or nothing.
func (b Batched) UnmapBatch(entries []ioctl.UVM_VATTN_UNMAP_ENTRY) error {
	d := b.Driver
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.enter(OpUnmapBatch); err != nil {
		return err
	}
	for i, e := range entries {
		if e.Length == 0 || e.Base%unit != 0 || e.Length%unit != 0 || d.rangeOf(e.Base, e.Length) < 0 {
			return fmt.Errorf("stockfake unmap batch entry %d %#x+%#x: %w", i, e.Base, e.Length, ioctl.NV_ERR_INVALID_ADDRESS)
		}
	}
	for _, e := range entries {
		d.unmapRange(e.Base, e.Length)
	}
	return nil
}
