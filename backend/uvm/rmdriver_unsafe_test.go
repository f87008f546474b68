package uvm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vattn/vattn/ioctl"
	"github.com/vattn/vattn/ioctl/branch"
	"github.com/vattn/vattn/ioctl/rm"
)

// fakeRM stands in for RM and nvidia-uvm behind ioctl's syscall seam, and for
// the device files behind rm's: it hands out handles, records what it was
// asked, and fails the step named in fail.
type fakeRM struct {
	t        *testing.T
	fail     string       // step to fail: "open /dev/nvidiactl", "root", "uuid", "cards", "open /dev/nvidia0", "register", "device", "subdevice"
	status   ioctl.Status // answer of a failing RM step (errno EIO where there is no status)
	open     map[int]string
	live     map[uint32]bool // RM handles
	next     uint32
	memSize  []uint32 // paramsSize of every memory allocation
	uvmCalls []uvmCall
	uvmSize  map[uint32]uintptr
	uvmFail  ioctl.Status
	ctl      int
}

type uvmCall struct {
	cmd   uint32
	block []byte
}

// addr turns an NvP64 back into a pointer (what the kernel does with it).
func addr(p uint64) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&p)) }

func newFakeRM(t *testing.T, version string) *fakeRM {
	f := &fakeRM{t: t, open: map[int]string{}, live: map[uint32]bool{}, next: 1, status: ioctl.NV_ERR_INVALID_ARGUMENT}
	abi, err := branch.Lookup(version)
	if err == nil {
		f.uvmSize = map[uint32]uintptr{
			ioctl.UVM_CREATE_EXTERNAL_RANGE:   unsafe.Sizeof(ioctl.UVM_CREATE_EXTERNAL_RANGE_PARAMS{}),
			ioctl.UVM_UNMAP_EXTERNAL:          unsafe.Sizeof(ioctl.UVM_UNMAP_EXTERNAL_PARAMS{}),
			ioctl.UVM_MAP_EXTERNAL_ALLOCATION: abi.UVM.MapExternal.Size,
			ioctl.UVM_FREE:                    abi.UVM.Free.Size,
		}
	}
	oldVersion := driverVersion
	driverVersion = func() (string, error) { return version, nil }
	restoreFiles := rm.SetDeviceFiles(f.openFile, f.closeFile)
	restoreIoctl := ioctl.SetRawIoctl(f.ioctl)
	t.Cleanup(func() {
		restoreIoctl()
		restoreFiles()
		driverVersion = oldVersion
		for fd := range f.open {
			unix.Close(fd)
		}
	})
	return f
}

func (f *fakeRM) openFile(path string) (int, error) {
	if f.fail == "open "+path {
		return -1, unix.EACCES
	}
	fd, err := unix.Open(os.DevNull, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	f.open[fd] = path
	if path == rm.ControlPath {
		f.ctl = fd
	}
	return fd, nil
}

func (f *fakeRM) closeFile(fd int) error {
	if _, ok := f.open[fd]; !ok {
		f.t.Errorf("close of fd %d, not open", fd)
		return unix.EBADF
	}
	delete(f.open, fd)
	if fd == f.ctl {
		clear(f.live) // closing the control file frees the client
	}
	return unix.Close(fd)
}

func (f *fakeRM) handle() uint32 {
	h := 0xcaf00000 + f.next
	f.next++
	f.live[h] = true
	return h
}

func (f *fakeRM) ioctl(fd int, cmd uint32, arg unsafe.Pointer) unix.Errno {
	if size, ok := f.uvmSize[cmd]; ok {
		b := unsafe.Slice((*byte)(arg), size)
		f.uvmCalls = append(f.uvmCalls, uvmCall{cmd, append([]byte(nil), b...)})
		if f.uvmFail != ioctl.NV_OK {
			// rmStatus is the last 4-byte word before any tail padding.
			off := map[uint32]uintptr{ioctl.UVM_CREATE_EXTERNAL_RANGE: 16, ioctl.UVM_UNMAP_EXTERNAL: 32}[cmd]
			binary.NativeEndian.PutUint32(b[off:], uint32(f.uvmFail))
		}
		return 0
	}
	switch cmd {
	case rm.Request(rm.NV_ESC_RM_ALLOC, unsafe.Sizeof(rm.NVOS21_PARAMETERS{})):
		p := (*rm.NVOS21_PARAMETERS)(arg)
		step := map[uint32]string{rm.NV01_ROOT_CLIENT: "root", rm.NV01_DEVICE_0: "device",
			rm.NV20_SUBDEVICE_0: "subdevice", rm.NV01_MEMORY_LOCAL_USER: "memory"}[p.HClass]
		if p.HClass != rm.NV01_ROOT_CLIENT && !f.live[p.HRoot] {
			p.Status = uint32(ioctl.NV_ERR_INVALID_CLIENT)
			return 0
		}
		if p.HClass == rm.NV01_MEMORY_LOCAL_USER {
			f.memSize = append(f.memSize, p.ParamsSize)
		}
		if f.fail == step {
			p.Status = uint32(f.status)
			return 0
		}
		p.HObjectNew = f.handle()
	case rm.Request(rm.NV_ESC_RM_CONTROL, unsafe.Sizeof(rm.NVOS54_PARAMETERS{})):
		p := (*rm.NVOS54_PARAMETERS)(arg)
		if p.Cmd != rm.NV0000_CTRL_CMD_GPU_GET_UUID_INFO {
			f.t.Errorf("control 0x%x", p.Cmd)
			return unix.EINVAL
		}
		if f.fail == "uuid" {
			p.Status = uint32(ioctl.NV_ERR_OBJECT_NOT_FOUND)
			return 0
		}
		u := (*rm.NV0000_CTRL_GPU_GET_UUID_INFO_PARAMS)(addr(p.Params))
		u.GpuId, u.DeviceInstance, u.SubdeviceInstance = 0x4100, 0, 0
	case rm.Request(rm.NV_ESC_RM_FREE, unsafe.Sizeof(rm.NVOS00_PARAMETERS{})):
		p := (*rm.NVOS00_PARAMETERS)(arg)
		if !f.live[p.HObjectOld] {
			p.Status = uint32(ioctl.NV_ERR_INVALID_OBJECT_HANDLE)
			return 0
		}
		if p.HObjectOld == p.HRoot {
			clear(f.live)
		}
		delete(f.live, p.HObjectOld)
	case rm.Request(rm.NV_ESC_CARD_INFO, unsafe.Sizeof([rm.NV_MAX_DEVICES]rm.NvCardInfo{})):
		if f.fail == "cards" {
			return unix.EIO
		}
		cards := (*[rm.NV_MAX_DEVICES]rm.NvCardInfo)(arg)
		cards[0] = rm.NvCardInfo{Valid: 1, Gpu_id: 0x4100, Minor_number: 0}
	case rm.Request(rm.NV_ESC_REGISTER_FD, unsafe.Sizeof(rm.NvRegisterFD{})):
		if f.fail == "register" {
			return unix.EIO
		}
	default:
		f.t.Errorf("unexpected ioctl 0x%x on fd %d", cmd, fd)
		return unix.ENOTTY
	}
	return 0
}

var stockUUID = [16]byte{0xde, 0xad, 0xbe, 0xef, 15: 1}

func TestOpenStockDriverFreesOnEveryFailure(t *testing.T) {
	for _, step := range []string{"open /dev/nvidiactl", "root", "uuid", "cards", "open /dev/nvidia0", "register", "device", "subdevice"} {
		t.Run(step, func(t *testing.T) {
			f := newFakeRM(t, "580.159.04")
			f.fail = step
			d, err := OpenStockDriver(StockTarget{UVMFD: 99, UUID: stockUUID})
			if err == nil {
				d.Close()
				t.Fatal("opened")
			}
			if len(f.open) != 0 || len(f.live) != 0 {
				t.Errorf("left files %v, RM handles %v", f.open, f.live)
			}
			if !strings.Contains(err.Error(), "stock driver") {
				t.Errorf("error %q", err)
			}
			switch step {
			case "uuid":
				if !errors.Is(err, ioctl.NV_ERR_OBJECT_NOT_FOUND) || !strings.Contains(err.Error(), rm.FormatUUID(stockUUID)) {
					t.Errorf("error %v", err)
				}
			case "root", "device", "subdevice":
				if !errors.Is(err, ioctl.NV_ERR_INVALID_ARGUMENT) {
					t.Errorf("error %v", err)
				}
			case "cards", "register":
				if !errors.Is(err, unix.EIO) {
					t.Errorf("error %v", err)
				}
			default:
				if !errors.Is(err, unix.EACCES) {
					t.Errorf("error %v", err)
				}
			}
		})
	}
}

func TestOpenStockDriverRefusesUnknownBranch(t *testing.T) {
	f := newFakeRM(t, "600.10.01")
	_, err := OpenStockDriver(StockTarget{UVMFD: 99, UUID: stockUUID})
	if !errors.Is(err, branch.ErrUnknownBranch) || !strings.Contains(err.Error(), "600.10.01") {
		t.Errorf("error %v", err)
	}
	if len(f.open) != 0 {
		t.Errorf("opened %v before refusing", f.open)
	}
	driverVersion = func() (string, error) { return "", fmt.Errorf("no module: %w", os.ErrNotExist) }
	if _, err := OpenStockDriver(StockTarget{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("no version: %v", err)
	}
}

func TestStockDriver535(t *testing.T) {
	f := newFakeRM(t, "535.261.03")
	d, err := OpenStockDriver(StockTarget{UVMFD: 99, UUID: stockUUID})
	if err != nil {
		t.Fatal(err)
	}
	if d.Branch() != "535.261.03" {
		t.Errorf("branch %q", d.Branch())
	}
	h, err := d.AllocVidmem(4<<20, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.memSize) != 1 || f.memSize[0] != 120 {
		t.Errorf("535 memory params size %v, want 120", f.memSize)
	}
	if _, err := d.AllocVidmem(3<<20, 64<<10); err == nil {
		t.Error("3 MiB allocated")
	}
	if err := d.Map(0x7f0000000000, 64<<10, h, 128<<10); err != nil {
		t.Fatal(err)
	}
	c := f.uvmCalls[len(f.uvmCalls)-1]
	b := c.block
	u32 := func(o int) uint32 { return binary.NativeEndian.Uint32(b[o:]) }
	// 535 offsets, as gcc places them: perGpuAttributes at 24, count at 1176,
	// rmCtrlFd 1184, hClient 1188, hMemory 1192.
	if c.cmd != ioctl.UVM_MAP_EXTERNAL_ALLOCATION || len(b) != 1200 {
		t.Fatalf("cmd %d, %d bytes", c.cmd, len(b))
	}
	if [16]byte(b[24:40]) != stockUUID || binary.NativeEndian.Uint64(b[1176:]) != 1 ||
		int(u32(1184)) != f.ctl || !f.live[u32(1188)] || u32(1192) != h {
		t.Errorf("block: uuid %x count %d fd %d client %#x memory %#x", b[24:40],
			binary.NativeEndian.Uint64(b[1176:]), u32(1184), u32(1188), u32(1192))
	}
	if err := d.Unmap(0x7f0000000000, 64<<10); err != nil {
		t.Error(err)
	}
	if err := d.FreeRange(0x7f0000000000, 2<<20); err != nil {
		t.Error(err)
	}
	fr := f.uvmCalls[len(f.uvmCalls)-1]
	if fr.cmd != ioctl.UVM_FREE || len(fr.block) != 24 || binary.NativeEndian.Uint64(fr.block[8:]) != 2<<20 {
		t.Errorf("free: cmd %d block %x", fr.cmd, fr.block)
	}
	if err := d.FreeVidmem(h); err != nil {
		t.Error(err)
	}
	if err := d.Close(); err != nil {
		t.Error(err)
	}
	if len(f.open) != 0 || len(f.live) != 0 {
		t.Errorf("after close: files %v, RM handles %v", f.open, f.live)
	}
	if err := d.Map(0, 0, h, 0); err == nil {
		t.Error("map after close")
	}
}

func TestStockDriverErrors(t *testing.T) {
	f := newFakeRM(t, "580.159.04")
	d, err := OpenStockDriver(StockTarget{UVMFD: 99, UUID: stockUUID})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	f.fail, f.status = "memory", ioctl.NV_ERR_NO_MEMORY
	if _, err := d.AllocVidmem(2<<20, 2<<20); !errors.Is(err, ioctl.NV_ERR_NO_MEMORY) {
		t.Errorf("alloc: %v", err)
	}
	if len(f.memSize) != 1 || f.memSize[0] != 128 {
		t.Errorf("580 memory params size %v, want 128", f.memSize)
	}
	f.uvmFail = ioctl.NV_ERR_ILLEGAL_ACTION
	if err := d.CreateRange(0x7f0000000000, 2<<20); !errors.Is(err, ioctl.NV_ERR_ILLEGAL_ACTION) || !strings.Contains(err.Error(), "va_space") {
		t.Errorf("create range: %v", err)
	}
	if err := d.FreeVidmem(0x1234); !errors.Is(err, ioctl.NV_ERR_INVALID_OBJECT_HANDLE) {
		t.Errorf("free unknown handle: %v", err)
	}
}
