package cuda

import (
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"unsafe"
)

// Lib is an initialized CUDA driver: the bound entry points of one loaded
// libcuda, after cuInit.
type Lib struct {
	d             *Driver
	Path          string // the library path that loaded
	DriverVersion int    // cuDriverGetVersion: 13000 for CUDA 13.0
}

// NewLib initializes the driver d (loaded from path, for messages) with
// cuInit. Tests pass a fake Driver here.
func NewLib(d *Driver, path string) (*Lib, error) {
	l := &Lib{d: d, Path: path}
	if err := d.check("cuInit", d.Init(0)); err != nil {
		return nil, fmt.Errorf("initialize CUDA driver (%s): %w", path, err)
	}
	var v int32
	if err := d.check("cuDriverGetVersion", d.DriverGetVersion(&v)); err != nil {
		return nil, fmt.Errorf("initialize CUDA driver: %w", err)
	}
	l.DriverVersion = int(v)
	return l, nil
}

// Driver returns the raw entry points.
func (l *Lib) Driver() *Driver { return l.d }

// DriverVersionString formats the CUDA driver API version: "13.0".
func (l *Lib) DriverVersionString() string {
	return fmt.Sprintf("%d.%d", l.DriverVersion/1000, l.DriverVersion%1000/10)
}

// DeviceInfo describes one GPU as the driver reports it.
type DeviceInfo struct {
	Index        int    `json:"index"`
	Name         string `json:"name"`
	UUID         string `json:"uuid"` // nvidia-smi's form: GPU-xxxxxxxx-xxxx-…
	ComputeMajor int    `json:"compute_major"`
	ComputeMinor int    `json:"compute_minor"`
	VMM          bool   `json:"vmm"` // supports the virtual memory management API
	Device       Device `json:"-"`
}

// FormatUUID writes u as nvidia-smi does.
func FormatUUID(u UUID) string {
	h := hex.EncodeToString(u[:])
	return "GPU-" + h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// ErrDeviceNotFound: no GPU matches the index or UUID asked for.
var ErrDeviceNotFound = errors.New("no such GPU")

// DeviceCount returns how many GPUs the driver sees.
func (l *Lib) DeviceCount() (int, error) {
	var n int32
	if err := l.d.check("cuDeviceGetCount", l.d.DeviceGetCount(&n)); err != nil {
		return 0, fmt.Errorf("count devices: %w", err)
	}
	return int(n), nil
}

// DeviceInfo returns the GPU at ordinal i.
func (l *Lib) DeviceInfo(i int) (DeviceInfo, error) {
	info := DeviceInfo{Index: i}
	d := l.d
	if err := d.check("cuDeviceGet", d.DeviceGet(&info.Device, int32(i))); err != nil {
		return info, fmt.Errorf("device %d: %w", i, err)
	}
	var name [256]byte
	if err := d.check("cuDeviceGetName", d.DeviceGetName(&name[0], int32(len(name)), info.Device)); err != nil {
		return info, fmt.Errorf("device %d: %w", i, err)
	}
	info.Name = cString(&name[0])
	var u UUID
	if err := d.check("cuDeviceGetUuid_v2", d.DeviceGetUuid(&u, info.Device)); err != nil {
		return info, fmt.Errorf("device %d: %w", i, err)
	}
	info.UUID = FormatUUID(u)
	attrs := []struct {
		a   DeviceAttribute
		dst *int
	}{
		{CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, &info.ComputeMajor},
		{CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, &info.ComputeMinor},
	}
	for _, a := range attrs {
		var v int32
		if err := d.check("cuDeviceGetAttribute", d.DeviceGetAttribute(&v, a.a, info.Device)); err != nil {
			return info, fmt.Errorf("device %d: %w", i, err)
		}
		*a.dst = int(v)
	}
	var vmm int32
	if err := d.check("cuDeviceGetAttribute", d.DeviceGetAttribute(&vmm, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, info.Device)); err != nil {
		return info, fmt.Errorf("device %d: %w", i, err)
	}
	info.VMM = vmm != 0
	return info, nil
}

// Devices lists every GPU the driver sees. No GPU is ErrNoDevice.
func (l *Lib) Devices() ([]DeviceInfo, error) {
	n, err := l.DeviceCount()
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("list devices: %w", &Error{Code: CUDA_ERROR_NO_DEVICE, Name: "CUDA_ERROR_NO_DEVICE", Message: "no CUDA-capable device is detected", Call: "cuDeviceGetCount"})
	}
	out := make([]DeviceInfo, 0, n)
	for i := range n {
		info, err := l.DeviceInfo(i)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// SelectDevice picks a GPU the way nvidia-smi's -i does: "" is GPU 0, a
// number is an index, anything else a UUID (with or without "GPU-", any
// case).
func (l *Lib) SelectDevice(sel string) (DeviceInfo, error) {
	devs, err := l.Devices()
	if err != nil {
		return DeviceInfo{}, err
	}
	sel = strings.TrimSpace(sel)
	if sel == "" {
		sel = "0"
	}
	if i, err := strconv.Atoi(sel); err == nil {
		if i < 0 || i >= len(devs) {
			return DeviceInfo{}, fmt.Errorf("select GPU %d: %w (%d visible)", i, ErrDeviceNotFound, len(devs))
		}
		return devs[i], nil
	}
	want := strings.TrimPrefix(strings.ToLower(sel), "gpu-")
	for _, d := range devs {
		if strings.TrimPrefix(strings.ToLower(d.UUID), "gpu-") == want {
			return d, nil
		}
	}
	return DeviceInfo{}, fmt.Errorf("select GPU %q: %w", sel, ErrDeviceNotFound)
}

// Ctx is a device's primary context, retained. Calls bound to it run through
// Do, which pins the goroutine to its OS thread and makes the context
// current there, because the driver keeps the current context per thread.
type Ctx struct {
	lib    *Lib
	Device DeviceInfo
	h      Context
	closed atomic.Bool
}

// Retain retains dev's primary context (the one the CUDA runtime and
// frameworks share, so memory mapped here is usable by their kernels).
func (l *Lib) Retain(dev DeviceInfo) (*Ctx, error) {
	c := &Ctx{lib: l, Device: dev}
	if err := l.d.check("cuDevicePrimaryCtxRetain", l.d.DevicePrimaryCtxRetain(&c.h, dev.Device)); err != nil {
		return nil, fmt.Errorf("retain context of GPU %d: %w", dev.Index, err)
	}
	return c, nil
}

// Lib returns the driver the context belongs to.
func (c *Ctx) Lib() *Lib { return c.lib }

// Handle returns the CUcontext.
func (c *Ctx) Handle() Context { return c.h }

// ErrContextReleased: the context was released.
var ErrContextReleased = errors.New("CUDA context released")

// Do runs f with the context current on a locked OS thread. f must not keep
// b or start goroutines that use it.
func (c *Ctx) Do(f func(b Bound) error) error {
	b, err := c.Enter()
	if err != nil {
		return err
	}
	defer c.Exit()
	return f(b)
}

// Enter is Do without the closure, for hot paths: it locks the goroutine to
// its OS thread and makes the context current there. Every successful Enter
// must be followed by Exit on the same goroutine; the Bound is valid in
// between.
func (c *Ctx) Enter() (Bound, error) {
	runtime.LockOSThread()
	if c.closed.Load() {
		runtime.UnlockOSThread()
		return Bound{}, ErrContextReleased
	}
	d := c.lib.d
	if err := d.check("cuCtxSetCurrent", d.CtxSetCurrent(c.h)); err != nil {
		runtime.UnlockOSThread()
		return Bound{}, err
	}
	return Bound{d: d}, nil
}

// Exit ends what Enter started.
func (c *Ctx) Exit() { runtime.UnlockOSThread() }

// Release drops the retain. The context is unusable afterwards; a second
// Release does nothing.
func (c *Ctx) Release() error {
	if c.closed.Swap(true) {
		return nil
	}
	d := c.lib.d
	if err := d.check("cuDevicePrimaryCtxRelease_v2", d.DevicePrimaryCtxRelease(c.Device.Device)); err != nil {
		return fmt.Errorf("release context of GPU %d: %w", c.Device.Index, err)
	}
	return nil
}

// Bound makes context-bound calls; it exists only inside Ctx.Do. Each method
// is one driver call, its CUresult turned into an *Error.
type Bound struct{ d *Driver }

// MemGetInfo returns free and total device memory in bytes.
func (b Bound) MemGetInfo() (free, total uint64, err error) {
	err = b.d.check("cuMemGetInfo_v2", b.d.MemGetInfo(&free, &total))
	return
}

// DeviceProp returns the allocation properties for pinned memory on dev.
func DeviceProp(dev Device) AllocationProp {
	return AllocationProp{
		Type:                 CU_MEM_ALLOCATION_TYPE_PINNED,
		RequestedHandleTypes: CU_MEM_HANDLE_TYPE_NONE,
		Location:             MemLocation{Type: CU_MEM_LOCATION_TYPE_DEVICE, ID: int32(dev)},
	}
}

// Granularity returns the minimum allocation granularity for prop.
func (b Bound) Granularity(prop *AllocationProp, option int32) (uint64, error) {
	var g uint64
	err := b.d.check("cuMemGetAllocationGranularity", b.d.MemGetAllocationGranularity(&g, prop, option))
	return g, err
}

// AddressReserve reserves size bytes of device virtual address space.
func (b Bound) AddressReserve(size, alignment uint64) (DevicePtr, error) {
	var p DevicePtr
	err := b.d.check("cuMemAddressReserve", b.d.MemAddressReserve(&p, size, alignment, 0, 0))
	return p, err
}

// AddressFree returns a reservation.
func (b Bound) AddressFree(p DevicePtr, size uint64) error {
	return b.d.check("cuMemAddressFree", b.d.MemAddressFree(p, size))
}

// MemCreate creates a physical allocation of size bytes.
func (b Bound) MemCreate(size uint64, prop *AllocationProp) (MemHandle, error) {
	var h MemHandle
	err := b.d.check("cuMemCreate", b.d.MemCreate(&h, size, prop, 0))
	return h, err
}

// MemCreateAt is MemCreate writing the handle to *h, which must not be on
// the stack of a hot loop's frame: a slice element is right. It saves the
// allocation MemCreate makes for its result.
func (b Bound) MemCreateAt(h *MemHandle, size uint64, prop *AllocationProp) error {
	return b.d.check("cuMemCreate", b.d.MemCreate(h, size, prop, 0))
}

// MemRelease releases a physical allocation handle.
func (b Bound) MemRelease(h MemHandle) error {
	return b.d.check("cuMemRelease", b.d.MemRelease(h))
}

// MemMap maps size bytes of h at p.
func (b Bound) MemMap(p DevicePtr, size uint64, h MemHandle) error {
	return b.d.check("cuMemMap", b.d.MemMap(p, size, 0, h, 0))
}

// MemUnmap unmaps [p, p+size).
func (b Bound) MemUnmap(p DevicePtr, size uint64) error {
	return b.d.check("cuMemUnmap", b.d.MemUnmap(p, size))
}

// SetAccess sets access to [p, p+size) as desc says.
func (b Bound) SetAccess(p DevicePtr, size uint64, desc *AccessDesc) error {
	return b.d.check("cuMemSetAccess", b.d.MemSetAccess(p, size, desc, 1))
}

// AllocManaged makes a managed (unified memory) allocation of size bytes,
// attached globally: the range nvidia-uvm tracks and the patched driver maps
// its pages into.
func (b Bound) AllocManaged(size uint64) (DevicePtr, error) {
	var p DevicePtr
	err := b.d.check("cuMemAllocManaged", b.d.MemAllocManaged(&p, size, CU_MEM_ATTACH_GLOBAL))
	return p, err
}

// MemFree frees an allocation made by AllocManaged.
func (b Bound) MemFree(p DevicePtr) error {
	return b.d.check("cuMemFree_v2", b.d.MemFree(p))
}

// MemsetD32 fills n 32-bit words at p with v.
func (b Bound) MemsetD32(p DevicePtr, v uint32, n uint64) error {
	return b.d.check("cuMemsetD32_v2", b.d.MemsetD32(p, v, n))
}

// CopyDtoH copies len(dst) bytes from device address src.
func (b Bound) CopyDtoH(dst []byte, src DevicePtr) error {
	if len(dst) == 0 {
		return nil
	}
	return b.d.check("cuMemcpyDtoH_v2", b.d.MemcpyDtoH(unsafe.Pointer(&dst[0]), src, uint64(len(dst))))
}

// CopyHtoD copies src to device address dst.
func (b Bound) CopyHtoD(dst DevicePtr, src []byte) error {
	if len(src) == 0 {
		return nil
	}
	return b.d.check("cuMemcpyHtoD_v2", b.d.MemcpyHtoD(dst, unsafe.Pointer(&src[0]), uint64(len(src))))
}

// StreamCreate creates a stream.
func (b Bound) StreamCreate(flags uint32) (Stream, error) {
	var s Stream
	err := b.d.check("cuStreamCreate", b.d.StreamCreate(&s, flags))
	return s, err
}

// StreamDestroy destroys a stream.
func (b Bound) StreamDestroy(s Stream) error {
	return b.d.check("cuStreamDestroy_v2", b.d.StreamDestroy(s))
}

// StreamSynchronize waits for all work on s.
func (b Bound) StreamSynchronize(s Stream) error {
	return b.d.check("cuStreamSynchronize", b.d.StreamSynchronize(s))
}

// Synchronize waits for all work in the context.
func (b Bound) Synchronize() error {
	return b.d.check("cuCtxSynchronize", b.d.CtxSynchronize())
}

// EventCreate creates an event.
func (b Bound) EventCreate(flags uint32) (Event, error) {
	var e Event
	err := b.d.check("cuEventCreate", b.d.EventCreate(&e, flags))
	return e, err
}

// EventRecord records e on s.
func (b Bound) EventRecord(e Event, s Stream) error {
	return b.d.check("cuEventRecord", b.d.EventRecord(e, s))
}

// EventQuery reports whether the work before e has completed.
func (b Bound) EventQuery(e Event) (bool, error) {
	switch r := b.d.EventQuery(e); r {
	case CUDA_SUCCESS:
		return true, nil
	case CUDA_ERROR_NOT_READY:
		return false, nil
	default:
		return false, b.d.check("cuEventQuery", r)
	}
}

// EventSynchronize waits for the work before e.
func (b Bound) EventSynchronize(e Event) error {
	return b.d.check("cuEventSynchronize", b.d.EventSynchronize(e))
}

// EventDestroy destroys e.
func (b Bound) EventDestroy(e Event) error {
	return b.d.check("cuEventDestroy_v2", b.d.EventDestroy(e))
}

// ModuleLoadData loads a module from a PTX or cubin image.
func (b Bound) ModuleLoadData(image []byte) (Module, error) {
	// The driver reads PTX up to its NUL.
	img := make([]byte, len(image)+1)
	copy(img, image)
	var m Module
	err := b.d.check("cuModuleLoadData", b.d.ModuleLoadData(&m, unsafe.Pointer(&img[0])))
	runtime.KeepAlive(img)
	return m, err
}

// ModuleUnload unloads m.
func (b Bound) ModuleUnload(m Module) error {
	return b.d.check("cuModuleUnload", b.d.ModuleUnload(m))
}

// ModuleGetFunction looks up a kernel by name.
func (b Bound) ModuleGetFunction(m Module, name string) (Function, error) {
	cname := append([]byte(name), 0)
	var f Function
	err := b.d.check("cuModuleGetFunction", b.d.ModuleGetFunction(&f, m, &cname[0]))
	return f, err
}

// Launch launches f on a 1-D grid. Every kernel argument travels in a
// 64-bit slot: the driver copies as many bytes as the kernel's parameter
// has from the slot's start, so on little-endian machines a 32-bit
// parameter takes the low half.
func (b Bound) Launch(f Function, grid, block uint32, s Stream, args ...uint64) error {
	slots := make([]uint64, len(args))
	copy(slots, args)
	params := make([]unsafe.Pointer, len(args)+1)
	for i := range slots {
		params[i] = unsafe.Pointer(&slots[i])
	}
	err := b.d.check("cuLaunchKernel", b.d.LaunchKernel(f, grid, 1, 1, block, 1, 1, 0, s, &params[0], nil))
	runtime.KeepAlive(slots)
	runtime.KeepAlive(params)
	return err
}
