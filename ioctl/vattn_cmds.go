package ioctl

// Command numbers and limits, from kernel/nvidia-uvm-patch/uvm_vattn_ioctl.h.
// UVM commands are plain integers, not _IOC-encoded; see the header for why this
// range collides with no stock or test UVM command. ABI version 1's commands
// (0x02..0x06: module-owned pages) are retired and never reused.

const (
	UVM_VATTN_ABI_VERSION = 2

	UVM_VATTN_IOCTL_BASE  = 0x56410000
	UVM_VATTN_GET_INFO    = UVM_VATTN_IOCTL_BASE + 0x01
	UVM_VATTN_MAP_BATCH   = UVM_VATTN_IOCTL_BASE + 0x07
	UVM_VATTN_UNMAP_BATCH = UVM_VATTN_IOCTL_BASE + 0x08
	UVM_VATTN_IOCTL_FIRST = UVM_VATTN_GET_INFO
	UVM_VATTN_IOCTL_LAST  = UVM_VATTN_UNMAP_BATCH

	UVM_VATTN_MAX_BATCH = 16384
	UVM_VATTN_MAX_GPUS  = 8
	UVM_VATTN_PAGE_SIZE = 0x00010000
)
