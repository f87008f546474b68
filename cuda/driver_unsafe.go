package cuda

import (
	"fmt"
	"sort"
	"strings"
	"unsafe"

	"github.com/ebitengine/purego"

	"github.com/vattn/vattn/backend"
)

// bindDriver resolves every entry in Symbols with lookup and returns a
// Driver whose fields call those C functions. A symbol lookup cannot panic:
// every missing symbol is collected and reported in one error.
//
// Each field calls purego.SyscallN with its pointer arguments converted in
// the call expression itself; SyscallN is go:uintptrescapes, so what they
// point to is moved to the heap and kept alive for the call.
func bindDriver(lookup func(name string) (uintptr, error)) (*Driver, error) {
	addr := make(map[string]uintptr, len(Symbols))
	var missing []string
	for field, sym := range Symbols {
		p, err := lookup(sym)
		if err != nil || p == 0 {
			missing = append(missing, sym)
			continue
		}
		addr[field] = p
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, &MissingSymbolError{Symbols: missing}
	}
	r := func(r1 uintptr) Result { return Result(int32(uint32(r1))) }
	call := purego.SyscallN
	d := &Driver{}
	{
		f := addr["Init"]
		d.Init = func(flags uint32) Result { r1, _, _ := call(f, uintptr(flags)); return r(r1) }
	}
	{
		f := addr["DriverGetVersion"]
		d.DriverGetVersion = func(v *int32) Result { r1, _, _ := call(f, uintptr(unsafe.Pointer(v))); return r(r1) }
	}
	{
		f := addr["DeviceGetCount"]
		d.DeviceGetCount = func(n *int32) Result { r1, _, _ := call(f, uintptr(unsafe.Pointer(n))); return r(r1) }
	}
	{
		f := addr["DeviceGet"]
		d.DeviceGet = func(dev *Device, ordinal int32) Result {
			r1, _, _ := call(f, uintptr(unsafe.Pointer(dev)), uintptr(ordinal))
			return r(r1)
		}
	}
	{
		f := addr["DeviceGetName"]
		d.DeviceGetName = func(name *byte, size int32, dev Device) Result {
			r1, _, _ := call(f, uintptr(unsafe.Pointer(name)), uintptr(size), uintptr(dev))
			return r(r1)
		}
	}
	{
		f := addr["DeviceGetUuid"]
		d.DeviceGetUuid = func(u *UUID, dev Device) Result {
			r1, _, _ := call(f, uintptr(unsafe.Pointer(u)), uintptr(dev))
			return r(r1)
		}
	}
	{
		f := addr["DeviceGetAttribute"]
		d.DeviceGetAttribute = func(v *int32, attr DeviceAttribute, dev Device) Result {
			r1, _, _ := call(f, uintptr(unsafe.Pointer(v)), uintptr(attr), uintptr(dev))
			return r(r1)
		}
	}
	{
		f := addr["DevicePrimaryCtxRetain"]
		d.DevicePrimaryCtxRetain = func(c *Context, dev Device) Result {
			r1, _, _ := call(f, uintptr(unsafe.Pointer(c)), uintptr(dev))
			return r(r1)
		}
	}
	{
		f := addr["DevicePrimaryCtxRelease"]
		d.DevicePrimaryCtxRelease = func(dev Device) Result { r1, _, _ := call(f, uintptr(dev)); return r(r1) }
	}
	{
		f := addr["CtxSetCurrent"]
		d.CtxSetCurrent = func(c Context) Result { r1, _, _ := call(f, uintptr(c)); return r(r1) }
	}
	{
		f := addr["CtxSynchronize"]
		d.CtxSynchronize = func() Result { r1, _, _ := call(f); return r(r1) }
	}
	{
		f := addr["MemGetInfo"]
		d.MemGetInfo = func(free, total *uint64) Result {
			r1, _, _ := call(f, uintptr(unsafe.Pointer(free)), uintptr(unsafe.Pointer(total)))
			return r(r1)
		}
	}
	{
		f := addr["MemGetAllocationGranularity"]
		d.MemGetAllocationGranularity = func(g *uint64, prop *AllocationProp, option int32) Result {
			r1, _, _ := call(f, uintptr(unsafe.Pointer(g)), uintptr(unsafe.Pointer(prop)), uintptr(option))
			return r(r1)
		}
	}
	{
		f := addr["MemAddressReserve"]
		d.MemAddressReserve = func(p *DevicePtr, size, align uint64, at DevicePtr, flags uint64) Result {
			r1, _, _ := call(f, uintptr(unsafe.Pointer(p)), uintptr(size), uintptr(align), uintptr(at), uintptr(flags))
			return r(r1)
		}
	}
	{
		f := addr["MemAddressFree"]
		d.MemAddressFree = func(p DevicePtr, size uint64) Result { r1, _, _ := call(f, uintptr(p), uintptr(size)); return r(r1) }
	}
	{
		f := addr["MemCreate"]
		d.MemCreate = func(h *MemHandle, size uint64, prop *AllocationProp, flags uint64) Result {
			r1, _, _ := call(f, uintptr(unsafe.Pointer(h)), uintptr(size), uintptr(unsafe.Pointer(prop)), uintptr(flags))
			return r(r1)
		}
	}
	{
		f := addr["MemRelease"]
		d.MemRelease = func(h MemHandle) Result { r1, _, _ := call(f, uintptr(h)); return r(r1) }
	}
	{
		f := addr["MemMap"]
		d.MemMap = func(p DevicePtr, size, offset uint64, h MemHandle, flags uint64) Result {
			r1, _, _ := call(f, uintptr(p), uintptr(size), uintptr(offset), uintptr(h), uintptr(flags))
			return r(r1)
		}
	}
	{
		f := addr["MemUnmap"]
		d.MemUnmap = func(p DevicePtr, size uint64) Result { r1, _, _ := call(f, uintptr(p), uintptr(size)); return r(r1) }
	}
	{
		f := addr["MemSetAccess"]
		d.MemSetAccess = func(p DevicePtr, size uint64, desc *AccessDesc, count uint64) Result {
			r1, _, _ := call(f, uintptr(p), uintptr(size), uintptr(unsafe.Pointer(desc)), uintptr(count))
			return r(r1)
		}
	}
	{
		f := addr["MemAllocManaged"]
		d.MemAllocManaged = func(p *DevicePtr, size uint64, flags uint32) Result {
			r1, _, _ := call(f, uintptr(unsafe.Pointer(p)), uintptr(size), uintptr(flags))
			return r(r1)
		}
	}
	{
		f := addr["MemFree"]
		d.MemFree = func(p DevicePtr) Result {
			r1, _, _ := call(f, uintptr(p))
			return r(r1)
		}
	}
	{
		f := addr["MemsetD32"]
		d.MemsetD32 = func(p DevicePtr, v uint32, n uint64) Result {
			r1, _, _ := call(f, uintptr(p), uintptr(v), uintptr(n))
			return r(r1)
		}
	}
	{
		f := addr["MemcpyDtoH"]
		d.MemcpyDtoH = func(dst unsafe.Pointer, src DevicePtr, n uint64) Result {
			r1, _, _ := call(f, uintptr(dst), uintptr(src), uintptr(n))
			return r(r1)
		}
	}
	{
		f := addr["MemcpyHtoD"]
		d.MemcpyHtoD = func(dst DevicePtr, src unsafe.Pointer, n uint64) Result {
			r1, _, _ := call(f, uintptr(dst), uintptr(src), uintptr(n))
			return r(r1)
		}
	}
	{
		f := addr["StreamCreate"]
		d.StreamCreate = func(s *Stream, flags uint32) Result {
			r1, _, _ := call(f, uintptr(unsafe.Pointer(s)), uintptr(flags))
			return r(r1)
		}
	}
	{
		f := addr["StreamDestroy"]
		d.StreamDestroy = func(s Stream) Result { r1, _, _ := call(f, uintptr(s)); return r(r1) }
	}
	{
		f := addr["StreamSynchronize"]
		d.StreamSynchronize = func(s Stream) Result { r1, _, _ := call(f, uintptr(s)); return r(r1) }
	}
	{
		f := addr["EventCreate"]
		d.EventCreate = func(e *Event, flags uint32) Result {
			r1, _, _ := call(f, uintptr(unsafe.Pointer(e)), uintptr(flags))
			return r(r1)
		}
	}
	{
		f := addr["EventRecord"]
		d.EventRecord = func(e Event, s Stream) Result { r1, _, _ := call(f, uintptr(e), uintptr(s)); return r(r1) }
	}
	{
		f := addr["EventQuery"]
		d.EventQuery = func(e Event) Result { r1, _, _ := call(f, uintptr(e)); return r(r1) }
	}
	{
		f := addr["EventSynchronize"]
		d.EventSynchronize = func(e Event) Result { r1, _, _ := call(f, uintptr(e)); return r(r1) }
	}
	{
		f := addr["EventDestroy"]
		d.EventDestroy = func(e Event) Result { r1, _, _ := call(f, uintptr(e)); return r(r1) }
	}
	{
		f := addr["ModuleLoadData"]
		d.ModuleLoadData = func(m *Module, image unsafe.Pointer) Result {
			r1, _, _ := call(f, uintptr(unsafe.Pointer(m)), uintptr(image))
			return r(r1)
		}
	}
	{
		f := addr["ModuleUnload"]
		d.ModuleUnload = func(m Module) Result { r1, _, _ := call(f, uintptr(m)); return r(r1) }
	}
	{
		f := addr["ModuleGetFunction"]
		d.ModuleGetFunction = func(fn *Function, m Module, name *byte) Result {
			r1, _, _ := call(f, uintptr(unsafe.Pointer(fn)), uintptr(m), uintptr(unsafe.Pointer(name)))
			return r(r1)
		}
	}
	{
		f := addr["LaunchKernel"]
		d.LaunchKernel = func(fn Function, gx, gy, gz, bx, by, bz, shmem uint32, s Stream, params *unsafe.Pointer, extra *unsafe.Pointer) Result {
			r1, _, _ := call(f, uintptr(fn), uintptr(gx), uintptr(gy), uintptr(gz), uintptr(bx), uintptr(by), uintptr(bz),
				uintptr(shmem), uintptr(s), uintptr(unsafe.Pointer(params)), uintptr(unsafe.Pointer(extra)))
			return r(r1)
		}
	}
	{
		f := addr["GetErrorName"]
		d.GetErrorName = func(res Result, s **byte) Result {
			r1, _, _ := call(f, uintptr(uint32(res)), uintptr(unsafe.Pointer(s)))
			return r(r1)
		}
	}
	{
		f := addr["GetErrorString"]
		d.GetErrorString = func(res Result, s **byte) Result {
			r1, _, _ := call(f, uintptr(uint32(res)), uintptr(unsafe.Pointer(s)))
			return r(r1)
		}
	}
	return d, nil
}

// cString copies the NUL-terminated C string at p (owned by the driver).
func cString(p *byte) string {
	if p == nil {
		return ""
	}
	var b strings.Builder
	for q := unsafe.Pointer(p); *(*byte)(q) != 0; q = unsafe.Add(q, 1) {
		b.WriteByte(*(*byte)(q))
	}
	return b.String()
}

// MissingSymbolError reports driver entry points the loaded library lacks:
// a libcuda older than the API vattn needs (CUDA 11.4 or newer).
type MissingSymbolError struct {
	Library string
	Symbols []string
}

// Unwrap makes the error match backend.ErrUnavailable.
func (e *MissingSymbolError) Unwrap() error { return backend.ErrUnavailable }

func (e *MissingSymbolError) Error() string {
	lib := e.Library
	if lib == "" {
		lib = "the CUDA driver library"
	}
	return fmt.Sprintf("%s lacks %s: the NVIDIA driver is too old for vattn (needs the CUDA 11.4+ driver API)",
		lib, strings.Join(e.Symbols, ", "))
}
