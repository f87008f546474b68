package rm

import (
	"errors"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vattn/vattn/ioctl"
)

func addr(p uint64) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&p)) }

// TestAllocVidmemBlock checks the block AllocVidmem hands RM, against the bits
// the stock small-page probe proved on the GPU machine.
func TestAllocVidmemBlock(t *testing.T) {
	var got NV_MEMORY_ALLOCATION_PARAMS
	var got21 NVOS21_PARAMETERS
	defer ioctl.SetRawIoctl(func(fd int, cmd uint32, arg unsafe.Pointer) unix.Errno {
		if cmd != Request(NV_ESC_RM_ALLOC, unsafe.Sizeof(NVOS21_PARAMETERS{})) {
			return unix.ENOTTY
		}
		p := (*NVOS21_PARAMETERS)(arg)
		got21, got = *p, *(*NV_MEMORY_ALLOCATION_PARAMS)(addr(p.PAllocParms))
		if got.Size > 1<<30 {
			p.Status = uint32(ioctl.NV_ERR_NO_MEMORY)
			return 0
		}
		p.HObjectNew = 0xbeef
		return 0
	})()
	c := &Client{ctl: 3, dev: 4, hClient: 0xc1, hDevice: 0xde, memSize: 120}
	for _, tc := range []struct {
		page uint64
		attr uint32
	}{{PageSize64K, 0x19000000}, {PageSize2M, 0x19800000}} {
		h, err := c.AllocVidmem(4<<20, tc.page)
		if err != nil || h != 0xbeef {
			t.Fatalf("%d: %#x, %v", tc.page, h, err)
		}
		if got.Attr != tc.attr || got.Flags != 0x18101 || got.Alignment != tc.page || got.Size != 4<<20 ||
			got.Owner != 0xc1 || got.Format != pteKindGeneric || got.Type != NVOS32_TYPE_IMAGE {
			t.Errorf("%d: block %+v", tc.page, got)
		}
		if got21.HRoot != 0xc1 || got21.HObjectParent != 0xde || got21.HClass != NV01_MEMORY_LOCAL_USER || got21.ParamsSize != 120 {
			t.Errorf("%d: NVOS21 %+v", tc.page, got21)
		}
	}
	if _, err := c.AllocVidmem(2<<30, PageSize2M); !errors.Is(err, ioctl.NV_ERR_NO_MEMORY) {
		t.Errorf("too much: %v", err)
	}
	if _, err := c.AllocVidmem(4<<20, 4096); err == nil {
		t.Error("4 KiB RM pages accepted")
	}
	if _, err := c.AllocVidmem(96<<10, PageSize64K); err == nil {
		t.Error("96 KiB accepted")
	}
}

func TestFormatUUID(t *testing.T) {
	u := [16]byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0, 1, 2, 3, 4, 5, 6, 0xff}
	if s := FormatUUID(u); s != "GPU-01234567-89ab-cdef-0001-0203040506ff" {
		t.Errorf("%s", s)
	}
}
