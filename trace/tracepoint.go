package trace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
)

// VattnEvents are the patched nvidia-uvm module's tracepoints, one per
// batched ioctl, emitted when the command finishes (the tracepoint contract
// in kernel/nvidia-uvm-patch/uvm_vattn_ioctl.h).
var VattnEvents = []string{"vattn:vattn_alloc", "vattn:vattn_map", "vattn:vattn_unmap", "vattn:vattn_free"}

// maxRecord and recordHeader follow struct event in bpf/tracepoint.c.
const (
	maxRecord    = 256
	recordHeader = 24 // ts u64, tgid u32, tid u32, size u32, event_id u32
)

// recorder copies the records of a set of tracepoints to user space and
// hands each, decoded against its format, to handle.
type recorder struct {
	objs    tracepointObjects
	links   []link.Link
	rd      *ringbuf.Reader
	formats map[uint32]*Format
	done    chan struct{}
}

// openRecorder attaches to those of events ("system:event") that exist;
// it fails with ErrNotPresent when none does.
func openRecorder(events []string, pid int, handle func(Record)) (_ *recorder, attached []string, err error) {
	root, err := Tracefs()
	if err != nil {
		return nil, nil, err
	}
	formats := map[uint32]*Format{}
	var missing []string
	for _, ev := range events {
		sys, name, ok := strings.Cut(ev, ":")
		if !ok {
			return nil, nil, fmt.Errorf("tracepoint %q: want system:event", ev)
		}
		f, err := ReadFormat(root, sys, name)
		if errors.Is(err, ErrNotPresent) {
			missing = append(missing, ev)
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		if f.Size() > maxRecord {
			return nil, nil, fmt.Errorf("tracepoint %s: record of %d bytes exceeds %d", ev, f.Size(), maxRecord)
		}
		formats[f.ID] = f
	}
	if len(formats) == 0 {
		return nil, nil, fmt.Errorf("tracepoints %s: %w", strings.Join(missing, ", "), ErrNotPresent)
	}
	spec, err := loadTracepoint()
	if err != nil {
		return nil, nil, fmt.Errorf("load tracepoint spec: %w", err)
	}
	if err := spec.Variables["target_tgid"].Set(uint32(pid)); err != nil {
		return nil, nil, fmt.Errorf("set target_tgid: %w", err)
	}
	r := &recorder{formats: formats, done: make(chan struct{})}
	if err := spec.LoadAndAssign(&r.objs, nil); err != nil {
		return nil, nil, fmt.Errorf("load tracepoint program: %w", err)
	}
	for id, f := range formats {
		if err := r.objs.RecordSizes.Put(id, uint32(f.Size())); err != nil {
			r.close()
			return nil, nil, fmt.Errorf("set record size of %s:%s: %w", f.System, f.Event, err)
		}
	}
	if r.rd, err = ringbuf.NewReader(r.objs.Records); err != nil {
		r.close()
		return nil, nil, fmt.Errorf("open ring buffer: %w", err)
	}
	for _, f := range formats {
		l, err := link.Tracepoint(f.System, f.Event, r.objs.CopyRecord, &link.TracepointOptions{Cookie: uint64(f.ID)})
		if err != nil {
			r.close()
			return nil, nil, fmt.Errorf("attach tracepoint %s:%s: %w", f.System, f.Event, err)
		}
		r.links = append(r.links, l)
		attached = append(attached, f.System+":"+f.Event)
	}
	go r.read(handle)
	return r, attached, nil
}

func (r *recorder) read(handle func(Record)) {
	defer close(r.done)
	for {
		rec, err := r.rd.Read()
		if err != nil {
			// ErrClosed on close; nothing else is expected from a
			// reader nobody else uses.
			return
		}
		raw := rec.RawSample
		if len(raw) < recordHeader {
			continue
		}
		size := int(binary.NativeEndian.Uint32(raw[16:20]))
		data := raw[recordHeader:]
		if size > len(data) {
			continue
		}
		data = data[:size]
		f := r.formats[binary.NativeEndian.Uint32(raw[20:24])]
		if f == nil {
			continue
		}
		handle(Record{
			Format: f,
			TGID:   binary.NativeEndian.Uint32(raw[8:12]),
			TID:    binary.NativeEndian.Uint32(raw[12:16]),
			Data:   append([]byte(nil), data...),
		})
	}
}

// lost counts records dropped because the ring buffer was full.
func (r *recorder) lost() (uint64, error) {
	var n uint64
	if err := r.objs.Lost.Lookup(uint32(0), &n); err != nil {
		return 0, fmt.Errorf("read lost records: %w", err)
	}
	return n, nil
}

func (r *recorder) close() error {
	var errs []error
	for _, l := range r.links {
		errs = append(errs, l.Close())
	}
	if r.rd != nil {
		errs = append(errs, r.rd.Close())
		<-r.done
	}
	errs = append(errs, r.objs.Close())
	return errors.Join(errs...)
}

// VattnEvent is one decoded vattn:* record.
type VattnEvent struct {
	Op        string // alloc, map, unmap or free
	GPU       string // "GPU-…" UUID
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
	ev.GPU = FormatUUID(uuid)
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

func (s *tracepointSource) dropped() (uint64, error) { return s.rec.lost() }

func (s *tracepointSource) close() error { return s.rec.close() }
