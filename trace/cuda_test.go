package trace

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// buildFakeCUDA compiles testdata/fakecuda.c into a shared library and
// testdata/callcuda.c into a program linked to it.
func buildFakeCUDA(t testing.TB) (lib, prog string) {
	t.Helper()
	gcc := needToolTB(t, "gcc")
	dir := t.TempDir()
	lib = filepath.Join(dir, "libfakecuda.so")
	prog = filepath.Join(dir, "callcuda")
	for _, args := range [][]string{
		{"-O2", "-shared", "-fPIC", "-o", lib, "testdata/fakecuda.c"},
		{"-O2", "-o", prog, "testdata/callcuda.c", "-L" + dir, "-lfakecuda", "-Wl,-rpath," + dir},
	} {
		if out, err := exec.Command(gcc, args...).CombinedOutput(); err != nil {
			t.Fatalf("gcc %v: %v: %s", args, err, out)
		}
	}
	return lib, prog
}

func needToolTB(t testing.TB, name string) string {
	t.Helper()
	if tt, ok := t.(*testing.T); ok {
		return needTool(tt, name)
	}
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not found (scripts/deps-bpf.sh installs it)", name)
	}
	return p
}

func runCallCUDA(t testing.TB, prog string, args ...string) string {
	t.Helper()
	out, err := exec.Command(prog, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v: %s", prog, args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestCUDASourceCountsAndLatency(t *testing.T) {
	needRoot(t)
	lib, prog := buildFakeCUDA(t)
	tr, err := Open(Options{Sources: []Source{SourceCUDA}, LibPath: lib})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	st := tr.Status()[0]
	if !st.Attached || !strings.Contains(st.Detail, "cuMemAddressFree_v2") {
		t.Fatalf("status = %+v", st)
	}
	const (
		n     = 12
		sleep = 2 * time.Millisecond
	)
	runCallCUDA(t, prog, strconv.Itoa(n), strconv.FormatInt(int64(sleep), 10))
	snap, err := tr.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Hists) != len(CUDAOps) {
		t.Errorf("%d histograms, want %d: %+v", len(snap.Hists), len(CUDAOps), snap.Hists)
	}
	minSlot := slotOf(uint64(sleep / time.Microsecond))
	for _, op := range CUDAOps {
		h, ok := snap.Find(SourceCUDA, op)
		want := uint64(n)
		if op == "cuMemAddressFree" {
			want = 2 * n // the plain and the _v2 entry point
		}
		if !ok || h.Count != want {
			t.Errorf("%s: count %d (found %v), want %d", op, h.Count, ok, want)
			continue
		}
		wantErr := uint64(0)
		if op == "cuMemRelease" {
			wantErr = n
		}
		if h.Errors != wantErr {
			t.Errorf("%s: errors %d, want %d", op, h.Errors, wantErr)
		}
		for k := 0; k < minSlot; k++ {
			if h.Slots[k] != 0 {
				t.Errorf("%s: %d calls in slot %d, below the %v sleep", op, h.Slots[k], k, sleep)
			}
		}
		if h.Mean() < sleep {
			t.Errorf("%s: mean %v < sleep %v", op, h.Mean(), sleep)
		}
	}
}

func TestCUDASourceOpsAndPIDFilter(t *testing.T) {
	needRoot(t)
	lib, prog := buildFakeCUDA(t)
	// The PID filter names this test process, which never calls the library.
	tr, err := Open(Options{Sources: []Source{SourceCUDA}, LibPath: lib, PID: os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	runCallCUDA(t, prog, "3", "0")
	snap, err := tr.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Hists) != 0 {
		t.Errorf("another process's calls counted: %+v", snap.Hists)
	}
	tr.Close()

	tr, err = Open(Options{Sources: []Source{SourceCUDA}, LibPath: lib, Ops: []string{"cuMemMap"}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if d := tr.Status()[0].Detail; !strings.HasSuffix(d, ": cuMemMap") {
		t.Errorf("detail %q: want only cuMemMap attached", d)
	}
	runCallCUDA(t, prog, "4", "0")
	snap, err = tr.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Hists) != 1 || snap.Hists[0].Op != "cuMemMap" || snap.Hists[0].Count != 4 {
		t.Errorf("hists = %+v, want cuMemMap x4 only", snap.Hists)
	}
}

func TestCUDASourceMissingLibrary(t *testing.T) {
	needRoot(t)
	_, err := Open(Options{Sources: []Source{SourceCUDA}, LibPath: "/nonexistent/libcuda.so.1"})
	if !errors.Is(err, ErrNoSource) || !strings.Contains(err.Error(), "cuda: not attached") {
		t.Fatalf("err = %v", err)
	}
	_, err = Open(Options{Sources: []Source{SourceCUDA}, LibPath: "/nonexistent/libcuda.so.1", Ops: []string{"UVM_VATTN_MAP_BATCH"}})
	if !errors.Is(err, ErrNoSource) || !strings.Contains(err.Error(), "selected operations include none") {
		t.Fatalf("err = %v", err)
	}
	// A library without any of the functions.
	_, err = Open(Options{Sources: []Source{SourceCUDA}, LibPath: "/lib/x86_64-linux-gnu/libm.so.6"})
	if !errors.Is(err, ErrNoSource) || !strings.Contains(err.Error(), "none of the functions") {
		t.Fatalf("err = %v", err)
	}
}

// A missing source does not stop the others.
func TestMissingSourceKeepsOthers(t *testing.T) {
	needRoot(t)
	tr, err := Open(Options{LibPath: "/nonexistent/libcuda.so.1", Device: "/dev/null"})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	got := map[Source]SourceStatus{}
	for _, s := range tr.Status() {
		got[s.Source] = s
	}
	if got[SourceCUDA].Attached || !got[SourceIoctl].Attached || !errors.Is(got[SourceCUDA].Err, ErrNotPresent) {
		t.Errorf("status = %+v", tr.Status())
	}
	if tp := got[SourceTracepoint]; tp.Attached || !errors.Is(tp.Err, ErrNotPresent) || !strings.Contains(tp.Reason, "not present") {
		t.Errorf("tracepoint status = %+v, want not present (no patched module here)", tp)
	}
}

func BenchmarkCUDACallOverhead(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	lib, prog := buildFakeCUDA(b)
	const calls = 200000
	run := func(b *testing.B) {
		var total float64
		for range b.N {
			ns, err := strconv.ParseFloat(runCallCUDA(b, prog, strconv.Itoa(calls), "0", "bench"), 64)
			if err != nil {
				b.Fatal(err)
			}
			total += ns
		}
		b.ReportMetric(total/float64(b.N), "ns/call")
	}
	b.Run("untraced", run)
	b.Run("traced", func(b *testing.B) {
		tr, err := Open(Options{Sources: []Source{SourceCUDA}, LibPath: lib})
		if err != nil {
			b.Fatal(err)
		}
		defer tr.Close()
		run(b)
	})
}
