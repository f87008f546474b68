package simulate

import (
	"fmt"
	"math"
)

// MaxAddressSpace is the GPU virtual address space one simulation may
// reserve: 2^47 bytes, what CUDA offers a process on x86-64. A
// configuration needing more could never be reserved on a real GPU.
const MaxAddressSpace = 1 << 47

// LimitError is a setting beyond what the simulation can honestly do, with
// the largest value that works.
type LimitError struct {
	Setting string // the Config field, named as the CLI flag: "max batch"
	Value   int
	Max     int
	Why     string
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%s %d: %s (at most %d)", e.Setting, e.Value, e.Why, e.Max)
}

func (e *LimitError) Unwrap() error { return ErrConfig }

// shape is the KV-cache shape with the given number of request slots.
func (cfg *Config) shape(slots int) Shape {
	return Shape{Layers: cfg.Model.Layers, KVHeads: cfg.Model.KVHeads, HeadDim: cfg.Model.HeadDim,
		DTypeBytes: cfg.DTypeBytes, MaxBatch: slots, MaxContext: cfg.MaxContext}
}

// budget is the KV memory of one GPU: what the weights leave of the usable
// memory, in whole 2 MiB root chunks.
func (cfg *Config) budget() (uint64, error) {
	weights := cfg.Model.WeightBytes(cfg.DTypeBytes) // one rank's share
	usable := uint64(float64(cfg.GPUMemory) * cfg.MemUtil)
	if weights >= usable || (usable-weights)>>21 == 0 {
		return 0, fmt.Errorf("%w: %s weights (%d GiB per GPU at tp %d) leave no room for KV in %d GiB × %.2f",
			ErrConfig, cfg.Model.Name, weights>>30, cfg.Model.TP, cfg.GPUMemory>>30, cfg.MemUtil)
	}
	return (usable - weights) &^ (2<<20 - 1), nil
}

// Check fills in defaults and checks the configuration, and what its sizes
// imply, before any work: the KV budget must exist, every vattn
// configuration's reservation must fit the GPU's virtual address space, and
// MaxBatch must not exceed the requests that could ever be in memory at
// once. It does not look at the trace. Errors wrap ErrConfig; limits are a
// *LimitError.
func (cfg *Config) Check() error {
	if err := cfg.defaults(); err != nil {
		return err
	}
	budget, err := cfg.budget()
	if err != nil {
		return err
	}
	sh := cfg.shape(1)
	perLayerToken := uint64(sh.KVHeads) * uint64(sh.HeadDim) * uint64(sh.DTypeBytes)
	// The smallest memory one running request can hold, over every
	// configuration asked for: the most permissive bound on the batch.
	smallest := math.Inf(1)
	for _, l := range cfg.Layouts {
		ranges, token := float64(2*sh.Layers), perLayerToken
		if l == Megacache {
			ranges, token = 2, perLayerToken*uint64(sh.Layers)
		}
		for _, ps := range cfg.PageSizes {
			slot := float64(ps.RoundUp(min(uint64(cfg.MaxContext)*token, 1<<62)))
			if va := slot * ranges * float64(cfg.MaxBatch); va > MaxAddressSpace {
				return &LimitError{Setting: "max batch", Value: cfg.MaxBatch, Max: int(MaxAddressSpace / (slot * ranges)),
					Why: fmt.Sprintf("vattn %s %s needs %s of virtual address space for %d-token slots; a GPU has %s",
						ps.Short(), l, formatSize(va), cfg.MaxContext, formatSize(MaxAddressSpace))}
			}
			smallest = min(smallest, ranges*float64(ps.RoundUp(token)))
		}
	}
	for _, bt := range cfg.PagedBlock {
		smallest = min(smallest, float64(bt)*float64(sh.TokenBytes()))
	}
	if fit := float64(budget) / smallest; !math.IsInf(smallest, 1) && float64(cfg.MaxBatch) > fit {
		return &LimitError{Setting: "max batch", Value: cfg.MaxBatch, Max: max(1, int(fit)),
			Why: fmt.Sprintf("the %s KV budget holds at most %d requests at once, even of one token, in any configuration asked for",
				formatSize(float64(budget)), int(fit))}
	}
	return nil
}

// formatSize prints a byte count with a binary unit.
func formatSize(b float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	i := 0
	for b >= 1024 && i < len(units)-1 {
		b /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %s", b, units[i])
}
