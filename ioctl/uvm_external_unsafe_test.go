package ioctl

import (
	"encoding/binary"
	"errors"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// call is one command the fake driver saw, with a copy of its block.
type call struct {
	cmd   uint32
	block []byte
}

// fakeDriver records every command and answers with errno, or writes status at
// statusAt of the block.
func fakeDriver(t *testing.T, size func(cmd uint32) uintptr, errno unix.Errno, status Status, statusAt func(cmd uint32) uintptr) *[]call {
	t.Helper()
	var calls []call
	restore := SetRawIoctl(func(fd int, cmd uint32, arg unsafe.Pointer) unix.Errno {
		b := unsafe.Slice((*byte)(arg), size(cmd))
		calls = append(calls, call{cmd, append([]byte(nil), b...)})
		if errno != 0 {
			return errno
		}
		binary.NativeEndian.PutUint32(b[statusAt(cmd):], uint32(status))
		return 0
	})
	t.Cleanup(restore)
	return &calls
}

// The 535 and 590 numbers below are what gcc said for NVIDIA's headers of
// 535.261.03 and 590.48.01 (TestStockABI checks them for every branch).
func TestMapExternalAllocation535(t *testing.T) {
	s := NewStockUVM(StockLayout535)
	calls := fakeDriver(t, func(uint32) uintptr { return 1200 }, 0, NV_ERR_NO_MEMORY,
		func(uint32) uintptr { return 1196 })
	uuid := [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	err := s.MapExternalAllocation(7, ExternalMapping{
		Base: 0x7f0000000000, Length: 0x10000, Offset: 0x20000,
		GPUs:     []UvmGpuMappingAttributes{{GpuUuid: uuid}},
		RmCtrlFd: 5, HClient: 0xc1d00001, HMemory: 0xcaf00002,
	})
	if !errors.Is(err, NV_ERR_NO_MEMORY) {
		t.Fatalf("status written at 1196 not seen: %v", err)
	}
	if len(*calls) != 1 || (*calls)[0].cmd != UVM_MAP_EXTERNAL_ALLOCATION {
		t.Fatalf("calls %v", *calls)
	}
	b := (*calls)[0].block
	u64 := func(o int) uint64 { return binary.NativeEndian.Uint64(b[o:]) }
	u32 := func(o int) uint32 { return binary.NativeEndian.Uint32(b[o:]) }
	if u64(0) != 0x7f0000000000 || u64(8) != 0x10000 || u64(16) != 0x20000 {
		t.Errorf("base/length/offset: %#x %#x %#x", u64(0), u64(8), u64(16))
	}
	if [16]byte(b[24:40]) != uuid {
		t.Errorf("gpu uuid %x", b[24:40])
	}
	if u64(1176) != 1 || u32(1184) != 5 || u32(1188) != 0xc1d00001 || u32(1192) != 0xcaf00002 {
		t.Errorf("count %d fd %d client %#x memory %#x", u64(1176), u32(1184), u32(1188), u32(1192))
	}
}

func TestMapExternalAllocationLimits(t *testing.T) {
	s := NewStockUVM(StockLayout535)
	fakeDriver(t, func(uint32) uintptr { return 1200 }, unix.EFAULT, 0, nil)
	err := s.MapExternalAllocation(7, ExternalMapping{GPUs: make([]UvmGpuMappingAttributes, 33)})
	if !errors.Is(err, ErrTooManyGPUs) {
		t.Errorf("33 GPUs on 535: %v", err)
	}
	err = s.MapExternalAllocation(7, ExternalMapping{GPUs: make([]UvmGpuMappingAttributes, 1)})
	if !errors.Is(err, unix.EFAULT) {
		t.Errorf("errno: %v", err)
	}
	if got := StockLayout550.MapExternal.MaxGPUs; got != 256 {
		t.Errorf("550 holds %d GPUs", got)
	}
}

func TestFreeLayouts(t *testing.T) {
	for _, tc := range []struct {
		name     string
		l        *StockLayout
		size     uintptr
		statusAt uintptr
	}{{"535", StockLayout535, 24, 16}, {"590", StockLayout590, 16, 8}} {
		t.Run(tc.name, func(t *testing.T) {
			calls := fakeDriver(t, func(uint32) uintptr { return tc.size }, 0, NV_ERR_INVALID_ADDRESS,
				func(uint32) uintptr { return tc.statusAt })
			err := NewStockUVM(tc.l).Free(3, 0x1000000, 0x200000)
			if !errors.Is(err, NV_ERR_INVALID_ADDRESS) {
				t.Fatalf("status at %d not seen: %v", tc.statusAt, err)
			}
			b := (*calls)[0].block
			if (*calls)[0].cmd != UVM_FREE || binary.NativeEndian.Uint64(b) != 0x1000000 {
				t.Errorf("cmd %d base %#x", (*calls)[0].cmd, binary.NativeEndian.Uint64(b))
			}
			if tc.l.Free.HasLength && binary.NativeEndian.Uint64(b[8:]) != 0x200000 {
				t.Errorf("length %#x", binary.NativeEndian.Uint64(b[8:]))
			}
		})
	}
}

func TestFixedStockCommands(t *testing.T) {
	sizes := map[uint32]uintptr{UVM_CREATE_EXTERNAL_RANGE: 24, UVM_UNMAP_EXTERNAL: 40}
	status := map[uint32]uintptr{UVM_CREATE_EXTERNAL_RANGE: 16, UVM_UNMAP_EXTERNAL: 32}
	calls := fakeDriver(t, func(c uint32) uintptr { return sizes[c] }, 0, NV_ERR_UVM_ADDRESS_IN_USE,
		func(c uint32) uintptr { return status[c] })
	s := NewStockUVM(StockLayout590)
	if err := s.CreateExternalRange(3, 0x1000000, 0x400000); !errors.Is(err, NV_ERR_UVM_ADDRESS_IN_USE) {
		t.Errorf("create: %v", err)
	}
	gpu := [16]byte{0xaa, 15: 0xbb}
	if err := s.UnmapExternal(3, 0x1000000, 0x10000, gpu); !errors.Is(err, NV_ERR_UVM_ADDRESS_IN_USE) {
		t.Errorf("unmap: %v", err)
	}
	b := (*calls)[1].block
	if binary.NativeEndian.Uint64(b[8:]) != 0x10000 || [16]byte(b[16:32]) != gpu {
		t.Errorf("unmap block %x", b)
	}
}
