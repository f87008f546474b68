package ioctl

import (
	"errors"
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestStockParamLayouts(t *testing.T) {
	if s := unsafe.Sizeof(UVM_INITIALIZE_PARAMS{}); s != 16 {
		t.Errorf("UVM_INITIALIZE_PARAMS is %d bytes, want 16", s)
	}
	if o := unsafe.Offsetof(UVM_INITIALIZE_PARAMS{}.RMStatus); o != 8 {
		t.Errorf("UVM_INITIALIZE_PARAMS.rmStatus at %d, want 8", o)
	}
	if s := unsafe.Sizeof(UVM_PAGEABLE_MEM_ACCESS_PARAMS{}); s != 8 {
		t.Errorf("UVM_PAGEABLE_MEM_ACCESS_PARAMS is %d bytes, want 8", s)
	}
	if o := unsafe.Offsetof(UVM_PAGEABLE_MEM_ACCESS_PARAMS{}.RMStatus); o != 4 {
		t.Errorf("UVM_PAGEABLE_MEM_ACCESS_PARAMS.rmStatus at %d, want 4", o)
	}
}

func TestSetRawIoctlRestores(t *testing.T) {
	var got []uint32
	restore := SetRawIoctl(func(fd int, cmd uint32, arg unsafe.Pointer) unix.Errno {
		got = append(got, cmd)
		if cmd == UVM_PAGEABLE_MEM_ACCESS {
			(*UVM_PAGEABLE_MEM_ACCESS_PARAMS)(arg).RMStatus = NV_ERR_ILLEGAL_ACTION
			return 0
		}
		return unix.ENOSYS
	})
	if _, err := Initialize(3, 0); !errors.Is(err, ErrUnknownCommand) || !errors.Is(err, unix.ENOSYS) {
		t.Errorf("initialize: %v", err)
	}
	if _, err := PageableMemAccess(3); !errors.Is(err, NV_ERR_ILLEGAL_ACTION) {
		t.Errorf("pageable mem access: %v", err)
	}
	restore()
	if len(got) != 2 || got[0] != UVM_INITIALIZE || got[1] != UVM_PAGEABLE_MEM_ACCESS {
		t.Errorf("commands %v", got)
	}
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := PageableMemAccess(int(f.Fd())); !errors.Is(err, unix.ENOTTY) {
		t.Errorf("after restore, /dev/null: %v", err)
	}
}
