//go:build gpu

package cudavmm

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/ebitengine/purego"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/cuda"
)

// TestDeviceVsRawC compares the backend with the raw driver API in one
// process: bench/cvmm/vmmbench.c, built here as a shared library, runs its
// create/map/set-access/unmap/release loop through purego in a single call
// (no Go inside the loop), alternating with the same loop through the
// backend, on the same context and thread. Separate processes swing by tens
// of percent with where the scheduler puts them; this does not. It logs the
// figures (no assertion on timings).
func TestDeviceVsRawC(t *testing.T) {
	src := os.Getenv("VMMBENCH_SRC")
	for _, p := range []string{src, "vmmbench.c", "../../bench/cvmm/vmmbench.c"} {
		if _, err := os.Stat(p); p != "" && err == nil {
			src = p
			break
		}
	}
	so := filepath.Join(t.TempDir(), "libvmmbench.so")
	if out, err := exec.Command("gcc", "-O2", "-shared", "-fPIC", "-o", so, src, "-l:libcuda.so.1").CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", src, err, out)
	}
	h, err := purego.Dlopen(so, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		t.Fatal(err)
	}
	run, err := purego.Dlsym(h, "vmmbench_run")
	if err != nil {
		t.Fatal(err)
	}
	const pages = 1024
	rounds := 15
	type cfg struct {
		mode  AccessMode
		batch int
	}
	for _, c := range []cfg{{AccessPerPage, 1}, {AccessPerRun, 64}, {AccessPerRun, 1024}} {
		b := newDevice(t, Options{Access: c.mode})
		calls := (pages + c.batch - 1) / c.batch
		var cTot, gTot [4][]float64 // alloc, map, unmap, free: µs per page per round
		for round := range rounds {
			rawRound := func() {
				tr := make([]float64, 3)
				ts := [4][]float64{make([]float64, calls), make([]float64, calls), make([]float64, calls), make([]float64, calls)}
				perPage := 0
				if c.mode == AccessPerPage {
					perPage = 1
				}
				var r1 uintptr
				err := b.ctx.Do(func(cuda.Bound) error {
					r1, _, _ = purego.SyscallN(run, pages, uintptr(c.batch), uintptr(perPage), uintptr(b.dev.Index),
						uintptr(unsafe.Pointer(&tr[0])), uintptr(unsafe.Pointer(&ts[0][0])), uintptr(unsafe.Pointer(&ts[1][0])),
						uintptr(unsafe.Pointer(&ts[2][0])), uintptr(unsafe.Pointer(&ts[3][0])))
					return nil
				})
				if err != nil || int32(r1) != 0 {
					t.Fatalf("vmmbench_run: %d %v", int32(r1), err)
				}
				for op := range 4 {
					var sum float64
					for _, x := range ts[op] {
						sum += x
					}
					cTot[op] = append(cTot[op], sum/pages)
				}
			}
			goRound := func() {
				var d [4]time.Duration
				r, err := b.Reserve(pages * mib2)
				if err != nil {
					t.Fatal(err)
				}
				ids := make([]backend.PageID, 0, pages)
				for i := 0; i < pages; i += c.batch {
					s := time.Now()
					got, err := b.AllocPages(min(c.batch, pages-i))
					d[0] += time.Since(s)
					if err != nil {
						t.Fatal(err)
					}
					ids = append(ids, got...)
				}
				maps := make([]backend.Mapping, pages)
				addrs := make([]uint64, pages)
				for i := range maps {
					maps[i] = backend.Mapping{Addr: r.Addr + uint64(i)*mib2, Page: ids[i]}
					addrs[i] = maps[i].Addr
				}
				for i := 0; i < pages; i += c.batch {
					s := time.Now()
					err := b.Map(maps[i:min(i+c.batch, pages)])
					d[1] += time.Since(s)
					if err != nil {
						t.Fatal(err)
					}
				}
				for i := 0; i < pages; i += c.batch {
					s := time.Now()
					err := b.Unmap(addrs[i:min(i+c.batch, pages)], 0)
					d[2] += time.Since(s)
					if err != nil {
						t.Fatal(err)
					}
				}
				for i := 0; i < pages; i += c.batch {
					s := time.Now()
					err := b.FreePages(ids[i:min(i+c.batch, pages)])
					d[3] += time.Since(s)
					if err != nil {
						t.Fatal(err)
					}
				}
				if err := b.Release(r); err != nil {
					t.Fatal(err)
				}
				for op := range 4 {
					gTot[op] = append(gTot[op], float64(d[op])/1e3/pages)
				}
			}
			if round%2 == 0 {
				rawRound()
				goRound()
			} else {
				goRound()
				rawRound()
			}
		}
		med := func(x []float64) float64 { x = slices.Clone(x); slices.Sort(x); return x[len(x)/2] }
		names := []string{"alloc", "map", "unmap", "free"}
		var cc, gc float64
		for op := range 4 {
			cm, gm := med(cTot[op]), med(gTot[op])
			cc += cm
			gc += gm
			t.Logf("access %s batch %d %-5s: raw C %.2f µs/page, Go backend %.2f, Go/C %.3f (median of %d rounds)", c.mode, c.batch, names[op], cm, gm, gm/cm, rounds)
		}
		t.Logf("access %s batch %d cycle: raw C %.2f µs/page, Go backend %.2f, Go/C %.3f", c.mode, c.batch, cc, gc, gc/cc)
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
