package mapcmd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/backend/cudavmm"
	"github.com/vattn/vattn/cuda"
	"github.com/vattn/vattn/internal/cli"
	"github.com/vattn/vattn/pagesize"
)

// Options are the map command's settings.
type Options struct {
	Backend  string
	PageSize pagesize.Size
	Pages    int
	Batch    int // pages per AllocPages/Map/Unmap/FreePages call
	Verify   bool
	Device   string // -i: index or UUID
	Access   string // cudavmm: "run" or "page"
	UVMMode  string // uvm: "", "stock" or "patched" (uvm.Options.Mode)
}

// DefaultBackend is the backend for a page size when --backend is not
// given: below 2 MiB only nvidia-uvm maps pages; at 2 MiB the CUDA VMM API,
// which measured faster there.
func DefaultBackend(ps pagesize.Size) string {
	if ps != 0 && ps < pagesize.Size2M {
		return "uvm"
	}
	return "cudavmm"
}

// VerifyResult is what a backend's pattern check found.
type VerifyResult struct {
	Pages              int    `json:"pages"`
	GPUCheckedWords    uint64 `json:"gpu_checked_words"`
	GPUMismatchedWords uint64 `json:"gpu_mismatched_words"`
	HostSampledWords   int    `json:"host_sampled_words"`
	HostMismatched     int    `json:"host_mismatched_words"`
	OK                 bool   `json:"ok"`
}

// Opened is a backend ready for the map run, with what the report says
// about it and, where the backend can write and read its pages, a verifier.
type Opened struct {
	Backend backend.Backend
	Device  string // "GPU 0: NVIDIA H100 80GB HBM3 (GPU-…)"
	Driver  string // "CUDA 13.0 (/usr/lib/…/libcuda.so.1)"
	Access  string
	// Fill writes a per-page pattern over mapped [addr, addr+size);
	// Check reads it back. Nil when the backend cannot.
	Fill  func(addr, size uint64, tag uint32) error
	Check func(addr, size uint64, tag uint32) (VerifyResult, error)
	// Held counts what the backend still holds, for the closing check.
	Held func() (regions, pages, mapped int)
	// Calls counts the driver's map and unmap calls where the backend
	// turns batches into fewer calls (runs); nil elsewhere.
	Calls func() (mapCalls, unmapCalls uint64)
}

// Opener opens one kind of backend.
type Opener func(o Options) (*Opened, error)

// Backends is the table --backend chooses from.
var Backends = map[string]Opener{
	"cudavmm": openCUDAVMM,
}

func backendNames() string {
	names := make([]string, 0, len(Backends))
	for n := range Backends {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// cudaLib loads the driver; tests replace it with a fake.
var cudaLib = cuda.Load

func openCUDAVMM(o Options) (*Opened, error) {
	mode := cudavmm.AccessPerRun
	switch o.Access {
	case "", "run":
	case "page":
		mode = cudavmm.AccessPerPage
	default:
		return nil, cli.Usagef("--access %q: want run or page", o.Access)
	}
	lib, err := cudaLib()
	if err != nil {
		return nil, err
	}
	b, err := cudavmm.New(cudavmm.Options{Device: o.Device, PageSize: o.PageSize, Access: mode, Lib: lib})
	if err != nil {
		return nil, err
	}
	d := b.Device()
	check := func(addr, size uint64, tag uint32) (VerifyResult, error) {
		r, err := b.Check(addr, size, tag)
		return VerifyResult{r.Pages, size / 4, r.GPUMismatches, r.HostSampled, r.HostMismatches, r.OK()}, err
	}
	return &Opened{
		Backend: b,
		Device:  fmt.Sprintf("GPU %d: %s (%s)", d.Index, d.Name, d.UUID),
		Driver:  fmt.Sprintf("CUDA %s (%s)", lib.DriverVersionString(), lib.Path),
		Access:  mode.String(),
		Fill:    b.Fill,
		Check:   check,
		Held:    b.Held,
	}, nil
}

// OpStats summarizes one operation's calls.
type OpStats struct {
	Op        string  `json:"op"`
	Calls     int     `json:"calls"`
	Pages     int     `json:"pages"`
	P50us     float64 `json:"p50_us"`
	P90us     float64 `json:"p90_us"`
	P99us     float64 `json:"p99_us"`
	MaxUs     float64 `json:"max_us"`
	TotalMs   float64 `json:"total_ms"`
	UsPerPage float64 `json:"us_per_page"`
	GBps      float64 `json:"gb_per_s"`
}

// DriverCalls counts driver calls under the backend's map and unmap calls.
type DriverCalls struct {
	Map   uint64 `json:"map"`
	Unmap uint64 `json:"unmap"`
}

// Report is what map prints.
type Report struct {
	Backend  string        `json:"backend"`
	Device   string        `json:"device,omitempty"`
	Driver   string        `json:"driver,omitempty"`
	PageSize pagesize.Size `json:"page_size"`
	Pages    int           `json:"pages"`
	Bytes    uint64        `json:"bytes"`
	Batch    int           `json:"batch"`
	Access   string        `json:"access,omitempty"`
	Ops      []OpStats     `json:"ops"`
	Verify   *VerifyResult `json:"verify,omitempty"`
	// DriverCalls are the driver calls behind the map and unmap rows, where
	// the backend makes runs of a batch (the stock nvidia-uvm path).
	DriverCalls *DriverCalls `json:"driver_calls,omitempty"`
	FreeStart   uint64       `json:"device_free_start_bytes"`
	FreeEnd     uint64       `json:"device_free_end_bytes"`
	Leftover    string       `json:"leftover"`
}

type timings struct {
	op    string
	pages int
	d     []time.Duration
}

func (t *timings) time(f func() error) error {
	start := time.Now()
	err := f()
	t.d = append(t.d, time.Since(start))
	return err
}

func (t *timings) stats(pageSize uint64) OpStats {
	s := OpStats{Op: t.op, Calls: len(t.d), Pages: t.pages}
	if len(t.d) == 0 {
		return s
	}
	d := slices.Clone(t.d)
	slices.Sort(d)
	pct := func(p float64) float64 {
		i := int(p*float64(len(d))+0.999999) - 1 // nearest rank
		i = max(0, min(i, len(d)-1))
		return us(d[i])
	}
	var total time.Duration
	for _, x := range d {
		total += x
	}
	s.P50us, s.P90us, s.P99us, s.MaxUs = pct(0.50), pct(0.90), pct(0.99), us(d[len(d)-1])
	s.TotalMs = float64(total) / 1e6
	if t.pages > 0 && total > 0 {
		s.UsPerPage = us(total) / float64(t.pages)
		s.GBps = float64(uint64(t.pages)*pageSize) / total.Seconds() / 1e9
	}
	return s
}

func us(d time.Duration) float64 { return float64(d) / 1e3 }

// ErrVerify: the pages did not hold what was written to them.
var ErrVerify = errors.New("verification failed")

// afterStep is called after each step of a run; tests use it to interrupt.
var afterStep = func(step string) {}

// Run opens the backend, reserves a range, allocates, maps, optionally
// verifies, unmaps, frees and releases, timing each call. Whatever happens
// (a failed step, ctx cancelled), it leaves nothing allocated: it waits for
// GPU work it started and closes the backend, which releases the rest.
func Run(ctx context.Context, o Options) (rep *Report, err error) {
	if o.Pages <= 0 {
		return nil, cli.Usagef("--pages %d: want at least 1", o.Pages)
	}
	if o.Batch <= 0 {
		return nil, cli.Usagef("--batch %d: want at least 1 page per call", o.Batch)
	}
	switch o.Access {
	case "", "run", "page":
	default:
		return nil, cli.Usagef("--access %s: want run or page", cli.Quote(o.Access))
	}
	if o.Backend == "" {
		o.Backend = DefaultBackend(o.PageSize)
	}
	open, ok := Backends[o.Backend]
	if !ok {
		return nil, cli.Usagef("--backend %s: want one of %s", cli.Quote(o.Backend), backendNames())
	}
	// No GPU has a petabyte: refuse before the multiplication can overflow.
	if o.PageSize.Valid() && uint64(o.Pages) > maxMapBytes/o.PageSize.Bytes() {
		return nil, cli.Usagef("--pages %d of %s: more than any GPU's memory (at most %d)", o.Pages, o.PageSize, maxMapBytes/o.PageSize.Bytes())
	}
	opened, err := open(o)
	if err != nil {
		err = fmt.Errorf("map: open %s backend: %w", o.Backend, err)
		return nil, cli.WithCode(exitCode(err), withSimHint(err))
	}
	b := opened.Backend
	size := b.PageSize().Bytes()
	if mi, err := b.MemInfo(); err == nil && mi.Total > 0 && uint64(o.Pages) > mi.Total/size {
		cerr := b.Close()
		return nil, errors.Join(cli.Usagef("--pages %d of %s is %s; the device has %s (at most %d pages)",
			o.Pages, b.PageSize(), cli.FormatBytes(uint64(o.Pages)*size), cli.FormatBytes(mi.Total), mi.Total/size), cerr)
	}
	rep = &Report{
		Backend: b.Name(), Device: opened.Device, Driver: opened.Driver, PageSize: b.PageSize(),
		Pages: o.Pages, Bytes: uint64(o.Pages) * size, Batch: o.Batch, Access: opened.Access,
	}
	defer func() {
		// Wait (boundedly) for GPU work on the pages before they go.
		wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var errs []error
		if e, ferr := b.Fence().Record(); ferr != nil {
			errs = append(errs, ferr)
		} else if werr := b.Fence().Wait(wctx, e); werr != nil {
			errs = append(errs, werr)
		}
		if mi, merr := b.MemInfo(); merr == nil {
			rep.FreeEnd = mi.Free
		}
		errs = append(errs, b.Close())
		if cerr := errors.Join(errs...); cerr != nil {
			err = errors.Join(err, fmt.Errorf("map: cleanup: %w", cerr))
		}
		if err != nil {
			err = cli.WithCode(exitCode(err), err)
		}
	}()
	if mi, err := b.MemInfo(); err == nil {
		rep.FreeStart = mi.Free
	}
	step := func(name string) error {
		afterStep(name)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("map: interrupted after %s: %w", name, err)
		}
		return nil
	}

	reserve := &timings{op: "reserve", pages: o.Pages}
	var region backend.Region
	if err := reserve.time(func() (err error) { region, err = b.Reserve(rep.Bytes); return err }); err != nil {
		return rep, fmt.Errorf("map: %w", err)
	}
	if err := step("reserve"); err != nil {
		return rep, err
	}

	alloc := &timings{op: "alloc", pages: o.Pages}
	pages := make([]backend.PageID, 0, o.Pages)
	for i := 0; i < o.Pages; i += o.Batch {
		n := min(o.Batch, o.Pages-i)
		var ids []backend.PageID
		if err := alloc.time(func() (err error) { ids, err = b.AllocPages(n); return err }); err != nil {
			return rep, fmt.Errorf("map: allocate pages %d-%d: %w", i, i+n-1, err)
		}
		pages = append(pages, ids...)
		if err := step("alloc"); err != nil {
			return rep, err
		}
	}

	mapT := &timings{op: "map", pages: o.Pages}
	for i := 0; i < o.Pages; i += o.Batch {
		n := min(o.Batch, o.Pages-i)
		maps := make([]backend.Mapping, n)
		for j := range maps {
			maps[j] = backend.Mapping{Addr: region.Addr + uint64(i+j)*size, Page: pages[i+j]}
		}
		if err := mapT.time(func() error { return b.Map(maps) }); err != nil {
			return rep, fmt.Errorf("map: map pages %d-%d: %w", i, i+n-1, err)
		}
		if err := step("map"); err != nil {
			return rep, err
		}
	}

	if o.Verify {
		if opened.Fill == nil {
			return rep, cli.Usagef("map: --verify: the %s backend cannot write and read its pages", b.Name())
		}
		const tag = 0x5a5a0000
		if err := opened.Fill(region.Addr, region.Size, tag); err != nil {
			return rep, fmt.Errorf("map: verify: %w", err)
		}
		res, err := opened.Check(region.Addr, region.Size, tag)
		if err != nil {
			return rep, fmt.Errorf("map: verify: %w", err)
		}
		rep.Verify = &res
		if !res.OK {
			return rep, fmt.Errorf("map: %w: %d words differ on the GPU, %d of %d sampled from the host", ErrVerify, res.GPUMismatchedWords, res.HostMismatched, res.HostSampledWords)
		}
		if err := step("verify"); err != nil {
			return rep, err
		}
	}

	// Nothing reads the pages after this epoch.
	epoch, err := b.Fence().Record()
	if err != nil {
		return rep, fmt.Errorf("map: %w", err)
	}
	if err := b.Fence().Wait(ctx, epoch); err != nil {
		return rep, fmt.Errorf("map: %w", err)
	}
	unmap := &timings{op: "unmap", pages: o.Pages}
	for i := 0; i < o.Pages; i += o.Batch {
		n := min(o.Batch, o.Pages-i)
		addrs := make([]uint64, n)
		for j := range addrs {
			addrs[j] = region.Addr + uint64(i+j)*size
		}
		if err := unmap.time(func() error { return b.Unmap(addrs, epoch) }); err != nil {
			return rep, fmt.Errorf("map: unmap pages %d-%d: %w", i, i+n-1, err)
		}
		if err := step("unmap"); err != nil {
			return rep, err
		}
	}

	free := &timings{op: "free", pages: o.Pages}
	for i := 0; i < o.Pages; i += o.Batch {
		n := min(o.Batch, o.Pages-i)
		if err := free.time(func() error { return b.FreePages(pages[i : i+n]) }); err != nil {
			return rep, fmt.Errorf("map: free pages %d-%d: %w", i, i+n-1, err)
		}
		if err := step("free"); err != nil {
			return rep, err
		}
	}

	release := &timings{op: "release", pages: o.Pages}
	if err := release.time(func() error { return b.Release(region) }); err != nil {
		return rep, fmt.Errorf("map: %w", err)
	}
	for _, t := range []*timings{reserve, alloc, mapT, unmap, free, release} {
		rep.Ops = append(rep.Ops, t.stats(size))
	}
	if opened.Calls != nil {
		m, u := opened.Calls()
		rep.DriverCalls = &DriverCalls{Map: m, Unmap: u}
	}
	rep.Leftover = "nothing"
	if opened.Held != nil {
		if r, p, m := opened.Held(); r+p+m != 0 {
			rep.Leftover = fmt.Sprintf("%d regions, %d pages, %d mappings (Close releases them)", r, p, m)
			return rep, fmt.Errorf("map: the backend still holds %s", rep.Leftover)
		}
	}
	return rep, nil
}

// maxMapBytes bounds --pages before any backend is opened: 1 PiB.
const maxMapBytes = 1 << 50

// withSimHint adds, to an error that means "no usable GPU here", how to
// run map without one.
func withSimHint(err error) error {
	switch exitCode(err) {
	case cli.ExitLibraryMissing, cli.ExitNotFound, cli.ExitDriverNotLoaded, cli.ExitNotSupported:
		if !errors.Is(err, cuda.ErrDeviceNotFound) {
			return fmt.Errorf("%w (no usable GPU here: --backend sim runs map on the simulator)", err)
		}
	}
	return err
}

// exitCode maps an error to nvidia-smi-style exit codes.
func exitCode(err error) int {
	var ee *cli.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.Code
	case errors.Is(err, cuda.ErrLibraryMissing):
		return cli.ExitLibraryMissing
	case errors.Is(err, cuda.ErrDeviceNotFound), errors.Is(err, cuda.ErrNoDevice):
		return cli.ExitNotFound
	case errors.Is(err, cuda.ErrDriverTooOld), errors.Is(err, cuda.ErrNotInitialized):
		return cli.ExitDriverNotLoaded
	case errors.Is(err, pagesize.ErrUnsupported):
		return cli.ExitBadArgument
	case errors.Is(err, backend.ErrUnavailable):
		return cli.ExitNotSupported
	case errors.Is(err, backend.ErrOutOfMemory):
		return cli.ExitFailure
	}
	return cli.ExitFailure
}
