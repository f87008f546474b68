package ioctl

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrUnknownCommand: the file rejected the command number itself (EINVAL on
// drivers up to 550, ENOSYS from 580, ENOTTY from non-UVM files), so it is not the
// vattn-patched nvidia-uvm. The wrapped errno says which.
var ErrUnknownCommand = errors.New("unknown ioctl command (driver not patched for vattn?)")

// ErrBatchTooLarge: more entries than UVM_VATTN_MAX_BATCH; checked before the
// syscall because the count field is 32 bits and must not wrap.
var ErrBatchTooLarge = errors.New("batch larger than UVM_VATTN_MAX_BATCH")

// rawIoctl is the one place a vattn command reaches the kernel. Tests replace it to
// check what the wrappers pass without a device. arg stays an unsafe.Pointer until
// the Syscall expression, where the conversion to uintptr keeps it alive.
var rawIoctl = func(fd int, cmd uint32, arg unsafe.Pointer) unix.Errno {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(cmd), uintptr(arg))
	return errno
}

// issue runs one command: errno first (the parameters were not written back), then
// the status the driver left in the parameters.
func issue(op string, fd int, cmd uint32, arg unsafe.Pointer, status *Status) error {
	if errno := rawIoctl(fd, cmd, arg); errno != 0 {
		switch errno {
		case unix.EINVAL, unix.ENOSYS, unix.ENOTTY:
			return fmt.Errorf("%s: %w: %w", op, ErrUnknownCommand, errno)
		}
		return fmt.Errorf("%s: %w", op, errno)
	}
	if err := status.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

func batchLen(op string, n int) (uint32, error) {
	if n > UVM_VATTN_MAX_BATCH {
		return 0, fmt.Errorf("%s: %d entries: %w", op, n, ErrBatchTooLarge)
	}
	return uint32(n), nil
}

// userPtr is the address of a slice's first element for a params field, 0 when
// empty. The address travels as an integer, which the runtime does not see: a
// slice on the goroutine's stack could move if the stack grows before the
// syscall. Pinning makes the array escape to the heap and stay put until the
// caller's Unpin.
func userPtr[T any](pin *runtime.Pinner, s []T) uint64 {
	if len(s) == 0 {
		return 0
	}
	pin.Pin(&s[0])
	return uint64(uintptr(unsafe.Pointer(&s[0])))
}

// GetInfo issues UVM_VATTN_GET_INFO on fd: the module's ABI version and limits.
// The block passed is zero-padded to 64 bytes: a module of ABI version 1 copied
// a 48-byte block in and out, and must neither read nor write past ours. It
// answers ABIVersion 1 (with its rmStatus where ours reads 0): callers check
// ABIVersion before anything else.
func GetInfo(fd int) (UVM_VATTN_GET_INFO_PARAMS, error) {
	const op = "uvm_vattn_get_info"
	var buf struct {
		p   UVM_VATTN_GET_INFO_PARAMS
		pad [48]byte
	}
	err := issue(op, fd, UVM_VATTN_GET_INFO, unsafe.Pointer(&buf), &buf.p.RMStatus)
	return buf.p, err
}

func gpuLen(op string, gpus [][16]byte) (uint32, error) {
	if len(gpus) == 0 || len(gpus) > UVM_VATTN_MAX_GPUS {
		return 0, fmt.Errorf("%s: %d GPUs, want 1..%d: %w", op, len(gpus), UVM_VATTN_MAX_GPUS, ErrTooManyGPUs)
	}
	return uint32(len(gpus)), nil
}

// MapBatch issues UVM_VATTN_MAP_BATCH: every entry, on every GPU of gpus, from
// the RM memory of client hClient (whose control file is rmCtrlFd). All or
// nothing: on error nothing is mapped and ErrorIndex names the failed entry (or
// len(entries) when the failure was no one entry's).
func MapBatch(fd int, entries []UVM_VATTN_MAP_ENTRY, gpus [][16]byte, rmCtrlFd int32, hClient uint32) (UVM_VATTN_MAP_BATCH_PARAMS, error) {
	const op = "uvm_vattn_map_batch"
	n, err := batchLen(op, len(entries))
	if err != nil {
		return UVM_VATTN_MAP_BATCH_PARAMS{}, err
	}
	ng, err := gpuLen(op, gpus)
	if err != nil {
		return UVM_VATTN_MAP_BATCH_PARAMS{}, err
	}
	var pin runtime.Pinner
	p := UVM_VATTN_MAP_BATCH_PARAMS{
		Entries: userPtr(&pin, entries), GpuUuids: userPtr(&pin, gpus), Count: n, GpuCount: ng,
		RmCtrlFd: rmCtrlFd, HClient: hClient,
	}
	err = issue(op, fd, UVM_VATTN_MAP_BATCH, unsafe.Pointer(&p), &p.RMStatus)
	pin.Unpin()
	return p, err
}

// UnmapBatch issues UVM_VATTN_UNMAP_BATCH: every mapping of gpus inside the
// entries goes (mappings crossing an entry's ends are split). The caller must
// have waited for GPU work that uses them (see the header's fences).
func UnmapBatch(fd int, entries []UVM_VATTN_UNMAP_ENTRY, gpus [][16]byte) (UVM_VATTN_UNMAP_BATCH_PARAMS, error) {
	const op = "uvm_vattn_unmap_batch"
	n, err := batchLen(op, len(entries))
	if err != nil {
		return UVM_VATTN_UNMAP_BATCH_PARAMS{}, err
	}
	ng, err := gpuLen(op, gpus)
	if err != nil {
		return UVM_VATTN_UNMAP_BATCH_PARAMS{}, err
	}
	var pin runtime.Pinner
	p := UVM_VATTN_UNMAP_BATCH_PARAMS{Entries: userPtr(&pin, entries), GpuUuids: userPtr(&pin, gpus), Count: n, GpuCount: ng}
	err = issue(op, fd, UVM_VATTN_UNMAP_BATCH, unsafe.Pointer(&p), &p.RMStatus)
	pin.Unpin()
	return p, err
}
