package trace

import "fmt"

// The vattn module's ioctl commands (ABI version 2; 0x02..0x06 were ABI 1's, retired), named as in
// kernel/nvidia-uvm-patch/uvm_vattn_ioctl.h, which is their source of truth
// (the ioctl package mirrors it for Go; once both are on one branch this
// table should take its numbers from there). Stock UVM commands are shown by
// number (see IoctlName).
const uvmVattnIoctlBase = 0x56410000

var vattnIoctlNames = map[uint32]string{
	uvmVattnIoctlBase + 0x01: "UVM_VATTN_GET_INFO",
	uvmVattnIoctlBase + 0x07: "UVM_VATTN_MAP_BATCH",
	uvmVattnIoctlBase + 0x08: "UVM_VATTN_UNMAP_BATCH",
}

// IoctlName names an ioctl command on the UVM device: the patched module's
// commands by name, any other as "ioctl_<number>" (decimal, as UVM numbers
// its commands; UVM_INITIALIZE is ioctl_805306369).
func IoctlName(cmd uint32) string {
	if n, ok := vattnIoctlNames[cmd]; ok {
		return n
	}
	return fmt.Sprintf("ioctl_%d", cmd)
}
