package sim

import "sort"

// vaBase is where reservations start: high in the user half of a 47-bit
// address space, where CUDA's own reservations land on x86-64 Linux. It is
// a multiple of 2 MiB, as every region start is.
const vaBase = 0x7f0000000000

// A region's mappings are a dense table indexed by page number, stored in
// blocks allocated when first written, so a large reservation costs memory
// only where pages are mapped (4 bytes per page of a touched block).
const (
	slotBlockShift = 12
	slotBlockSize  = 1 << slotBlockShift
	slotBlockMask  = slotBlockSize - 1
)

type region struct {
	base, size uint64
	mapped     int
	// slots[i>>slotBlockShift][i&slotBlockMask] is page index+1 of the page
	// mapped at page number i of the region, 0 if none.
	slots [][]uint32
}

func newRegion(base, size, pages uint64) *region {
	return &region{base: base, size: size, slots: make([][]uint32, (pages+slotBlockSize-1)>>slotBlockShift)}
}

func (r *region) get(i uint64) uint32 {
	if b := r.slots[i>>slotBlockShift]; b != nil {
		return b[i&slotBlockMask]
	}
	return 0
}

func (r *region) set(i uint64, v uint32) {
	b := r.slots[i>>slotBlockShift]
	if b == nil {
		b = make([]uint32, slotBlockSize)
		r.slots[i>>slotBlockShift] = b
	}
	b[i&slotBlockMask] = v
}

// virtual is the reserved address space: regions sorted by base.
type virtual struct {
	limit    uint64 // bytes that may be reserved at once
	reserved uint64
	regions  []*region
	last     *region // the region the previous lookup found
}

// find returns the region holding addr, or nil.
func (v *virtual) find(addr uint64) *region {
	if l := v.last; l != nil && addr-l.base < l.size {
		return l
	}
	i := sort.Search(len(v.regions), func(i int) bool { return v.regions[i].base > addr })
	if i == 0 {
		return nil
	}
	r := v.regions[i-1]
	if addr-r.base >= r.size {
		return nil
	}
	v.last = r
	return r
}

// place finds the lowest 2 MiB-aligned gap of size bytes in
// [vaBase, vaBase+limit): first fit, so addresses grow like a bump
// allocator until regions are released and their space reused. It returns
// the base and the index the region takes in v.regions.
func (v *virtual) place(size uint64) (base uint64, at int, ok bool) {
	cursor := uint64(vaBase)
	end := vaBase + v.limit
	for i, r := range v.regions {
		if r.base >= cursor && r.base-cursor >= size {
			return cursor, i, true
		}
		cursor = alignUp(r.base+r.size, rootChunkSize)
	}
	if cursor <= end && end-cursor >= size {
		return cursor, len(v.regions), true
	}
	return 0, 0, false
}

func (v *virtual) insert(at int, r *region) {
	v.regions = append(v.regions, nil)
	copy(v.regions[at+1:], v.regions[at:])
	v.regions[at] = r
	v.reserved += r.size
}

func (v *virtual) remove(r *region) {
	for i, x := range v.regions {
		if x == r {
			v.regions = append(v.regions[:i], v.regions[i+1:]...)
			break
		}
	}
	v.reserved -= r.size
	if v.last == r {
		v.last = nil
	}
}

func alignUp(n, a uint64) uint64 { return (n + a - 1) &^ (a - 1) }
