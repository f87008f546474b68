package workload

import (
	"slices"
	"testing"
)

func TestStats(t *testing.T) {
	// Ten requests with prefill 10..100 and decode 1..10 reversed, so the
	// three summaries come from differently ordered columns.
	var tr Trace
	for i := 1; i <= 10; i++ {
		tr.Requests = append(tr.Requests, Request{Prefill: 10 * i, Decode: 11 - i})
	}
	got := tr.Stats()
	want := Stats{
		Count:   10,
		Prefill: Summary{Mean: 55, Min: 10, P50: 50, P90: 90, P99: 100, Max: 100},
		Decode:  Summary{Mean: 5.5, Min: 1, P50: 5, P90: 9, P99: 10, Max: 10},
		Total:   Summary{Mean: 60.5, Min: 20, P50: 56, P90: 92, P99: 101, Max: 101}, // 9i+11
	}
	if got != want {
		t.Errorf("Stats() =\n%+v\nwant\n%+v", got, want)
	}
	if (Trace{}).Stats() != (Stats{}) {
		t.Errorf("empty trace Stats() = %+v, want zero", (Trace{}).Stats())
	}
	one := Trace{Requests: []Request{{Prefill: 7, Decode: 3}}}.Stats()
	if one.Prefill != (Summary{Mean: 7, Min: 7, P50: 7, P90: 7, P99: 7, Max: 7}) {
		t.Errorf("one-request prefill summary = %+v", one.Prefill)
	}
	// Stats must not reorder the trace.
	if tr.Requests[0] != (Request{Prefill: 10, Decode: 10}) {
		t.Errorf("Stats reordered the trace: first request %+v", tr.Requests[0])
	}
}

func TestNearestRank(t *testing.T) {
	tests := []struct {
		values []int
		q      float64
		want   int
	}{
		{[]int{5}, 50, 5},
		{[]int{1, 2}, 50, 1}, // at least half are ≤ 1
		{[]int{1, 2}, 51, 2},
		{[]int{1, 2, 3, 4}, 50, 2},
		{[]int{1, 2, 3, 4}, 75, 3},
		{[]int{1, 2, 3, 4}, 76, 4},
		{[]int{1, 2, 3, 4}, 0, 1},
		{[]int{1, 2, 3, 4}, 100, 4},
	}
	for _, tt := range tests {
		if got := nearestRank(tt.values, tt.q); got != tt.want {
			t.Errorf("nearestRank(%v, %g) = %d, want %d", tt.values, tt.q, got, tt.want)
		}
	}
}

func TestFitContext(t *testing.T) {
	tr := Trace{Name: "t", Requests: []Request{{100, 10}, {4000, 96}, {4000, 97}, {10, 5000}, {1, 0}}}
	tests := []struct {
		max         int
		wantDropped int
		want        []Request
	}{
		{0, 0, tr.Requests},
		{-1, 0, tr.Requests},
		{4096, 2, []Request{{100, 10}, {4000, 96}, {1, 0}}},
		{110, 3, []Request{{100, 10}, {1, 0}}},
		{1, 4, []Request{{1, 0}}},
		{100000, 0, tr.Requests},
	}
	for _, tt := range tests {
		got, dropped := tr.FitContext(tt.max)
		if dropped != tt.wantDropped || !slices.Equal(got.Requests, tt.want) || got.Name != "t" {
			t.Errorf("FitContext(%d) = %+v, %d dropped; want %v, %d", tt.max, got, dropped, tt.want, tt.wantDropped)
		}
	}
	if len(tr.Requests) != 5 {
		t.Errorf("FitContext changed its receiver")
	}
}
