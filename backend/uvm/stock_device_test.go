//go:build gpu

// Device tests of the stock small-page path: NVIDIA's driver as shipped, RM
// memory mapped into UVM external ranges. They need an NVIDIA GPU (Pascal or
// newer), libcuda.so.1 and a driver branch vattn knows.

package uvm

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/backend/internal/devicetest"
	"github.com/vattn/vattn/cuda"
	"github.com/vattn/vattn/internal/cudatest"
	"github.com/vattn/vattn/ioctl/branch"
	"github.com/vattn/vattn/kvcache"
	"github.com/vattn/vattn/pagesize"
)

// stockChecker gives Stock devicetest's Check (page indexes from 0).
type stockChecker struct{ *Stock }

func (s stockChecker) Check(addr, size uint64, tag uint32) (CheckResult, error) {
	return s.Stock.Check(addr, size, 0, tag)
}

func newStock(t *testing.T, ps pagesize.Size) *Stock {
	t.Helper()
	b, err := NewStock(Options{PageSize: ps})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stock path: driver %s, GPU %s", b.Driver().Branch(), b.Device().UUID)
	return b
}

func pctl(d []time.Duration, q float64) time.Duration {
	d = slices.Clone(d)
	slices.Sort(d)
	return d[min(len(d)-1, int(q*float64(len(d))))]
}

// TestDeviceStockAlias maps the same physical pages at two addresses, in a
// shuffled order (every page its own driver call), writes through one view
// with a GPU kernel and reads through the other: the mappings are real. A
// contiguous run is then split by unmapping its middle, and the rest still
// holds its data.
func TestDeviceStockAlias(t *testing.T) {
	for _, ps := range pagesize.All() {
		t.Run(ps.Short(), func(t *testing.T) {
			gpu := cudatest.Open(t)
			before := gpu.Free(t)
			b := newStock(t, ps)
			n := int(min(256<<20/ps.Bytes(), 4096))
			size := ps.Bytes()
			va, err := b.Reserve(uint64(n) * size)
			if err != nil {
				t.Fatal(err)
			}
			vb, err := b.Reserve(uint64(n) * size)
			if err != nil {
				t.Fatal(err)
			}
			ids, err := b.AllocPages(n)
			if err != nil {
				t.Fatal(err)
			}
			perm := rand.New(rand.NewPCG(1, 2)).Perm(n)
			var maps []backend.Mapping
			for i, p := range perm {
				maps = append(maps, backend.Mapping{Addr: va.Addr + uint64(i)*size, Page: ids[p]})
			}
			// One page per call, timed: the scattered case.
			var one []time.Duration
			for _, m := range maps {
				s := time.Now()
				if err := b.Map([]backend.Mapping{m}); err != nil {
					t.Fatal(err)
				}
				one = append(one, time.Since(s))
			}
			// The alias view: the same pages again, straight through the
			// driver (the backend maps a page at one address only).
			s := time.Now()
			for i, m := range maps {
				ch := b.chunks[uint32(m.Page>>32)]
				if err := b.drv.Map(vb.Addr+uint64(i)*size, size, ch.handle, uint64(uint32(m.Page))*size); err != nil {
					t.Fatal(err)
				}
			}
			alias := time.Since(s)
			if err := b.Fill(va.Addr, va.Size, 0x77000000); err != nil {
				t.Fatal(err)
			}
			res, err := b.verify.Check(b.stream, cuda.PatternRange{Base: cuda.DevicePtr(vb.Addr), Bytes: vb.Size, PageSize: size, Tag: 0x77000000})
			if err != nil || !res.OK() {
				t.Fatalf("read through the alias view: %+v %v", res, err)
			}
			t.Logf("%d pages of %s: one page per call p50 %v p99 %v (alias view %v); alias check: %d words on the GPU, %d host samples, 0 differ",
				n, ps, pctl(one, .5), pctl(one, .99), alias, uint64(n)*size/4, res.HostSampled)
			if err := b.drv.Unmap(vb.Addr, vb.Size); err != nil {
				t.Fatal(err)
			}
			// The whole view a again in one Map call: the backend cuts it
			// into runs of consecutive slots.
			e, err := b.Fence().Record()
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Fence().Wait(t.Context(), e); err != nil {
				t.Fatal(err)
			}
			var va0 []uint64
			for i := range n {
				va0 = append(va0, va.Addr+uint64(i)*size)
			}
			if err := b.Unmap(va0, e); err != nil {
				t.Fatal(err)
			}
			for i := range maps {
				maps[i].Addr = vb.Addr + uint64(i)*size
			}
			calls0 := b.Calls().MapCalls
			s = time.Now()
			if err := b.Map(maps); err != nil {
				t.Fatal(err)
			}
			t.Logf("the shuffled pages in one Map: %d driver calls, %v", b.Calls().MapCalls-calls0, time.Since(s))
			for i := range maps {
				maps[i].Addr = va.Addr + uint64(i)*size
			}

			// Unmap view b: one page per call for the first 256, the rest
			// in one call (one run).
			var un []time.Duration
			for i := range min(n, 256) {
				s := time.Now()
				if err := b.Unmap([]uint64{vb.Addr + uint64(i)*size}, e); err != nil {
					t.Fatal(err)
				}
				un = append(un, time.Since(s))
			}
			var rest []uint64
			for i := min(n, 256); i < n; i++ {
				rest = append(rest, vb.Addr+uint64(i)*size)
			}
			s = time.Now()
			if len(rest) > 0 {
				if err := b.Unmap(rest, e); err != nil {
					t.Fatal(err)
				}
			}
			t.Logf("unmap one page per call p50 %v p99 %v; the other %d pages in one Unmap (one run) %v", pctl(un, .5), pctl(un, .99), len(rest), time.Since(s))

			// A contiguous run, split by unmapping its middle.
			run := min(n, 64)
			var seq []backend.Mapping
			for i := range run {
				seq = append(seq, backend.Mapping{Addr: va.Addr + uint64(i)*size, Page: ids[i]})
			}
			c0 := b.Calls().MapCalls
			s = time.Now()
			if err := b.Map(seq); err != nil {
				t.Fatal(err)
			}
			t.Logf("a run of %d consecutive pages: %d driver call(s), %v", run, b.Calls().MapCalls-c0, time.Since(s))
			if err := b.Fill(va.Addr, uint64(run)*size, 0x55000000); err != nil {
				t.Fatal(err)
			}
			lo, hi := run/4, run/2
			var mid []uint64
			for i := lo; i < hi; i++ {
				mid = append(mid, va.Addr+uint64(i)*size)
			}
			e, _ = b.Fence().Record()
			_ = b.Fence().Wait(t.Context(), e)
			if err := b.Unmap(mid, e); err != nil {
				t.Fatalf("unmap the middle of a run: %v", err)
			}
			if res, err := b.Check(va.Addr, uint64(lo)*size, 0, 0x55000000); err != nil || !res.OK() {
				t.Fatalf("head of the split run: %+v %v", res, err)
			}
			if res, err := b.Check(va.Addr+uint64(hi)*size, uint64(run-hi)*size, uint32(hi), 0x55000000); err != nil || !res.OK() {
				t.Fatalf("tail of the split run: %+v %v", res, err)
			}
			// The hole takes other pages.
			var fill []backend.Mapping
			for i := lo; i < hi; i++ {
				fill = append(fill, backend.Mapping{Addr: va.Addr + uint64(i)*size, Page: ids[n-1-i]})
			}
			if err := b.Map(fill); err != nil {
				t.Fatal(err)
			}
			if err := b.Fill(va.Addr, uint64(run)*size, 0x66000000); err != nil {
				t.Fatal(err)
			}
			if res, err := b.Check(va.Addr, uint64(run)*size, 0, 0x66000000); err != nil || !res.OK() {
				t.Fatalf("refilled run: %+v %v", res, err)
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			if after := gpu.Free(t); after != before {
				t.Errorf("device free memory %d before, %d after Close", before, after)
			}
		})
	}
}

// TestDeviceStockKVCache is the allocator's device test at 64 KiB pages on
// the stock driver: the same test cudavmm passes at 2 MiB.
func TestDeviceStockKVCache(t *testing.T) {
	for _, mega := range []bool{false, true} {
		t.Run(fmt.Sprintf("megacache=%v", mega), func(t *testing.T) {
			gpu := cudatest.Open(t)
			before := gpu.Free(t)
			b := newStock(t, pagesize.Size64K)
			cfg := devicetest.Llama3(16, 8192, mega)
			if mega {
				// One 64 KiB page holds one token of all 32 layers: the test
				// wants whole tokens per page, so use a 4-layer model.
				cfg.Layers = 4
			}
			devicetest.KVCache(t, stockChecker{b}, cfg)
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			if after := gpu.Free(t); after != before {
				t.Errorf("device free memory %d before, %d after Close", before, after)
			}
		})
	}
}

// TestDeviceStockRefusals: RM refusing memory, an unknown driver branch and
// a wrong UUID are typed errors, and nothing is left behind.
func TestDeviceStockRefusals(t *testing.T) {
	gpu := cudatest.Open(t)
	before := gpu.Free(t)
	b := newStock(t, pagesize.Size64K)
	if _, err := b.AllocPages(16); err != nil {
		t.Fatal(err)
	}
	n := int((before + 64<<30) / pagesize.Size64K.Bytes()) // more than the GPU has
	start := time.Now()
	_, err := b.AllocPages(n)
	if !errors.Is(err, backend.ErrOutOfMemory) {
		t.Fatalf("allocating %d GiB: %v", uint64(n)*pagesize.Size64K.Bytes()>>30, err)
	}
	t.Logf("RM refused %d GiB after %v: %v", uint64(n)*pagesize.Size64K.Bytes()>>30, time.Since(start), err)
	if _, pages, _ := b.Held(); pages != 16 {
		t.Errorf("after the refusal the backend holds %d pages, want the 16 from before", pages)
	}
	if c := b.Calls(); c.Chunks != 1 {
		t.Errorf("after the refusal %d chunks are held, want 1", c.Chunks)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if after := gpu.Free(t); after != before {
		t.Errorf("device free memory %d before, %d after", before, after)
	}

	old := driverVersion
	driverVersion = func() (string, error) { return "999.1.2", nil }
	_, err = NewStock(Options{})
	driverVersion = old
	if !errors.Is(err, branch.ErrUnknownBranch) || !errors.Is(err, backend.ErrUnavailable) {
		t.Errorf("unknown branch: %v", err)
	}
	if _, err := NewStock(Options{Device: "GPU-00000000-1111-2222-3333-444444444444"}); !errors.Is(err, cuda.ErrDeviceNotFound) {
		t.Errorf("wrong UUID: %v", err)
	}
	if after := gpu.Free(t); after != before {
		t.Errorf("device free memory %d before, %d after the refusals", before, after)
	}
}

// TestDeviceStockProcessDeath: a process that maps 1 GiB of small pages and
// dies without freeing anything leaves nothing: closing its RM client frees
// the memory, and UVM drops its ranges with CUDA's file.
func TestDeviceStockProcessDeath(t *testing.T) {
	if os.Getenv("VATTN_STOCK_CHILD") == "1" {
		b, err := NewStock(Options{PageSize: pagesize.Size64K})
		if err != nil {
			fmt.Println("child:", err)
			os.Exit(2)
		}
		r, err := b.Reserve(1 << 30)
		if err == nil {
			var ids []backend.PageID
			if ids, err = b.AllocPages(1 << 14); err == nil {
				var maps []backend.Mapping
				for i, id := range ids {
					maps = append(maps, backend.Mapping{Addr: r.Addr + uint64(i)<<16, Page: id})
				}
				err = b.Map(maps)
			}
		}
		if err != nil {
			fmt.Println("child:", err)
			os.Exit(2)
		}
		mi, _ := b.MemInfo()
		fmt.Printf("child: 1 GiB mapped, device free %d MiB; exiting without cleanup\n", mi.Free>>20)
		os.Exit(0)
	}
	gpu := cudatest.Open(t)
	before := gpu.Free(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestDeviceStockProcessDeath$")
	cmd.Env = append(os.Environ(), "VATTN_STOCK_CHILD=1")
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	// The driver tears the child's state down as its files close; give it
	// a moment.
	var after uint64
	for range 50 {
		if after = gpu.Free(t); after == before {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if after != before {
		t.Errorf("device free memory %d MiB before the child, %d MiB after it died", before>>20, after>>20)
	}
	t.Logf("device free %d MiB before the child and after it died", after>>20)
}

// TestDeviceStockSteps logs what a step costs at 64 KiB on the stock
// driver, Llama-3-8B shapes, batch 256 (no assertion: figures go to
// docs/results.md).
func TestDeviceStockSteps(t *testing.T) {
	for _, mega := range []bool{false, true} {
		t.Run(fmt.Sprintf("megacache=%v", mega), func(t *testing.T) {
			b := newStock(t, pagesize.Size64K)
			defer func() {
				if err := b.Close(); err != nil {
					t.Error(err)
				}
			}()
			c, err := kvcache.New(devicetest.Llama3(256, 4096, mega), b)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := c.Close(); err != nil {
					t.Error(err)
				}
			}()
			l := c.Layout()
			pool := 4 * 256 * l.PagesPerIndex
			s := time.Now()
			if err := c.ReservePhysical(uint64(pool) * pagesize.Size64K.Bytes()); err != nil {
				t.Fatal(err)
			}
			reserve := time.Since(s)
			lens := make([]int, 256)
			for range 256 {
				i, err := c.AllocBatchIdx(1)
				if err != nil {
					t.Fatal(err)
				}
				lens[i] = 1
			}
			c0 := b.Calls()
			s = time.Now()
			if err := c.Step(lens); err != nil {
				t.Fatal(err)
			}
			scattered := time.Since(s)
			c1 := b.Calls()
			// A prefill: every slot to three page indexes at once, one run
			// of pages per range per slot.
			tpi := max(l.TokensPerPage, 1)
			for i := range lens {
				lens[i] = 3 * tpi
			}
			s = time.Now()
			if err := c.Step(lens); err != nil {
				t.Fatal(err)
			}
			prefill := time.Since(s)
			c2 := b.Calls()
			t.Logf("ReservePhysical %d pages: %v (%d chunks)", pool, reserve, c2.Chunks)
			t.Logf("scattered step (one index for 256 slots, %d pages): %v in %d driver calls (%.1f µs/call)",
				c1.MapPages-c0.MapPages, scattered, c1.MapCalls-c0.MapCalls, float64(scattered.Microseconds())/float64(c1.MapCalls-c0.MapCalls))
			t.Logf("prefill step (two more indexes for 256 slots, %d pages): %v in %d driver calls",
				c2.MapPages-c1.MapPages, prefill, c2.MapCalls-c1.MapCalls)
		})
	}
}
