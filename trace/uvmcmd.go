package trace

import "fmt"

// The patched module's ioctl commands, by number, for naming them in output.
//
// PROVISIONAL: kernel/nvidia-uvm-patch/uvm_vattn_ioctl.h is the single source
// of truth for these numbers; this table must follow it. Until that header
// lands, the numbers below are placeholders in one reserved range. Stock UVM
// commands are shown by number (see IoctlName).
const uvmVattnIoctlBase = 1000

var vattnIoctlNames = map[uint32]string{
	uvmVattnIoctlBase + 0: "VATTN_QUERY",
	uvmVattnIoctlBase + 1: "VATTN_ALLOC",
	uvmVattnIoctlBase + 2: "VATTN_MAP",
	uvmVattnIoctlBase + 3: "VATTN_UNMAP",
	uvmVattnIoctlBase + 4: "VATTN_FREE",
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
