package cudavmm

import (
	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/cuda"
)

// page is one physical page the backend made.
type page struct {
	handle cuda.MemHandle
	addr   uint64 // where it is mapped; 0 when unmapped
	mark   uint64 // the backend call that last saw it in a batch (duplicate check)
	reuse  uint32 // how many pages held this slot before
	live   bool
}

// pageTable holds pages in a slice, so the hot path neither allocates nor
// hashes. A PageID is the slot index+1 in its low 32 bits and the slot's
// reuse count in the high 32: an ID that was freed never names the page that
// later takes its slot.
type pageTable struct {
	slots []page
	free  []uint32
	live  int
}

func (t *pageTable) add(h cuda.MemHandle) backend.PageID {
	var i uint32
	if n := len(t.free); n > 0 {
		i = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		t.slots = append(t.slots, page{})
		i = uint32(len(t.slots) - 1)
	}
	p := &t.slots[i]
	*p = page{handle: h, reuse: p.reuse, live: true}
	t.live++
	return backend.PageID(uint64(p.reuse)<<32 | uint64(i+1))
}

// get returns the live page id names, or nil. The pointer is valid until
// the next add.
func (t *pageTable) get(id backend.PageID) *page {
	i := uint64(id)&(1<<32-1) - 1
	if uint64(id)&(1<<32-1) == 0 || i >= uint64(len(t.slots)) {
		return nil
	}
	p := &t.slots[i]
	if !p.live || uint64(p.reuse) != uint64(id)>>32 {
		return nil
	}
	return p
}

func (t *pageTable) remove(id backend.PageID) {
	p := t.get(id)
	if p == nil {
		return
	}
	i := uint32(uint64(id)&(1<<32-1) - 1)
	*p = page{reuse: p.reuse + 1}
	t.free = append(t.free, i)
	t.live--
}

// each calls f for every live page.
func (t *pageTable) each(f func(id backend.PageID, p *page)) {
	for i := range t.slots {
		p := &t.slots[i]
		if p.live {
			f(backend.PageID(uint64(p.reuse)<<32|uint64(i+1)), p)
		}
	}
}
