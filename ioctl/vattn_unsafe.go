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

// GetInfo issues UVM_VATTN_GET_INFO on fd, filling gpus (its length is the capacity).
// The returned params say how many GPUs the va_space has (GPUCount, which may exceed
// len(gpus)) and the pinned-memory figures.
func GetInfo(fd int, gpus []UVM_VATTN_GPU_INFO) (UVM_VATTN_GET_INFO_PARAMS, error) {
	const op = "uvm_vattn_get_info"
	if len(gpus) > UVM_VATTN_MAX_GPUS {
		gpus = gpus[:UVM_VATTN_MAX_GPUS]
	}
	var pin runtime.Pinner
	p := UVM_VATTN_GET_INFO_PARAMS{GPUInfo: userPtr(&pin, gpus), GPUCapacity: uint32(len(gpus))}
	err := issue(op, fd, UVM_VATTN_GET_INFO, unsafe.Pointer(&p), &p.RMStatus)
	pin.Unpin()
	return p, err
}

// Alloc issues UVM_VATTN_ALLOC: len(handles) pages of pageSize bytes on the GPU with
// this UUID; the new handles are written into handles. All or nothing.
func Alloc(fd int, gpuUUID [16]byte, pageSize uint64, handles []uint64) (UVM_VATTN_ALLOC_PARAMS, error) {
	const op = "uvm_vattn_alloc"
	n, err := batchLen(op, len(handles))
	if err != nil {
		return UVM_VATTN_ALLOC_PARAMS{}, err
	}
	var pin runtime.Pinner
	p := UVM_VATTN_ALLOC_PARAMS{GPUUUID: gpuUUID, PageSize: pageSize, Handles: userPtr(&pin, handles), Count: n}
	err = issue(op, fd, UVM_VATTN_ALLOC, unsafe.Pointer(&p), &p.RMStatus)
	pin.Unpin()
	return p, err
}

// Map issues UVM_VATTN_MAP for entries. On error, Done entries were mapped and
// ErrorIndex names the first one that was not.
func Map(fd int, entries []UVM_VATTN_MAP_ENTRY) (UVM_VATTN_MAP_PARAMS, error) {
	const op = "uvm_vattn_map"
	n, err := batchLen(op, len(entries))
	if err != nil {
		return UVM_VATTN_MAP_PARAMS{}, err
	}
	var pin runtime.Pinner
	p := UVM_VATTN_MAP_PARAMS{Entries: userPtr(&pin, entries), Count: n}
	err = issue(op, fd, UVM_VATTN_MAP, unsafe.Pointer(&p), &p.RMStatus)
	pin.Unpin()
	return p, err
}

// Unmap issues UVM_VATTN_UNMAP for the pages this file mapped at addresses. The
// caller must have waited for GPU work that uses them (see the header's fences).
func Unmap(fd int, addresses []uint64) (UVM_VATTN_UNMAP_PARAMS, error) {
	const op = "uvm_vattn_unmap"
	n, err := batchLen(op, len(addresses))
	if err != nil {
		return UVM_VATTN_UNMAP_PARAMS{}, err
	}
	var pin runtime.Pinner
	p := UVM_VATTN_UNMAP_PARAMS{Addresses: userPtr(&pin, addresses), Count: n}
	err = issue(op, fd, UVM_VATTN_UNMAP, unsafe.Pointer(&p), &p.RMStatus)
	pin.Unpin()
	return p, err
}

// Free issues UVM_VATTN_FREE for unmapped pages.
func Free(fd int, handles []uint64) (UVM_VATTN_FREE_PARAMS, error) {
	const op = "uvm_vattn_free"
	n, err := batchLen(op, len(handles))
	if err != nil {
		return UVM_VATTN_FREE_PARAMS{}, err
	}
	var pin runtime.Pinner
	p := UVM_VATTN_FREE_PARAMS{Handles: userPtr(&pin, handles), Count: n}
	err = issue(op, fd, UVM_VATTN_FREE, unsafe.Pointer(&p), &p.RMStatus)
	pin.Unpin()
	return p, err
}

// ReleaseRange issues UVM_VATTN_RELEASE_RANGE: unmap every page of this file inside
// [base, base+length), and free them too when flags has UVM_VATTN_RELEASE_FREE.
func ReleaseRange(fd int, base, length uint64, flags uint32) (UVM_VATTN_RELEASE_RANGE_PARAMS, error) {
	const op = "uvm_vattn_release_range"
	p := UVM_VATTN_RELEASE_RANGE_PARAMS{Base: base, Length: length, Flags: flags}
	err := issue(op, fd, UVM_VATTN_RELEASE_RANGE, unsafe.Pointer(&p), &p.RMStatus)
	return p, err
}
