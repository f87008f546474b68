package uvm

import (
	"fmt"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/cuda"
)

// Paths through nvidia-uvm, for Options.Mode.
const (
	ModeAuto    = ""        // the patched module where it is loaded, else the stock driver
	ModeStock   = "stock"   // NVIDIA's driver as shipped: RM memory in UVM external ranges
	ModePatched = "patched" // the vattn module's batched commands
)

// Pages is a backend of this package, on either path, with what the admin
// tools use beside backend.Backend.
type Pages interface {
	backend.Backend
	// Mode is ModeStock or ModePatched.
	Mode() string
	// Device is the GPU.
	Device() cuda.DeviceInfo
	// Fill writes a per-page pattern over a mapped range with a GPU kernel.
	Fill(addr, size uint64, tag uint32) error
	// Check verifies what Fill wrote.
	Check(addr, size uint64, page0, tag uint32) (CheckResult, error)
	// Held counts reserved regions, pages handed out and mapped pages.
	Held() (regions, pages, mapped int)
}

var (
	_ Pages = (*Backend)(nil)
	_ Pages = (*Stock)(nil)
)

// Open returns a backend on the path opts.Mode asks for. In ModeAuto it asks
// the UVM device first (no CUDA context needed) and takes the patched module
// only where its commands answer.
func Open(opts Options) (Pages, error) {
	switch opts.Mode {
	case ModeStock:
		return NewStock(opts)
	case ModePatched:
		return New(opts)
	case ModeAuto:
		if opts.StockDriver == nil {
			if p, err := ProbeDevice(""); err == nil && p.Patched() {
				return New(opts)
			}
		}
		return NewStock(opts)
	}
	return nil, fmt.Errorf("uvm: mode %q: want %q, %q or auto: %w", opts.Mode, ModeStock, ModePatched, backend.ErrBadArgument)
}
