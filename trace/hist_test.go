package trace

import (
	"errors"
	"math"
	"reflect"
	"testing"
	"time"
)

func TestSlotOfAndRange(t *testing.T) {
	for v, want := range map[uint64]int{0: 0, 1: 0, 2: 1, 3: 1, 4: 2, 1023: 9, 1024: 10, math.MaxUint64: 63} {
		if got := slotOf(v); got != want {
			t.Errorf("slotOf(%d) = %d, want %d", v, got, want)
		}
		lo, hi := SlotRange(slotOf(v))
		if v < lo || v > hi {
			t.Errorf("%d outside its slot range %d..%d", v, lo, hi)
		}
	}
}

func TestHistAddQuantileSub(t *testing.T) {
	var h Hist
	for range 90 {
		h.Add(3*time.Microsecond, time.Microsecond, false) // slot 1: 2..3
	}
	for range 10 {
		h.Add(100*time.Microsecond, time.Microsecond, true) // slot 6: 64..127
	}
	h.Add(-time.Second, time.Microsecond, false) // clamped to 0
	if h.Count != 101 || h.Errors != 10 || h.Slots[1] != 90 || h.Slots[6] != 10 || h.Slots[0] != 1 {
		t.Fatalf("hist = %+v", h)
	}
	if h.SumNs != 90*3000+10*100000 || h.Mean() != time.Duration(h.SumNs/101) {
		t.Errorf("sum %d mean %v", h.SumNs, h.Mean())
	}
	if p50 := h.Quantile(0.5, time.Microsecond); p50 < 2*time.Microsecond || p50 >= 4*time.Microsecond {
		t.Errorf("p50 = %v, want within slot 2..4µs", p50)
	}
	if p99 := h.Quantile(0.99, time.Microsecond); p99 < 64*time.Microsecond || p99 > 128*time.Microsecond {
		t.Errorf("p99 = %v, want within slot 64..128µs", p99)
	}
	if q := h.Quantile(1, time.Microsecond); q != 128*time.Microsecond {
		t.Errorf("p100 = %v, want the top of the last slot", q)
	}
	if (Hist{}).Quantile(0.5, time.Microsecond) != 0 || (Hist{}).Mean() != 0 || (Hist{}).LastSlot() != -1 {
		t.Error("empty histogram")
	}
	if h.LastSlot() != 6 {
		t.Errorf("LastSlot = %d", h.LastSlot())
	}

	prev := h
	h.Add(5*time.Millisecond, time.Microsecond, false)
	d := h.Sub(prev)
	if d.Count != 1 || d.Errors != 0 || d.SumNs != 5e6 || d.Slots[12] != 1 {
		t.Errorf("delta = %+v", d)
	}
}

func TestSnapshotSubAndSort(t *testing.T) {
	a := Hist{Source: SourceIoctl, Op: "UVM_VATTN_MAP_BATCH", Count: 2}
	b := Hist{Source: SourceCUDA, Op: "cuMemMap", Count: 5}
	c := Hist{Source: SourceCUDA, Op: "cuMemCreate", Count: 1}
	prev := Snapshot{Hists: []Hist{a, b}, Dropped: 1}
	b2 := b
	b2.Count = 8
	cur := Snapshot{Hists: []Hist{a, b2, c}, Dropped: 4}
	cur.sort()
	if cur.Hists[0].Op != "cuMemCreate" || cur.Hists[1].Op != "cuMemMap" || cur.Hists[2].Source != SourceIoctl {
		t.Errorf("order = %+v", cur.Hists)
	}
	d := cur.Sub(prev)
	if len(d.Hists) != 2 || d.Dropped != 3 {
		t.Fatalf("delta = %+v", d)
	}
	if h, ok := d.Find(SourceCUDA, "cuMemMap"); !ok || h.Count != 3 {
		t.Errorf("cuMemMap delta = %+v", h)
	}
	if _, ok := d.Find(SourceIoctl, "UVM_VATTN_MAP_BATCH"); ok {
		t.Error("an op without new calls is in the delta")
	}
}

func TestPromBuckets(t *testing.T) {
	var h Hist
	h.Add(1500*time.Nanosecond, time.Microsecond, false) // slot 0 (1µs)
	h.Add(3*time.Second, time.Microsecond, false)        // slot 21, below the 60s bound
	h.Add(2*time.Hour, time.Microsecond, false)          // beyond the last bound: +Inf only
	b := promBuckets(h, time.Microsecond)
	if b[2e-6] != 1 {
		t.Errorf("le=2µs: %d", b[2e-6])
	}
	top := 0.0
	for le := range b {
		top = math.Max(top, le)
	}
	if top < 60 || top > 120 || b[top] != 2 {
		t.Errorf("top bucket le=%g has %d, want 60..120s with 2", top, b[top])
	}
	if len(promBuckets(Hist{}, time.Millisecond)) != len(promBuckets(h, time.Millisecond)) {
		t.Error("bucket set depends on the data")
	}
}

func TestParseSources(t *testing.T) {
	for in, want := range map[string][]Source{
		"":                 AllSources(),
		"all":              AllSources(),
		"ioctl":            {SourceIoctl},
		"cuda, ioctl,cuda": {SourceCUDA, SourceIoctl},
	} {
		got, err := ParseSources(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ParseSources(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseSources("cuda,kprobe"); !errors.Is(err, ErrUnknownSource) {
		t.Errorf("err = %v", err)
	}
}

func TestParseDevice(t *testing.T) {
	for in, want := range map[string]Device{"1:3": {1, 3}, "/dev/null": {1, 3}, "/dev/zero": {1, 5}, "510:0": {510, 0}} {
		if got, err := ParseDevice(in); err != nil || got != want {
			t.Errorf("ParseDevice(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if (Device{510, 1}).kernelDev() != 510<<20|1 {
		t.Error("kernel dev_t encoding")
	}
	for _, bad := range []string{"1:", "x:1", "4096:0", "1:1048576", "/nonexistent"} {
		if _, err := ParseDevice(bad); err == nil {
			t.Errorf("ParseDevice(%q): no error", bad)
		}
	}
	if _, err := ParseDevice("/dev"); !errors.Is(err, ErrNotCharDevice) {
		t.Errorf("directory: err = %v", err)
	}
}

func TestIoctlName(t *testing.T) {
	if IoctlName(0x56410007) != "UVM_VATTN_MAP_BATCH" || IoctlName(0x56410008) != "UVM_VATTN_UNMAP_BATCH" || IoctlName(0x56410003) != "ioctl_1447100419" || IoctlName(37) != "ioctl_37" || IoctlName(0x30000001) != "ioctl_805306369" {
		t.Error("IoctlName")
	}
}

func TestFindLibcuda(t *testing.T) {
	if p, err := FindLibcuda(); err != nil {
		if !errors.Is(err, ErrNotPresent) {
			t.Errorf("err = %v, want ErrNotPresent", err)
		}
	} else if p == "" {
		t.Error("found an empty path")
	}
	// libc is in every ldconfig cache: the parser must find it.
	if p := ldconfigLookup("libc.so.6"); p == "" {
		t.Error("ldconfigLookup(libc.so.6) found nothing")
	}
	if p := ldconfigLookup("libvattn-no-such.so.1"); p != "" {
		t.Errorf("found %q for a library that does not exist", p)
	}
}
