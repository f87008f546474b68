package ioctl

import "fmt"

// StockUVM issues the stock external-range commands with one branch's layouts
// on a /dev/nvidia-uvm file (CUDA's va_space file: these commands answer
// NV_ERR_ILLEGAL_ACTION on any other). It reuses one parameter buffer for the
// blocks that differ between branches (9 KiB from 550 on), so one value serves
// one goroutine at a time; the driver serializes these commands anyway.
type StockUVM struct {
	layout *StockLayout
	mapBuf []byte
	freBuf []byte
}

// NewStockUVM returns the commands for the branch whose layouts l holds.
func NewStockUVM(l *StockLayout) *StockUVM {
	return &StockUVM{
		layout: l,
		mapBuf: alignedBuf(l.MapExternal.Size),
		freBuf: alignedBuf(l.Free.Size),
	}
}

// Layout is the layout the commands use.
func (s *StockUVM) Layout() *StockLayout { return s.layout }

// CreateExternalRange issues UVM_CREATE_EXTERNAL_RANGE: [base, base+length) becomes
// a range whose mappings the caller manages. The addresses must be reserved
// (cuMemAddressReserve) and untouched by UVM.
func (s *StockUVM) CreateExternalRange(fd int, base, length uint64) error {
	p := UVM_CREATE_EXTERNAL_RANGE_PARAMS{Base: base, Length: length}
	return issueStruct("uvm_create_external_range", fd, UVM_CREATE_EXTERNAL_RANGE, &p, &p.RmStatus)
}

// MapExternalAllocation issues UVM_MAP_EXTERNAL_ALLOCATION for m.
func (s *StockUVM) MapExternalAllocation(fd int, m ExternalMapping) error {
	const op = "uvm_map_external_allocation"
	l := &s.layout.MapExternal
	if err := l.Encode(s.mapBuf, m); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return issueBuf(op, fd, UVM_MAP_EXTERNAL_ALLOCATION, s.mapBuf, l.RmStatus)
}

// UnmapExternal issues UVM_UNMAP_EXTERNAL: every mapping in [base, base+length)
// of the GPU gpu goes.
func (s *StockUVM) UnmapExternal(fd int, base, length uint64, gpu [16]byte) error {
	p := UVM_UNMAP_EXTERNAL_PARAMS{Base: base, Length: length, GpuUuid: gpu}
	return issueStruct("uvm_unmap_external", fd, UVM_UNMAP_EXTERNAL, &p, &p.RmStatus)
}

// Free issues UVM_FREE for the range at base (length is passed on the branches
// that have the field, before 590).
func (s *StockUVM) Free(fd int, base, length uint64) error {
	l := &s.layout.Free
	l.Encode(s.freBuf, base, length)
	return issueBuf("uvm_free", fd, UVM_FREE, s.freBuf, l.RmStatus)
}
