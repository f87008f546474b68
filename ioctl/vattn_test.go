package ioctl

import (
	"errors"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fakeIoctl swaps the syscall seam for fn for the duration of the test.
func fakeIoctl(t *testing.T, fn func(fd int, cmd uint32, arg unsafe.Pointer) unix.Errno) *int {
	t.Helper()
	calls := new(int)
	old := rawIoctl
	rawIoctl = func(fd int, cmd uint32, arg unsafe.Pointer) unix.Errno {
		*calls++
		return fn(fd, cmd, arg)
	}
	t.Cleanup(func() { rawIoctl = old })
	return calls
}

func addr[T any](s []T) uint64 { return uint64(uintptr(unsafe.Pointer(&s[0]))) }

func TestWrappersPassTheirArrays(t *testing.T) {
	entries := []UVM_VATTN_MAP_ENTRY{{Base: 1 << 21, Length: 1 << 16, HMemory: 5}, {Base: 1<<21 + 1<<17, Length: 1 << 16, HMemory: 6, Offset: 1 << 16}}
	unmaps := []UVM_VATTN_UNMAP_ENTRY{{Base: 1 << 21, Length: 1 << 16}}
	gpus := [][16]byte{{1, 2, 3}, {4}}
	fakeIoctl(t, func(fd int, cmd uint32, arg unsafe.Pointer) unix.Errno {
		if fd != 3 {
			t.Errorf("fd %d", fd)
		}
		switch cmd {
		case UVM_VATTN_MAP_BATCH:
			p := (*UVM_VATTN_MAP_BATCH_PARAMS)(arg)
			if p.Entries != addr(entries) || p.Count != 2 || p.GpuUuids != addr(gpus) || p.GpuCount != 2 ||
				p.RmCtrlFd != 9 || p.HClient != 0xc1 || p.Flags != 0 || p.Reserved != 0 {
				t.Errorf("map params %+v", *p)
			}
		case UVM_VATTN_UNMAP_BATCH:
			p := (*UVM_VATTN_UNMAP_BATCH_PARAMS)(arg)
			if p.Entries != addr(unmaps) || p.Count != 1 || p.GpuUuids != addr(gpus) || p.GpuCount != 2 {
				t.Errorf("unmap params %+v", *p)
			}
		case UVM_VATTN_GET_INFO:
			p := (*UVM_VATTN_GET_INFO_PARAMS)(arg)
			p.ABIVersion, p.MaxBatch, p.MaxGpus = UVM_VATTN_ABI_VERSION, UVM_VATTN_MAX_BATCH, UVM_VATTN_MAX_GPUS
		default:
			t.Errorf("unexpected cmd %#x", cmd)
		}
		return 0
	})
	if _, err := MapBatch(3, entries, gpus, 9, 0xc1); err != nil {
		t.Errorf("MapBatch: %v", err)
	}
	if _, err := UnmapBatch(3, unmaps, gpus); err != nil {
		t.Errorf("UnmapBatch: %v", err)
	}
	if p, err := GetInfo(3); err != nil || p.ABIVersion != UVM_VATTN_ABI_VERSION || p.MaxBatch != UVM_VATTN_MAX_BATCH {
		t.Errorf("GetInfo = %+v, %v", p, err)
	}
}

func TestEmptyBatchPassesNullPointer(t *testing.T) {
	fakeIoctl(t, func(_ int, _ uint32, arg unsafe.Pointer) unix.Errno {
		if p := (*UVM_VATTN_UNMAP_BATCH_PARAMS)(arg); p.Entries != 0 || p.Count != 0 || p.GpuCount != 1 {
			t.Errorf("params %+v", *p)
		}
		return 0
	})
	if _, err := UnmapBatch(3, nil, [][16]byte{{1}}); err != nil {
		t.Fatal(err)
	}
}

func TestStatusBecomesTypedError(t *testing.T) {
	fakeIoctl(t, func(_ int, _ uint32, arg unsafe.Pointer) unix.Errno {
		p := (*UVM_VATTN_MAP_BATCH_PARAMS)(arg)
		p.RMStatus, p.ErrorIndex = NV_ERR_UVM_ADDRESS_IN_USE, 1
		return 0
	})
	p, err := MapBatch(3, make([]UVM_VATTN_MAP_ENTRY, 2), [][16]byte{{1}}, 9, 1)
	if !errors.Is(err, NV_ERR_UVM_ADDRESS_IN_USE) || p.ErrorIndex != 1 {
		t.Fatalf("MapBatch = %+v, %v", p, err)
	}
	if !strings.HasPrefix(err.Error(), "uvm_vattn_map_batch: NV_ERR_UVM_ADDRESS_IN_USE") {
		t.Errorf("message %q", err)
	}
	var st Status
	if !errors.As(err, &st) || st != NV_ERR_UVM_ADDRESS_IN_USE {
		t.Errorf("errors.As gave %v", st)
	}
}

func TestErrnoComesFirst(t *testing.T) {
	cases := []struct {
		errno   unix.Errno
		unknown bool
	}{
		{unix.EINVAL, true}, {unix.ENOSYS, true}, {unix.ENOTTY, true},
		{unix.EFAULT, false}, {unix.EAGAIN, false},
	}
	for _, c := range cases {
		fakeIoctl(t, func(_ int, _ uint32, arg unsafe.Pointer) unix.Errno {
			// A status left in the params must be ignored when errno is set.
			(*UVM_VATTN_MAP_BATCH_PARAMS)(arg).RMStatus = NV_ERR_NO_MEMORY
			return c.errno
		})
		_, err := MapBatch(3, []UVM_VATTN_MAP_ENTRY{{}}, [][16]byte{{1}}, 9, 1)
		if !errors.Is(err, c.errno) || errors.Is(err, ErrUnknownCommand) != c.unknown || errors.Is(err, NV_ERR_NO_MEMORY) {
			t.Errorf("errno %v: err %v", c.errno, err)
		}
	}
}

func TestBadBatchesNeverReachTheDriver(t *testing.T) {
	calls := fakeIoctl(t, func(int, uint32, unsafe.Pointer) unix.Errno { return 0 })
	big := UVM_VATTN_MAX_BATCH + 1
	one := [][16]byte{{1}}
	var err error
	if _, err = MapBatch(3, make([]UVM_VATTN_MAP_ENTRY, big), one, 9, 1); !errors.Is(err, ErrBatchTooLarge) {
		t.Errorf("map: %v", err)
	}
	if _, err = UnmapBatch(3, make([]UVM_VATTN_UNMAP_ENTRY, big), one); !errors.Is(err, ErrBatchTooLarge) {
		t.Errorf("unmap: %v", err)
	}
	if _, err = MapBatch(3, nil, nil, 9, 1); !errors.Is(err, ErrTooManyGPUs) {
		t.Errorf("no GPU: %v", err)
	}
	if _, err = UnmapBatch(3, nil, make([][16]byte, UVM_VATTN_MAX_GPUS+1)); !errors.Is(err, ErrTooManyGPUs) {
		t.Errorf("too many GPUs: %v", err)
	}
	if *calls != 0 {
		t.Errorf("%d syscalls issued", *calls)
	}
}

func TestStatusStrings(t *testing.T) {
	if NV_OK.Err() != nil {
		t.Error("NV_OK is an error")
	}
	if got := Status(0x1234).Error(); got != "nv status 0x00001234" {
		t.Errorf("unknown status prints %q", got)
	}
	if Status(0x1234).Name() != "" || NV_ERR_NO_MEMORY.Name() != "NV_ERR_NO_MEMORY" {
		t.Error("Name table wrong")
	}
}

// TestRealSyscallOnNonUVMFile runs the real seam against /dev/null: the kernel
// rejects the command with ENOTTY, which must read as "not patched".
func TestRealSyscallOnNonUVMFile(t *testing.T) {
	fd, err := unix.Open("/dev/null", unix.O_RDONLY, 0)
	if err != nil {
		t.Skipf("no /dev/null: %v", err)
	}
	defer func() { _ = unix.Close(fd) }()
	_, err = GetInfo(fd)
	if !errors.Is(err, ErrUnknownCommand) || !errors.Is(err, unix.ENOTTY) {
		t.Fatalf("GetInfo on /dev/null: %v", err)
	}
}
