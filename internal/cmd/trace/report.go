package trace

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vattn/vattn/internal/cli"
	"github.com/vattn/vattn/trace"
)

// reporter prints one interval at a time, as funclatency-style text or as
// one JSON object per line.
type reporter struct {
	out    io.Writer
	format cli.Format
	unit   time.Duration
	status []trace.SourceStatus
	gpus   []string
}

// Interval is what "-o json" prints for each interval, one object per line.
type Interval struct {
	Time time.Time `json:"time"`
	// Seconds is the length of the interval.
	Seconds   float64              `json:"interval_s"`
	Final     bool                 `json:"final"`
	Unit      string               `json:"unit"`
	Sources   []trace.SourceStatus `json:"sources"`
	Dropped   uint64               `json:"dropped_records"`
	Undecoded uint64               `json:"undecoded_records"`
	Ops       []Op                 `json:"ops"`
}

// Op is one operation's histogram in an Interval. Latencies are in
// nanoseconds; the percentiles are estimates from the log2 buckets.
type Op struct {
	Source  string   `json:"source"`
	Op      string   `json:"op"`
	GPU     string   `json:"gpu,omitempty"`
	UUID    string   `json:"uuid,omitempty"`
	Count   uint64   `json:"count"`
	Errors  uint64   `json:"errors"`
	SumNs   uint64   `json:"sum_ns"`
	AvgNs   uint64   `json:"avg_ns"`
	P50Ns   int64    `json:"p50_ns_est"`
	P99Ns   int64    `json:"p99_ns_est"`
	Buckets []Bucket `json:"buckets"`
}

// Bucket is a non-empty log2 slot: latencies from Low to High units.
type Bucket struct {
	Low   uint64 `json:"low"`
	High  uint64 `json:"high"`
	Count uint64 `json:"count"`
}

func unitName(u time.Duration) string {
	switch u {
	case time.Nanosecond:
		return "ns"
	case time.Millisecond:
		return "ms"
	}
	return "us"
}

func (r *reporter) print(snap trace.Snapshot, length time.Duration, final bool) error {
	if r.format == cli.JSON {
		return r.printJSON(snap, length, final)
	}
	return r.printText(snap, length)
}

func (r *reporter) printJSON(snap trace.Snapshot, length time.Duration, final bool) error {
	iv := Interval{
		Time: snap.Time.UTC(), Seconds: length.Seconds(), Final: final, Unit: unitName(r.unit),
		Sources: r.status, Dropped: snap.Dropped, Undecoded: snap.Undecoded, Ops: []Op{},
	}
	for _, h := range snap.Hists {
		op := Op{
			Source: string(h.Source), Op: h.Op, GPU: trace.GPUIndex(h.GPU, r.gpus), UUID: h.GPU,
			Count: h.Count, Errors: h.Errors, SumNs: h.SumNs, AvgNs: uint64(h.Mean()),
			P50Ns: int64(h.Quantile(0.5, r.unit)), P99Ns: int64(h.Quantile(0.99, r.unit)),
			Buckets: []Bucket{},
		}
		for k, n := range h.Slots {
			if n != 0 {
				lo, hi := trace.SlotRange(k)
				op.Buckets = append(op.Buckets, Bucket{lo, hi, n})
			}
		}
		iv.Ops = append(iv.Ops, op)
	}
	// One compact object per line, so a consumer can read a stream.
	return json.NewEncoder(r.out).Encode(iv)
}

const barWidth = 40

func (r *reporter) printText(snap trace.Snapshot, length time.Duration) error {
	var b strings.Builder
	fmt.Fprintf(&b, "\n%s  interval %.2fs\n", snap.Time.Format("15:04:05"), length.Seconds())
	if len(snap.Hists) == 0 {
		b.WriteString("no calls traced\n")
	}
	unitCol := map[time.Duration]string{time.Nanosecond: "nsecs", time.Microsecond: "usecs", time.Millisecond: "msecs"}[r.unit]
	for _, h := range snap.Hists {
		fmt.Fprintf(&b, "\nop = %s [%s]%s\n", h.Op, h.Source, r.gpuSuffix(h.GPU))
		fmt.Fprintf(&b, "%-24s : count    distribution\n", fmt.Sprintf("%14s", unitCol))
		var peak uint64
		for _, n := range h.Slots {
			peak = max(peak, n)
		}
		for k := 0; k <= h.LastSlot(); k++ {
			lo, hi := trace.SlotRange(k)
			stars := int(h.Slots[k] * barWidth / peak)
			fmt.Fprintf(&b, "%10d -> %-10d : %-8d |%-*s|\n", lo, hi, h.Slots[k], barWidth, strings.Repeat("*", stars))
		}
	}
	if len(snap.Hists) > 0 {
		u := unitName(r.unit)
		b.WriteString("\n")
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "OP\tSOURCE\tGPU\tCOUNT\tERRORS\tAVG(%s)\tP50(%s)~\tP99(%s)~\n", u, u, u)
		for _, h := range snap.Hists {
			gpu := trace.GPUIndex(h.GPU, r.gpus)
			if gpu == "" {
				gpu = h.GPU
			}
			if gpu == "" {
				gpu = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%.1f\t%.1f\t%.1f\n", h.Op, h.Source, gpu, h.Count, h.Errors,
				inUnit(h.Mean(), r.unit), inUnit(h.Quantile(0.5, r.unit), r.unit), inUnit(h.Quantile(0.99, r.unit), r.unit))
		}
		tw.Flush()
		b.WriteString("~ estimated from the log2 buckets (within a factor of two)\n")
	}
	if snap.Dropped > 0 {
		fmt.Fprintf(&b, "warning: %d driver events lost (ring buffer full)\n", snap.Dropped)
	}
	if snap.Undecoded > 0 {
		fmt.Fprintf(&b, "warning: %d driver events did not decode (fields differ from the tracepoint contract)\n", snap.Undecoded)
	}
	_, err := io.WriteString(r.out, b.String())
	return err
}

func (r *reporter) gpuSuffix(uuid string) string {
	if uuid == "" {
		return ""
	}
	if i := trace.GPUIndex(uuid, r.gpus); i != "" {
		return fmt.Sprintf(" gpu %s (%s)", i, uuid)
	}
	return " " + uuid
}

func inUnit(d, unit time.Duration) float64 { return float64(d) / float64(unit) }
