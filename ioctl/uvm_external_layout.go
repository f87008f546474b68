package ioctl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
)

// StockLayout says where one driver branch keeps the fields of the parameter
// blocks that differ between branches. Offsets and sizes come from the branch's Go
// types by reflection, so none is typed by hand; ioctl/branch's TestStockABI
// checks those types against NVIDIA's headers of every branch.
type StockLayout struct {
	MapExternal MapExternalLayout
	Free        FreeLayout
}

// The layouts of the branches vattn knows (ioctl/branch says which branch uses
// which).
var (
	StockLayout535 = newStockLayout[UVM_MAP_EXTERNAL_ALLOCATION_PARAMS_535, UVM_FREE_PARAMS_535]()
	StockLayout550 = newStockLayout[UVM_MAP_EXTERNAL_ALLOCATION_PARAMS_550, UVM_FREE_PARAMS_535]()
	StockLayout590 = newStockLayout[UVM_MAP_EXTERNAL_ALLOCATION_PARAMS_550, UVM_FREE_PARAMS_590]()
)

// MapExternalLayout places UVM_MAP_EXTERNAL_ALLOCATION_PARAMS.
type MapExternalLayout struct {
	Type    reflect.Type // the branch's Go mirror
	Size    uintptr
	MaxGPUs int // entries in perGpuAttributes

	Base, Length, Offset, PerGpuAttributes, GpuAttributesCount uintptr
	RmCtrlFd, HClient, HMemory, RmStatus                       uintptr
}

// FreeLayout places UVM_FREE_PARAMS.
type FreeLayout struct {
	Type      reflect.Type
	Size      uintptr
	HasLength bool // false from 590 on
	Base      uintptr
	Length    uintptr // meaningful only when HasLength
	RmStatus  uintptr
}

// ExternalMapping is what UVM_MAP_EXTERNAL_ALLOCATION is asked, whatever the
// branch: map bytes [Offset, Offset+Length) of the RM allocation HMemory of client
// HClient (on the RM control file RmCtrlFd) at Base, for the GPUs listed.
type ExternalMapping struct {
	Base, Length, Offset uint64
	GPUs                 []UvmGpuMappingAttributes
	RmCtrlFd             int32
	HClient, HMemory     uint32
}

// ErrTooManyGPUs: more per-GPU entries than the branch's block holds.
var ErrTooManyGPUs = errors.New("more GPUs than UVM_MAP_EXTERNAL_ALLOCATION_PARAMS holds")

// ne is the byte order of the kernel the blocks go to: the machine's own.
var ne = binary.NativeEndian

// Encode writes m into buf (Size bytes, zeroed first: every field not named
// in m is 0, as the C callers' memset leaves it).
func (l *MapExternalLayout) Encode(buf []byte, m ExternalMapping) error {
	if len(m.GPUs) > l.MaxGPUs {
		return fmt.Errorf("%d entries, %d allowed: %w", len(m.GPUs), l.MaxGPUs, ErrTooManyGPUs)
	}
	buf = buf[:l.Size]
	clear(buf)
	ne.PutUint64(buf[l.Base:], m.Base)
	ne.PutUint64(buf[l.Length:], m.Length)
	ne.PutUint64(buf[l.Offset:], m.Offset)
	for i, g := range m.GPUs {
		putMappingAttributes(buf[l.PerGpuAttributes+uintptr(i)*attrLayout.size:], g)
	}
	ne.PutUint64(buf[l.GpuAttributesCount:], uint64(len(m.GPUs)))
	ne.PutUint32(buf[l.RmCtrlFd:], uint32(m.RmCtrlFd))
	ne.PutUint32(buf[l.HClient:], m.HClient)
	ne.PutUint32(buf[l.HMemory:], m.HMemory)
	return nil
}

// Status reads rmStatus back from an encoded block.
func (l *MapExternalLayout) Status(buf []byte) Status {
	return Status(ne.Uint32(buf[l.RmStatus:]))
}

// Encode writes the range [base, base+length) into buf (Size bytes, zeroed
// first). Branches without the length field get only base: they free the range
// that starts there, whatever its length.
func (l *FreeLayout) Encode(buf []byte, base, length uint64) {
	buf = buf[:l.Size]
	clear(buf)
	ne.PutUint64(buf[l.Base:], base)
	if l.HasLength {
		ne.PutUint64(buf[l.Length:], length)
	}
}

// Status reads rmStatus back from an encoded block.
func (l *FreeLayout) Status(buf []byte) Status {
	return Status(ne.Uint32(buf[l.RmStatus:]))
}

// attrLayout places UvmGpuMappingAttributes' fields, the same on every branch.
var attrLayout = func() (a struct {
	size                                                     uintptr
	uuid, mapping, caching, format, elementBits, compression uintptr
}) {
	t := reflect.TypeFor[UvmGpuMappingAttributes]()
	off := fieldOffsets(t)
	a.size = t.Size()
	a.uuid = off.must("GpuUuid")
	a.mapping = off.must("GpuMappingType")
	a.caching = off.must("GpuCachingType")
	a.format = off.must("GpuFormatType")
	a.elementBits = off.must("GpuElementBits")
	a.compression = off.must("GpuCompressionType")
	return a
}()

func putMappingAttributes(b []byte, g UvmGpuMappingAttributes) {
	copy(b[attrLayout.uuid:attrLayout.uuid+16], g.GpuUuid[:])
	ne.PutUint32(b[attrLayout.mapping:], g.GpuMappingType)
	ne.PutUint32(b[attrLayout.caching:], g.GpuCachingType)
	ne.PutUint32(b[attrLayout.format:], g.GpuFormatType)
	ne.PutUint32(b[attrLayout.elementBits:], g.GpuElementBits)
	ne.PutUint32(b[attrLayout.compression:], g.GpuCompressionType)
}

func newStockLayout[Map, Free any]() *StockLayout {
	l := &StockLayout{}

	mt := reflect.TypeFor[Map]()
	mo := fieldOffsets(mt)
	m := &l.MapExternal
	m.Type, m.Size = mt, mt.Size()
	m.Base, m.Length, m.Offset = mo.must("Base"), mo.must("Length"), mo.must("Offset")
	m.PerGpuAttributes = mo.must("PerGpuAttributes")
	attrs, _ := mt.FieldByName("PerGpuAttributes")
	if attrs.Type.Kind() != reflect.Array || attrs.Type.Elem() != reflect.TypeFor[UvmGpuMappingAttributes]() {
		panic("ioctl: " + mt.Name() + ".PerGpuAttributes is not an array of UvmGpuMappingAttributes")
	}
	m.MaxGPUs = attrs.Type.Len()
	m.GpuAttributesCount = mo.must("GpuAttributesCount")
	m.RmCtrlFd, m.HClient, m.HMemory = mo.must("RmCtrlFd"), mo.must("HClient"), mo.must("HMemory")
	m.RmStatus = mo.must("RmStatus")

	ft := reflect.TypeFor[Free]()
	fo := fieldOffsets(ft)
	f := &l.Free
	f.Type, f.Size = ft, ft.Size()
	f.Base, f.RmStatus = fo.must("Base"), fo.must("RmStatus")
	f.Length, f.HasLength = fo["Length"]
	return l
}

type offsets map[string]uintptr

func fieldOffsets(t reflect.Type) offsets {
	o := offsets{}
	for i := range t.NumField() {
		o[t.Field(i).Name] = t.Field(i).Offset
	}
	return o
}

// must panics at package init when a layout type lacks a field, which any test
// of the package shows at once.
func (o offsets) must(name string) uintptr {
	v, ok := o[name]
	if !ok {
		panic("ioctl: layout type has no field " + name)
	}
	return v
}
