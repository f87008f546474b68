package selftest

import (
	"errors"
	"fmt"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/backend/uvm"
	"github.com/vattn/vattn/cuda"
	"github.com/vattn/vattn/internal/cli"
	"github.com/vattn/vattn/ioctl"
	"github.com/vattn/vattn/pagesize"
)

// Report is the whole run.
type Report struct {
	Device string          `json:"device,omitempty"`
	Mode   string          `json:"mode,omitempty"` // the backend's mode: "stock" or "patched"
	Path   string          `json:"path,omitempty"` // the calls that mapped: "stock" (one per run) or "batched" (the vattn module)
	Probe  uvm.ProbeResult `json:"probe"`
	Steps  []Step          `json:"steps"`
	Result string          `json:"result"` // "pass", "fail", "not-supported", "no-device"
	Code   int             `json:"exit_code"`
}

// Step is one check.
type Step struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// Seams for tests.
var (
	devicePath = uvm.DevicePath
	cudaLib    = cuda.Load
)

func (r *Report) add(name string, err error, detail string) bool {
	s := Step{Name: name, OK: err == nil, Detail: detail}
	if err != nil {
		s.Detail = err.Error()
	}
	r.Steps = append(r.Steps, s)
	return err == nil
}

func (r *Report) end(result string, code int, err error) (*Report, error) {
	r.Result, r.Code = result, code
	if err == nil {
		return r, nil
	}
	return r, cli.WithCode(code, err)
}

// Run runs every step on GPU device and returns the report and an error
// carrying the exit code when not everything passed. With the patched
// module loaded it checks the module's commands; on NVIDIA's stock driver it
// checks the stock small-page path.
func Run(device string) (*Report, error) {
	rep := &Report{}
	p, err := uvm.ProbeDevice(devicePath)
	rep.Probe = p
	if err != nil {
		rep.add("probe "+devicePath, err, "")
		return rep.end("fail", cli.ExitFailure, fmt.Errorf("selftest: %w", err))
	}
	switch p.State {
	case uvm.StateNoDevice, uvm.StateNotUVM:
		rep.add("probe "+devicePath, errors.New(p.Detail), "")
		return rep.end("no-device", cli.ExitDriverNotLoaded, fmt.Errorf("selftest: no UVM device: %s", p.Detail))
	}
	rep.add("probe "+devicePath, nil, p.Detail)
	lib, err := cudaLib()
	if err != nil {
		rep.add("load libcuda", err, "")
		return rep.end("fail", cli.ExitLibraryMissing, fmt.Errorf("selftest: %w", err))
	}
	mode := uvm.ModeStock
	if p.State == uvm.StatePatched {
		mode = uvm.ModePatched
	}
	if err := smallPages(rep, lib, device, mode); err != nil {
		return rep.end("not-supported", cli.ExitNotSupported, fmt.Errorf("selftest: small pages are not available here: %w", err))
	}
	return rep.result()
}

// result ends a run whose steps all ran: pass, or fail naming the first
// failed step.
func (r *Report) result() (*Report, error) {
	for _, s := range r.Steps {
		if !s.OK {
			return r.end("fail", cli.ExitFailure, fmt.Errorf("selftest: step %q failed", s.Name))
		}
	}
	return r.end("pass", cli.ExitOK, nil)
}

// smallPages checks the small-page path mode asks for (the stock driver's
// calls, or the vattn module's batched ones): every page size through the
// same steps, the driver's refusals of bad arguments, and that closing with
// pages mapped gives the device its memory back. It returns an error only
// when the path cannot run at all here (a GPU before Pascal, a driver branch
// vattn has no tables for): not supported.
func smallPages(rep *Report, lib *cuda.Lib, device, mode string) error {
	open := func(ps pagesize.Size) (*uvm.Stock, error) {
		return uvm.NewStock(uvm.Options{Device: device, PageSize: ps, Lib: lib, Mode: mode, StockDriver: newStockDriver()})
	}
	first, err := open(pagesize.Size64K)
	if !rep.add("open the small-page path in a CUDA process", err, "") {
		if errors.Is(err, backend.ErrUnavailable) {
			return err
		}
		return nil
	}
	d := first.Device()
	rep.Device = fmt.Sprintf("GPU %d: %s (%s), driver %s", d.Index, d.Name, d.UUID, first.Driver().Branch())
	rep.Mode, rep.Path = first.Mode(), first.Path()
	rep.add("path: "+first.Path(), nil, first.PathDetail())
	stockRefusals(rep, first)
	if bd, ok := first.Driver().(uvm.BatchDriver); ok && first.Path() == uvm.PathBatched {
		batchRefusals(rep, first, bd)
	}
	rep.add("close the first backend", first.Close(), "")
	for _, ps := range pagesize.All() {
		pageSize(rep, ps, func() (uvm.Pages, error) { return open(ps) })
	}
	stockCloseReleases(rep, lib, func() (*uvm.Stock, error) { return open(pagesize.Size64K) })
	return nil
}

// newStockDriver makes what stands in for RM and UVM; nil is the real
// driver. Tests set it.
var newStockDriver = func() uvm.StockDriver { return nil }

// stockRefusals sends the driver arguments it must refuse and checks that it
// does, and that the backend still works afterwards.
func stockRefusals(rep *Report, b *uvm.Stock) {
	drv := b.Driver()
	sz := b.PageSize().Bytes()
	r, err := b.Reserve(4 * sz)
	if !rep.add("refusals: set up an external range", err, "") {
		return
	}
	ids, err := b.AllocPages(2)
	if !rep.add("refusals: allocate 2 pages", err, "") {
		return
	}
	refused := func(what string, err error) {
		if err == nil {
			rep.add("refusals: "+what, errors.New("accepted"), "")
			return
		}
		rep.add("refusals: "+what, nil, "refused: "+err.Error())
	}
	refused("allocate 0 bytes of video memory", func() error { _, err := drv.AllocVidmem(0, 64<<10); return err }())
	refused("map outside any external range", drv.Map(0x1000_0000, sz, 0xdead, 0))
	refused("map an unknown memory handle", drv.Map(r.Addr, sz, 0x5a5a5a5a, 0))
	refused("unmap outside any external range", drv.Unmap(0x1000_0000, sz))
	refused("free an external range that does not exist", drv.FreeRange(r.Addr+sz, sz))
	refused("create a range over an existing one", drv.CreateRange(r.Addr, sz))
	err = b.Map([]backend.Mapping{{Addr: r.Addr, Page: ids[0]}, {Addr: r.Addr + sz, Page: ids[1]}})
	if err == nil {
		err = b.Fill(r.Addr, 2*sz, 0x0bad0000)
	}
	if err == nil {
		var res uvm.CheckResult
		if res, err = b.Check(r.Addr, 2*sz, 0, 0x0bad0000); err == nil && !res.OK() {
			err = fmt.Errorf("%d words differ on the GPU", res.GPUMismatches)
		}
	}
	rep.add("refusals: the path still maps and holds data afterwards", err, "")
	err = b.Unmap([]uint64{r.Addr, r.Addr + sz}, 0)
	err = errors.Join(err, b.FreePages(ids), b.Release(r))
	rep.add("refusals: clean up", err, "")
}

// stockCloseReleases closes a backend with pages mapped and unmapped and
// checks the device's free memory is back where it was.
func stockCloseReleases(rep *Report, lib *cuda.Lib, open func() (*uvm.Stock, error)) {
	const name = "close with live pages releases them"
	b, err := open()
	if err != nil {
		rep.add(name, err, "")
		return
	}
	// The test's own hold on the context keeps the GPU set up after the
	// backend lets go, so free memory is comparable.
	ctx, err := lib.Retain(b.Device())
	if err != nil {
		rep.add(name, errors.Join(err, b.Close()), "")
		return
	}
	defer ctx.Release()
	free := func() (f uint64, err error) {
		err = ctx.Do(func(bd cuda.Bound) error { f, _, err = bd.MemGetInfo(); return err })
		return f, err
	}
	before, err := free()
	sz := b.PageSize().Bytes()
	var r backend.Region
	var ids []backend.PageID
	if err == nil {
		r, err = b.Reserve(64 * sz)
	}
	if err == nil {
		ids, err = b.AllocPages(1024) // 64 MiB: one chunk
	}
	if err == nil {
		err = b.Map([]backend.Mapping{{Addr: r.Addr, Page: ids[0]}, {Addr: r.Addr + sz, Page: ids[1]}})
	}
	var during uint64
	if err == nil {
		during, err = free()
	}
	err = errors.Join(err, b.Close())
	var after uint64
	if err == nil {
		after, err = free()
	}
	if err == nil && after != before {
		err = fmt.Errorf("device free memory %d MiB before, %d MiB after close", before>>20, after>>20)
	}
	rep.add(name, err, fmt.Sprintf("device free %d MiB → %d MiB with 64 MiB held → %d MiB", before>>20, during>>20, after>>20))
}

// pageSize: allocate, map, write and read a pattern, remap, unmap, free.
func pageSize(rep *Report, ps pagesize.Size, open func() (uvm.Pages, error)) {
	name := func(s string) string { return ps.Short() + ": " + s }
	b, err := open()
	if !rep.add(name("open"), err, "") {
		return
	}
	defer func() { rep.add(name("close"), b.Close(), "") }()
	sz := ps.Bytes()
	const n = 4
	r, err := b.Reserve(2 * n * sz)
	if !rep.add(name("reserve a range"), err, "") {
		return
	}
	ids, err := b.AllocPages(n)
	if !rep.add(name(fmt.Sprintf("allocate %d pages", n)), err, "") {
		return
	}
	maps := make([]backend.Mapping, n)
	for i, id := range ids {
		maps[i] = backend.Mapping{Addr: r.Addr + uint64(i)*sz, Page: id}
	}
	if !rep.add(name("map them in one batch"), b.Map(maps), "") {
		return
	}
	const tag = 0x5e1f7e57
	if !rep.add(name("write a pattern with a GPU kernel"), b.Fill(r.Addr, n*sz, tag), "") {
		return
	}
	res, err := b.Check(r.Addr, n*sz, 0, tag)
	if err == nil && !res.OK() {
		err = fmt.Errorf("%d words differ on the GPU, %d of %d host samples differ", res.GPUMismatches, res.HostMismatches, res.HostSampled)
	}
	if !rep.add(name("read it back (GPU and host)"), err, fmt.Sprintf("%d pages", res.Pages)) {
		return
	}
	// Move page 1 to slot n+1: its data must follow it.
	err = b.Unmap([]uint64{maps[1].Addr}, 0)
	if err == nil {
		err = b.Map([]backend.Mapping{{Addr: r.Addr + (n+1)*sz, Page: ids[1]}})
	}
	if err == nil {
		res, err = b.Check(r.Addr+(n+1)*sz, sz, 1, tag)
		if err == nil && !res.OK() {
			err = fmt.Errorf("the remapped page lost its data: %d words differ on the GPU", res.GPUMismatches)
		}
	}
	if !rep.add(name("remap a page elsewhere; its data follows"), err, "") {
		return
	}
	addrs := []uint64{maps[0].Addr, r.Addr + (n+1)*sz, maps[2].Addr, maps[3].Addr}
	if !rep.add(name("unmap"), b.Unmap(addrs, 0), "") {
		return
	}
	if !rep.add(name("free"), b.FreePages(ids), "") {
		return
	}
	rep.add(name("release the range"), b.Release(r), "")
}

// batchRefusals sends the vattn module batches it must refuse, each with its
// status, checks that a refused batch changed nothing, and that the backend
// still maps afterwards.
func batchRefusals(rep *Report, b *uvm.Stock, bd uvm.BatchDriver) {
	sz := b.PageSize().Bytes()
	r, err := b.Reserve(4 * sz)
	if !rep.add("batch refusals: set up an external range", err, "") {
		return
	}
	ids, err := b.AllocPages(2)
	if !rep.add("batch refusals: allocate 2 pages", err, "") {
		return
	}
	err = b.Map([]backend.Mapping{{Addr: r.Addr, Page: ids[0]}})
	if !rep.add("batch refusals: map a page", err, "") {
		return
	}
	expect := func(what string, want ioctl.Status, err error) {
		var got ioctl.Status
		switch {
		case err == nil:
			err = fmt.Errorf("accepted; want %s", want.Name())
		case !errors.As(err, &got):
			err = fmt.Errorf("want %s, got %w", want.Name(), err)
		case got != want:
			err = fmt.Errorf("want %s, got %s", want.Name(), got.Name())
		default:
			err = nil
		}
		rep.add("batch refusals: "+what, err, "refused with "+want.Name())
	}
	// Every entry below is refused before its memory handle is looked at
	// (the module checks arguments, ranges and mappings first).
	const h = 0
	e := func(base, length uint64) ioctl.UVM_VATTN_MAP_ENTRY {
		return ioctl.UVM_VATTN_MAP_ENTRY{Base: base, Length: length, HMemory: h}
	}
	expect("map at a misaligned address", ioctl.NV_ERR_INVALID_ADDRESS, bd.MapBatch([]ioctl.UVM_VATTN_MAP_ENTRY{e(r.Addr+sz+4096, sz)}))
	expect("map outside any external range", ioctl.NV_ERR_INVALID_ADDRESS, bd.MapBatch([]ioctl.UVM_VATTN_MAP_ENTRY{e(0x1000_0000, sz)}))
	expect("map over a mapped page (the whole batch refused)", ioctl.NV_ERR_UVM_ADDRESS_IN_USE,
		bd.MapBatch([]ioctl.UVM_VATTN_MAP_ENTRY{e(r.Addr+2*sz, sz), e(r.Addr, sz)}))
	expect("map with a reserved field set", ioctl.NV_ERR_INVALID_ARGUMENT,
		bd.MapBatch([]ioctl.UVM_VATTN_MAP_ENTRY{{Base: r.Addr + sz, Length: sz, HMemory: h, Reserved: 1}}))
	expect("unmap outside any external range", ioctl.NV_ERR_INVALID_ADDRESS,
		bd.UnmapBatch([]ioctl.UVM_VATTN_UNMAP_ENTRY{{Base: 0x1000_0000, Length: sz}}))
	// The refused batch's first entry must not have been mapped: mapping
	// there again succeeds.
	rep.add("batch refusals: a refused batch changes nothing", b.Map([]backend.Mapping{{Addr: r.Addr + 2*sz, Page: ids[1]}}), "")
	err = b.Unmap([]uint64{r.Addr, r.Addr + 2*sz}, 0)
	err = errors.Join(err, b.FreePages(ids), b.Release(r))
	rep.add("batch refusals: clean up", err, "")
}
