package trace

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

type ioctlSource struct {
	objs  ioctlObjects
	links []link.Link
}

func openIoctl(opts Options) (_ source, detail string, err error) {
	path := opts.Device
	if path == "" {
		path = DefaultDevice
	}
	dev, err := ParseDevice(path)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrNotPresent, err)
	}
	detail = fmt.Sprintf("device %s", dev)
	if path != dev.String() {
		detail = fmt.Sprintf("device %s (%s)", path, dev)
	}
	spec, err := loadIoctl()
	if err != nil {
		return nil, "", fmt.Errorf("load ioctl spec: %w", err)
	}
	for name, v := range map[string]any{
		"target_dev":  dev.kernelDev(),
		"target_tgid": uint32(opts.PID),
		"unit_ns":     uint64(opts.Unit),
	} {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, "", fmt.Errorf("set %s: %w", name, err)
		}
	}
	s := &ioctlSource{}
	if err := spec.LoadAndAssign(&s.objs, nil); err != nil {
		return nil, "", fmt.Errorf("load ioctl programs: %w", err)
	}
	// Exit first: an entry recorded before its exit program is attached
	// would never be consumed.
	for _, a := range []struct {
		name string
		prog *ebpf.Program
	}{{"sys_exit", s.objs.IoctlExit}, {"sys_enter", s.objs.IoctlEnter}} {
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: a.name, Program: a.prog})
		if err != nil {
			s.close()
			return nil, "", fmt.Errorf("attach raw tracepoint %s: %w", a.name, err)
		}
		s.links = append(s.links, l)
	}
	return s, detail, nil
}

func (s *ioctlSource) collect(into []Hist) ([]Hist, error) {
	var (
		key ioctlIoctlKey
		val ioctlHist
	)
	it := s.objs.IoctlHists.Iterate()
	for it.Next(&key, &val) {
		h := Hist{Source: SourceIoctl, Op: IoctlName(key.Cmd), Count: val.Count, Errors: val.Errors, SumNs: val.SumNs}
		h.Slots = val.Slots
		into = append(into, h)
	}
	if err := it.Err(); err != nil {
		return into, fmt.Errorf("read ioctl histograms: %w", err)
	}
	return into, nil
}

func (s *ioctlSource) close() error {
	var errs []error
	for _, l := range s.links {
		errs = append(errs, l.Close())
	}
	errs = append(errs, s.objs.Close())
	return errors.Join(errs...)
}
