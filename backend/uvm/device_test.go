//go:build gpu

// Device tests: they need an NVIDIA GPU, nvidia-uvm loaded and libcuda.so.1.
// They hold on the stock driver (the GPU machine's) and on a patched one: the
// probe must classify the real module, both probes must agree, Open must refuse
// the patched path exactly when the module is stock, and the automatic path must
// follow the module.

package uvm

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/internal/cudatest"
)

func logJSON(t *testing.T, what string, v any) {
	t.Helper()
	b, _ := json.Marshal(v)
	t.Logf("%s: %s", what, b)
}

func checkReal(t *testing.T, r ProbeResult) {
	t.Helper()
	switch r.State {
	case StateStock:
		if r.Errno != "ENOSYS" && r.Errno != "EINVAL" {
			t.Errorf("stock module answered %q; the header says ENOSYS (>= 580) or EINVAL (<= 550)", r.Errno)
		}
	case StatePatched:
		if r.ABIVersion == 0 || r.MaxBatch == 0 {
			t.Errorf("patched module reported %+v", r)
		}
	default:
		t.Errorf("state %q on a machine with a GPU: %s", r.State, r.Detail)
	}
}

func TestDeviceProbeDevice(t *testing.T) {
	before := openFDs(t)
	r, err := ProbeDevice("")
	if err != nil {
		t.Fatal(err)
	}
	logJSON(t, "ProbeDevice", r)
	checkReal(t, r)
	if after := openFDs(t); after != before {
		t.Errorf("probe left files open: %d before, %d after", before, after)
	}
}

func TestDeviceProbeProcessAndOpen(t *testing.T) {
	devProbe, err := ProbeDevice("")
	if err != nil {
		t.Fatal(err)
	}
	gpu := cudatest.Open(t)
	gpu.Free(t) // making the context current has CUDA open its UVM file
	fds, err := uvmFDs()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("CUDA holds %d %s file(s): %v", len(fds), DevicePath, fds)
	if len(fds) == 0 {
		t.Fatal("a CUDA context exists but no UVM file is open")
	}
	r, err := ProbeProcess()
	if err != nil {
		t.Fatal(err)
	}
	logJSON(t, "ProbeProcess", r)
	checkReal(t, r)
	if r.State != devProbe.State || r.Errno != devProbe.Errno {
		t.Errorf("process probe %s/%s, device probe %s/%s", r.State, r.Errno, devProbe.State, devProbe.Errno)
	}
	// The patched path, asked for: refused exactly when the module is stock.
	b, err := Open(Options{Lib: gpu.Lib, Mode: ModePatched})
	t.Logf("Open(patched): %v", err)
	if r.State == StateStock {
		if !errors.Is(err, ErrNotPatched) || !errors.Is(err, backend.ErrUnavailable) || !strings.Contains(err.Error(), "vattnctl install-driver") {
			t.Fatalf("Open(patched) on the stock module: %v", err)
		}
	} else {
		if err != nil {
			t.Fatalf("Open(patched) on the patched module: %v", err)
		}
		if b.Path() != PathBatched {
			t.Errorf("Open(patched): path %q (%s)", b.Path(), b.PathDetail())
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// Auto: the path follows the module the probe found.
	b, err = Open(Options{Lib: gpu.Lib})
	if err != nil {
		t.Fatalf("Open(auto): %v", err)
	}
	want := PathStock
	if r.State == StatePatched {
		want = PathBatched
	}
	if b.Path() != want {
		t.Errorf("Open(auto) on a %s module: path %q (%s)", r.State, b.Path(), b.PathDetail())
	}
	t.Logf("Open(auto): %s path: %s", b.Path(), b.PathDetail())
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}
