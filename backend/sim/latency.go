package sim

import (
	"fmt"
	"time"

	"github.com/vattn/vattn/pagesize"
)

// Op names one kind of backend call, for fault injection, statistics and
// the latency model.
type Op int

// The operations a Backend performs.
const (
	OpReserve Op = iota // Reserve: cuMemAddressReserve
	OpRelease           // Release: cuMemAddressFree
	OpAlloc             // AllocPages: cuMemCreate, or the UVM page allocation ioctl
	OpFree              // FreePages: cuMemRelease
	OpMap               // Map: cuMemMap + cuMemSetAccess
	OpUnmap             // Unmap: cuMemUnmap

	// NumOps is the number of operations; Op values run from 0 to NumOps-1.
	NumOps = int(OpUnmap) + 1
)

var opNames = [NumOps]string{"reserve", "release", "alloc", "free", "map", "unmap"}

// String returns the operation's lowercase name ("map").
func (o Op) String() string {
	if o.valid() {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", int(o))
}

func (o Op) valid() bool { return o >= 0 && int(o) < NumOps }

// MarshalText writes the name, so JSON output reads "map" rather than 4.
func (o Op) MarshalText() ([]byte, error) {
	if !o.valid() {
		return nil, fmt.Errorf("marshal op %d: unknown operation", int(o))
	}
	return []byte(opNames[o]), nil
}

// UnmarshalText reads a name written by MarshalText.
func (o *Op) UnmarshalText(b []byte) error {
	for i, n := range opNames {
		if n == string(b) {
			*o = Op(i)
			return nil
		}
	}
	return fmt.Errorf("unmarshal op %q: unknown operation", b)
}

// LatencyModel says how long each operation takes on a real GPU: a fixed
// cost per call plus a cost per page (per reserved page for Reserve and
// Release, where PerPage is normally zero). The simulator adds the modelled
// time to its statistics and, with Config.Sleep, really waits that long.
type LatencyModel struct {
	PerCall [NumOps]time.Duration `json:"per_call_ns"`
	PerPage [NumOps]time.Duration `json:"per_page_ns"`
	// PerRun charges Map and Unmap PerCall once per run of the batch
	// rather than once per call: the stock nvidia-uvm path issues one
	// driver call per run of consecutive addresses (for Map, backed by
	// consecutive slots of one chunk). See Backend.DriverCalls. The
	// simulator's runs are an upper bound of the stock path's: it counts
	// them in the batch's order (the stock path sorts first; kvcache's
	// steps are in address order within each range, its Close is not) and
	// breaks them at its 2 MiB root chunks (the stock path's chunks hold up
	// to 64 MiB).
	PerRun bool `json:"per_run"`
	// Assumed is true when the figures are estimates rather than
	// measurements; output built on them must say so.
	Assumed bool `json:"assumed"`
	// Source tells where the figures come from.
	Source string `json:"source"`
}

// Cost returns the modelled time of one call of op over pages pages.
func (m LatencyModel) Cost(op Op, pages int) time.Duration {
	if !op.valid() {
		return 0
	}
	return m.PerCall[op] + time.Duration(pages)*m.PerPage[op]
}

// CostRuns is Cost for a Map or Unmap call whose batch forms runs runs:
// with PerRun, the per-call part is paid once per run.
func (m LatencyModel) CostRuns(op Op, pages, runs int) time.Duration {
	if !op.valid() {
		return 0
	}
	if m.PerRun && (op == OpMap || op == OpUnmap) {
		return time.Duration(runs)*m.PerCall[op] + time.Duration(pages)*m.PerPage[op]
	}
	return m.Cost(op, pages)
}

func (m LatencyModel) validate() error {
	for op := range NumOps {
		if m.PerCall[op] < 0 || m.PerPage[op] < 0 {
			return fmt.Errorf("latency model: negative cost for %s", Op(op))
		}
	}
	return nil
}

const us = time.Microsecond

// DefaultLatency returns the latency model for page size ps.
//
// 2 MiB pages use the CUDA VMM figures measured on an H100 80GB HBM3 (driver
// 580.159.04, CUDA 13.0, p50 over 512 pages): cuMemCreate 16.5 µs per page,
// cuMemMap 4.3 µs + cuMemSetAccess 35.4 µs per page, cuMemUnmap 24.1 µs,
// cuMemRelease 17.2 µs. Address reservation was not measured; it is a single
// driver call that touches no page tables, modelled as 5 µs.
//
// Smaller pages go through the stock driver's external mappings (package
// backend/uvm, Stock), one ioctl per run of consecutive pages, so the model
// charges per run (PerRun). Measured on an H200 with driver 580.159.04 on
// 2026-12-02 (shared/probes/smallpage_probe.c): one UVM_MAP_EXTERNAL_ALLOCATION
// costs 17–25 µs whatever the page size, a 64-page run 83 µs, so ~20 µs per
// call plus ~1 µs per page; UVM_UNMAP_EXTERNAL of one page 76–112 µs and of a
// 64-page run ~1 ms, so ~90 µs per call plus ~14 µs per page. Allocation is
// one RM call per chunk of many pages and was not measured separately; it
// is modelled as 50 µs per call plus zeroing at an assumed 1 TB/s.
func DefaultLatency(ps pagesize.Size) LatencyModel {
	var m LatencyModel
	m.PerCall[OpReserve] = 5 * us
	m.PerCall[OpRelease] = 5 * us
	if ps == pagesize.Size2M {
		m.PerPage[OpAlloc] = 16500 * time.Nanosecond
		m.PerPage[OpMap] = (4300 + 35400) * time.Nanosecond
		m.PerPage[OpUnmap] = 24100 * time.Nanosecond
		m.PerPage[OpFree] = 17200 * time.Nanosecond
		m.Source = "measured: CUDA VMM on H100 80GB HBM3, driver 580.159.04, CUDA 13.0, p50 of 512 pages (reserve/release assumed 5µs)"
		return m
	}
	const zeroBytesPerUs = 1_000_000 // 1 TB/s
	m.PerCall[OpAlloc] = 50 * us
	m.PerPage[OpAlloc] = time.Duration(ps.Bytes()*1000/zeroBytesPerUs) * time.Nanosecond
	m.PerCall[OpFree] = 50 * us
	m.PerCall[OpMap] = 20 * us
	m.PerPage[OpMap] = 1 * us
	m.PerCall[OpUnmap] = 90 * us
	m.PerPage[OpUnmap] = 14 * us
	m.PerRun = true
	m.Source = fmt.Sprintf("measured: stock nvidia-uvm external mappings of %s pages on H200, driver 580.159.04, 2026-12-02: map ~20µs/run+1µs/page, unmap ~90µs/run+14µs/page (alloc/free assumed)", ps)
	return m
}
