package ioctl

import "fmt"

// Status is an NV_STATUS value as the driver writes it into rmStatus. Every value
// other than NV_OK is an error; compare with errors.Is(err, NV_ERR_IN_USE).
type Status uint32

// NV_STATUS codes the vattn commands return, with NVIDIA's numbers
// (common/inc/nvstatuscodes.h; restated in uvm_vattn_ioctl.h as UVM_VATTN_NV_*),
// and those the stock RM escapes and external-range commands answer most (checked
// against every branch's nvstatuscodes.h by ioctl/branch's TestStockABI).
// Codes from the drivers' internals outside this list pass through and print by
// number.
const (
	NV_OK                           Status = 0x00000000
	NV_ERR_ILLEGAL_ACTION           Status = 0x00000016
	NV_ERR_IN_USE                   Status = 0x00000017
	NV_ERR_INSUFFICIENT_RESOURCES   Status = 0x0000001A
	NV_ERR_INSUFFICIENT_PERMISSIONS Status = 0x0000001B
	NV_ERR_INVALID_ADDRESS          Status = 0x0000001E
	NV_ERR_INVALID_ARGUMENT         Status = 0x0000001F
	NV_ERR_INVALID_CLASS            Status = 0x00000022
	NV_ERR_INVALID_CLIENT           Status = 0x00000023
	NV_ERR_INVALID_DEVICE           Status = 0x00000026
	NV_ERR_INVALID_LIMIT            Status = 0x0000002E
	NV_ERR_INVALID_OBJECT_HANDLE    Status = 0x00000033
	NV_ERR_INVALID_OFFSET           Status = 0x00000037
	NV_ERR_INVALID_PARAM_STRUCT     Status = 0x0000003A
	NV_ERR_INVALID_STATE            Status = 0x00000040
	NV_ERR_NO_MEMORY                Status = 0x00000051
	NV_ERR_NOT_SUPPORTED            Status = 0x00000056
	NV_ERR_OBJECT_NOT_FOUND         Status = 0x00000057
	NV_ERR_OPERATING_SYSTEM         Status = 0x00000059
	NV_ERR_UVM_ADDRESS_IN_USE       Status = 0x00000068
)

// statusNames gives each known code its C name and what it means for our commands.
var statusNames = map[Status][2]string{
	NV_OK:                           {"NV_OK", "success"},
	NV_ERR_ILLEGAL_ACTION:           {"NV_ERR_ILLEGAL_ACTION", "file is not an initialized UVM va_space file"},
	NV_ERR_IN_USE:                   {"NV_ERR_IN_USE", "in use"},
	NV_ERR_INSUFFICIENT_RESOURCES:   {"NV_ERR_INSUFFICIENT_RESOURCES", "insufficient resources"},
	NV_ERR_INSUFFICIENT_PERMISSIONS: {"NV_ERR_INSUFFICIENT_PERMISSIONS", "not permitted for this client or file"},
	NV_ERR_INVALID_ADDRESS:          {"NV_ERR_INVALID_ADDRESS", "address not inside a range this va_space knows"},
	NV_ERR_INVALID_ARGUMENT:         {"NV_ERR_INVALID_ARGUMENT", "invalid argument"},
	NV_ERR_INVALID_CLASS:            {"NV_ERR_INVALID_CLASS", "class not supported by this driver or GPU"},
	NV_ERR_INVALID_CLIENT:           {"NV_ERR_INVALID_CLIENT", "no such RM client (freed, or another file's)"},
	NV_ERR_INVALID_DEVICE:           {"NV_ERR_INVALID_DEVICE", "gpu not registered in this va_space"},
	NV_ERR_INVALID_LIMIT:            {"NV_ERR_INVALID_LIMIT", "beyond a limit (a batch over UVM_VATTN_MAX_BATCH)"},
	NV_ERR_INVALID_OBJECT_HANDLE:    {"NV_ERR_INVALID_OBJECT_HANDLE", "no such RM object in this client"},
	NV_ERR_INVALID_OFFSET:           {"NV_ERR_INVALID_OFFSET", "offset not aligned, or past the end of the memory"},
	NV_ERR_INVALID_PARAM_STRUCT:     {"NV_ERR_INVALID_PARAM_STRUCT", "parameter block of the wrong size for this driver branch"},
	NV_ERR_INVALID_STATE:            {"NV_ERR_INVALID_STATE", "invalid state"},
	NV_ERR_NO_MEMORY:                {"NV_ERR_NO_MEMORY", "out of memory"},
	NV_ERR_NOT_SUPPORTED:            {"NV_ERR_NOT_SUPPORTED", "not supported"},
	NV_ERR_OBJECT_NOT_FOUND:         {"NV_ERR_OBJECT_NOT_FOUND", "object not found"},
	NV_ERR_OPERATING_SYSTEM:         {"NV_ERR_OPERATING_SYSTEM", "the kernel refused (bad file descriptor or memory fault)"},
	NV_ERR_UVM_ADDRESS_IN_USE:       {"NV_ERR_UVM_ADDRESS_IN_USE", "address already mapped"},
}

// Name is the C name of the code, or "" when it is not one this package knows.
func (s Status) Name() string { return statusNames[s][0] }

// Error describes the status: its C name when known, always its number.
func (s Status) Error() string {
	if n, ok := statusNames[s]; ok {
		return fmt.Sprintf("%s (0x%08x): %s", n[0], uint32(s), n[1])
	}
	return fmt.Sprintf("nv status 0x%08x", uint32(s))
}

// Err returns nil for NV_OK and the status itself otherwise.
func (s Status) Err() error {
	if s == NV_OK {
		return nil
	}
	return s
}
