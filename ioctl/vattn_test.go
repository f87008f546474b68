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

func TestAllocPassesBatchAndReturnsHandles(t *testing.T) {
	handles := make([]uint64, 3)
	uuid := [16]byte{1, 2, 3}
	fakeIoctl(t, func(fd int, cmd uint32, arg unsafe.Pointer) unix.Errno {
		p := (*UVM_VATTN_ALLOC_PARAMS)(arg)
		if fd != 7 || cmd != UVM_VATTN_ALLOC || p.Count != 3 || p.Handles != addr(handles) ||
			p.PageSize != UVM_VATTN_PAGE_SIZE_64K || p.GPUUUID != uuid || p.Flags != 0 {
			t.Errorf("bad call: fd %d cmd %#x params %+v", fd, cmd, *p)
		}
		for i := range handles {
			handles[i] = uint64(100 + i)
		}
		p.Done = 3
		return 0
	})
	p, err := Alloc(7, uuid, UVM_VATTN_PAGE_SIZE_64K, handles)
	if err != nil || p.Done != 3 || handles[2] != 102 {
		t.Fatalf("Alloc = %+v, %v; handles %v", p, err, handles)
	}
}

func TestWrappersPassTheirArrays(t *testing.T) {
	entries := []UVM_VATTN_MAP_ENTRY{{Address: 1 << 21, Handle: 5}, {Address: 1<<21 + 1<<16, Handle: 6}}
	addrs := []uint64{1 << 21, 1<<21 + 1<<16}
	handles := []uint64{5, 6}
	gpus := make([]UVM_VATTN_GPU_INFO, 2)
	fakeIoctl(t, func(_ int, cmd uint32, arg unsafe.Pointer) unix.Errno {
		switch cmd {
		case UVM_VATTN_MAP:
			p := (*UVM_VATTN_MAP_PARAMS)(arg)
			if p.Entries != addr(entries) || p.Count != 2 {
				t.Errorf("map params %+v", *p)
			}
			p.Done = 2
		case UVM_VATTN_UNMAP:
			p := (*UVM_VATTN_UNMAP_PARAMS)(arg)
			if p.Addresses != addr(addrs) || p.Count != 2 {
				t.Errorf("unmap params %+v", *p)
			}
			p.Done = 2
		case UVM_VATTN_FREE:
			p := (*UVM_VATTN_FREE_PARAMS)(arg)
			if p.Handles != addr(handles) || p.Count != 2 {
				t.Errorf("free params %+v", *p)
			}
			p.Done = 2
		case UVM_VATTN_GET_INFO:
			p := (*UVM_VATTN_GET_INFO_PARAMS)(arg)
			if p.GPUInfo != addr(gpus) || p.GPUCapacity != 2 || p.Reserved0 != 0 {
				t.Errorf("info params %+v", *p)
			}
			gpus[0].PageSizes = UVM_VATTN_PAGE_SIZES_ALL
			p.ABIVersion, p.GPUCount = UVM_VATTN_ABI_VERSION, 1
		case UVM_VATTN_RELEASE_RANGE:
			p := (*UVM_VATTN_RELEASE_RANGE_PARAMS)(arg)
			if p.Base != 1<<21 || p.Length != 1<<22 || p.Flags != UVM_VATTN_RELEASE_FREE {
				t.Errorf("release params %+v", *p)
			}
			p.Unmapped, p.Freed = 2, 2
		default:
			t.Errorf("unexpected cmd %#x", cmd)
		}
		return 0
	})
	if p, err := Map(3, entries); err != nil || p.Done != 2 {
		t.Errorf("Map = %+v, %v", p, err)
	}
	if p, err := Unmap(3, addrs); err != nil || p.Done != 2 {
		t.Errorf("Unmap = %+v, %v", p, err)
	}
	if p, err := Free(3, handles); err != nil || p.Done != 2 {
		t.Errorf("Free = %+v, %v", p, err)
	}
	if p, err := GetInfo(3, gpus); err != nil || p.GPUCount != 1 || gpus[0].PageSizes != UVM_VATTN_PAGE_SIZES_ALL {
		t.Errorf("GetInfo = %+v, %v", p, err)
	}
	if p, err := ReleaseRange(3, 1<<21, 1<<22, UVM_VATTN_RELEASE_FREE); err != nil || p.Freed != 2 {
		t.Errorf("ReleaseRange = %+v, %v", p, err)
	}
}

func TestEmptyBatchPassesNullPointer(t *testing.T) {
	fakeIoctl(t, func(_ int, _ uint32, arg unsafe.Pointer) unix.Errno {
		if p := (*UVM_VATTN_FREE_PARAMS)(arg); p.Handles != 0 || p.Count != 0 {
			t.Errorf("params %+v", *p)
		}
		return 0
	})
	if _, err := Free(3, nil); err != nil {
		t.Fatal(err)
	}
}

func TestStatusBecomesTypedError(t *testing.T) {
	fakeIoctl(t, func(_ int, _ uint32, arg unsafe.Pointer) unix.Errno {
		p := (*UVM_VATTN_FREE_PARAMS)(arg)
		p.RMStatus, p.ErrorIndex = NV_ERR_IN_USE, 1
		return 0
	})
	p, err := Free(3, []uint64{1, 2})
	if !errors.Is(err, NV_ERR_IN_USE) || p.ErrorIndex != 1 {
		t.Fatalf("Free = %+v, %v", p, err)
	}
	if !strings.HasPrefix(err.Error(), "uvm_vattn_free: NV_ERR_IN_USE (0x00000017)") {
		t.Errorf("message %q", err)
	}
	var st Status
	if !errors.As(err, &st) || st != NV_ERR_IN_USE {
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
			(*UVM_VATTN_MAP_PARAMS)(arg).RMStatus = NV_ERR_IN_USE
			return c.errno
		})
		_, err := Map(3, []UVM_VATTN_MAP_ENTRY{{}})
		if !errors.Is(err, c.errno) || errors.Is(err, ErrUnknownCommand) != c.unknown || errors.Is(err, NV_ERR_IN_USE) {
			t.Errorf("errno %v: err %v", c.errno, err)
		}
	}
}

func TestBatchTooLargeNeverReachesTheDriver(t *testing.T) {
	calls := fakeIoctl(t, func(int, uint32, unsafe.Pointer) unix.Errno { return 0 })
	big := UVM_VATTN_MAX_BATCH + 1
	checks := map[string]error{}
	_, checks["alloc"] = Alloc(3, [16]byte{}, UVM_VATTN_PAGE_SIZE_64K, make([]uint64, big))
	_, checks["map"] = Map(3, make([]UVM_VATTN_MAP_ENTRY, big))
	_, checks["unmap"] = Unmap(3, make([]uint64, big))
	_, checks["free"] = Free(3, make([]uint64, big))
	for name, err := range checks {
		if !errors.Is(err, ErrBatchTooLarge) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if *calls != 0 {
		t.Errorf("%d syscalls issued", *calls)
	}
}

func TestGetInfoClampsCapacity(t *testing.T) {
	gpus := make([]UVM_VATTN_GPU_INFO, UVM_VATTN_MAX_GPUS+5)
	fakeIoctl(t, func(_ int, _ uint32, arg unsafe.Pointer) unix.Errno {
		if p := (*UVM_VATTN_GET_INFO_PARAMS)(arg); p.GPUCapacity != UVM_VATTN_MAX_GPUS {
			t.Errorf("capacity %d", p.GPUCapacity)
		}
		return 0
	})
	if _, err := GetInfo(3, gpus); err != nil {
		t.Fatal(err)
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
	_, err = GetInfo(fd, nil)
	if !errors.Is(err, ErrUnknownCommand) || !errors.Is(err, unix.ENOTTY) {
		t.Fatalf("GetInfo on /dev/null: %v", err)
	}
}
