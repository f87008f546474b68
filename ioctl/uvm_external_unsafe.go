package ioctl

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Syscall sends one ioctl through the package's syscall seam (see SetRawIoctl),
// so a test that fakes the driver sees the RM escapes of ioctl/rm as well as the
// UVM commands. It is for ioctl/rm; arg must point to memory the Go runtime
// keeps alive and in place for the call (a params struct the caller holds).
func Syscall(fd int, cmd uint32, arg unsafe.Pointer) unix.Errno {
	return rawIoctl(fd, cmd, arg)
}

// alignedBuf returns n zero bytes at an 8-byte aligned address, as the C blocks
// (which hold NvU64 fields) are laid out.
func alignedBuf(n uintptr) []byte {
	words := make([]uint64, (n+7)/8)
	return unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), n)
}

// issueStruct runs a stock command whose block is a Go struct. Errno first,
// then the status the driver wrote into the block. These commands are known to
// every nvidia-uvm, so errno is only an errno.
func issueStruct[P any](op string, fd int, cmd uint32, p *P, status *Status) error {
	errno := rawIoctl(fd, cmd, unsafe.Pointer(p))
	runtime.KeepAlive(p)
	if errno != 0 {
		return fmt.Errorf("%s: %w", op, errno)
	}
	if err := status.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// issueBuf runs a stock command whose block was encoded into buf, with the
// status at byte statusOff.
func issueBuf(op string, fd int, cmd uint32, buf []byte, statusOff uintptr) error {
	errno := rawIoctl(fd, cmd, unsafe.Pointer(&buf[0]))
	runtime.KeepAlive(buf)
	if errno != 0 {
		return fmt.Errorf("%s: %w", op, errno)
	}
	if err := Status(ne.Uint32(buf[statusOff:])).Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}
