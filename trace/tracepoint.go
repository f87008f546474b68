package trace

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// VattnEvents are the patched nvidia-uvm module's tracepoints, one per
// batched ioctl, emitted when the command finishes (the tracepoint contract
// in kernel/nvidia-uvm-patch/uvm_vattn_ioctl.h).
var VattnEvents = []string{"vattn:vattn_map", "vattn:vattn_unmap"}

// VattnEvent is one decoded vattn:* record.
type VattnEvent struct {
	Op        string // map or unmap
	GPU       string // "GPU-…" UUID; "" when the batch named no valid GPU
	PageSize  uint64
	Count     uint32
	Done      uint32
	Status    uint32 // NV_STATUS; 0 is NV_OK
	Duration  time.Duration
	TGID, TID uint32
}

// DecodeVattn decodes a vattn:* record by the field offsets its format lists.
func DecodeVattn(r Record) (VattnEvent, error) {
	ev := VattnEvent{Op: strings.TrimPrefix(r.Format.Event, "vattn_"), TGID: r.TGID, TID: r.TID}
	uuid, err := r.Bytes("gpu_uuid")
	if err != nil {
		return ev, err
	}
	if len(uuid) != 16 {
		return ev, fmt.Errorf("%w gpu_uuid: %d bytes, want 16", ErrField, len(uuid))
	}
	// All zero when the batch named no valid GPU (the contract).
	if !allZero(uuid) {
		ev.GPU = FormatUUID(uuid)
	}
	var v [5]uint64
	for i, name := range []string{"page_size", "count", "done", "status", "duration_ns"} {
		if v[i], err = r.Uint(name); err != nil {
			return ev, err
		}
	}
	ev.PageSize, ev.Count, ev.Done, ev.Status = v[0], uint32(v[1]), uint32(v[2]), uint32(v[3])
	ev.Duration = time.Duration(v[4])
	return ev, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// FormatUUID writes a GPU UUID the way nvidia-smi shows it.
func FormatUUID(b []byte) string {
	return fmt.Sprintf("GPU-%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

type tracepointSource struct {
	rec  *recorder
	unit time.Duration
	gpu  string

	mu        sync.Mutex
	hists     map[histKey]*Hist
	undecoded uint64
}

func openTracepoints(opts Options) (_ source, detail string, err error) {
	events := opts.Events
	if len(events) == 0 {
		events = VattnEvents
	}
	s := &tracepointSource{unit: opts.Unit, gpu: opts.GPU, hists: map[histKey]*Hist{}}
	rec, attached, err := openRecorder(events, opts.PID, s.handle)
	if err != nil {
		if errors.Is(err, ErrNotPresent) && len(opts.Events) == 0 {
			return nil, "", fmt.Errorf("%w (is the patched nvidia-uvm loaded?)", err)
		}
		return nil, "", err
	}
	s.rec = rec
	return s, strings.Join(attached, ", "), nil
}

func (s *tracepointSource) handle(r Record) {
	ev, err := DecodeVattn(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.undecoded++
		return
	}
	if s.gpu != "" && !strings.EqualFold(s.gpu, ev.GPU) {
		return
	}
	k := histKey{SourceTracepoint, ev.Op, ev.GPU}
	h := s.hists[k]
	if h == nil {
		h = &Hist{Source: SourceTracepoint, Op: ev.Op, GPU: ev.GPU}
		s.hists[k] = h
	}
	h.Add(ev.Duration, s.unit, ev.Status != 0)
}

func (s *tracepointSource) collect(into []Hist) ([]Hist, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range s.hists {
		into = append(into, *h)
	}
	return into, nil
}

func (s *tracepointSource) undecodedRecords() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.undecoded
}

func (s *tracepointSource) dropped() (uint64, error) { return s.rec.lost() }

func (s *tracepointSource) close() error { return s.rec.close() }
