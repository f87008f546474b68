package cuda

import "unsafe"

// Driver is the table of driver entry points vattn uses, one field per C
// function, with the C signature in Go types. It is the seam where tests
// inject a fake driver; Load fills one from libcuda.
//
// Fields are called as the C functions are: context-bound ones only inside
// Context.Do, on the thread the context is current on.
type Driver struct {
	Init                        func(flags uint32) Result
	DriverGetVersion            func(version *int32) Result
	DeviceGetCount              func(count *int32) Result
	DeviceGet                   func(dev *Device, ordinal int32) Result
	DeviceGetName               func(name *byte, size int32, dev Device) Result
	DeviceGetUuid               func(uuid *UUID, dev Device) Result
	DeviceGetAttribute          func(value *int32, attr DeviceAttribute, dev Device) Result
	DevicePrimaryCtxRetain      func(ctx *Context, dev Device) Result
	DevicePrimaryCtxRelease     func(dev Device) Result
	CtxSetCurrent               func(ctx Context) Result
	CtxSynchronize              func() Result
	MemGetInfo                  func(free, total *uint64) Result
	MemGetAllocationGranularity func(granularity *uint64, prop *AllocationProp, option int32) Result
	MemAddressReserve           func(ptr *DevicePtr, size, alignment uint64, addr DevicePtr, flags uint64) Result
	MemAddressFree              func(ptr DevicePtr, size uint64) Result
	MemCreate                   func(handle *MemHandle, size uint64, prop *AllocationProp, flags uint64) Result
	MemRelease                  func(handle MemHandle) Result
	MemMap                      func(ptr DevicePtr, size, offset uint64, handle MemHandle, flags uint64) Result
	MemUnmap                    func(ptr DevicePtr, size uint64) Result
	MemSetAccess                func(ptr DevicePtr, size uint64, desc *AccessDesc, count uint64) Result
	MemsetD32                   func(dst DevicePtr, value uint32, n uint64) Result
	MemAllocManaged             func(ptr *DevicePtr, size uint64, flags uint32) Result
	MemFree                     func(ptr DevicePtr) Result
	MemcpyDtoH                  func(dst unsafe.Pointer, src DevicePtr, n uint64) Result
	MemcpyHtoD                  func(dst DevicePtr, src unsafe.Pointer, n uint64) Result
	StreamCreate                func(stream *Stream, flags uint32) Result
	StreamDestroy               func(stream Stream) Result
	StreamSynchronize           func(stream Stream) Result
	EventCreate                 func(event *Event, flags uint32) Result
	EventRecord                 func(event Event, stream Stream) Result
	EventQuery                  func(event Event) Result
	EventSynchronize            func(event Event) Result
	EventDestroy                func(event Event) Result
	ModuleLoadData              func(module *Module, image unsafe.Pointer) Result
	ModuleUnload                func(module Module) Result
	ModuleGetFunction           func(fn *Function, module Module, name *byte) Result
	LaunchKernel                func(fn Function, gridX, gridY, gridZ, blockX, blockY, blockZ, sharedMem uint32, stream Stream, params *unsafe.Pointer, extra *unsafe.Pointer) Result
	GetErrorName                func(r Result, str **byte) Result
	GetErrorString              func(r Result, str **byte) Result
}

// Symbols maps each Driver field to the libcuda symbol it is bound to. The
// names are chosen deliberately: where cuda.h redirects a name to a
// versioned symbol (cuMemGetInfo → cuMemGetInfo_v2 since CUDA 3.2,
// cuDevicePrimaryCtxRelease → _v2 since 11.0, cuDeviceGetUuid → _v2 since
// 11.4), the versioned one is named here, so the binding gets the same ABI a
// program compiled against current headers gets. The legacy-default-stream
// variants are used (no _ptsz/_ptds), matching stream 0 semantics.
var Symbols = map[string]string{
	"Init":                        "cuInit",
	"DriverGetVersion":            "cuDriverGetVersion",
	"DeviceGetCount":              "cuDeviceGetCount",
	"DeviceGet":                   "cuDeviceGet",
	"DeviceGetName":               "cuDeviceGetName",
	"DeviceGetUuid":               "cuDeviceGetUuid_v2",
	"DeviceGetAttribute":          "cuDeviceGetAttribute",
	"DevicePrimaryCtxRetain":      "cuDevicePrimaryCtxRetain",
	"DevicePrimaryCtxRelease":     "cuDevicePrimaryCtxRelease_v2",
	"CtxSetCurrent":               "cuCtxSetCurrent",
	"CtxSynchronize":              "cuCtxSynchronize",
	"MemGetInfo":                  "cuMemGetInfo_v2",
	"MemGetAllocationGranularity": "cuMemGetAllocationGranularity",
	"MemAddressReserve":           "cuMemAddressReserve",
	"MemAddressFree":              "cuMemAddressFree",
	"MemCreate":                   "cuMemCreate",
	"MemRelease":                  "cuMemRelease",
	"MemMap":                      "cuMemMap",
	"MemUnmap":                    "cuMemUnmap",
	"MemSetAccess":                "cuMemSetAccess",
	"MemsetD32":                   "cuMemsetD32_v2",
	"MemAllocManaged":             "cuMemAllocManaged",
	"MemFree":                     "cuMemFree_v2",
	"MemcpyDtoH":                  "cuMemcpyDtoH_v2",
	"MemcpyHtoD":                  "cuMemcpyHtoD_v2",
	"StreamCreate":                "cuStreamCreate",
	"StreamDestroy":               "cuStreamDestroy_v2",
	"StreamSynchronize":           "cuStreamSynchronize",
	"EventCreate":                 "cuEventCreate",
	"EventRecord":                 "cuEventRecord",
	"EventQuery":                  "cuEventQuery",
	"EventSynchronize":            "cuEventSynchronize",
	"EventDestroy":                "cuEventDestroy_v2",
	"ModuleLoadData":              "cuModuleLoadData",
	"ModuleUnload":                "cuModuleUnload",
	"ModuleGetFunction":           "cuModuleGetFunction",
	"LaunchKernel":                "cuLaunchKernel",
	"GetErrorName":                "cuGetErrorName",
	"GetErrorString":              "cuGetErrorString",
}
