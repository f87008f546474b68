// Package trace measures, with eBPF, what KV-cache memory mapping costs as it
// happens: the CUDA driver's virtual memory calls (uprobes on libcuda), the
// ioctls on the UVM device (raw syscall tracepoints filtered in the kernel to
// one character device), and the patched nvidia-uvm module's own vattn:*
// tracepoints. Each source keeps per-operation log2 latency histograms and
// counts that a Tracer hands out as snapshots.
//
// Loading programs needs root or CAP_BPF+CAP_PERFMON. A source the machine
// cannot serve (no libcuda, no UVM device, no patched module) is reported as
// not attached, with the reason, and the others keep running.
package trace

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// Sentinel errors callers branch on.
var (
	// ErrPermission means the kernel refused to load or attach programs.
	ErrPermission = errors.New("needs root or CAP_BPF+CAP_PERFMON")
	// ErrNoSource means none of the requested sources could attach.
	ErrNoSource = errors.New("no trace source could attach")
	// ErrNotPresent means what a source probes does not exist on this machine
	// (no library, device or tracepoint).
	ErrNotPresent = errors.New("not present")
	// ErrUnknownSource is returned for a source name this package lacks.
	ErrUnknownSource = errors.New("unknown trace source")
)

// Source names one kind of probe.
type Source string

// The probe sources.
const (
	SourceCUDA       Source = "cuda"       // uprobes on libcuda's cuMem* calls
	SourceIoctl      Source = "ioctl"      // ioctl(2) on the UVM character device
	SourceTracepoint Source = "tracepoint" // the patched module's vattn:* events
)

// AllSources lists every source, in the order output shows them.
func AllSources() []Source { return []Source{SourceCUDA, SourceIoctl, SourceTracepoint} }

// ParseSources parses a comma-separated list of source names; "" or "all"
// means every source.
func ParseSources(s string) ([]Source, error) {
	if s == "" || s == "all" {
		return AllSources(), nil
	}
	var out []Source
	seen := map[Source]bool{}
	for _, f := range strings.Split(s, ",") {
		src := Source(strings.TrimSpace(f))
		switch src {
		case SourceCUDA, SourceIoctl, SourceTracepoint:
		default:
			return nil, fmt.Errorf("parse sources: %w %q (valid: cuda, ioctl, tracepoint)", ErrUnknownSource, src)
		}
		if !seen[src] {
			seen[src] = true
			out = append(out, src)
		}
	}
	return out, nil
}

// DefaultDevice is the character device the ioctl source watches by default.
const DefaultDevice = "/dev/nvidia-uvm"

// Options says what a Tracer probes and keeps.
type Options struct {
	// Sources to open; empty means all.
	Sources []Source
	// LibPath is libcuda's path for the cuda source; empty finds it through
	// the ldconfig cache and the usual locations.
	LibPath string
	// Device is the ioctl source's character device, "MAJ:MIN" or a path;
	// empty means DefaultDevice.
	Device string
	// PID keeps only calls made by this process (thread group); 0 keeps all.
	PID int
	// GPU keeps only events of this GPU UUID ("GPU-…") in sources that know
	// the GPU (the module's tracepoints); empty keeps all.
	GPU string
	// Ops keeps only these operations (cuMemMap, an ioctl command name, map,
	// …); empty keeps all.
	Ops []string
	// Unit is the width unit of the log2 histogram slots: time.Nanosecond,
	// time.Microsecond (the default) or time.Millisecond.
	Unit time.Duration
	// Events overrides the tracepoints of the tracepoint source
	// ("system:event"); empty means VattnEvents.
	Events []string
}

// SourceStatus tells whether a source attached and, if not, why.
type SourceStatus struct {
	Source   Source `json:"source"`
	Attached bool   `json:"attached"`
	// Detail says what was attached to (library path, device, events).
	Detail string `json:"detail,omitempty"`
	// Reason says why the source is not attached.
	Reason string `json:"reason,omitempty"`
	// Err is the cause behind Reason.
	Err error `json:"-"`
}

func (s SourceStatus) String() string {
	if s.Attached {
		return fmt.Sprintf("%s: attached (%s)", s.Source, s.Detail)
	}
	return fmt.Sprintf("%s: not attached: %s", s.Source, s.Reason)
}

// source is one open probe source.
type source interface {
	// collect appends the source's cumulative histograms.
	collect(into []Hist) ([]Hist, error)
	close() error
}

// Tracer holds the attached sources. Its methods are safe for concurrent use.
type Tracer struct {
	unit   time.Duration
	status []SourceStatus

	mu      sync.Mutex
	sources []source
	ops     map[string]bool
	closed  bool
}

// Open loads and attaches the requested sources. Sources that cannot attach
// are listed in Status; Open fails only when the kernel refuses the programs
// (ErrPermission) or when no requested source attached (ErrNoSource).
func Open(opts Options) (*Tracer, error) {
	if opts.Unit == 0 {
		opts.Unit = time.Microsecond
	}
	switch opts.Unit {
	case time.Nanosecond, time.Microsecond, time.Millisecond:
	default:
		return nil, fmt.Errorf("open tracer: unit %v: must be 1ns, 1µs or 1ms", opts.Unit)
	}
	if opts.PID < 0 {
		return nil, fmt.Errorf("open tracer: pid %d: must not be negative", opts.PID)
	}
	srcs := opts.Sources
	if len(srcs) == 0 {
		srcs = AllSources()
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("open tracer: %w: remove memlock limit: %w", ErrPermission, err)
	}
	t := &Tracer{unit: opts.Unit}
	if len(opts.Ops) > 0 {
		t.ops = map[string]bool{}
		for _, op := range opts.Ops {
			t.ops[op] = true
		}
	}
	for _, name := range srcs {
		var (
			s      source
			detail string
			err    error
		)
		switch name {
		case SourceCUDA:
			s, detail, err = openCUDA(opts)
		case SourceIoctl:
			s, detail, err = openIoctl(opts)
		case SourceTracepoint:
			s, detail, err = openTracepoints(opts)
		default:
			err = fmt.Errorf("%w %q", ErrUnknownSource, name)
		}
		if err != nil && isPermission(err) {
			t.Close()
			return nil, fmt.Errorf("open tracer: %s: %w: %w", name, ErrPermission, err)
		}
		st := SourceStatus{Source: name, Attached: err == nil, Detail: detail, Err: err}
		if err != nil {
			st.Reason = err.Error()
		} else {
			t.sources = append(t.sources, s)
		}
		t.status = append(t.status, st)
	}
	if len(t.sources) == 0 {
		var reasons []string
		for _, st := range t.status {
			reasons = append(reasons, st.String())
		}
		return nil, fmt.Errorf("open tracer: %w (%s)", ErrNoSource, strings.Join(reasons, "; "))
	}
	return t, nil
}

func isPermission(err error) bool {
	return errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)
}

// Status reports each requested source, attached or not.
func (t *Tracer) Status() []SourceStatus { return append([]SourceStatus(nil), t.status...) }

// Unit is the width unit of the histogram slots.
func (t *Tracer) Unit() time.Duration { return t.unit }

// Snapshot returns the cumulative histograms since Open, sorted by source
// and operation.
func (t *Tracer) Snapshot() (Snapshot, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return Snapshot{}, errors.New("snapshot: tracer closed")
	}
	snap := Snapshot{Time: time.Now(), Unit: t.unit}
	var err error
	for _, s := range t.sources {
		if snap.Hists, err = s.collect(snap.Hists); err != nil {
			return Snapshot{}, fmt.Errorf("snapshot: %w", err)
		}
	}
	for _, s := range t.sources {
		if d, ok := s.(interface{ dropped() (uint64, error) }); ok {
			n, err := d.dropped()
			if err != nil {
				return Snapshot{}, fmt.Errorf("snapshot: %w", err)
			}
			snap.Dropped += n
		}
		if u, ok := s.(interface{ undecodedRecords() uint64 }); ok {
			snap.Undecoded += u.undecodedRecords()
		}
	}
	if t.ops != nil {
		kept := snap.Hists[:0]
		for _, h := range snap.Hists {
			if t.ops[h.Op] {
				kept = append(kept, h)
			}
		}
		snap.Hists = kept
	}
	snap.sort()
	return snap, nil
}

// Close detaches every program and frees its maps. It is safe to call twice.
func (t *Tracer) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	var errs []error
	for _, s := range t.sources {
		errs = append(errs, s.close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close tracer: %w", err)
	}
	return nil
}

// Snapshot is the state of every histogram at one time.
type Snapshot struct {
	Time  time.Time
	Unit  time.Duration
	Hists []Hist
	// Dropped counts tracepoint records lost to a full ring buffer.
	Dropped uint64
	// Undecoded counts tracepoint records whose fields do not match the
	// driver's tracepoint contract (a module built from another header).
	Undecoded uint64
}

func (s *Snapshot) sort() {
	order := map[Source]int{}
	for i, src := range AllSources() {
		order[src] = i
	}
	sort.Slice(s.Hists, func(i, j int) bool {
		a, b := s.Hists[i], s.Hists[j]
		if a.Source != b.Source {
			return order[a.Source] < order[b.Source]
		}
		if a.Op != b.Op {
			return a.Op < b.Op
		}
		return a.GPU < b.GPU
	})
}

// Sub returns what happened between prev and s: per-histogram differences,
// leaving out histograms with no new calls.
func (s Snapshot) Sub(prev Snapshot) Snapshot {
	before := map[histKey]Hist{}
	for _, h := range prev.Hists {
		before[h.key()] = h
	}
	out := Snapshot{Time: s.Time, Unit: s.Unit, Dropped: s.Dropped - prev.Dropped, Undecoded: s.Undecoded - prev.Undecoded}
	for _, h := range s.Hists {
		d := h.Sub(before[h.key()])
		if d.Count > 0 {
			out.Hists = append(out.Hists, d)
		}
	}
	return out
}

// Find returns the histogram of source and op (any GPU), if present.
func (s Snapshot) Find(src Source, op string) (Hist, bool) {
	for _, h := range s.Hists {
		if h.Source == src && h.Op == op {
			return h, true
		}
	}
	return Hist{}, false
}
