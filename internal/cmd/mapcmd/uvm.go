package mapcmd

import (
	"fmt"

	"github.com/vattn/vattn/backend/uvm"
)

func init() { Backends["uvm"] = openUVM }

// openUVM opens the patched-driver backend; on a stock driver it fails with
// uvm.ErrNotPatched (exit code 3, not supported).
func openUVM(o Options) (*Opened, error) {
	lib, err := cudaLib()
	if err != nil {
		return nil, err
	}
	b, err := uvm.New(uvm.Options{Device: o.Device, PageSize: o.PageSize, Lib: lib})
	if err != nil {
		return nil, err
	}
	d := b.Device()
	check := func(addr, size uint64, tag uint32) (VerifyResult, error) {
		r, err := b.Check(addr, size, 0, tag)
		return VerifyResult{r.Pages, size / 4, r.GPUMismatches, r.HostSampled, r.HostMismatches, r.OK()}, err
	}
	return &Opened{
		Backend: b,
		Device:  fmt.Sprintf("GPU %d: %s (%s)", d.Index, d.Name, d.UUID),
		Driver:  fmt.Sprintf("CUDA %s (%s), vattn ABI %d", lib.DriverVersionString(), lib.Path, b.Probe().ABIVersion),
		Fill:    b.Fill,
		Check:   check,
		Held:    b.Held,
	}, nil
}
