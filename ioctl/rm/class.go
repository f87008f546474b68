package rm

import "reflect"

// RM classes vattn allocates (nvos.h, class/cl0080.h, class/cl2080.h,
// class/cl0040.h).
const (
	NV01_ROOT_CLIENT       = 0x41   // the client itself; parent of everything else
	NV01_DEVICE_0          = 0x80   // a GPU (device instance), under the client
	NV20_SUBDEVICE_0       = 0x2080 // one GPU of the device, under the device
	NV01_MEMORY_LOCAL_USER = 0x40   // video memory, under the device

	NV_DEVICE_ALLOCATION_VAMODE_MULTIPLE_VASPACES = 2
)

// NV0080_ALLOC_PARAMETERS allocates NV01_DEVICE_0 (56 bytes).
type NV0080_ALLOC_PARAMETERS struct {
	DeviceId        uint32
	HClientShare    uint32
	HTargetClient   uint32
	HTargetDevice   uint32
	Flags           uint32
	_               uint32
	VaSpaceSize     uint64
	VaStartInternal uint64
	VaLimitInternal uint64
	VaMode          uint32
	_               uint32
}

// NV2080_ALLOC_PARAMETERS allocates NV20_SUBDEVICE_0 (4 bytes).
type NV2080_ALLOC_PARAMETERS struct {
	SubDeviceId uint32
}

// NVOS32 values for NV_MEMORY_ALLOCATION_PARAMS (nvos.h): type, flags, and the
// attr fields with the bit each starts at (the header gives hi:lo ranges).
const (
	NVOS32_TYPE_IMAGE = 0

	NVOS32_ALLOC_FLAGS_IGNORE_BANK_PLACEMENT = 0x00000001
	NVOS32_ALLOC_FLAGS_ALIGNMENT_FORCE       = 0x00000100
	NVOS32_ALLOC_FLAGS_MAP_NOT_REQUIRED      = 0x00008000
	NVOS32_ALLOC_FLAGS_PERSISTENT_VIDMEM     = 0x00010000

	NVOS32_ATTR_PAGE_SIZE_SHIFT = 23 // NVOS32_ATTR_PAGE_SIZE 24:23
	NVOS32_ATTR_PAGE_SIZE_BIG   = 2  // 64 KiB on the GPUs vattn serves
	NVOS32_ATTR_PAGE_SIZE_HUGE  = 3  // 2 MiB unless attr2 asks for 512 MiB

	NVOS32_ATTR_LOCATION_SHIFT  = 25 // NVOS32_ATTR_LOCATION 26:25
	NVOS32_ATTR_LOCATION_VIDMEM = 0

	NVOS32_ATTR_PHYSICALITY_SHIFT               = 27 // NVOS32_ATTR_PHYSICALITY 28:27
	NVOS32_ATTR_PHYSICALITY_ALLOW_NONCONTIGUOUS = 3
)

// NV_MEMORY_ALLOCATION_PARAMS allocates NV01_MEMORY_LOCAL_USER, from 550 on
// (128 bytes, numaNode last).
type NV_MEMORY_ALLOCATION_PARAMS struct {
	Owner         uint32
	Type          uint32
	Flags         uint32
	Width         uint32
	Height        uint32
	Pitch         int32
	Attr          uint32
	Attr2         uint32
	Format        uint32
	ComprCovg     uint32
	ZcullCovg     uint32
	_             uint32
	RangeLo       uint64
	RangeHi       uint64
	Size          uint64
	Alignment     uint64
	Offset        uint64
	Limit         uint64
	Address       uint64 // NvP64
	CtagOffset    uint32
	HVASpace      uint32
	Internalflags uint32
	Tag           uint32
	NumaNode      int32
	_             uint32
}

// Layout says which memory-allocation block a branch takes. The client always
// fills an NV_MEMORY_ALLOCATION_PARAMS and passes the branch's size: every
// older layout is a prefix of the newest (made so by prefixBefore, checked
// against each branch's header by TestStockABI), so RM reads exactly the
// fields its branch has.
type Layout struct {
	MemoryAllocationParams reflect.Type
}

// The RM layouts of the branches vattn knows. 535's block is the newest
// without numaNode (120 bytes): RM checks paramsSize against its own struct,
// so a 535 driver must be passed 120.
var (
	Layout535 = Layout{prefixBefore[NV_MEMORY_ALLOCATION_PARAMS]("NumaNode")}
	Layout550 = Layout{reflect.TypeFor[NV_MEMORY_ALLOCATION_PARAMS]()}
)

// prefixBefore is the struct type of T's fields before the one named field:
// an older branch's block, where newer branches only added fields at the end.
func prefixBefore[T any](field string) reflect.Type {
	t := reflect.TypeFor[T]()
	f, ok := t.FieldByName(field)
	if !ok {
		panic("rm: " + t.Name() + " has no field " + field)
	}
	fields := make([]reflect.StructField, f.Index[0])
	for i := range fields {
		fields[i] = t.Field(i)
	}
	return reflect.StructOf(fields)
}

// memoryParamsSize is the paramsSize to pass for l's branch.
func (l Layout) memoryParamsSize() uint32 {
	return uint32(l.MemoryAllocationParams.Size())
}
