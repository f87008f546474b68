package trace

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf/link"
)

type cudaSource struct {
	objs  cudaObjects
	ops   []string // index = attach cookie
	links []link.Link
}

func openCUDA(opts Options) (_ source, detail string, err error) {
	ops := CUDAOps
	if len(opts.Ops) > 0 {
		want := map[string]bool{}
		for _, op := range opts.Ops {
			want[op] = true
		}
		ops = nil
		for _, op := range CUDAOps {
			if want[op] {
				ops = append(ops, op)
			}
		}
		if len(ops) == 0 {
			return nil, "", fmt.Errorf("the selected operations include none of %s", strings.Join(CUDAOps, ", "))
		}
	}
	path := opts.LibPath
	if path == "" {
		if path, err = FindLibcuda(); err != nil {
			return nil, "", err
		}
	} else if _, err := os.Stat(path); err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrNotPresent, err)
	}
	syms, err := dynamicSymbols(path)
	if err != nil {
		return nil, "", err
	}
	ex, err := link.OpenExecutable(path)
	if err != nil {
		return nil, "", fmt.Errorf("open %s: %w", path, err)
	}
	spec, err := loadCuda()
	if err != nil {
		return nil, "", fmt.Errorf("load cuda spec: %w", err)
	}
	if err := spec.Variables["target_tgid"].Set(uint32(opts.PID)); err != nil {
		return nil, "", fmt.Errorf("set target_tgid: %w", err)
	}
	if err := spec.Variables["unit_ns"].Set(uint64(opts.Unit)); err != nil {
		return nil, "", fmt.Errorf("set unit_ns: %w", err)
	}
	s := &cudaSource{}
	if err := spec.LoadAndAssign(&s.objs, nil); err != nil {
		return nil, "", fmt.Errorf("load cuda programs: %w", err)
	}
	var attached []string
	for _, op := range ops {
		// Both the plain and the _v2 entry points count as the same
		// operation: which one a program calls depends on its headers.
		for _, sym := range []string{op, op + "_v2"} {
			if !syms[sym] {
				continue
			}
			cookie := uint64(len(s.ops))
			s.ops = append(s.ops, op)
			// The return probe first, so that no call is seen entering
			// without its return.
			ret, err := ex.Uretprobe(sym, s.objs.CallReturn, &link.UprobeOptions{Cookie: cookie})
			if err != nil {
				s.close()
				return nil, "", fmt.Errorf("attach uretprobe %s:%s: %w", path, sym, err)
			}
			s.links = append(s.links, ret)
			up, err := ex.Uprobe(sym, s.objs.CallEnter, &link.UprobeOptions{Cookie: cookie})
			if err != nil {
				s.close()
				return nil, "", fmt.Errorf("attach uprobe %s:%s: %w", path, sym, err)
			}
			s.links = append(s.links, up)
			attached = append(attached, sym)
		}
	}
	if len(attached) == 0 {
		s.close()
		return nil, "", fmt.Errorf("%s: %w: none of the functions %s", path, ErrNotPresent, strings.Join(CUDAOps, ", "))
	}
	return s, fmt.Sprintf("%s: %s", path, strings.Join(attached, ", ")), nil
}

func (s *cudaSource) collect(into []Hist) ([]Hist, error) {
	byOp := map[string]int{}
	var (
		key cudaOpKey
		val cudaHist
	)
	it := s.objs.CallHists.Iterate()
	for it.Next(&key, &val) {
		if int(key.Op) >= len(s.ops) {
			continue
		}
		op := s.ops[key.Op]
		i, ok := byOp[op]
		if !ok {
			i = len(into)
			byOp[op] = i
			into = append(into, Hist{Source: SourceCUDA, Op: op})
		}
		h := &into[i]
		h.Count += val.Count
		h.Errors += val.Errors
		h.SumNs += val.SumNs
		for k := range h.Slots {
			h.Slots[k] += val.Slots[k]
		}
	}
	if err := it.Err(); err != nil {
		return into, fmt.Errorf("read cuda histograms: %w", err)
	}
	return into, nil
}

func (s *cudaSource) close() error {
	var errs []error
	for _, l := range s.links {
		errs = append(errs, l.Close())
	}
	errs = append(errs, s.objs.Close())
	return errors.Join(errs...)
}
