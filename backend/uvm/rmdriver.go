package uvm

import (
	"errors"
	"fmt"
	"sync"

	"github.com/vattn/vattn/ioctl"
	"github.com/vattn/vattn/ioctl/branch"
	"github.com/vattn/vattn/ioctl/rm"
)

// driverVersion reads the running kernel driver's version; tests replace it.
var driverVersion = branch.DriverVersion

// errStockClosed: a StockDriver used after Close.
var errStockClosed = errors.New("stock driver closed")

// rmDriver is the StockDriver of the real driver: RM through a client of our own
// (ioctl/rm), UVM commands on CUDA's va_space file (ioctl), with the layouts of
// the running branch (ioctl/branch).
//
// What the kernel frees without us: closing the RM client's /dev/nvidiactl (Close
// does; the process dying does too) frees the client's video memory; UVM's
// external ranges and their mappings belong to CUDA's /dev/nvidia-uvm file and go
// when CUDA closes it or the process dies. UVM holds its own reference on memory
// still mapped, so the GPU never sees freed memory through a stale mapping.
// Measured on an H200 with 580.159.04: a process that mapped 65,536 pages of
// 64 KiB from 4 GiB of RM memory and exited without freeing anything left no
// memory in use.
type rmDriver struct {
	mu      sync.Mutex // guards uvm's reused parameter buffer and closing
	version string
	client  *rm.Client
	uvm     *ioctl.StockUVM
	uvmFD   int
	uuid    [16]byte
	gpus    []ioctl.UvmGpuMappingAttributes
}

// OpenStockDriver opens the stock path for the GPU t.UUID in this process:
// it reads the driver's version and picks its branch's layouts (an unknown
// branch is refused with branch.ErrUnknownBranch), opens an RM client with a
// device and subdevice of that GPU, and issues UVM commands on t.UVMFD, which
// stays CUDA's to close. On error nothing is left open.
func OpenStockDriver(t StockTarget) (StockDriver, error) {
	version, err := driverVersion()
	if err != nil {
		return nil, fmt.Errorf("stock driver: %w", err)
	}
	abi, err := branch.Lookup(version)
	if err != nil {
		return nil, fmt.Errorf("stock driver: %w", err)
	}
	client, err := rm.Open(t.UUID, abi.RM)
	if err != nil {
		return nil, fmt.Errorf("stock driver: RM client for %s: %w", rm.FormatUUID(t.UUID), err)
	}
	return &rmDriver{
		version: version,
		client:  client,
		uvm:     ioctl.NewStockUVM(abi.UVM),
		uvmFD:   t.UVMFD,
		uuid:    t.UUID,
		// One entry, this GPU, with the default mapping and caching types
		// (follow the allocation).
		gpus: []ioctl.UvmGpuMappingAttributes{{GpuUuid: t.UUID}},
	}, nil
}

func (d *rmDriver) Branch() string { return d.version }

func (d *rmDriver) AllocVidmem(bytes, rmPage uint64) (uint32, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.client == nil {
		return 0, errStockClosed
	}
	if bytes == 0 || bytes%rm.PageSize2M != 0 {
		return 0, fmt.Errorf("stock driver: alloc %d bytes: not a positive multiple of 2 MiB", bytes)
	}
	h, err := d.client.AllocVidmem(bytes, rmPage)
	if errors.Is(err, ioctl.NV_ERR_NO_MEMORY) {
		return 0, fmt.Errorf("stock driver: alloc %d MiB of video memory: %w (free GPU memory or reserve less)", bytes>>20, err)
	}
	if err != nil {
		return 0, fmt.Errorf("stock driver: alloc %d MiB of video memory: %w", bytes>>20, err)
	}
	return h, nil
}

func (d *rmDriver) FreeVidmem(handle uint32) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.client == nil {
		return errStockClosed
	}
	if err := d.client.FreeVidmem(handle); err != nil {
		return fmt.Errorf("stock driver: free video memory 0x%08x: %w", handle, err)
	}
	return nil
}

func (d *rmDriver) CreateRange(base, length uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.client == nil {
		return errStockClosed
	}
	if err := d.uvm.CreateExternalRange(d.uvmFD, base, length); err != nil {
		return fmt.Errorf("stock driver: external range [%#x, +%#x): %w%s", base, length, err, uvmHint(err))
	}
	return nil
}

func (d *rmDriver) Map(base, length uint64, handle uint32, offset uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.client == nil {
		return errStockClosed
	}
	err := d.uvm.MapExternalAllocation(d.uvmFD, ioctl.ExternalMapping{
		Base: base, Length: length, Offset: offset,
		GPUs:     d.gpus,
		RmCtrlFd: int32(d.client.ControlFD()),
		HClient:  d.client.Handle(),
		HMemory:  handle,
	})
	if err != nil {
		return fmt.Errorf("stock driver: map [%#x, +%#x) from memory 0x%08x at %#x: %w%s", base, length, handle, offset, err, uvmHint(err))
	}
	return nil
}

func (d *rmDriver) Unmap(base, length uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.client == nil {
		return errStockClosed
	}
	if err := d.uvm.UnmapExternal(d.uvmFD, base, length, d.uuid); err != nil {
		return fmt.Errorf("stock driver: unmap [%#x, +%#x): %w%s", base, length, err, uvmHint(err))
	}
	return nil
}

func (d *rmDriver) FreeRange(base, length uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.client == nil {
		return errStockClosed
	}
	if err := d.uvm.Free(d.uvmFD, base, length); err != nil {
		return fmt.Errorf("stock driver: free external range [%#x, +%#x): %w%s", base, length, err, uvmHint(err))
	}
	return nil
}

// Close frees the RM client (and every allocation still held); the UVM file
// stays open, CUDA's.
func (d *rmDriver) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.client == nil {
		return errStockClosed
	}
	err := d.client.Close()
	d.client = nil
	if err != nil {
		return fmt.Errorf("stock driver: close: %w", err)
	}
	return nil
}

// uvmHint says what to do about the UVM answers a caller can act on.
func uvmHint(err error) string {
	switch {
	case errors.Is(err, ioctl.NV_ERR_ILLEGAL_ACTION):
		return " (the UVM file is not CUDA's va_space file: use the one ProbeProcess finds)"
	case errors.Is(err, ioctl.NV_ERR_UVM_ADDRESS_IN_USE):
		return " (the addresses already hold a range or mapping)"
	case errors.Is(err, ioctl.NV_ERR_INVALID_ADDRESS):
		return " (not inside one external range of this va_space)"
	}
	return ""
}

// rmBatchDriver is the BatchDriver of the vattn module: the stock path's RM
// client and UVM file, plus the batched commands on that file.
type rmBatchDriver struct {
	*rmDriver
	maxBatch int
}

var _ BatchDriver = (*rmBatchDriver)(nil)

// batchDriver returns d with the batched commands when the module on d's UVM
// file answers GET_INFO with the ABI this package speaks; ok is false on the
// stock module (or another ABI), with why.
func batchDriver(d StockDriver) (_ BatchDriver, why string) {
	rd, ok := d.(*rmDriver)
	if !ok {
		return nil, "not the real driver"
	}
	info, err := ioctl.GetInfo(rd.uvmFD)
	switch {
	case err != nil:
		return nil, err.Error()
	case info.ABIVersion != ioctl.UVM_VATTN_ABI_VERSION:
		return nil, fmt.Sprintf("the vattn module speaks ABI %d, this build ABI %d", info.ABIVersion, ioctl.UVM_VATTN_ABI_VERSION)
	}
	return &rmBatchDriver{rmDriver: rd, maxBatch: int(min(info.MaxBatch, ioctl.UVM_VATTN_MAX_BATCH))}, ""
}

func (d *rmBatchDriver) MaxBatch() int { return d.maxBatch }

func (d *rmBatchDriver) MapBatch(entries []ioctl.UVM_VATTN_MAP_ENTRY) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.client == nil {
		return errStockClosed
	}
	p, err := ioctl.MapBatch(d.uvmFD, entries, [][16]byte{d.uuid}, int32(d.client.ControlFD()), d.client.Handle())
	if err != nil {
		return fmt.Errorf("vattn driver: map batch of %d (entry %d): %w%s", len(entries), p.ErrorIndex, err, uvmHint(err))
	}
	return nil
}

func (d *rmBatchDriver) UnmapBatch(entries []ioctl.UVM_VATTN_UNMAP_ENTRY) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.client == nil {
		return errStockClosed
	}
	p, err := ioctl.UnmapBatch(d.uvmFD, entries, [][16]byte{d.uuid})
	if err != nil {
		return fmt.Errorf("vattn driver: unmap batch of %d (entry %d): %w%s", len(entries), p.ErrorIndex, err, uvmHint(err))
	}
	return nil
}
