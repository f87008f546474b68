package mapcmd

import (
	"fmt"

	"github.com/vattn/vattn/backend/uvm"
	"github.com/vattn/vattn/internal/cli"
)

func init() { Backends["uvm"] = openUVM }

// stockDriver stands in for RM and UVM on the stock path; tests set it.
var stockDriver uvm.StockDriver

// openUVM opens pages through nvidia-uvm: the patched module's batched
// commands where it is loaded, else the stock driver's external ranges.
func openUVM(o Options) (*Opened, error) {
	switch o.UVMMode {
	case uvm.ModeAuto, uvm.ModeStock, uvm.ModePatched:
	default:
		return nil, cli.Usagef("--uvm-mode %s: want stock or patched", cli.Quote(o.UVMMode))
	}
	lib, err := cudaLib()
	if err != nil {
		return nil, err
	}
	b, err := uvm.Open(uvm.Options{Device: o.Device, PageSize: o.PageSize, Lib: lib, Mode: o.UVMMode, StockDriver: stockDriver})
	if err != nil {
		return nil, err
	}
	d := b.Device()
	check := func(addr, size uint64, tag uint32) (VerifyResult, error) {
		r, err := b.Check(addr, size, 0, tag)
		return VerifyResult{r.Pages, size / 4, r.GPUMismatches, r.HostSampled, r.HostMismatches, r.OK()}, err
	}
	op := &Opened{
		Backend: b,
		Device:  fmt.Sprintf("GPU %d: %s (%s)", d.Index, d.Name, d.UUID),
		Fill:    b.Fill,
		Check:   check,
		Held:    b.Held,
	}
	if b, ok := b.(*uvm.Stock); ok {
		op.Driver = fmt.Sprintf("CUDA %s (%s), nvidia-uvm %s, %s path (%s)", lib.DriverVersionString(), lib.Path, b.Driver().Branch(), b.Path(), b.PathDetail())
		op.Calls = func() (uint64, uint64) { c := b.Calls(); return c.MapCalls, c.UnmapCalls }
	}
	return op, nil
}
