// Package ioctl is the raw ABI of the vattn-patched nvidia-uvm driver: the command
// numbers, parameter structs and NV_STATUS codes of
// kernel/nvidia-uvm-patch/uvm_vattn_ioctl.h, mirrored field for field, and thin typed
// wrappers that issue each command on an already-open /dev/nvidia-uvm file.
//
// It also holds the stock nvidia-uvm commands of the small-page path
// (uvm_external_*.go: external ranges and mappings of RM memory), whose blocks
// differ between driver branches: StockLayout records each branch's, and
// ioctl/branch says which a running driver takes. The RM side is ioctl/rm.
//
// The data files (vattn_cmds.go, vattn_params.go, status.go) hold no logic; the
// syscalls live in vattn_unsafe.go. Which file to use, how to probe the driver and how
// statuses become backend errors belong to backend/uvm, not here.
//
// Names follow the C header exactly (UVM_VATTN_MAP_PARAMS, NV_ERR_IN_USE) so that a
// reader can grep one side from the other; TestABIMatchesHeader compiles a C probe
// against the header and checks every size, offset and number.
package ioctl
