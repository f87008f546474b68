package rm

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// ControlPath is the RM control device; a GPU's device file is /dev/nvidia<minor>.
const ControlPath = "/dev/nvidiactl"

// pteKindGeneric is the "format" field of a video-memory allocation: the GMMU PTE
// kind for plain, uncompressed memory on Turing and later (0x6, the value the
// stock small-page probe runs with on Hopper).
const pteKindGeneric = 6

// Page sizes of RM video memory vattn asks for.
const (
	PageSize64K = 64 << 10
	PageSize2M  = 2 << 20
)

// ErrClosed: the client was closed.
var ErrClosed = errors.New("rm client closed")

// deviceFiles opens and closes the nvidia character devices; tests swap it for
// ordinary files to count what a failed Open leaves behind.
var deviceFiles = struct {
	open  func(path string) (int, error)
	close func(fd int) error
}{
	open:  func(path string) (int, error) { return unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0) },
	close: unix.Close,
}

// SetDeviceFiles replaces how the client opens and closes device files and
// returns a function restoring the previous ones. It exists for tests of this
// package and of the packages built on it; nothing else may call it.
func SetDeviceFiles(open func(path string) (int, error), close func(fd int) error) (restore func()) {
	old := deviceFiles
	deviceFiles.open, deviceFiles.close = open, close
	return func() { deviceFiles = old }
}

// GPU is how RM names the GPU a client serves.
type GPU struct {
	UUID              [16]byte
	ID                uint32 // RM's gpuId
	DeviceInstance    uint32
	SubdeviceInstance uint32
	Minor             uint32 // of /dev/nvidia<minor>
}

// Client is an RM client of this process with a device and subdevice of one GPU,
// ready to allocate video memory. Its methods are not safe for concurrent use.
type Client struct {
	ctl, dev   int
	hClient    uint32
	hDevice    uint32
	hSubdevice uint32
	gpu        GPU
	memSize    uint32
	closed     bool
}

// Open opens /dev/nvidiactl, allocates a root client, finds the GPU with this
// UUID (the binary UUID CUDA reports), opens and registers its device file and
// allocates a device and subdevice on it. l is the running branch's layout. On
// error nothing is left open or allocated.
func Open(uuid [16]byte, l Layout) (_ *Client, err error) {
	if l.MemoryAllocationParams == nil {
		return nil, errors.New("rm open: no layout for the driver branch")
	}
	c := &Client{ctl: -1, dev: -1, gpu: GPU{UUID: uuid}, memSize: l.memoryParamsSize()}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.release())
		}
	}()
	if c.ctl, err = deviceFiles.open(ControlPath); err != nil {
		c.ctl = -1
		return nil, fmt.Errorf("open %s: %w (is the nvidia module loaded, and may this user open the device?)", ControlPath, err)
	}
	if c.hClient, err = AllocRootClient(c.ctl); err != nil {
		return nil, err
	}
	id := NV0000_CTRL_GPU_GET_UUID_INFO_PARAMS{
		Flags: NV0000_CTRL_CMD_GPU_GET_UUID_INFO_FLAGS_FORMAT_BINARY |
			NV0000_CTRL_CMD_GPU_GET_UUID_INFO_FLAGS_TYPE_SHA1<<2,
	}
	copy(id.GpuUuid[:], uuid[:])
	if err = GetUUIDInfo(c.ctl, c.hClient, &id); err != nil {
		return nil, fmt.Errorf("find GPU %s: %w (not attached to the driver: is CUDA using it in this process?)", FormatUUID(uuid), err)
	}
	c.gpu.ID, c.gpu.DeviceInstance, c.gpu.SubdeviceInstance = id.GpuId, id.DeviceInstance, id.SubdeviceInstance
	cards, err := CardInfo(c.ctl)
	if err != nil {
		return nil, err
	}
	found := false
	for _, card := range cards {
		if card.Valid != 0 && card.Gpu_id == id.GpuId {
			c.gpu.Minor, found = card.Minor_number, true
			break
		}
	}
	if !found {
		return nil, fmt.Errorf("find GPU %s: gpuId 0x%x is in no card-info entry", FormatUUID(uuid), id.GpuId)
	}
	devPath := fmt.Sprintf("/dev/nvidia%d", c.gpu.Minor)
	if c.dev, err = deviceFiles.open(devPath); err != nil {
		c.dev = -1
		return nil, fmt.Errorf("open %s: %w", devPath, err)
	}
	if err = RegisterFD(c.dev, c.ctl); err != nil {
		return nil, fmt.Errorf("%s: %w", devPath, err)
	}
	dp := NV0080_ALLOC_PARAMETERS{
		DeviceId:     id.DeviceInstance,
		HClientShare: c.hClient,
		VaMode:       NV_DEVICE_ALLOCATION_VAMODE_MULTIPLE_VASPACES,
	}
	if c.hDevice, err = AllocDevice(c.ctl, c.hClient, &dp); err != nil {
		return nil, err
	}
	sp := NV2080_ALLOC_PARAMETERS{SubDeviceId: id.SubdeviceInstance}
	if c.hSubdevice, err = AllocSubdevice(c.ctl, c.hClient, c.hDevice, &sp); err != nil {
		return nil, err
	}
	return c, nil
}

// ControlFD is the /dev/nvidiactl descriptor (UVM's rmCtrlFd).
func (c *Client) ControlFD() int { return c.ctl }

// Handle is the root client's handle (UVM's hClient).
func (c *Client) Handle() uint32 { return c.hClient }

// Device is the handle of the NV01_DEVICE_0 object, the parent of allocations.
func (c *Client) Device() uint32 { return c.hDevice }

// GPU says which GPU the client serves.
func (c *Client) GPU() GPU { return c.gpu }

// AllocVidmem allocates bytes of video memory (a multiple of pageSize) in RM
// pages of pageSize (PageSize64K or PageSize2M), physically noncontiguous where
// RM likes, and returns its handle (UVM's hMemory).
func (c *Client) AllocVidmem(bytes, pageSize uint64) (uint32, error) {
	if c.closed {
		return 0, ErrClosed
	}
	var pageAttr uint32
	switch pageSize {
	case PageSize64K:
		pageAttr = NVOS32_ATTR_PAGE_SIZE_BIG
	case PageSize2M:
		pageAttr = NVOS32_ATTR_PAGE_SIZE_HUGE
	default:
		return 0, fmt.Errorf("rm alloc vidmem: page size %d: want %d or %d", pageSize, PageSize64K, PageSize2M)
	}
	if bytes == 0 || bytes%pageSize != 0 {
		return 0, fmt.Errorf("rm alloc vidmem: %d bytes is not a positive multiple of the page size %d", bytes, pageSize)
	}
	p := NV_MEMORY_ALLOCATION_PARAMS{
		Owner: c.hClient,
		Type:  NVOS32_TYPE_IMAGE,
		Flags: NVOS32_ALLOC_FLAGS_ALIGNMENT_FORCE | NVOS32_ALLOC_FLAGS_PERSISTENT_VIDMEM |
			NVOS32_ALLOC_FLAGS_MAP_NOT_REQUIRED | NVOS32_ALLOC_FLAGS_IGNORE_BANK_PLACEMENT,
		Attr: NVOS32_ATTR_LOCATION_VIDMEM<<NVOS32_ATTR_LOCATION_SHIFT |
			NVOS32_ATTR_PHYSICALITY_ALLOW_NONCONTIGUOUS<<NVOS32_ATTR_PHYSICALITY_SHIFT |
			pageAttr<<NVOS32_ATTR_PAGE_SIZE_SHIFT,
		Format:    pteKindGeneric,
		Size:      bytes,
		Alignment: pageSize,
	}
	return AllocMemory(c.ctl, c.hClient, c.hDevice, &p, c.memSize)
}

// FreeVidmem frees an allocation of AllocVidmem.
func (c *Client) FreeVidmem(h uint32) error {
	if c.closed {
		return ErrClosed
	}
	return FreeObject(c.ctl, c.hClient, c.hDevice, h)
}

// Close frees the root client, and with it every object under it, then closes
// the device files. Closing /dev/nvidiactl alone would free the client too; the
// explicit free reports a driver that refuses.
func (c *Client) Close() error {
	if c.closed {
		return ErrClosed
	}
	return c.release()
}

// release undoes whatever Open got to, in reverse.
func (c *Client) release() error {
	c.closed = true
	var errs []error
	if c.hClient != 0 {
		errs = append(errs, FreeObject(c.ctl, c.hClient, c.hClient, c.hClient))
		c.hClient = 0
	}
	if c.dev >= 0 {
		if err := deviceFiles.close(c.dev); err != nil {
			errs = append(errs, fmt.Errorf("close /dev/nvidia%d: %w", c.gpu.Minor, err))
		}
		c.dev = -1
	}
	if c.ctl >= 0 {
		if err := deviceFiles.close(c.ctl); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", ControlPath, err))
		}
		c.ctl = -1
	}
	return errors.Join(errs...)
}

// FormatUUID writes a binary GPU UUID as nvidia-smi does ("GPU-xxxxxxxx-…").
func FormatUUID(u [16]byte) string {
	return fmt.Sprintf("GPU-%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}
