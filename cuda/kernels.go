package cuda

import (
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

//go:embed kernels.ptx
var kernelsPTX []byte

// Pattern is the 32-bit word the fill kernel writes at word w of page p
// with tag t; host-side checks compare against it.
func Pattern(page, word, tag uint32) uint32 { return (page<<20 | word) ^ tag }

// Kernels are vattn's verification kernels, loaded into one context: fill a
// range with a per-page pattern, count the words that differ from it, and
// keep the GPU busy for a given number of cycles.
type Kernels struct {
	mod                        Module
	fill, verify, spin, sample Function
	counter                    DevicePtr // 8-byte mismatch counter, at the start of a 2 MiB scratch page
	counterSize                uint64
	counterPage                MemHandle
	counterMapped              bool
}

// LoadKernels JIT-compiles the embedded PTX and sets up the scratch counter.
// dev is the device whose memory holds the counter.
func LoadKernels(b Bound, dev Device) (k *Kernels, err error) {
	k = &Kernels{}
	defer func() {
		if err != nil {
			err = errors.Join(err, k.Close(b))
			k = nil
		}
	}()
	if k.mod, err = b.ModuleLoadData(kernelsPTX); err != nil {
		return k, fmt.Errorf("load verification kernels: %w", err)
	}
	for _, f := range []struct {
		name string
		dst  *Function
	}{{"vattn_fill", &k.fill}, {"vattn_verify", &k.verify}, {"vattn_spin", &k.spin}, {"vattn_sample", &k.sample}} {
		if *f.dst, err = b.ModuleGetFunction(k.mod, f.name); err != nil {
			return k, fmt.Errorf("load verification kernels: %w", err)
		}
	}
	prop := DeviceProp(dev)
	if k.counterSize, err = b.Granularity(&prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM); err != nil {
		return k, fmt.Errorf("verification counter: %w", err)
	}
	if k.counter, err = b.AddressReserve(k.counterSize, k.counterSize); err != nil {
		return k, fmt.Errorf("verification counter: %w", err)
	}
	if k.counterPage, err = b.MemCreate(k.counterSize, &prop); err != nil {
		return k, fmt.Errorf("verification counter: %w", err)
	}
	if err = b.MemMap(k.counter, k.counterSize, k.counterPage); err != nil {
		return k, fmt.Errorf("verification counter: %w", err)
	}
	k.counterMapped = true
	access := AccessDesc{Location: prop.Location, Flags: CU_MEM_ACCESS_FLAGS_PROT_READWRITE}
	if err = b.SetAccess(k.counter, k.counterSize, &access); err != nil {
		return k, fmt.Errorf("verification counter: %w", err)
	}
	return k, nil
}

// Close frees the module and the counter.
func (k *Kernels) Close(b Bound) error {
	var errs []error
	if k.counterMapped {
		errs = append(errs, b.MemUnmap(k.counter, k.counterSize))
		k.counterMapped = false
	}
	if k.counterPage != 0 {
		errs = append(errs, b.MemRelease(k.counterPage))
		k.counterPage = 0
	}
	if k.counter != 0 {
		errs = append(errs, b.AddressFree(k.counter, k.counterSize))
		k.counter = 0
	}
	if k.mod != 0 {
		errs = append(errs, b.ModuleUnload(k.mod))
		k.mod = 0
	}
	return errors.Join(errs...)
}

// PatternRange describes a range to fill or check: bytes at base, whose
// first page has index Page0, in pages of PageSize bytes, tagged Tag.
type PatternRange struct {
	Base     DevicePtr
	Bytes    uint64
	PageSize uint64
	Page0    uint32
	Tag      uint32
}

func (r PatternRange) args() (nwords uint64, shift uint32, err error) {
	words := r.PageSize / 4
	if r.PageSize == 0 || words&(words-1) != 0 || words > 1<<20 {
		return 0, 0, fmt.Errorf("pattern page size %d: not a power of two up to 4 MiB", r.PageSize)
	}
	if r.Bytes%4 != 0 {
		return 0, 0, fmt.Errorf("pattern range of %d bytes: not whole words", r.Bytes)
	}
	return r.Bytes / 4, uint32(bits.TrailingZeros64(words)), nil
}

func grid(nwords uint64) uint32 {
	const block = 256
	g := (nwords + block - 1) / block
	if g > 132*32 {
		g = 132 * 32
	}
	if g == 0 {
		g = 1
	}
	return uint32(g)
}

// Fill launches the fill kernel on s.
func (k *Kernels) Fill(b Bound, s Stream, r PatternRange) error {
	n, shift, err := r.args()
	if err != nil {
		return err
	}
	return b.Launch(k.fill, grid(n), 256, s, uint64(r.Base), n, uint64(shift), uint64(r.Page0), uint64(r.Tag))
}

// Mismatches runs the verify kernel on s, waits for it, and returns how
// many words of the range differ from the pattern.
func (k *Kernels) Mismatches(b Bound, s Stream, r PatternRange) (uint64, error) {
	n, shift, err := r.args()
	if err != nil {
		return 0, err
	}
	if err := b.MemsetD32(k.counter, 0, 2); err != nil {
		return 0, err
	}
	// The memset is ordered on the legacy stream only; s may not wait for it.
	if err := b.StreamSynchronize(0); err != nil {
		return 0, err
	}
	if err := b.Launch(k.verify, grid(n), 256, s, uint64(r.Base), n, uint64(shift), uint64(r.Page0), uint64(r.Tag), uint64(k.counter)); err != nil {
		return 0, err
	}
	if err := b.StreamSynchronize(s); err != nil {
		return 0, err
	}
	var buf [8]byte
	if err := b.CopyDtoH(buf[:], k.counter); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(buf[:]), nil
}

// sampleOffset is where, in the counter's scratch page, samples are
// gathered: past the counter, cache-line aligned.
const sampleOffset = 256

// Samples reads, through the GPU, the first and the last words words of
// every page of r: a kernel gathers them into the scratch page and the host
// copies them from there. This is for memory that CUDA's copy functions
// refuse because CUDA did not map it (nvidia-uvm external mappings). The
// result holds 2*words words a page, in page order.
func (k *Kernels) Samples(b Bound, s Stream, r PatternRange, words uint32) ([]uint32, error) {
	pageWords := r.PageSize / 4
	if words == 0 || uint64(2*words) > pageWords || r.PageSize == 0 || r.Bytes%r.PageSize != 0 {
		return nil, fmt.Errorf("sample %d words a page of %d-byte pages over %d bytes: bad arguments", words, r.PageSize, r.Bytes)
	}
	per := uint64(2*words) * 4
	batch := (k.counterSize - sampleOffset) / per
	if batch == 0 {
		return nil, fmt.Errorf("sample %d words a page: more than the %d-byte scratch page holds", words, k.counterSize-sampleOffset)
	}
	pages := r.Bytes / r.PageSize
	out := make([]uint32, 0, pages*uint64(2*words))
	buf := make([]byte, batch*per)
	for lo := uint64(0); lo < pages; lo += batch {
		n := min(batch, pages-lo)
		total := n * uint64(2*words)
		base := uint64(r.Base) + lo*r.PageSize
		if err := b.Launch(k.sample, grid(total), 256, s, uint64(k.counter)+sampleOffset, base, total, pageWords, uint64(words)); err != nil {
			return nil, err
		}
		if err := b.StreamSynchronize(s); err != nil {
			return nil, err
		}
		if err := b.CopyDtoH(buf[:total*4], k.counter+sampleOffset); err != nil {
			return nil, err
		}
		for i := range total {
			out = append(out, binary.LittleEndian.Uint32(buf[4*i:]))
		}
	}
	return out, nil
}

// Spin launches one thread that busy-waits cycles SM clocks on s.
func (k *Kernels) Spin(b Bound, s Stream, cycles uint64) error {
	return b.Launch(k.spin, 1, 1, s, cycles)
}
