package uvm

import "github.com/vattn/vattn/ioctl"

// StockDriver is what the stock-driver path needs from NVIDIA's resource
// manager (RM) and from nvidia-uvm's stock commands: video memory in large
// allocations, external ranges over reserved virtual addresses, and
// mappings of slices of that memory into them. One StockDriver serves one
// GPU of one process: its RM client is the process's own (opened on
// /dev/nvidiactl), its UVM commands go to CUDA's own va_space file.
//
// The real implementation issues the ioctls with the layouts of the running
// driver's branch; tests pass a fake (package stockfake) that models the
// driver's checks and injects failures.
//
// Every method either does all it was asked or nothing; an error wraps an
// ioctl.Status where the driver answered one, so callers can branch on
// NV_ERR_NO_MEMORY and friends.
type StockDriver interface {
	// Branch names the driver version whose ABI tables are in use
	// ("580.159.04"); informational.
	Branch() string
	// AllocVidmem allocates bytes of video memory (a multiple of 2 MiB) in
	// RM pages of rmPage bytes (64 KiB or 2 MiB) and returns its RM handle.
	AllocVidmem(bytes, rmPage uint64) (handle uint32, err error)
	// FreeVidmem frees an allocation. UVM keeps its own reference to memory
	// that is still mapped, so callers unmap first.
	FreeVidmem(handle uint32) error
	// CreateRange makes [base, base+length) an external range: UVM's record
	// of a virtual range whose mappings the caller manages.
	CreateRange(base, length uint64) error
	// Map maps bytes [offset, offset+length) of allocation handle at base,
	// inside one external range, for this driver's GPU.
	Map(base, length uint64, handle uint32, offset uint64) error
	// Unmap removes every mapping in [base, base+length), inside one
	// external range.
	Unmap(base, length uint64) error
	// FreeRange destroys the external range at base (and any mapping left
	// in it). It must precede cuMemAddressFree of the addresses.
	FreeRange(base, length uint64) error
	// Close frees the RM client and so every allocation still held. The
	// driver is unusable afterwards.
	Close() error
}

// StockTarget says which GPU, in which process file, a StockDriver serves.
type StockTarget struct {
	UVMFD int      // CUDA's va_space file on /dev/nvidia-uvm (ProbeProcess finds it)
	UUID  [16]byte // the GPU, as CUDA and UVM name it
}

// BatchDriver is a StockDriver on the vattn module: it also maps and unmaps
// many runs in one call (UVM_VATTN_MAP_BATCH and UVM_VATTN_UNMAP_BATCH), into
// the same external ranges from the same RM memory, each call all or nothing.
// The mappings it makes are UVM's own records, so StockDriver's Unmap and
// FreeRange undo them too.
type BatchDriver interface {
	StockDriver
	// MaxBatch is the most entries one call takes.
	MaxBatch() int
	// MapBatch maps every entry (HMemory is an allocation of AllocVidmem)
	// or none.
	MapBatch(entries []ioctl.UVM_VATTN_MAP_ENTRY) error
	// UnmapBatch removes every mapping inside the entries, or none.
	UnmapBatch(entries []ioctl.UVM_VATTN_UNMAP_ENTRY) error
}
