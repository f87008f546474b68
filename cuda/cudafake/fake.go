// Package cudafake is an in-memory CUDA driver for tests on machines without
// a GPU: it fills a cuda.Driver with functions that keep the bookkeeping
// libcuda keeps for the calls vattn makes (reservations, physical handles,
// mappings, access, events and their completion, the current context per OS
// thread), returns the CUresults libcuda returns for misuse, and can be told
// to fail any call. It holds no device memory and runs no kernels.
package cudafake

import (
	"fmt"
	"sort"
	"sync"
	"syscall"
	"unsafe"

	"github.com/vattn/vattn/cuda"
)

// Granularity is the allocation granularity the fake reports (2 MiB, as the
// stock driver does on current GPUs).
const Granularity = 2 << 20

// GPU is one fake device.
type GPU struct {
	Name  string
	UUID  cuda.UUID
	Major int32
	Minor int32
	NoVMM bool
}

type mapping struct {
	handle cuda.MemHandle
	size   uint64
	access bool
}

type event struct {
	recorded bool
	seq      uint64 // work sequence number it waits for
}

// Fake is the fake driver's state. Its exported fields may be set before
// use; everything else is read through methods.
type Fake struct {
	GPUs        []GPU
	TotalMemory uint64 // bytes per device; MemCreate fails past it
	InitResult  cuda.Result

	mu          sync.Mutex
	initialized bool
	calls       map[string]int
	inject      map[string]map[int]cuda.Result
	strs        map[string][]byte
	current     map[int]cuda.Context // per OS thread
	retains     map[cuda.Device]int
	nextVA      uint64
	reserved    map[cuda.DevicePtr]uint64
	managed     map[cuda.DevicePtr]uint64
	handles     map[cuda.MemHandle]uint64
	released    map[cuda.MemHandle]bool // released while still mapped
	nextHandle  cuda.MemHandle
	mappings    map[cuda.DevicePtr]*mapping
	used        uint64
	nextObj     uintptr
	streams     map[cuda.Stream]bool
	events      map[cuda.Event]*event
	modules     map[cuda.Module]bool
	submitted   uint64 // sequence of the newest GPU work
	completed   uint64 // all work up to here has finished
	launches    int
}

// New returns a fake with one H100-like GPU and 80 GiB of memory.
func New() *Fake {
	return &Fake{
		GPUs:        []GPU{{Name: "Fake H100", UUID: cuda.UUID{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, Major: 9, Minor: 0}},
		TotalMemory: 80 << 30,
		calls:       map[string]int{},
		inject:      map[string]map[int]cuda.Result{},
		strs:        map[string][]byte{},
		current:     map[int]cuda.Context{},
		retains:     map[cuda.Device]int{},
		nextVA:      1 << 40,
		reserved:    map[cuda.DevicePtr]uint64{},
		managed:     map[cuda.DevicePtr]uint64{},
		handles:     map[cuda.MemHandle]uint64{},
		released:    map[cuda.MemHandle]bool{},
		nextHandle:  0x1000,
		mappings:    map[cuda.DevicePtr]*mapping{},
		nextObj:     0x5000,
		streams:     map[cuda.Stream]bool{},
		events:      map[cuda.Event]*event{},
		modules:     map[cuda.Module]bool{},
	}
}

// Inject makes the nth call (1-based, counted from now) of the C function
// named sym (e.g. "cuMemMap") return r without doing anything.
func (f *Fake) Inject(sym string, nth int, r cuda.Result) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.inject[sym] == nil {
		f.inject[sym] = map[int]cuda.Result{}
	}
	f.inject[sym][f.calls[sym]+nth] = r
}

// Calls returns how many times sym was called.
func (f *Fake) Calls(sym string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[sym]
}

// Launches returns how many kernels were launched.
func (f *Fake) Launches() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.launches
}

// Live counts what is still allocated in the driver.
type Live struct {
	Reservations, Handles, Mappings, Streams, Events, Modules, Retains int
	Managed                                                            int // cuMemAllocManaged allocations
	Used                                                               uint64
}

// Live returns what is still allocated.
func (f *Fake) Live() Live {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := 0
	for _, n := range f.retains {
		r += n
	}
	return Live{len(f.reserved), len(f.handles), len(f.mappings), len(f.streams), len(f.events), len(f.modules), r, len(f.managed), f.used}
}

// Complete finishes all GPU work submitted so far.
func (f *Fake) Complete() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.completed = f.submitted
}

// Submit adds one piece of pending GPU work (as a kernel launch does).
func (f *Fake) Submit() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.submitted++
}

// Mapped returns the mapped addresses, sorted, and whether access is set on each.
func (f *Fake) Mapped() (addrs []uint64, access []bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for p := range f.mappings {
		addrs = append(addrs, uint64(p))
	}
	sort.Slice(addrs, func(i, j int) bool { return addrs[i] < addrs[j] })
	for _, a := range addrs {
		access = append(access, f.mappings[cuda.DevicePtr(a)].access)
	}
	return addrs, access
}

// enter counts a call and returns an injected result, if any. The caller
// holds f.mu.
func (f *Fake) enter(sym string) (cuda.Result, bool) {
	f.calls[sym]++
	if m := f.inject[sym]; m != nil {
		if r, ok := m[f.calls[sym]]; ok {
			delete(m, f.calls[sym])
			return r, true
		}
	}
	return 0, false
}

// bound is enter for calls that need a current context on this thread.
func (f *Fake) bound(sym string) (cuda.Result, bool) {
	if r, ok := f.enter(sym); ok {
		return r, true
	}
	if !f.initialized {
		return cuda.CUDA_ERROR_NOT_INITIALIZED, true
	}
	if f.current[syscall.Gettid()] == 0 {
		return cuda.CUDA_ERROR_INVALID_CONTEXT, true
	}
	return 0, false
}

func (f *Fake) cstr(s string) *byte {
	b, ok := f.strs[s]
	if !ok {
		b = append([]byte(s), 0)
		f.strs[s] = b
	}
	return &b[0]
}

var names = map[cuda.Result][2]string{
	cuda.CUDA_ERROR_INVALID_VALUE:       {"CUDA_ERROR_INVALID_VALUE", "invalid argument"},
	cuda.CUDA_ERROR_OUT_OF_MEMORY:       {"CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
	cuda.CUDA_ERROR_NOT_INITIALIZED:     {"CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
	cuda.CUDA_ERROR_INSUFFICIENT_DRIVER: {"CUDA_ERROR_INSUFFICIENT_DRIVER", "CUDA driver version is insufficient for CUDA runtime version"},
	cuda.CUDA_ERROR_NO_DEVICE:           {"CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
	cuda.CUDA_ERROR_INVALID_DEVICE:      {"CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
	cuda.CUDA_ERROR_INVALID_CONTEXT:     {"CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
	cuda.CUDA_ERROR_INVALID_HANDLE:      {"CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
	cuda.CUDA_ERROR_NOT_READY:           {"CUDA_ERROR_NOT_READY", "device not ready"},
	cuda.CUDA_ERROR_LAUNCH_FAILED:       {"CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
	cuda.CUDA_ERROR_NOT_SUPPORTED:       {"CUDA_ERROR_NOT_SUPPORTED", "operation not supported"},
	cuda.CUDA_ERROR_UNKNOWN:             {"CUDA_ERROR_UNKNOWN", "unknown error"},
}

func (f *Fake) device(d cuda.Device) (GPU, bool) {
	if d < 0 || int(d) >= len(f.GPUs) {
		return GPU{}, false
	}
	return f.GPUs[d], true
}

// inRange reports whether [p, p+size) lies inside one reservation.
func (f *Fake) inRange(p cuda.DevicePtr, size uint64) bool {
	for base, n := range f.reserved {
		if p >= base && uint64(p-base)+size <= n {
			return true
		}
	}
	return false
}

func (f *Fake) obj() uintptr {
	f.nextObj += 0x10
	return f.nextObj
}

// Driver returns the function table backed by f.
func (f *Fake) Driver() *cuda.Driver {
	lock := func() func() { f.mu.Lock(); return f.mu.Unlock }
	ok := cuda.CUDA_SUCCESS
	inval := cuda.CUDA_ERROR_INVALID_VALUE
	return &cuda.Driver{
		Init: func(uint32) cuda.Result {
			defer lock()()
			if r, bad := f.enter("cuInit"); bad {
				return r
			}
			if f.InitResult != ok {
				return f.InitResult
			}
			f.initialized = true
			return ok
		},
		DriverGetVersion: func(v *int32) cuda.Result {
			defer lock()()
			if r, bad := f.enter("cuDriverGetVersion"); bad {
				return r
			}
			*v = 13000
			return ok
		},
		DeviceGetCount: func(n *int32) cuda.Result {
			defer lock()()
			if r, bad := f.enter("cuDeviceGetCount"); bad {
				return r
			}
			*n = int32(len(f.GPUs))
			return ok
		},
		DeviceGet: func(d *cuda.Device, ordinal int32) cuda.Result {
			defer lock()()
			if r, bad := f.enter("cuDeviceGet"); bad {
				return r
			}
			if _, found := f.device(cuda.Device(ordinal)); !found {
				return cuda.CUDA_ERROR_INVALID_DEVICE
			}
			*d = cuda.Device(ordinal)
			return ok
		},
		DeviceGetName: func(name *byte, size int32, d cuda.Device) cuda.Result {
			defer lock()()
			if r, bad := f.enter("cuDeviceGetName"); bad {
				return r
			}
			g, found := f.device(d)
			if !found {
				return cuda.CUDA_ERROR_INVALID_DEVICE
			}
			buf := unsafe.Slice(name, size)
			n := copy(buf[:size-1], g.Name)
			buf[n] = 0
			return ok
		},
		DeviceGetUuid: func(u *cuda.UUID, d cuda.Device) cuda.Result {
			defer lock()()
			if r, bad := f.enter("cuDeviceGetUuid_v2"); bad {
				return r
			}
			g, found := f.device(d)
			if !found {
				return cuda.CUDA_ERROR_INVALID_DEVICE
			}
			*u = g.UUID
			return ok
		},
		DeviceGetAttribute: func(v *int32, a cuda.DeviceAttribute, d cuda.Device) cuda.Result {
			defer lock()()
			if r, bad := f.enter("cuDeviceGetAttribute"); bad {
				return r
			}
			g, found := f.device(d)
			if !found {
				return cuda.CUDA_ERROR_INVALID_DEVICE
			}
			switch a {
			case cuda.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR:
				*v = g.Major
			case cuda.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR:
				*v = g.Minor
			case cuda.CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED:
				*v = 1
				if g.NoVMM {
					*v = 0
				}
			default:
				return inval
			}
			return ok
		},
		DevicePrimaryCtxRetain: func(c *cuda.Context, d cuda.Device) cuda.Result {
			defer lock()()
			if r, bad := f.enter("cuDevicePrimaryCtxRetain"); bad {
				return r
			}
			if _, found := f.device(d); !found {
				return cuda.CUDA_ERROR_INVALID_DEVICE
			}
			f.retains[d]++
			*c = cuda.Context(0xc000 + uintptr(d))
			return ok
		},
		DevicePrimaryCtxRelease: func(d cuda.Device) cuda.Result {
			defer lock()()
			if r, bad := f.enter("cuDevicePrimaryCtxRelease_v2"); bad {
				return r
			}
			if f.retains[d] == 0 {
				return cuda.CUDA_ERROR_INVALID_CONTEXT
			}
			f.retains[d]--
			if f.retains[d] == 0 {
				delete(f.retains, d)
			}
			return ok
		},
		CtxSetCurrent: func(c cuda.Context) cuda.Result {
			defer lock()()
			if r, bad := f.enter("cuCtxSetCurrent"); bad {
				return r
			}
			if c != 0 && f.retains[cuda.Device(c-0xc000)] == 0 {
				return cuda.CUDA_ERROR_INVALID_CONTEXT
			}
			f.current[syscall.Gettid()] = c
			return ok
		},
		CtxSynchronize: func() cuda.Result {
			defer lock()()
			if r, bad := f.bound("cuCtxSynchronize"); bad {
				return r
			}
			f.completed = f.submitted
			return ok
		},
		MemGetInfo: func(free, total *uint64) cuda.Result {
			defer lock()()
			if r, bad := f.bound("cuMemGetInfo_v2"); bad {
				return r
			}
			*total = f.TotalMemory
			*free = f.TotalMemory - f.used
			return ok
		},
		MemGetAllocationGranularity: func(g *uint64, prop *cuda.AllocationProp, option int32) cuda.Result {
			defer lock()()
			if r, bad := f.bound("cuMemGetAllocationGranularity"); bad {
				return r
			}
			if prop.Type != cuda.CU_MEM_ALLOCATION_TYPE_PINNED || prop.Location.Type != cuda.CU_MEM_LOCATION_TYPE_DEVICE {
				return inval
			}
			if _, found := f.device(cuda.Device(prop.Location.ID)); !found {
				return cuda.CUDA_ERROR_INVALID_DEVICE
			}
			*g = Granularity
			return ok
		},
		MemAddressReserve: func(p *cuda.DevicePtr, size, align uint64, at cuda.DevicePtr, flags uint64) cuda.Result {
			defer lock()()
			if r, bad := f.bound("cuMemAddressReserve"); bad {
				return r
			}
			if size == 0 || size%Granularity != 0 || (align != 0 && align%Granularity != 0) {
				return inval
			}
			*p = cuda.DevicePtr(f.nextVA)
			f.reserved[*p] = size
			f.nextVA += size + Granularity // a hole between ranges, so runs never cross reservations
			return ok
		},
		MemAllocManaged: func(p *cuda.DevicePtr, size uint64, flags uint32) cuda.Result {
			defer lock()()
			if r, bad := f.bound("cuMemAllocManaged"); bad {
				return r
			}
			if size == 0 || flags != cuda.CU_MEM_ATTACH_GLOBAL {
				return inval
			}
			// Managed ranges come 2 MiB aligned, like UVM's own.
			*p = cuda.DevicePtr(f.nextVA)
			f.managed[*p] = size
			f.nextVA += (size+Granularity-1)/Granularity*Granularity + Granularity
			return ok
		},
		MemFree: func(p cuda.DevicePtr) cuda.Result {
			defer lock()()
			if r, bad := f.bound("cuMemFree_v2"); bad {
				return r
			}
			if _, found := f.managed[p]; !found {
				return inval
			}
			delete(f.managed, p)
			return ok
		},
		MemAddressFree: func(p cuda.DevicePtr, size uint64) cuda.Result {
			defer lock()()
			if r, bad := f.bound("cuMemAddressFree"); bad {
				return r
			}
			if f.reserved[p] != size || size == 0 {
				return inval
			}
			for m := range f.mappings {
				if m >= p && uint64(m-p) < size {
					return inval
				}
			}
			delete(f.reserved, p)
			return ok
		},
		MemCreate: func(h *cuda.MemHandle, size uint64, prop *cuda.AllocationProp, flags uint64) cuda.Result {
			defer lock()()
			if r, bad := f.bound("cuMemCreate"); bad {
				return r
			}
			if size == 0 || size%Granularity != 0 || prop.Type != cuda.CU_MEM_ALLOCATION_TYPE_PINNED {
				return inval
			}
			if f.used+size > f.TotalMemory {
				return cuda.CUDA_ERROR_OUT_OF_MEMORY
			}
			f.nextHandle++
			*h = f.nextHandle
			f.handles[*h] = size
			f.used += size
			return ok
		},
		MemRelease: func(h cuda.MemHandle) cuda.Result {
			defer lock()()
			if r, bad := f.bound("cuMemRelease"); bad {
				return r
			}
			size, found := f.handles[h]
			if !found || f.released[h] {
				return cuda.CUDA_ERROR_INVALID_HANDLE
			}
			for _, m := range f.mappings {
				if m.handle == h {
					// The driver frees the memory once the last mapping goes.
					f.released[h] = true
					return ok
				}
			}
			delete(f.handles, h)
			f.used -= size
			return ok
		},
		MemMap: func(p cuda.DevicePtr, size, offset uint64, h cuda.MemHandle, flags uint64) cuda.Result {
			defer lock()()
			if r, bad := f.bound("cuMemMap"); bad {
				return r
			}
			hs, found := f.handles[h]
			if !found || f.released[h] {
				return cuda.CUDA_ERROR_INVALID_HANDLE
			}
			if offset != 0 || size != hs || uint64(p)%Granularity != 0 || !f.inRange(p, size) {
				return inval
			}
			for m, mm := range f.mappings {
				if p < m+cuda.DevicePtr(mm.size) && m < p+cuda.DevicePtr(size) {
					return inval
				}
			}
			f.mappings[p] = &mapping{handle: h, size: size}
			return ok
		},
		MemUnmap: func(p cuda.DevicePtr, size uint64) cuda.Result {
			defer lock()()
			if r, bad := f.bound("cuMemUnmap"); bad {
				return r
			}
			// Whole mappings only, possibly several adjacent ones.
			var covered []cuda.DevicePtr
			for q := p; q < p+cuda.DevicePtr(size); {
				m, found := f.mappings[q]
				if !found {
					return inval
				}
				covered = append(covered, q)
				q += cuda.DevicePtr(m.size)
			}
			if len(covered) == 0 {
				return inval
			}
			for _, q := range covered {
				h := f.mappings[q].handle
				delete(f.mappings, q)
				if f.released[h] && !f.handleMapped(h) {
					delete(f.released, h)
					f.used -= f.handles[h]
					delete(f.handles, h)
				}
			}
			return ok
		},
		MemSetAccess: func(p cuda.DevicePtr, size uint64, desc *cuda.AccessDesc, count uint64) cuda.Result {
			defer lock()()
			if r, bad := f.bound("cuMemSetAccess"); bad {
				return r
			}
			if count != 1 || desc.Flags != cuda.CU_MEM_ACCESS_FLAGS_PROT_READWRITE || desc.Location.Type != cuda.CU_MEM_LOCATION_TYPE_DEVICE {
				return inval
			}
			var covered []*mapping
			for q := p; q < p+cuda.DevicePtr(size); {
				m, found := f.mappings[q]
				if !found {
					return inval
				}
				covered = append(covered, m)
				q += cuda.DevicePtr(m.size)
			}
			if len(covered) == 0 {
				return inval
			}
			for _, m := range covered {
				m.access = true
			}
			return ok
		},
		MemsetD32: func(p cuda.DevicePtr, v uint32, n uint64) cuda.Result {
			defer lock()()
			if r, bad := f.bound("cuMemsetD32_v2"); bad {
				return r
			}
			return ok
		},
		MemcpyDtoH: func(dst unsafe.Pointer, src cuda.DevicePtr, n uint64) cuda.Result {
			defer lock()()
			if r, bad := f.bound("cuMemcpyDtoH_v2"); bad {
				return r
			}
			clear(unsafe.Slice((*byte)(dst), n))
			return ok
		},
		MemcpyHtoD: func(dst cuda.DevicePtr, src unsafe.Pointer, n uint64) cuda.Result {
			defer lock()()
			if r, bad := f.bound("cuMemcpyHtoD_v2"); bad {
				return r
			}
			return ok
		},
		StreamCreate: func(s *cuda.Stream, flags uint32) cuda.Result {
			defer lock()()
			if r, bad := f.bound("cuStreamCreate"); bad {
				return r
			}
			*s = cuda.Stream(f.obj())
			f.streams[*s] = true
			return ok
		},
		StreamDestroy: func(s cuda.Stream) cuda.Result {
			defer lock()()
			if r, bad := f.bound("cuStreamDestroy_v2"); bad {
				return r
			}
			if !f.streams[s] {
				return cuda.CUDA_ERROR_INVALID_HANDLE
			}
			delete(f.streams, s)
			return ok
		},
		StreamSynchronize: func(s cuda.Stream) cuda.Result {
			defer lock()()
			if r, bad := f.bound("cuStreamSynchronize"); bad {
				return r
			}
			if s != 0 && !f.streams[s] {
				return cuda.CUDA_ERROR_INVALID_HANDLE
			}
			f.completed = f.submitted
			return ok
		},
		EventCreate: func(e *cuda.Event, flags uint32) cuda.Result {
			defer lock()()
			if r, bad := f.bound("cuEventCreate"); bad {
				return r
			}
			*e = cuda.Event(f.obj())
			f.events[*e] = &event{}
			return ok
		},
		EventRecord: func(e cuda.Event, s cuda.Stream) cuda.Result {
			defer lock()()
			if r, bad := f.bound("cuEventRecord"); bad {
				return r
			}
			ev, found := f.events[e]
			if !found || (s != 0 && !f.streams[s]) {
				return cuda.CUDA_ERROR_INVALID_HANDLE
			}
			ev.recorded, ev.seq = true, f.submitted
			return ok
		},
		EventQuery: func(e cuda.Event) cuda.Result {
			defer lock()()
			if r, bad := f.bound("cuEventQuery"); bad {
				return r
			}
			ev, found := f.events[e]
			if !found {
				return cuda.CUDA_ERROR_INVALID_HANDLE
			}
			if ev.recorded && ev.seq > f.completed {
				return cuda.CUDA_ERROR_NOT_READY
			}
			return ok
		},
		EventSynchronize: func(e cuda.Event) cuda.Result {
			defer lock()()
			if r, bad := f.bound("cuEventSynchronize"); bad {
				return r
			}
			ev, found := f.events[e]
			if !found {
				return cuda.CUDA_ERROR_INVALID_HANDLE
			}
			if ev.seq > f.completed {
				f.completed = ev.seq
			}
			return ok
		},
		EventDestroy: func(e cuda.Event) cuda.Result {
			defer lock()()
			if r, bad := f.bound("cuEventDestroy_v2"); bad {
				return r
			}
			if _, found := f.events[e]; !found {
				return cuda.CUDA_ERROR_INVALID_HANDLE
			}
			delete(f.events, e)
			return ok
		},
		ModuleLoadData: func(m *cuda.Module, image unsafe.Pointer) cuda.Result {
			defer lock()()
			if r, bad := f.bound("cuModuleLoadData"); bad {
				return r
			}
			if image == nil {
				return inval
			}
			*m = cuda.Module(f.obj())
			f.modules[*m] = true
			return ok
		},
		ModuleUnload: func(m cuda.Module) cuda.Result {
			defer lock()()
			if r, bad := f.bound("cuModuleUnload"); bad {
				return r
			}
			if !f.modules[m] {
				return cuda.CUDA_ERROR_INVALID_HANDLE
			}
			delete(f.modules, m)
			return ok
		},
		ModuleGetFunction: func(fn *cuda.Function, m cuda.Module, name *byte) cuda.Result {
			defer lock()()
			if r, bad := f.bound("cuModuleGetFunction"); bad {
				return r
			}
			if !f.modules[m] {
				return cuda.CUDA_ERROR_INVALID_HANDLE
			}
			*fn = cuda.Function(f.obj())
			return ok
		},
		LaunchKernel: func(fn cuda.Function, gx, gy, gz, bx, by, bz, shmem uint32, s cuda.Stream, params, extra *unsafe.Pointer) cuda.Result {
			defer lock()()
			if r, bad := f.bound("cuLaunchKernel"); bad {
				return r
			}
			if fn == 0 || gx == 0 || bx == 0 || params == nil {
				return inval
			}
			f.launches++
			f.submitted++
			return ok
		},
		GetErrorName: func(r cuda.Result, s **byte) cuda.Result {
			defer lock()()
			n, found := names[r]
			if !found {
				return inval
			}
			*s = f.cstr(n[0])
			return ok
		},
		GetErrorString: func(r cuda.Result, s **byte) cuda.Result {
			defer lock()()
			n, found := names[r]
			if !found {
				return inval
			}
			*s = f.cstr(n[1])
			return ok
		},
	}
}

func (f *Fake) handleMapped(h cuda.MemHandle) bool {
	for _, m := range f.mappings {
		if m.handle == h {
			return true
		}
	}
	return false
}

// String summarizes the live state, for test failures.
func (l Live) String() string {
	return fmt.Sprintf("%d reservations, %d handles, %d mappings, %d streams, %d events, %d modules, %d context retains, %d managed, %d bytes used",
		l.Reservations, l.Handles, l.Mappings, l.Streams, l.Events, l.Modules, l.Retains, l.Managed, l.Used)
}
