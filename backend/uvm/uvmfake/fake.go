// Package uvmfake is a fake of the vattn-patched nvidia-uvm module for tests: it
// answers the vattn commands through ioctl's syscall seam the way
// kernel/nvidia-uvm-patch/uvm_vattn_ioctl.h says the module does (checks before
// changes, statuses, done counts), keeps pages and mappings per handle, and can
// be told to fail a command or to act as the stock module.
package uvmfake

import (
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vattn/vattn/ioctl"
)

// Module is the fake module's state.
type Module struct {
	// Errno, when set, answers every vattn command (a stock module: ENOSYS).
	Errno unix.Errno
	// Managed reports whether an address lies in a managed range; nil means
	// every address does.
	Managed func(addr uint64) bool

	mu       sync.Mutex
	vaFDs    map[int]bool // va_space files; other fds answer NV_ERR_ILLEGAL_ACTION
	uuid     [16]byte
	maxBatch uint32
	next     uint64
	pages    map[uint64]uint64 // handle → page size
	mapped   map[uint64]uint64 // address → handle
	onPage   map[uint64]uint64 // handle → address
	inits    int
	calls    []call
	fail     map[uint32]failure // command → failure of its nth call from now
	count    map[uint32]int
}

type call struct {
	cmd   uint32
	count uint32
}

type failure struct {
	nth    int
	status ioctl.Status
	errno  unix.Errno
	done   uint32 // entries applied before the failure (MAP/UNMAP/FREE)
}

// New returns a module whose va_space file is fd (-1: none until UVM_INITIALIZE
// makes one), with one registered GPU and batches of at most maxBatch.
func New(fd int, uuid [16]byte, maxBatch uint32) *Module {
	return &Module{vaFDs: map[int]bool{fd: true}, uuid: uuid, maxBatch: maxBatch, next: 0x100,
		pages: map[uint64]uint64{}, mapped: map[uint64]uint64{}, onPage: map[uint64]uint64{},
		fail: map[uint32]failure{}, count: map[uint32]int{}}
}

// FailNext makes the nth call (1-based) of cmd from now fail: with errno when
// set, else with status after applying done entries.
func (f *Module) FailNext(cmd uint32, nth int, st ioctl.Status, errno unix.Errno, done uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[cmd] = failure{nth: f.count[cmd] + nth, status: st, errno: errno, done: done}
}

// Counts returns the entry count of every call of cmd so far.
func (f *Module) Counts(cmd uint32) []uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []uint32
	for _, c := range f.calls {
		if c.cmd == cmd {
			out = append(out, c.count)
		}
	}
	return out
}

// Live counts the pages and mappings the module holds.
func (f *Module) Live() (pages, mapped int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.pages), len(f.mapped)
}

// ptr reads a user-pointer field of a params block as the kernel would.
func ptr(field *uint64) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(field)) }

func slice[T any](field *uint64, n uint32) []T {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*T)(ptr(field)), n)
}

// applyEach applies a checked batch entry by entry, as the module does: up to
// fl.done entries when a failure is injected (which then reports its status),
// stopping at the first entry apply refuses. It returns the params' done
// count, status and error index.
func applyEach[T any](xs []T, fl *failure, apply func(x T) ioctl.Status) (done uint32, st ioctl.Status, errIndex uint32) {
	n := uint32(len(xs))
	if fl != nil {
		n = fl.done
	}
	for _, x := range xs[:n] {
		if st := apply(x); st != ioctl.NV_OK {
			return done, st, done
		}
		done++
	}
	if fl != nil {
		return done, fl.status, done
	}
	return done, ioctl.NV_OK, 0
}

// Inits counts UVM_INITIALIZE calls.
func (f *Module) Inits() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inits
}

// Install makes the module answer every command; restore undoes it.
func (f *Module) Install() (restore func()) { return ioctl.SetRawIoctl(f.ioctl) }

func (f *Module) ioctl(fd int, cmd uint32, arg unsafe.Pointer) unix.Errno {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch cmd {
	case ioctl.UVM_INITIALIZE:
		f.inits++
		f.vaFDs[fd] = true // each file becomes its own va_space; the fake shares one page table
		return 0
	case ioctl.UVM_PAGEABLE_MEM_ACCESS:
		p := (*ioctl.UVM_PAGEABLE_MEM_ACCESS_PARAMS)(arg)
		if !f.vaFDs[fd] {
			p.RMStatus = ioctl.NV_ERR_ILLEGAL_ACTION
		}
		return 0
	}
	if f.Errno != 0 {
		return f.Errno
	}
	f.count[cmd]++
	var fl *failure
	if x, ok := f.fail[cmd]; ok && x.nth == f.count[cmd] {
		fl = &x
		delete(f.fail, cmd)
	}
	if fl != nil && fl.errno != 0 {
		return fl.errno
	}
	set := func(st *ioctl.Status) bool {
		if !f.vaFDs[fd] {
			*st = ioctl.NV_ERR_ILLEGAL_ACTION
			return true
		}
		return false
	}
	switch cmd {
	case ioctl.UVM_VATTN_GET_INFO:
		p := (*ioctl.UVM_VATTN_GET_INFO_PARAMS)(arg)
		if set(&p.RMStatus) {
			return 0
		}
		p.ABIVersion, p.MaxBatch, p.GPUCount, p.PinnedLimitBytes = ioctl.UVM_VATTN_ABI_VERSION, f.maxBatch, 1, 1<<40
		for _, s := range f.pages {
			p.PinnedBytes += s
		}
		if g := slice[ioctl.UVM_VATTN_GPU_INFO](&p.GPUInfo, p.GPUCapacity); len(g) > 0 {
			g[0] = ioctl.UVM_VATTN_GPU_INFO{GPUUUID: f.uuid, PageSizes: ioctl.UVM_VATTN_PAGE_SIZES_ALL, PinnedBytes: p.PinnedBytes}
		}
	case ioctl.UVM_VATTN_ALLOC:
		p := (*ioctl.UVM_VATTN_ALLOC_PARAMS)(arg)
		f.calls = append(f.calls, call{cmd, p.Count})
		if set(&p.RMStatus) {
			return 0
		}
		if fl != nil {
			p.RMStatus = fl.status
			return 0
		}
		switch {
		case p.Count > f.maxBatch:
			p.RMStatus = ioctl.NV_ERR_INVALID_LIMIT
			return 0
		case p.Flags != 0 || p.PageSize&ioctl.UVM_VATTN_PAGE_SIZES_ALL == 0 || p.PageSize&(p.PageSize-1) != 0:
			p.RMStatus = ioctl.NV_ERR_INVALID_ARGUMENT
			return 0
		case p.GPUUUID != f.uuid:
			p.RMStatus = ioctl.NV_ERR_INVALID_DEVICE
			return 0
		}
		hs := slice[uint64](&p.Handles, p.Count)
		for i := range hs {
			f.next++
			f.pages[f.next] = p.PageSize
			hs[i] = f.next
		}
		p.Done = p.Count
	case ioctl.UVM_VATTN_MAP:
		p := (*ioctl.UVM_VATTN_MAP_PARAMS)(arg)
		f.calls = append(f.calls, call{cmd, p.Count})
		if set(&p.RMStatus) {
			return 0
		}
		es := slice[ioctl.UVM_VATTN_MAP_ENTRY](&p.Entries, p.Count)
		// The whole batch is checked before anything changes.
		addrs, handles := map[uint64]bool{}, map[uint64]bool{}
		for i, e := range es {
			size, ok := f.pages[e.Handle]
			st := ioctl.NV_OK
			switch {
			case !ok:
				st = ioctl.NV_ERR_OBJECT_NOT_FOUND
			case e.Address%size != 0:
				st = ioctl.NV_ERR_INVALID_OFFSET
			case f.Managed != nil && !f.Managed(e.Address):
				st = ioctl.NV_ERR_INVALID_ADDRESS
			case addrs[e.Address] || handles[e.Handle]:
				st = ioctl.NV_ERR_UVM_ADDRESS_IN_USE
			}
			if _, busy := f.mapped[e.Address]; busy && st == ioctl.NV_OK {
				st = ioctl.NV_ERR_UVM_ADDRESS_IN_USE
			}
			if _, busy := f.onPage[e.Handle]; busy && st == ioctl.NV_OK {
				st = ioctl.NV_ERR_UVM_ADDRESS_IN_USE
			}
			if st != ioctl.NV_OK {
				p.RMStatus, p.ErrorIndex = st, uint32(i)
				return 0
			}
			addrs[e.Address], handles[e.Handle] = true, true
		}
		p.Done, p.RMStatus, p.ErrorIndex = applyEach(es, fl, func(e ioctl.UVM_VATTN_MAP_ENTRY) ioctl.Status {
			f.mapped[e.Address], f.onPage[e.Handle] = e.Handle, e.Address
			return ioctl.NV_OK
		})
	case ioctl.UVM_VATTN_UNMAP:
		p := (*ioctl.UVM_VATTN_UNMAP_PARAMS)(arg)
		f.calls = append(f.calls, call{cmd, p.Count})
		if set(&p.RMStatus) {
			return 0
		}
		p.Done, p.RMStatus, p.ErrorIndex = applyEach(slice[uint64](&p.Addresses, p.Count), fl, func(a uint64) ioctl.Status {
			h, ok := f.mapped[a]
			if !ok {
				return ioctl.NV_ERR_OBJECT_NOT_FOUND
			}
			delete(f.mapped, a)
			delete(f.onPage, h)
			return ioctl.NV_OK
		})
	case ioctl.UVM_VATTN_FREE:
		p := (*ioctl.UVM_VATTN_FREE_PARAMS)(arg)
		f.calls = append(f.calls, call{cmd, p.Count})
		if set(&p.RMStatus) {
			return 0
		}
		p.Done, p.RMStatus, p.ErrorIndex = applyEach(slice[uint64](&p.Handles, p.Count), fl, func(h uint64) ioctl.Status {
			if _, ok := f.pages[h]; !ok {
				return ioctl.NV_ERR_OBJECT_NOT_FOUND
			}
			if _, busy := f.onPage[h]; busy {
				return ioctl.NV_ERR_IN_USE
			}
			delete(f.pages, h)
			return ioctl.NV_OK
		})
	case ioctl.UVM_VATTN_RELEASE_RANGE:
		p := (*ioctl.UVM_VATTN_RELEASE_RANGE_PARAMS)(arg)
		f.calls = append(f.calls, call{cmd, 0})
		if set(&p.RMStatus) {
			return 0
		}
		if fl != nil {
			p.RMStatus = fl.status
			return 0
		}
		for a, h := range f.mapped {
			if a >= p.Base && a-p.Base < p.Length {
				delete(f.mapped, a)
				delete(f.onPage, h)
				p.Unmapped++
				if p.Flags&ioctl.UVM_VATTN_RELEASE_FREE != 0 {
					delete(f.pages, h)
					p.Freed++
				}
			}
		}
	default:
		return unix.ENOSYS
	}
	return 0
}
