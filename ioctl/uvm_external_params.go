package ioctl

// The stock nvidia-uvm commands of the small-page path: an external range over
// addresses CUDA reserved, and mappings of RM video memory into it
// (kernel-open/nvidia-uvm/uvm_ioctl.h and uvm_types.h of each branch). The numbers
// are the same on every branch from 535 to 595; two parameter blocks are not, so
// each has one Go type per layout, named for the first branch that has it, and
// StockLayout says which a branch uses. UVM commands carry no size: the kernel
// copies as many bytes as its own struct has, so a block of the wrong branch is
// read wrong, silently.

const (
	UVM_MAP_EXTERNAL_ALLOCATION = 33
	UVM_FREE                    = 34
	UVM_UNMAP_EXTERNAL          = 66
	UVM_CREATE_EXTERNAL_RANGE   = 73
)

// The "default" values of UvmGpuMappingAttributes' enumerations (uvm_types.h):
// mapping type and caching follow the allocation, format is not specified.
const (
	UvmGpuMappingTypeDefault       = 0
	UvmGpuCachingTypeDefault       = 0
	UvmGpuFormatTypeDefault        = 0
	UvmGpuFormatElementBitsDefault = 0
	UvmGpuCompressionTypeDefault   = 0
)

// UvmGpuMappingAttributes is one GPU's entry of UVM_MAP_EXTERNAL_ALLOCATION
// (36 bytes, 4-byte aligned, so arrays of it pack without padding).
type UvmGpuMappingAttributes struct {
	GpuUuid            [16]byte // NvProcessorUuid
	GpuMappingType     uint32
	GpuCachingType     uint32
	GpuFormatType      uint32
	GpuElementBits     uint32
	GpuCompressionType uint32
}

// UVM_CREATE_EXTERNAL_RANGE_PARAMS is the same on every branch (24 bytes).
type UVM_CREATE_EXTERNAL_RANGE_PARAMS struct {
	Base     uint64
	Length   uint64
	RmStatus Status
	_        uint32
}

// UVM_UNMAP_EXTERNAL_PARAMS is the same on every branch (40 bytes).
type UVM_UNMAP_EXTERNAL_PARAMS struct {
	Base     uint64
	Length   uint64
	GpuUuid  [16]byte
	RmStatus Status
	_        uint32
}

// UVM_MAP_EXTERNAL_ALLOCATION_PARAMS_535 is the 535 layout: 32 per-GPU entries
// (UVM_MAX_GPUS = NV_MAX_DEVICES), 1200 bytes.
type UVM_MAP_EXTERNAL_ALLOCATION_PARAMS_535 struct {
	Base               uint64
	Length             uint64
	Offset             uint64
	PerGpuAttributes   [32]UvmGpuMappingAttributes
	GpuAttributesCount uint64
	RmCtrlFd           int32
	HClient            uint32
	HMemory            uint32
	RmStatus           Status
}

// UVM_MAP_EXTERNAL_ALLOCATION_PARAMS_550 is the layout from 550 on: 256 per-GPU
// entries (32 devices times 8 sub-processors; 550 names the count
// UVM_MAX_GPUS_V2 while its UVM_MAX_GPUS is still 32), 9264 bytes.
type UVM_MAP_EXTERNAL_ALLOCATION_PARAMS_550 struct {
	Base               uint64
	Length             uint64
	Offset             uint64
	PerGpuAttributes   [256]UvmGpuMappingAttributes
	GpuAttributesCount uint64
	RmCtrlFd           int32
	HClient            uint32
	HMemory            uint32
	RmStatus           Status
}

// UVM_FREE_PARAMS_535 is the layout of 535 to 580 (24 bytes).
type UVM_FREE_PARAMS_535 struct {
	Base     uint64
	Length   uint64
	RmStatus Status
	_        uint32
}

// UVM_FREE_PARAMS_590 is the layout from 590 on, which dropped length (16 bytes).
type UVM_FREE_PARAMS_590 struct {
	Base     uint64
	RmStatus Status
	_        uint32
}
