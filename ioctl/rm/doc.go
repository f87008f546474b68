// Package rm is the part of NVIDIA's resource-manager (RM) client ABI that vattn's
// stock-driver path needs: the escapes on /dev/nvidiactl and /dev/nvidiaN that
// open a client of the process's own, find a GPU by UUID, and allocate and free
// video memory that nvidia-uvm can then map (UVM_MAP_EXTERNAL_ALLOCATION, in
// package ioctl).
//
// As in package ioctl, data and logic are apart: escape.go, class.go and
// ctrl0000gpu.go mirror NVIDIA's structs and numbers under their C names
// (nvos.h, nv-ioctl.h, nv-ioctl-numbers.h, nv_escape.h, class/cl00xx.h,
// ctrl/ctrl0000/ctrl0000gpu.h); rm_unsafe.go issues the escapes, through
// ioctl.Syscall so that tests fake RM and UVM in one place; client.go is the one
// typed lifecycle (Open, AllocVidmem, FreeObject, Close). Layouts are the same on
// every branch from 535 to 595 except NV_MEMORY_ALLOCATION_PARAMS; ioctl/branch
// says which Layout a driver uses and checks every struct here against each
// branch's headers.
//
// What the driver frees by itself: closing /dev/nvidiactl frees the RM client and
// every object under it (the process exiting does the same). Measured on an H200
// with 580.159.04, a process that allocated 4 GiB this way, mapped 65,536 pages of
// 64 KiB into CUDA's va_space and exited without freeing anything left no memory
// in use: the RM allocations went with the client, the UVM external ranges with
// CUDA's /dev/nvidia-uvm file.
package rm
