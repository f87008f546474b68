package rm

// Escapes of the nvidia character devices (nv-ioctl-numbers.h, nv_escape.h) and
// their parameter blocks (nv-ioctl.h, nvos.h). Unlike UVM commands these are
// _IOC-encoded: read|write, magic 'F', the escape number, the block's size; the
// driver checks the size.
const (
	NV_IOCTL_MAGIC = 'F'
	NV_IOCTL_BASE  = 200

	NV_ESC_CARD_INFO   = NV_IOCTL_BASE + 0
	NV_ESC_REGISTER_FD = NV_IOCTL_BASE + 1

	NV_ESC_RM_FREE    = 0x29
	NV_ESC_RM_CONTROL = 0x2A
	NV_ESC_RM_ALLOC   = 0x2B

	// NV_MAX_DEVICES bounds the card-info array (nvlimits.h).
	NV_MAX_DEVICES = 32
)

// Linux's _IOC layout (asm-generic/ioctl.h): nr in bits 0-7, type 8-15, size
// 16-29, direction 30-31.
const (
	iocRead      = 2
	iocWrite     = 1
	iocNRShift   = 0
	iocTypeShift = 8
	iocSizeShift = 16
	iocDirShift  = 30
	iocSizeMask  = 1<<14 - 1
)

// Request is the ioctl request number of escape nr with a block of size bytes:
// _IOC(_IOC_READ|_IOC_WRITE, NV_IOCTL_MAGIC, nr, size).
func Request(nr uint32, size uintptr) uint32 {
	return (iocRead|iocWrite)<<iocDirShift | uint32(size&iocSizeMask)<<iocSizeShift |
		NV_IOCTL_MAGIC<<iocTypeShift | nr<<iocNRShift
}

// NVOS21_PARAMETERS is the block of NV_ESC_RM_ALLOC (32 bytes).
type NVOS21_PARAMETERS struct {
	HRoot         uint32
	HObjectParent uint32
	HObjectNew    uint32
	HClass        uint32
	PAllocParms   uint64 // NvP64: user address of the class's parameters
	ParamsSize    uint32
	Status        uint32
}

// NVOS54_PARAMETERS is the block of NV_ESC_RM_CONTROL (32 bytes).
type NVOS54_PARAMETERS struct {
	HClient    uint32
	HObject    uint32
	Cmd        uint32
	Flags      uint32
	Params     uint64 // NvP64: user address of the control's parameters
	ParamsSize uint32
	Status     uint32
}

// NVOS00_PARAMETERS is the block of NV_ESC_RM_FREE (16 bytes).
type NVOS00_PARAMETERS struct {
	HRoot         uint32
	HObjectParent uint32
	HObjectOld    uint32
	Status        uint32
}

// nv_pci_info_t is a card's PCI address inside nv_ioctl_card_info_t (12 bytes).
type nv_pci_info_t struct {
	Domain    uint32
	Bus       uint8
	Slot      uint8
	Function  uint8
	_         uint8
	Vendor_id uint16
	Device_id uint16
}

// nv_ioctl_card_info_t is one entry of NV_ESC_CARD_INFO's array (72 bytes).
type nv_ioctl_card_info_t struct {
	Valid          uint8 // NvBool
	_              [3]byte
	Pci_info       nv_pci_info_t
	Gpu_id         uint32
	Interrupt_line uint16
	_              [2]byte
	Reg_address    uint64
	Reg_size       uint64
	Fb_address     uint64
	Fb_size        uint64
	Minor_number   uint32
	Dev_name       [10]byte
	_              [2]byte
}

// nv_ioctl_register_fd_t is the block of NV_ESC_REGISTER_FD on /dev/nvidiaN: it
// ties the device file to the control file whose client allocates on it.
type nv_ioctl_register_fd_t struct {
	Ctl_fd int32
}

// Exported names for the C types written in lower case, which Go would keep
// private.
type (
	NvPciInfo    = nv_pci_info_t
	NvCardInfo   = nv_ioctl_card_info_t
	NvRegisterFD = nv_ioctl_register_fd_t
)
