package mapcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vattn/vattn/cuda"
	"github.com/vattn/vattn/cuda/cudafake"
	"github.com/vattn/vattn/internal/cli"
	"github.com/vattn/vattn/internal/cmd/cmdtest"
)

// withFake makes the cudavmm backend run on a fake driver for the test.
func withFake(t *testing.T) *cudafake.Fake {
	t.Helper()
	return cmdtest.FakeCUDA(t, &cudaLib)
}

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var format cli.Format = cli.Table
	cmd := NewCmd(&format)
	for i := 0; i < len(args); i++ {
		if args[i] == "-o" {
			format = cli.Format(args[i+1])
			args = append(args[:i], args[i+2:]...)
			break
		}
	}
	return cmdtest.Run(t, cmd, args...)
}

func TestMapOnFake(t *testing.T) {
	f := withFake(t)
	code, out, errOut := run(t, "--pages", "10", "--batch", "4")
	if code != 0 {
		t.Fatalf("code %d: %s", code, errOut)
	}
	for _, want := range []string{"backend cudavmm", "GPU 0: Fake H100", "CUDA 13.0", "10 pages of 2MiB", "4 per call", "access set per run", "map", "unmap", "left allocated: nothing"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if live := f.Live(); live != (cudafake.Live{}) {
		t.Errorf("left %v", live)
	}
	if f.Calls("cuMemCreate") != 10 || f.Calls("cuMemMap") != 10 || f.Calls("cuMemSetAccess") != 3 {
		t.Errorf("calls: create %d map %d access %d", f.Calls("cuMemCreate"), f.Calls("cuMemMap"), f.Calls("cuMemSetAccess"))
	}

	code, out, _ = run(t, "--pages", "3", "--access", "page", "-o", "json")
	var rep Report
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil {
		t.Fatalf("json: code %d %q", code, out)
	}
	if rep.Pages != 3 || rep.Bytes != 3<<21 || rep.Access != "page" || len(rep.Ops) != 6 || rep.Leftover != "nothing" {
		t.Errorf("report %+v", rep)
	}
	for _, op := range rep.Ops {
		if op.Calls == 0 || op.P50us > op.MaxUs || op.P50us > op.P99us {
			t.Errorf("op %+v", op)
		}
	}
	if rep.Ops[2].Op != "map" || rep.Ops[2].Calls != 3 {
		t.Errorf("map op %+v", rep.Ops[2])
	}
}

// TestMapFailuresLeaveNothing fails each driver step in turn, and
// interrupts the run after each step: every time, the driver holds nothing
// afterwards and the exit code is not 0.
func TestMapFailuresLeaveNothing(t *testing.T) {
	for _, sym := range []string{"cuMemAddressReserve", "cuMemCreate", "cuMemMap", "cuMemSetAccess", "cuMemUnmap", "cuMemRelease", "cuMemAddressFree", "cuEventRecord", "cuEventQuery"} {
		t.Run(sym, func(t *testing.T) {
			f := withFake(t)
			f.Inject(sym, 3, cuda.CUDA_ERROR_OUT_OF_MEMORY)
			if sym == "cuMemAddressReserve" || sym == "cuMemAddressFree" || strings.HasPrefix(sym, "cuEvent") {
				f.Inject(sym, 1, cuda.CUDA_ERROR_OUT_OF_MEMORY)
			}
			code, _, errOut := run(t, "--pages", "8", "--batch", "2")
			if code == 0 {
				t.Fatalf("a failing %s went unnoticed", sym)
			}
			if !strings.Contains(errOut, sym) {
				t.Errorf("error does not name %s: %s", sym, errOut)
			}
			live := f.Live()
			// A failing cuMemRelease or cuMemAddressFree leaves what it
			// failed to free, and says so; nothing else may stay.
			switch sym {
			case "cuMemRelease":
				live.Handles, live.Used = 0, 0
			case "cuMemAddressFree":
				live.Reservations = 0
			}
			if live != (cudafake.Live{}) {
				t.Errorf("left %v", live)
			}
		})
	}
	for _, step := range []string{"reserve", "alloc", "map", "unmap", "free"} {
		t.Run("interrupt/"+step, func(t *testing.T) {
			f := withFake(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			old := afterStep
			afterStep = func(s string) {
				if s == step {
					cancel()
				}
			}
			defer func() { afterStep = old }()
			_, err := Run(ctx, Options{Backend: "cudavmm", Pages: 6, Batch: 2})
			if !errors.Is(err, context.Canceled) || cli.CodeOf(err) == 0 {
				t.Fatalf("interrupted run: %v", err)
			}
			if live := f.Live(); live != (cudafake.Live{}) {
				t.Errorf("left %v", live)
			}
		})
	}
}

// TestVerifyFailureOnFake: the fake holds no memory, so --verify must fail
// (exit 1), print what it found, and still leave nothing.
func TestVerifyFailureOnFake(t *testing.T) {
	f := withFake(t)
	code, out, errOut := run(t, "--pages", "2", "--verify")
	if code != cli.ExitFailure || !strings.Contains(errOut, "verification failed") || !strings.Contains(out, "verify: FAILED") {
		t.Fatalf("code %d\nout: %s\nerr: %s", code, out, errOut)
	}
	if live := f.Live(); live != (cudafake.Live{}) {
		t.Errorf("left %v", live)
	}
	if f.Launches() != 2 {
		t.Errorf("%d kernel launches, want fill and verify", f.Launches())
	}
}

func TestBadArguments(t *testing.T) {
	withFake(t)
	for _, args := range [][]string{
		{"--pages", "0"}, {"--backend", "nope"}, {"--access", "sometimes"}, {"--page-size", "3k"}, {"extra"},
		{"--batch", "0"}, {"--batch", "-3"}, {"--backend", "sim", "--access", "foo"}, {"--backend", "sim", "--access", "page"},
		{"--backend", "sim", "--pages", "1000000000"}, {"--backend", "sim", "--pages", "100000"},
		{"--pages", "100000"}, // the fake GPU's 80 GB
		{"--uvm-mode", "stock"}, {"--backend", "uvm", "--uvm-mode", "fast"}, {"--page-size", "64k", "--access", "page"},
	} {
		code, out, errOut := run(t, args...)
		if code != cli.ExitBadArgument && !(args[0] == "extra" && code != 0) || out != "" {
			t.Errorf("%v: code %d (%s), stdout %q", args, code, errOut, out)
		}
	}
	if _, _, errOut := run(t, "--backend", "sim", "--pages", "100000"); !strings.Contains(errOut, "the device has 80.0 GiB (at most 40960 pages)") {
		t.Errorf("--pages beyond the GPU: %s", errOut)
	}
	if code, _, errOut := run(t, "-i", "5"); code != cli.ExitNotFound || !strings.Contains(errOut, "no such GPU") {
		t.Errorf("-i 5: code %d %s", code, errOut)
	}
}

// TestNoLibcuda runs the real loader: on a machine without libcuda (CI) map
// must say so and exit 12, without panicking.
func TestNoLibcuda(t *testing.T) {
	if _, err := cuda.Load(); !errors.Is(err, cuda.ErrLibraryMissing) {
		t.Skipf("libcuda loads here (%v): this test is for machines without it", err)
	}
	code, out, errOut := run(t, "--backend", "cudavmm", "--pages", "4")
	if code != cli.ExitLibraryMissing || out != "" {
		t.Fatalf("code %d, out %q", code, out)
	}
	for _, want := range []string{"libcuda.so.1", "install the NVIDIA driver", "--backend sim"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("message lacks %q: %s", want, errOut)
		}
	}
}

func TestMapSim(t *testing.T) {
	for _, ps := range []string{"64k", "2m"} {
		code, out, errOut := run(t, "--backend", "sim", "--page-size", ps, "--pages", "100", "--batch", "10", "--verify")
		if code != 0 {
			t.Fatalf("sim %s: code %d: %s", ps, code, errOut)
		}
		for _, want := range []string{"backend sim", "simulated GPU", "100 pages", "verify: ok: 100 pages", "left allocated: nothing"} {
			if !strings.Contains(out, want) {
				t.Errorf("sim %s output lacks %q:\n%s", ps, want, out)
			}
		}
	}
	if code, _, _ := run(t, "--backend", "sim", "-i", "0"); code != cli.ExitNotFound {
		t.Errorf("sim -i 0: code %d", code)
	}
}

// TestBinaryWithoutLibcuda builds vattnctl as it ships (CGO_ENABLED=0) and
// runs "map --backend cudavmm" on a machine without libcuda: exit code 12,
// a message naming the library, no panic.
func TestBinaryWithoutLibcuda(t *testing.T) {
	if _, err := cuda.Load(); !errors.Is(err, cuda.ErrLibraryMissing) {
		t.Skipf("libcuda loads here (%v): this test is for machines without it", err)
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool to build vattnctl with")
	}
	bin := filepath.Join(t.TempDir(), "vattnctl")
	build := exec.Command(goTool, "build", "-o", bin, "github.com/vattn/vattn/cmd/vattnctl")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build vattnctl: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "map", "--backend", "cudavmm", "--pages", "4")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != cli.ExitLibraryMissing {
		t.Fatalf("exit: %v, stderr %s", err, stderr.String())
	}
	msg := stderr.String()
	if !strings.HasPrefix(msg, "vattnctl: map: open cudavmm backend: load CUDA driver library: libcuda.so.1 not found") ||
		strings.Contains(msg, "panic") || strings.Count(msg, "\n") != 1 || !strings.Contains(msg, "--backend sim") {
		t.Errorf("stderr: %q", msg)
	}
}

// TestLeftoverIsChecked: a backend that keeps something after the run's own
// frees is reported, not declared clean.
func TestLeftoverIsChecked(t *testing.T) {
	withFake(t)
	old := Backends["cudavmm"]
	defer func() { Backends["cudavmm"] = old }()
	Backends["cudavmm"] = func(o Options) (*Opened, error) {
		op, err := old(o)
		if err != nil {
			return nil, err
		}
		op.Held = func() (int, int, int) { return 0, 1, 0 }
		return op, nil
	}
	rep, err := Run(context.Background(), Options{Backend: "cudavmm", Pages: 2, Batch: 1})
	if err == nil || rep == nil || !strings.Contains(rep.Leftover, "1 pages") {
		t.Fatalf("leftover went unnoticed: %v %+v", err, rep)
	}
}
