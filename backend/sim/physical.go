package sim

import "math/bits"

// rootChunkSize is the unit in which NVIDIA's UVM physical memory manager
// takes memory from the GPU; every smaller page is carved out of one.
const rootChunkSize = 2 << 20

// A page's state lives in a slice indexed by the low 32 bits of its ID. The
// high 32 bits hold a generation that changes every time the slot is freed,
// so a stale ID is recognised as freed even after its slot is reused.
type pageState struct {
	gen    uint32
	live   bool
	slot   uint8  // position inside its root chunk
	chunk  uint32 // root chunk the page was carved from
	mapped uint64 // address it is mapped at, 0 if none (no region starts at 0)
	word   uint64 // the page's data, reduced to one word
	mark   uint64 // batch number of the last batch that touched the page
}

// rootChunk is one claimed 2 MiB unit: which of its page slots are in use.
type rootChunk struct {
	used  uint32 // bit i set: slot i holds a live page
	count int32
	pos   int32 // index in its partial bucket, or -1
}

// physical models the GPU's memory as UVM's PMM hands it out.
//
// Policy: a new page comes from a root chunk that is already partly used,
// the fullest one first, and a fresh root chunk is claimed only when no
// partly used one has room; a chunk whose pages are all freed goes back to
// the GPU at once. UVM itself takes the head of its free list for the chunk
// size and splits a larger chunk only when that list is empty; choosing the
// fullest chunk is a deterministic stand-in that packs pages at least as
// tightly, so fragmentation figures are reproducible and, if anything, low.
type physical struct {
	perChunk  int    // pages per root chunk: 32 for 64 KiB, 1 for 2 MiB
	maxChunks uint32 // root chunks the GPU has

	pages   []pageState
	freeIDs []uint32 // page slots free for reuse, LIFO

	chunks     []rootChunk
	freeChunks []uint32 // root chunk numbers not claimed, LIFO
	claimed    int
	// partial[k] lists the claimed chunks holding k pages, 0 < k < perChunk.
	partial     [32][]uint32
	nonEmpty    uint32 // bit k set: partial[k] is not empty
	partialFree int    // free page slots in partly used chunks
	livePages   int
	peakClaimed int
}

func newPhysical(perChunk int, maxChunks uint32) *physical {
	return &physical{perChunk: perChunk, maxChunks: maxChunks}
}

// room returns how many pages can still be created.
func (p *physical) room() int {
	return p.partialFree + (int(p.maxChunks)-p.claimed)*p.perChunk
}

func (p *physical) bucketAdd(c uint32) {
	ch := &p.chunks[c]
	k := ch.count
	if k <= 0 || int(k) >= p.perChunk {
		ch.pos = -1
		return
	}
	ch.pos = int32(len(p.partial[k]))
	p.partial[k] = append(p.partial[k], c)
	p.nonEmpty |= 1 << k
	p.partialFree += p.perChunk - int(k)
}

func (p *physical) bucketRemove(c uint32) {
	ch := &p.chunks[c]
	if ch.pos < 0 {
		return
	}
	k := ch.count
	b := p.partial[k]
	last := b[len(b)-1]
	b[ch.pos] = last
	p.chunks[last].pos = ch.pos
	p.partial[k] = b[:len(b)-1]
	if len(b) == 1 {
		p.nonEmpty &^= 1 << k
	}
	ch.pos = -1
	p.partialFree -= p.perChunk - int(k)
}

// takeSlot finds room for one page; the caller has checked room() > 0.
func (p *physical) takeSlot() (chunk uint32, slot uint8) {
	var c uint32
	if p.nonEmpty != 0 {
		b := p.partial[bits.Len32(p.nonEmpty)-1] // the fullest chunks
		c = b[len(b)-1]
	} else {
		if n := len(p.freeChunks); n > 0 {
			c = p.freeChunks[n-1]
			p.freeChunks = p.freeChunks[:n-1]
		} else {
			c = uint32(len(p.chunks))
			p.chunks = append(p.chunks, rootChunk{pos: -1})
		}
		p.claimed++
		p.peakClaimed = max(p.peakClaimed, p.claimed)
	}
	p.bucketRemove(c)
	ch := &p.chunks[c]
	s := bits.TrailingZeros32(^ch.used)
	ch.used |= 1 << s
	ch.count++
	p.bucketAdd(c)
	return c, uint8(s)
}

func (p *physical) putSlot(c uint32, s uint8) {
	p.bucketRemove(c)
	ch := &p.chunks[c]
	ch.used &^= 1 << s
	ch.count--
	if ch.count == 0 {
		p.claimed--
		p.freeChunks = append(p.freeChunks, c)
		return
	}
	p.bucketAdd(c)
}

// create makes one live page, zeroed, and returns its ID.
func (p *physical) create() uint64 {
	c, s := p.takeSlot()
	var idx uint32
	if n := len(p.freeIDs); n > 0 {
		idx = p.freeIDs[n-1]
		p.freeIDs = p.freeIDs[:n-1]
	} else {
		idx = uint32(len(p.pages))
		p.pages = append(p.pages, pageState{gen: 1})
	}
	pg := &p.pages[idx]
	pg.live, pg.chunk, pg.slot, pg.mapped, pg.word = true, c, s, 0, 0
	p.livePages++
	return uint64(pg.gen)<<32 | uint64(idx)
}

// lookup returns the live page with this ID, or nil.
func (p *physical) lookup(id uint64) *pageState {
	idx := uint32(id)
	if uint64(idx) >= uint64(len(p.pages)) {
		return nil
	}
	pg := &p.pages[idx]
	if !pg.live || pg.gen != uint32(id>>32) {
		return nil
	}
	return pg
}

// destroy frees a live, unmapped page.
func (p *physical) destroy(id uint64) {
	idx := uint32(id)
	pg := &p.pages[idx]
	p.putSlot(pg.chunk, pg.slot)
	pg.live = false
	pg.gen++
	if pg.gen == 0 {
		pg.gen = 1
	}
	p.freeIDs = append(p.freeIDs, idx)
	p.livePages--
}

func (p *physical) partialChunks() int {
	n := 0
	for k := 1; k < p.perChunk; k++ {
		n += len(p.partial[k])
	}
	return n
}
