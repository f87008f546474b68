package rm

// Controls on the root client that find a GPU (ctrl/ctrl0000/ctrl0000gpu.h).
const (
	NV0000_CTRL_CMD_GPU_GET_ID_INFO_V2 = 0x205
	NV0000_CTRL_CMD_GPU_GET_UUID_INFO  = 0x274

	NV0000_GPU_MAX_GID_LENGTH = 0x100

	// GET_UUID_INFO flags: the UUID is 16 raw bytes (as CUDA and UVM hold it), of
	// the SHA-1 kind.
	NV0000_CTRL_CMD_GPU_GET_UUID_INFO_FLAGS_FORMAT_BINARY = 2 // FORMAT 1:0
	NV0000_CTRL_CMD_GPU_GET_UUID_INFO_FLAGS_TYPE_SHA1     = 0 // TYPE 2:2

	NV0000_CTRL_GPU_INVALID_ID = 0xffffffff
)

// NV0000_CTRL_GPU_GET_UUID_INFO_PARAMS maps a GPU UUID to RM's ids (272 bytes).
type NV0000_CTRL_GPU_GET_UUID_INFO_PARAMS struct {
	GpuUuid           [NV0000_GPU_MAX_GID_LENGTH]byte
	Flags             uint32
	GpuId             uint32
	DeviceInstance    uint32
	SubdeviceInstance uint32
}

// NV0000_CTRL_GPU_GET_ID_INFO_V2_PARAMS maps a gpuId to its device and
// subdevice instances (32 bytes).
type NV0000_CTRL_GPU_GET_ID_INFO_V2_PARAMS struct {
	GpuId             uint32
	GpuFlags          uint32
	DeviceInstance    uint32
	SubDeviceInstance uint32
	SliStatus         uint32
	BoardId           uint32
	GpuInstance       uint32
	NumaId            int32
}
