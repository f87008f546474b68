package ioctl

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Stock nvidia-uvm commands vattn needs around its own: UVM_INITIALIZE to make a
// fresh file a va_space file (uvm_linux_ioctl.h), and UVM_PAGEABLE_MEM_ACCESS
// (uvm_ioctl.h), which answers NV_OK only on a va_space file and so tells CUDA's
// va_space file apart from another /dev/nvidia-uvm file of the same process.
// Numbers and layouts are the same on every driver from 535 to 595.
const (
	UVM_INITIALIZE          = 0x30000001
	UVM_PAGEABLE_MEM_ACCESS = 39
)

// UVM_INITIALIZE_PARAMS is the parameter block of UVM_INITIALIZE (16 bytes).
type UVM_INITIALIZE_PARAMS struct {
	Flags    uint64
	RMStatus Status
	_        uint32
}

// UVM_PAGEABLE_MEM_ACCESS_PARAMS is the parameter block of UVM_PAGEABLE_MEM_ACCESS
// (8 bytes: an NvBool, padding, the status).
type UVM_PAGEABLE_MEM_ACCESS_PARAMS struct {
	PageableMemAccess uint8
	_                 [3]byte
	RMStatus          Status
}

// Initialize issues UVM_INITIALIZE on a freshly opened /dev/nvidia-uvm file.
func Initialize(fd int, flags uint64) (UVM_INITIALIZE_PARAMS, error) {
	p := UVM_INITIALIZE_PARAMS{Flags: flags}
	err := issue("uvm_initialize", fd, UVM_INITIALIZE, unsafe.Pointer(&p), &p.RMStatus)
	return p, err
}

// PageableMemAccess issues UVM_PAGEABLE_MEM_ACCESS. It fails with
// NV_ERR_ILLEGAL_ACTION on a file that is not an initialized va_space file.
func PageableMemAccess(fd int) (UVM_PAGEABLE_MEM_ACCESS_PARAMS, error) {
	var p UVM_PAGEABLE_MEM_ACCESS_PARAMS
	err := issue("uvm_pageable_mem_access", fd, UVM_PAGEABLE_MEM_ACCESS, unsafe.Pointer(&p), &p.RMStatus)
	return p, err
}

// RawIoctl is the signature of the syscall seam every command goes through.
type RawIoctl func(fd int, cmd uint32, arg unsafe.Pointer) unix.Errno

// SetRawIoctl replaces the syscall seam and returns a function restoring the
// previous one. It exists for tests of packages built on this one (backend/uvm)
// that fake the driver; nothing else may call it. Not safe for concurrent use
// with running commands.
func SetRawIoctl(f RawIoctl) (restore func()) {
	old := rawIoctl
	rawIoctl = f
	return func() { rawIoctl = old }
}
