package uvm

import (
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vattn/vattn/ioctl"
)

// fakeUVM answers the vattn commands the way the header says the patched module
// does, through ioctl's syscall seam, so the backend is tested over the real
// wrappers. It keeps pages and mappings per handle and can be told to fail.
type fakeUVM struct {
	mu       sync.Mutex
	errno    unix.Errno // answer every vattn command with this (a stock module)
	vaFD     int        // the va_space file; other fds answer NV_ERR_ILLEGAL_ACTION
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

func newFakeUVM(fd int, uuid [16]byte, maxBatch uint32) *fakeUVM {
	return &fakeUVM{vaFD: fd, uuid: uuid, maxBatch: maxBatch, next: 0x100,
		pages: map[uint64]uint64{}, mapped: map[uint64]uint64{}, onPage: map[uint64]uint64{},
		fail: map[uint32]failure{}, count: map[uint32]int{}}
}

// failNext makes the nth call (1-based) of cmd from now fail.
func (f *fakeUVM) failNext(cmd uint32, nth int, st ioctl.Status, errno unix.Errno, done uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[cmd] = failure{nth: f.count[cmd] + nth, status: st, errno: errno, done: done}
}

func (f *fakeUVM) cmds(cmd uint32) []uint32 {
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

func (f *fakeUVM) live() (pages, mapped int) {
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

func (f *fakeUVM) install() (restore func()) { return ioctl.SetRawIoctl(f.ioctl) }

func (f *fakeUVM) ioctl(fd int, cmd uint32, arg unsafe.Pointer) unix.Errno {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch cmd {
	case ioctl.UVM_INITIALIZE:
		f.inits++
		f.vaFD = fd
		return 0
	case ioctl.UVM_PAGEABLE_MEM_ACCESS:
		p := (*ioctl.UVM_PAGEABLE_MEM_ACCESS_PARAMS)(arg)
		if fd != f.vaFD {
			p.RMStatus = ioctl.NV_ERR_ILLEGAL_ACTION
		}
		return 0
	}
	if f.errno != 0 {
		return f.errno
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
		if fd != f.vaFD {
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
		if p.Count > f.maxBatch {
			p.RMStatus = ioctl.NV_ERR_INVALID_LIMIT
			return 0
		}
		for i, h := range slice[uint64](&p.Handles, p.Count) {
			_ = h
			f.next++
			f.pages[f.next] = p.PageSize
			slice[uint64](&p.Handles, p.Count)[i] = f.next
		}
		p.Done = p.Count
	case ioctl.UVM_VATTN_MAP:
		p := (*ioctl.UVM_VATTN_MAP_PARAMS)(arg)
		f.calls = append(f.calls, call{cmd, p.Count})
		if set(&p.RMStatus) {
			return 0
		}
		es := slice[ioctl.UVM_VATTN_MAP_ENTRY](&p.Entries, p.Count)
		n := uint32(len(es))
		if fl != nil {
			n = fl.done
		}
		for _, e := range es[:n] {
			if _, ok := f.pages[e.Handle]; !ok {
				p.RMStatus, p.ErrorIndex = ioctl.NV_ERR_OBJECT_NOT_FOUND, p.Done
				return 0
			}
			if _, busy := f.mapped[e.Address]; busy {
				p.RMStatus, p.ErrorIndex = ioctl.NV_ERR_UVM_ADDRESS_IN_USE, p.Done
				return 0
			}
			f.mapped[e.Address], f.onPage[e.Handle] = e.Handle, e.Address
			p.Done++
		}
		if fl != nil {
			p.RMStatus, p.ErrorIndex = fl.status, p.Done
		}
	case ioctl.UVM_VATTN_UNMAP:
		p := (*ioctl.UVM_VATTN_UNMAP_PARAMS)(arg)
		f.calls = append(f.calls, call{cmd, p.Count})
		if set(&p.RMStatus) {
			return 0
		}
		as := slice[uint64](&p.Addresses, p.Count)
		n := uint32(len(as))
		if fl != nil {
			n = fl.done
		}
		for _, a := range as[:n] {
			h, ok := f.mapped[a]
			if !ok {
				p.RMStatus, p.ErrorIndex = ioctl.NV_ERR_OBJECT_NOT_FOUND, p.Done
				return 0
			}
			delete(f.mapped, a)
			delete(f.onPage, h)
			p.Done++
		}
		if fl != nil {
			p.RMStatus, p.ErrorIndex = fl.status, p.Done
		}
	case ioctl.UVM_VATTN_FREE:
		p := (*ioctl.UVM_VATTN_FREE_PARAMS)(arg)
		f.calls = append(f.calls, call{cmd, p.Count})
		if set(&p.RMStatus) {
			return 0
		}
		hs := slice[uint64](&p.Handles, p.Count)
		n := uint32(len(hs))
		if fl != nil {
			n = fl.done
		}
		for _, h := range hs[:n] {
			if _, ok := f.pages[h]; !ok {
				p.RMStatus, p.ErrorIndex = ioctl.NV_ERR_OBJECT_NOT_FOUND, p.Done
				return 0
			}
			if _, busy := f.onPage[h]; busy {
				p.RMStatus, p.ErrorIndex = ioctl.NV_ERR_IN_USE, p.Done
				return 0
			}
			delete(f.pages, h)
			p.Done++
		}
		if fl != nil {
			p.RMStatus, p.ErrorIndex = fl.status, p.Done
		}
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
