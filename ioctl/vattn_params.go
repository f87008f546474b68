package ioctl

// Parameter structs, field for field as in kernel/nvidia-uvm-patch/uvm_vattn_ioctl.h
// (x86_64 and arm64 layout: natural alignment, every struct a multiple of 8 bytes,
// padding written out). Pointers to user arrays are uint64 here, as in the header;
// the wrappers in vattn_unsafe.go fill them.

// UVM_VATTN_GPU_INFO is one GPU of UVM_VATTN_GET_INFO.
type UVM_VATTN_GPU_INFO struct {
	GPUUUID     [16]byte
	PageSizes   uint64
	PinnedBytes uint64
}

// UVM_VATTN_GET_INFO_PARAMS is the parameter block of UVM_VATTN_GET_INFO.
type UVM_VATTN_GET_INFO_PARAMS struct {
	ABIVersion       uint32
	MaxBatch         uint32
	GPUInfo          uint64
	GPUCapacity      uint32
	GPUCount         uint32
	PinnedLimitBytes uint64
	PinnedBytes      uint64
	Reserved0        uint32
	RMStatus         Status
}

// UVM_VATTN_ALLOC_PARAMS is the parameter block of UVM_VATTN_ALLOC.
type UVM_VATTN_ALLOC_PARAMS struct {
	GPUUUID  [16]byte
	PageSize uint64
	Handles  uint64
	Count    uint32
	Done     uint32
	Flags    uint32
	RMStatus Status
}

// UVM_VATTN_MAP_ENTRY is one {address, handle} pair of UVM_VATTN_MAP.
type UVM_VATTN_MAP_ENTRY struct {
	Address uint64
	Handle  uint64
}

// UVM_VATTN_MAP_PARAMS is the parameter block of UVM_VATTN_MAP.
type UVM_VATTN_MAP_PARAMS struct {
	Entries    uint64
	Count      uint32
	Done       uint32
	ErrorIndex uint32
	RMStatus   Status
}

// UVM_VATTN_UNMAP_PARAMS is the parameter block of UVM_VATTN_UNMAP.
type UVM_VATTN_UNMAP_PARAMS struct {
	Addresses  uint64
	Count      uint32
	Done       uint32
	ErrorIndex uint32
	RMStatus   Status
}

// UVM_VATTN_FREE_PARAMS is the parameter block of UVM_VATTN_FREE.
type UVM_VATTN_FREE_PARAMS struct {
	Handles    uint64
	Count      uint32
	Done       uint32
	ErrorIndex uint32
	RMStatus   Status
}

// UVM_VATTN_RELEASE_RANGE_PARAMS is the parameter block of UVM_VATTN_RELEASE_RANGE.
type UVM_VATTN_RELEASE_RANGE_PARAMS struct {
	Base     uint64
	Length   uint64
	Flags    uint32
	Unmapped uint32
	Freed    uint32
	RMStatus Status
}
