package trace

import (
	"math"
	"time"
)

// Slots is the number of log2 slots of a histogram.
const Slots = 64

// Hist is the latency histogram of one operation. Slot k counts latencies
// v (in the tracer's unit, truncated) with 2^k <= v < 2^(k+1); slot 0 also
// holds v = 0, as in bcc's funclatency.
type Hist struct {
	Source Source
	Op     string
	// GPU is the GPU's UUID where the source knows it.
	GPU string
	// Count of finished calls, Errors of those that failed (negative
	// errno, non-zero CUresult or NV_STATUS).
	Count, Errors uint64
	// Sum of the latencies, exact, in nanoseconds.
	SumNs uint64
	Slots [Slots]uint64
}

type histKey struct {
	src     Source
	op, gpu string
}

func (h Hist) key() histKey { return histKey{h.Source, h.Op, h.GPU} }

// Sub returns h minus prev, slot by slot.
func (h Hist) Sub(prev Hist) Hist {
	d := h
	d.Count -= prev.Count
	d.Errors -= prev.Errors
	d.SumNs -= prev.SumNs
	for i := range d.Slots {
		d.Slots[i] -= prev.Slots[i]
	}
	return d
}

// Add records one latency, the way the kernel programs do.
func (h *Hist) Add(d time.Duration, unit time.Duration, failed bool) {
	if d < 0 {
		d = 0
	}
	h.Slots[slotOf(uint64(d/unit))]++
	h.Count++
	h.SumNs += uint64(d)
	if failed {
		h.Errors++
	}
}

func slotOf(v uint64) int {
	if v == 0 {
		return 0
	}
	s := 63
	for v>>uint(s) == 0 {
		s--
	}
	return s
}

// SlotRange is the range [low, high] of whole units slot k holds.
func SlotRange(k int) (low, high uint64) {
	if k == 0 {
		return 0, 1
	}
	return 1 << uint(k), 1<<uint(k+1) - 1
}

// Mean is the exact average latency.
func (h Hist) Mean() time.Duration {
	if h.Count == 0 {
		return 0
	}
	return time.Duration(h.SumNs / h.Count)
}

// Quantile estimates the q-quantile (0 < q <= 1) from the log2 slots: it
// finds the slot holding that rank and interpolates linearly inside it, so
// the estimate is only as precise as the slot is wide (a factor of two).
func (h Hist) Quantile(q float64, unit time.Duration) time.Duration {
	if h.Count == 0 {
		return 0
	}
	q = math.Min(math.Max(q, 0), 1)
	rank := q * float64(h.Count)
	var below float64
	for k, n := range h.Slots {
		if n == 0 {
			continue
		}
		if below+float64(n) >= rank {
			lo := 0.0
			if k > 0 {
				lo = math.Ldexp(1, k)
			}
			hi := math.Ldexp(1, k+1)
			v := lo + (hi-lo)*(rank-below)/float64(n)
			return time.Duration(v * float64(unit))
		}
		below += float64(n)
	}
	return 0
}

// LastSlot is the highest non-empty slot, or -1 when the histogram is empty.
func (h Hist) LastSlot() int {
	for k := Slots - 1; k >= 0; k-- {
		if h.Slots[k] != 0 {
			return k
		}
	}
	return -1
}
