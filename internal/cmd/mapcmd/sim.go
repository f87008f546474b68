package mapcmd

import (
	"fmt"

	"github.com/vattn/vattn/backend/sim"
	"github.com/vattn/vattn/cuda"
)

func init() { Backends["sim"] = openSim }

// openSim opens the simulator: no GPU, every page size, and one word of data
// per page, which is what --verify writes and reads back. Its timings are
// the simulator's own bookkeeping, not a GPU's.
func openSim(o Options) (*Opened, error) {
	if o.Device != "" {
		return nil, fmt.Errorf("-i %q: the sim backend has no GPUs to choose from: %w", o.Device, cuda.ErrDeviceNotFound)
	}
	b, err := sim.New(sim.Config{PageSize: o.PageSize})
	if err != nil {
		return nil, err
	}
	size := o.PageSize.Bytes()
	fill := func(addr, n uint64, tag uint32) error {
		for i := uint64(0); i < n/size; i++ {
			if err := b.Write(addr+i*size, uint64(cuda.Pattern(uint32(i), 0, tag))); err != nil {
				return err
			}
		}
		return nil
	}
	check := func(addr, n uint64, tag uint32) (VerifyResult, error) {
		res := VerifyResult{Pages: int(n / size)}
		for i := uint64(0); i < n/size; i++ {
			v, err := b.Read(addr + i*size)
			if err != nil {
				return res, err
			}
			res.HostSampledWords++
			if v != uint64(cuda.Pattern(uint32(i), 0, tag)) {
				res.HostMismatched++
			}
		}
		res.OK = res.HostMismatched == 0
		return res, nil
	}
	held := func() (int, int, int) {
		st := b.Stats()
		return st.Regions, st.PagesAllocated, st.PagesMapped
	}
	return &Opened{Backend: b, Device: "simulated GPU (80 GiB)", Fill: fill, Check: check, Held: held}, nil
}
