package rm

import (
	"fmt"
	"runtime"
	"unsafe"

	"github.com/vattn/vattn/ioctl"
)

// escape sends escape nr with the block p on fd, through ioctl's syscall seam.
// Errno first (the block was not written back), then RM's status.
func escape[P any](op string, fd int, nr uint32, p *P, status *uint32) error {
	errno := ioctl.Syscall(fd, Request(nr, unsafe.Sizeof(*p)), unsafe.Pointer(p))
	runtime.KeepAlive(p)
	if errno != 0 {
		return fmt.Errorf("%s: %w", op, errno)
	}
	if status != nil {
		if err := ioctl.Status(*status).Err(); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	return nil
}

// pinned is the address of *v for an NvP64 field. The address travels as an
// integer, which the runtime does not see: pinning moves v to the heap and keeps
// it there, alive, until the caller's Unpin after the syscall.
func pinned[P any](pin *runtime.Pinner, v *P) uint64 {
	pin.Pin(v)
	return uint64(uintptr(unsafe.Pointer(v)))
}

// alloc issues NV_ESC_RM_ALLOC: an object of class under parent, with params
// (size bytes; nil for none). hNew 0 lets RM pick the handle, which is returned.
func alloc[P any](op string, ctl int, hRoot, hParent, hNew, class uint32, params *P, size uint32) (uint32, error) {
	p := NVOS21_PARAMETERS{HRoot: hRoot, HObjectParent: hParent, HObjectNew: hNew, HClass: class, ParamsSize: size}
	var pin runtime.Pinner
	if params != nil {
		p.PAllocParms = pinned(&pin, params)
	}
	err := escape(op, ctl, NV_ESC_RM_ALLOC, &p, &p.Status)
	pin.Unpin()
	return p.HObjectNew, err
}

// control issues NV_ESC_RM_CONTROL cmd on object hObject with params.
func control[P any](op string, ctl int, hClient, hObject, cmd uint32, params *P) error {
	var pin runtime.Pinner
	p := NVOS54_PARAMETERS{HClient: hClient, HObject: hObject, Cmd: cmd,
		Params: pinned(&pin, params), ParamsSize: uint32(unsafe.Sizeof(*params))}
	err := escape(op, ctl, NV_ESC_RM_CONTROL, &p, &p.Status)
	pin.Unpin()
	return err
}

// AllocRootClient allocates a new RM client on the control file ctl and
// returns its handle. Closing ctl frees it and everything under it.
func AllocRootClient(ctl int) (uint32, error) {
	return alloc[struct{}]("rm alloc NV01_ROOT_CLIENT", ctl, 0, 0, 0, NV01_ROOT_CLIENT, nil, 0)
}

// AllocDevice allocates NV01_DEVICE_0 under client hClient.
func AllocDevice(ctl int, hClient uint32, p *NV0080_ALLOC_PARAMETERS) (uint32, error) {
	return alloc("rm alloc NV01_DEVICE_0", ctl, hClient, hClient, 0, NV01_DEVICE_0, p, uint32(unsafe.Sizeof(*p)))
}

// AllocSubdevice allocates NV20_SUBDEVICE_0 under device hDevice.
func AllocSubdevice(ctl int, hClient, hDevice uint32, p *NV2080_ALLOC_PARAMETERS) (uint32, error) {
	return alloc("rm alloc NV20_SUBDEVICE_0", ctl, hClient, hDevice, 0, NV20_SUBDEVICE_0, p, uint32(unsafe.Sizeof(*p)))
}

// AllocMemory allocates NV01_MEMORY_LOCAL_USER under device hDevice. size is
// the branch's paramsSize (Layout); p is always the newest layout, of which
// older ones are prefixes. RM writes the attributes it granted back into p.
func AllocMemory(ctl int, hClient, hDevice uint32, p *NV_MEMORY_ALLOCATION_PARAMS, size uint32) (uint32, error) {
	if uintptr(size) > unsafe.Sizeof(*p) {
		return 0, fmt.Errorf("rm alloc NV01_MEMORY_LOCAL_USER: params size %d larger than the newest layout", size)
	}
	return alloc("rm alloc NV01_MEMORY_LOCAL_USER", ctl, hClient, hDevice, 0, NV01_MEMORY_LOCAL_USER, p, size)
}

// FreeObject issues NV_ESC_RM_FREE for object h under parent hParent of client
// hRoot; freeing the client itself is FreeObject(ctl, c, c, c).
func FreeObject(ctl int, hRoot, hParent, h uint32) error {
	p := NVOS00_PARAMETERS{HRoot: hRoot, HObjectParent: hParent, HObjectOld: h}
	return escape(fmt.Sprintf("rm free 0x%08x", h), ctl, NV_ESC_RM_FREE, &p, &p.Status)
}

// GetUUIDInfo issues NV0000_CTRL_CMD_GPU_GET_UUID_INFO on the client.
func GetUUIDInfo(ctl int, hClient uint32, p *NV0000_CTRL_GPU_GET_UUID_INFO_PARAMS) error {
	return control("rm control NV0000_CTRL_CMD_GPU_GET_UUID_INFO", ctl, hClient, hClient, NV0000_CTRL_CMD_GPU_GET_UUID_INFO, p)
}

// GetIDInfoV2 issues NV0000_CTRL_CMD_GPU_GET_ID_INFO_V2 on the client.
func GetIDInfoV2(ctl int, hClient uint32, p *NV0000_CTRL_GPU_GET_ID_INFO_V2_PARAMS) error {
	return control("rm control NV0000_CTRL_CMD_GPU_GET_ID_INFO_V2", ctl, hClient, hClient, NV0000_CTRL_CMD_GPU_GET_ID_INFO_V2, p)
}

// CardInfo issues NV_ESC_CARD_INFO on the control file: one entry per possible
// GPU, Valid set for those present. It carries no RM status.
func CardInfo(ctl int) ([NV_MAX_DEVICES]NvCardInfo, error) {
	var cards [NV_MAX_DEVICES]NvCardInfo
	err := escape[[NV_MAX_DEVICES]NvCardInfo]("nv card info", ctl, NV_ESC_CARD_INFO, &cards, nil)
	return cards, err
}

// RegisterFD issues NV_ESC_REGISTER_FD on a /dev/nvidiaN file: objects the
// client on ctl allocates for that GPU belong to this open file. It carries no
// RM status.
func RegisterFD(dev, ctl int) error {
	p := NvRegisterFD{Ctl_fd: int32(ctl)}
	return escape("nv register fd", dev, NV_ESC_REGISTER_FD, &p, nil)
}
