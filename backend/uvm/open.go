package uvm

import (
	"fmt"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/cuda"
)

// Paths through nvidia-uvm, for Options.Mode. Both map RM memory into UVM
// external ranges; they differ in the calls that do it.
const (
	ModeAuto    = ""        // the vattn module's batched commands where it is loaded, else the stock driver
	ModeStock   = "stock"   // NVIDIA's driver as shipped: one call per run of pages
	ModePatched = "patched" // the vattn module's batched commands; ErrNotPatched without it
)

// What Pages.Path answers.
const (
	PathStock   = "stock"   // one UVM_MAP_EXTERNAL_ALLOCATION / UVM_UNMAP_EXTERNAL per run
	PathBatched = "batched" // one UVM_VATTN_MAP_BATCH / UVM_VATTN_UNMAP_BATCH per batch
)

// Pages is a backend of this package, on either path, with what the admin
// tools use beside backend.Backend.
type Pages interface {
	backend.Backend
	// Mode is ModeStock or ModePatched.
	Mode() string
	// Path is PathStock or PathBatched; PathDetail says why, in one line.
	Path() string
	PathDetail() string
	// Device is the GPU.
	Device() cuda.DeviceInfo
	// Fill writes a per-page pattern over a mapped range with a GPU kernel.
	Fill(addr, size uint64, tag uint32) error
	// Check verifies what Fill wrote.
	Check(addr, size uint64, page0, tag uint32) (CheckResult, error)
	// Held counts reserved regions, pages handed out and mapped pages.
	Held() (regions, pages, mapped int)
}

var _ Pages = (*Stock)(nil)

// Open returns a backend on the path opts.Mode asks for. The backend probes
// the module once, on CUDA's own UVM file, when it opens: in ModeAuto it
// takes the batched commands where they answer, else the stock calls.
func Open(opts Options) (Pages, error) {
	switch opts.Mode {
	case ModeStock, ModePatched, ModeAuto:
		return NewStock(opts)
	}
	return nil, fmt.Errorf("uvm: mode %q: want %q, %q or auto: %w", opts.Mode, ModeStock, ModePatched, backend.ErrBadArgument)
}
