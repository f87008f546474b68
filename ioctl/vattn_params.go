package ioctl

// Parameter structs, field for field as in kernel/nvidia-uvm-patch/uvm_vattn_ioctl.h
// (x86_64 and arm64 layout: natural alignment, every struct a multiple of 8 bytes,
// padding written out). Pointers to user arrays are uint64 here, as in the header;
// the wrappers in vattn_unsafe.go fill them.

// UVM_VATTN_GET_INFO_PARAMS is the parameter block of UVM_VATTN_GET_INFO.
type UVM_VATTN_GET_INFO_PARAMS struct {
	ABIVersion uint32
	MaxBatch   uint32
	MaxGpus    uint32
	RMStatus   Status
}

// UVM_VATTN_MAP_ENTRY is one entry of UVM_VATTN_MAP_BATCH: bytes [Offset,
// Offset+Length) of the RM memory HMemory mapped at [Base, Base+Length).
type UVM_VATTN_MAP_ENTRY struct {
	Base     uint64
	Length   uint64
	Offset   uint64
	HMemory  uint32
	Reserved uint32
}

// UVM_VATTN_UNMAP_ENTRY is one entry of UVM_VATTN_UNMAP_BATCH.
type UVM_VATTN_UNMAP_ENTRY struct {
	Base   uint64
	Length uint64
}

// UVM_VATTN_MAP_BATCH_PARAMS is the parameter block of UVM_VATTN_MAP_BATCH.
type UVM_VATTN_MAP_BATCH_PARAMS struct {
	Entries    uint64
	GpuUuids   uint64
	Count      uint32
	GpuCount   uint32
	RmCtrlFd   int32
	HClient    uint32
	Flags      uint32
	ErrorIndex uint32
	RMStatus   Status
	Reserved   uint32
}

// UVM_VATTN_UNMAP_BATCH_PARAMS is the parameter block of UVM_VATTN_UNMAP_BATCH.
type UVM_VATTN_UNMAP_BATCH_PARAMS struct {
	Entries    uint64
	GpuUuids   uint64
	Count      uint32
	GpuCount   uint32
	Flags      uint32
	ErrorIndex uint32
	RMStatus   Status
	Reserved   uint32
}
