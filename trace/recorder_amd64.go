package trace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
)

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
