package cuda

// Types and constants of the CUDA driver API, named after cuda.h (CUDA 12/13
// driver API; the values below are part of its stable ABI). Only what vattn
// calls is here.

// Result is a CUresult.
type Result int32

// CUresult values vattn branches on or names in tests.
const (
	CUDA_SUCCESS                      Result = 0
	CUDA_ERROR_INVALID_VALUE          Result = 1
	CUDA_ERROR_OUT_OF_MEMORY          Result = 2
	CUDA_ERROR_NOT_INITIALIZED        Result = 3
	CUDA_ERROR_DEINITIALIZED          Result = 4
	CUDA_ERROR_STUB_LIBRARY           Result = 34
	CUDA_ERROR_INSUFFICIENT_DRIVER    Result = 35
	CUDA_ERROR_NO_DEVICE              Result = 100
	CUDA_ERROR_INVALID_DEVICE         Result = 101
	CUDA_ERROR_INVALID_IMAGE          Result = 200
	CUDA_ERROR_INVALID_CONTEXT        Result = 201
	CUDA_ERROR_INVALID_PTX            Result = 218
	CUDA_ERROR_INVALID_HANDLE         Result = 400
	CUDA_ERROR_NOT_FOUND              Result = 500
	CUDA_ERROR_NOT_READY              Result = 600
	CUDA_ERROR_ILLEGAL_ADDRESS        Result = 700
	CUDA_ERROR_LAUNCH_FAILED          Result = 719
	CUDA_ERROR_NOT_PERMITTED          Result = 800
	CUDA_ERROR_NOT_SUPPORTED          Result = 801
	CUDA_ERROR_SYSTEM_DRIVER_MISMATCH Result = 803
	CUDA_ERROR_UNKNOWN                Result = 999
)

// Handles. Device is an ordinal-like int; the others are opaque pointers
// owned by the driver, except MemHandle (CUmemGenericAllocationHandle, an
// unsigned long long) and DevicePtr (CUdeviceptr, 64-bit on x86-64).
type (
	Device    int32
	Context   uintptr
	Stream    uintptr
	Event     uintptr
	Module    uintptr
	Function  uintptr
	MemHandle uint64
	DevicePtr uint64
)

// UUID is a CUuuid: 16 bytes.
type UUID [16]byte

// DeviceAttribute is a CUdevice_attribute.
type DeviceAttribute int32

// Device attributes vattn reads.
const (
	CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR            DeviceAttribute = 75
	CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR            DeviceAttribute = 76
	CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED DeviceAttribute = 102
)

// CUmemAllocationType, CUmemAllocationHandleType, CUmemLocationType,
// CUmemAccess_flags and CUmemAllocationGranularity_flags values.
const (
	CU_MEM_ALLOCATION_TYPE_PINNED        = 1
	CU_MEM_HANDLE_TYPE_NONE              = 0
	CU_MEM_LOCATION_TYPE_DEVICE          = 1
	CU_MEM_ACCESS_FLAGS_PROT_READWRITE   = 3
	CU_MEM_ALLOC_GRANULARITY_MINIMUM     = 0
	CU_MEM_ALLOC_GRANULARITY_RECOMMENDED = 1
)

// cuMemAllocManaged attach flags.
const (
	CU_MEM_ATTACH_GLOBAL = 1
)

// Event and stream creation flags.
const (
	CU_EVENT_DISABLE_TIMING = 2
	CU_STREAM_NON_BLOCKING  = 1
)

// MemLocation is a CUmemLocation: {CUmemLocationType type; int id;}.
type MemLocation struct {
	Type int32
	ID   int32
}

// AllocationProp is a CUmemAllocationProp (32 bytes on 64-bit Linux).
type AllocationProp struct {
	Type                 int32 // CUmemAllocationType
	RequestedHandleTypes int32 // CUmemAllocationHandleType
	Location             MemLocation
	Win32HandleMetaData  uintptr // void*, unused on Linux
	// allocFlags: compressionType, gpuDirectRDMACapable (unsigned char),
	// usage (unsigned short), reserved[4].
	CompressionType      uint8
	GPUDirectRDMACapable uint8
	Usage                uint16
	Reserved             [4]uint8
}

// AccessDesc is a CUmemAccessDesc: {CUmemLocation location; CUmemAccess_flags flags;}.
type AccessDesc struct {
	Location MemLocation
	Flags    int32
}
