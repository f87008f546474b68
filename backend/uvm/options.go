// Package uvm gives small pages (64 KiB to 2 MiB) on nvidia-uvm: virtual ranges
// reserved with cuMemAddressReserve, each made one of UVM's external ranges, and
// RM video memory mapped into them on CUDA's own /dev/nvidia-uvm file, so that
// the page tables written are the ones CUDA kernels walk (the Stock backend).
// Two paths issue the mappings: NVIDIA's stock driver, one
// UVM_MAP_EXTERNAL_ALLOCATION per run of pages, and, where the vattn module is
// loaded, its batched commands (kernel/nvidia-uvm-patch/uvm_vattn_ioctl.h): one
// call for a whole batch of runs, the same ranges, memory and pages. The path
// is probed once, when the backend opens.
//
// It also answers the question every tool asks first, is the vattn module
// loaded, with ProbeDevice (admin tools, no CUDA) and ProbeProcess (inside a
// process with a CUDA context).
//
// Neither driver sees CUDA streams, so, as with the cudavmm backend, pages are
// unmapped only after a CUDA event shows that the GPU work reading them has
// finished.
package uvm

import (
	"fmt"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/backend/internal/gpumem"
	"github.com/vattn/vattn/cuda"
	"github.com/vattn/vattn/pagesize"
)

// ErrNotPatched: nvidia-uvm is the stock module, without the vattn commands.
var ErrNotPatched = fmt.Errorf("nvidia-uvm is not patched for vattn; install the patched module with 'vattnctl install-driver': %w", backend.ErrUnavailable)

// Options configure a backend.
type Options struct {
	// Device is the GPU: an index or UUID as nvidia-smi's -i takes; "" is GPU 0.
	Device string
	// PageSize is the physical page size; 64 KiB when zero. The driver says
	// which sizes each GPU supports.
	PageSize pagesize.Size
	// Stream is the stream whose work the fence tracks (0: the legacy default
	// stream, which orders after every blocking stream).
	Stream cuda.Stream
	// Lib is the driver to use; nil loads libcuda (tests pass a fake).
	Lib *cuda.Lib
	// Mode picks the path for Open: ModeAuto (the patched module where it
	// is loaded, else the stock driver), ModeStock or ModePatched.
	Mode string
	// ChunkBytes is the size of the RM allocations the stock path carves
	// pages from (a multiple of 2 MiB); DefaultChunkBytes when zero.
	ChunkBytes uint64
	// StockDriver stands in for RM and UVM on the stock path; nil opens the
	// real driver (tests pass a fake).
	StockDriver StockDriver
}

// device loads libcuda (unless opts.Lib is given), selects the GPU and
// checks the page size (64 KiB when zero): what both paths do first.
func (opts Options) device() (*cuda.Lib, cuda.DeviceInfo, pagesize.Size, error) {
	lib := opts.Lib
	if lib == nil {
		var err error
		if lib, err = cuda.Load(); err != nil {
			return nil, cuda.DeviceInfo{}, 0, fmt.Errorf("uvm: %w", err)
		}
	}
	dev, err := lib.SelectDevice(opts.Device)
	if err != nil {
		return nil, cuda.DeviceInfo{}, 0, fmt.Errorf("uvm: %w", err)
	}
	size := opts.PageSize
	if size == 0 {
		size = pagesize.Size64K
	}
	if !size.Valid() {
		return nil, cuda.DeviceInfo{}, 0, fmt.Errorf("uvm: page size %s: %w", size, pagesize.ErrUnsupported)
	}
	return lib, dev, size, nil
}

// uuidBytes parses the UUID cuda formatted ("GPU-xxxxxxxx-…") back into bytes.
func uuidBytes(d cuda.DeviceInfo) []byte {
	out := make([]byte, 0, 16)
	var hi byte
	n := 0
	for _, c := range []byte(d.UUID[len("GPU-"):]) {
		var v byte
		switch {
		case c >= '0' && c <= '9':
			v = c - '0'
		case c >= 'a' && c <= 'f':
			v = c - 'a' + 10
		default:
			continue
		}
		if n%2 == 0 {
			hi = v << 4
		} else {
			out = append(out, hi|v)
		}
		n++
	}
	return out
}

// CheckResult reports a pattern check (see package gpumem, which the
// cudavmm backend shares).
type CheckResult = gpumem.CheckResult
