package workload

import (
	"math"
	"slices"
)

// Request is one inference request: the prompt tokens it prefills and the
// tokens it then decodes one step at a time.
type Request struct {
	Prefill int
	Decode  int
}

// Total is the context length the request reaches when it finishes.
func (r Request) Total() int { return r.Prefill + r.Decode }

// Trace is a named sequence of requests, in arrival order.
type Trace struct {
	Name     string
	Requests []Request
}

// Summary describes one length distribution. Percentiles use the
// nearest-rank definition: Pq is the smallest length such that at least q% of
// the requests are no longer than it (so every percentile is a length that
// occurs in the trace).
type Summary struct {
	Mean          float64
	Min, P50, P90 int
	P99, Max      int
}

// Stats summarizes a trace's prefill, decode and total lengths.
type Stats struct {
	Count   int
	Prefill Summary
	Decode  Summary
	Total   Summary
}

// Stats computes the trace's summary; an empty trace gives zero Stats.
func (t Trace) Stats() Stats {
	n := len(t.Requests)
	if n == 0 {
		return Stats{}
	}
	buf := make([]int, n)
	summarize := func(length func(Request) int) Summary {
		sum := 0.0
		for i, r := range t.Requests {
			buf[i] = length(r)
			sum += float64(buf[i])
		}
		slices.Sort(buf)
		return Summary{
			Mean: sum / float64(n),
			Min:  buf[0],
			P50:  nearestRank(buf, 50),
			P90:  nearestRank(buf, 90),
			P99:  nearestRank(buf, 99),
			Max:  buf[n-1],
		}
	}
	return Stats{
		Count:   n,
		Prefill: summarize(func(r Request) int { return r.Prefill }),
		Decode:  summarize(func(r Request) int { return r.Decode }),
		Total:   summarize(Request.Total),
	}
}

// nearestRank returns the q-th percentile of sorted (non-empty) values.
func nearestRank(sorted []int, q float64) int {
	rank := int(math.Ceil(q / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// FitContext keeps the requests whose whole context (prefill plus decode)
// fits in maxContext tokens and drops the rest, reporting how many it
// dropped. Dropping rather than truncating keeps each request's shape intact;
// it is the same filter the arxiv traces were built with (totals ≤ 4096).
// maxContext < 1 means no limit.
func (t Trace) FitContext(maxContext int) (Trace, int) {
	if maxContext < 1 {
		return t, 0
	}
	kept := make([]Request, 0, len(t.Requests))
	for _, r := range t.Requests {
		if r.Total() <= maxContext {
			kept = append(kept, r)
		}
	}
	return Trace{Name: t.Name, Requests: kept}, len(t.Requests) - len(kept)
}
