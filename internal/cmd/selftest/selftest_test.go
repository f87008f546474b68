package selftest

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vattn/vattn/backend/uvm"
	"github.com/vattn/vattn/backend/uvm/stockfake"
	"github.com/vattn/vattn/cuda"
	"github.com/vattn/vattn/cuda/cudafake"
	"github.com/vattn/vattn/internal/cli"
	"github.com/vattn/vattn/internal/cmd/cmdtest"
	"github.com/vattn/vattn/ioctl"
)

func run(t *testing.T, format cli.Format, args ...string) (int, string, string) {
	t.Helper()
	return cmdtest.Run(t, NewCmd(&format), args...)
}

func withDevice(t *testing.T, path string) {
	t.Helper()
	old := devicePath
	devicePath = path
	t.Cleanup(func() { devicePath = old })
}

func TestNoDevice(t *testing.T) {
	withDevice(t, filepath.Join(t.TempDir(), "nvidia-uvm"))
	code, out, errOut := run(t, cli.Table)
	if code != cli.ExitDriverNotLoaded || !strings.Contains(errOut, "no UVM device") || !strings.Contains(out, "FAIL") || !strings.Contains(out, "not loaded") {
		t.Fatalf("code %d\n%s\n%s", code, out, errOut)
	}
	code, out, _ = run(t, cli.JSON)
	var rep Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 9 || rep.Result != "no-device" || rep.Code != 9 || rep.Probe.State != "no-device" {
		t.Fatalf("json: %v %+v", err, rep)
	}
}

func TestNotUVM(t *testing.T) {
	withDevice(t, os.DevNull)
	code, out, _ := run(t, cli.Table)
	if code != cli.ExitDriverNotLoaded || !strings.Contains(out, "not-uvm") {
		t.Fatalf("code %d\n%s", code, out)
	}
}

// On the stock driver selftest checks the stock small-page path: over the
// fake CUDA driver and the fake RM/UVM, every step runs and the fakes hold
// nothing afterwards; the pattern read-back fails because the fake GPU stores
// nothing, which proves the check can fail.
func TestStockDriver(t *testing.T) {
	withDevice(t, os.DevNull)
	defer ioctl.SetRawIoctl(func(int, uint32, unsafe.Pointer) unix.Errno { return unix.ENOSYS })()
	cf := cmdtest.FakeCUDA(t, &cudaLib)
	var fakes []*stockfake.Driver
	newStockDriver = func() uvm.StockDriver { d := stockfake.New(); fakes = append(fakes, d); return d }
	defer func() { newStockDriver = func() uvm.StockDriver { return nil } }()
	code, out, errOut := run(t, cli.JSON)
	var rep Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if code != cli.ExitFailure || rep.Mode != "stock" || rep.Probe.Errno != "ENOSYS" {
		t.Fatalf("code %d %+v\n%s", code, rep, errOut)
	}
	steps := map[string]Step{}
	for _, s := range rep.Steps {
		steps[s.Name] = s
	}
	var refusals int
	for name, s := range steps {
		if strings.HasPrefix(name, "refusals: ") {
			refusals++
			if !s.OK && name != "refusals: the path still maps and holds data afterwards" {
				t.Errorf("%s: %s", name, s.Detail)
			}
		}
	}
	if refusals < 9 {
		t.Errorf("only %d refusal steps ran", refusals)
	}
	for _, ps := range []string{"64k", "128k", "256k", "2m"} {
		for _, name := range []string{"map them in one batch", "write a pattern with a GPU kernel", "close"} {
			if s, ok := steps[ps+": "+name]; !ok || !s.OK {
				t.Errorf("%s: %s: %+v", ps, name, s)
			}
		}
		if s := steps[ps+": read it back (GPU and host)"]; s.OK {
			t.Errorf("%s: read-back on a GPU that stores nothing passed: %+v", ps, s)
		}
	}
	if s := steps["close with live pages releases them"]; !s.OK {
		t.Errorf("close with live pages: %+v", s)
	}
	for _, d := range fakes {
		if live := d.Live(); live != (stockfake.Live{}) {
			t.Errorf("selftest left %s in the driver", live)
		}
	}
	if live := cf.Live(); live != (cudafake.Live{}) {
		t.Errorf("selftest left %s", live)
	}

	// A GPU before Pascal cannot do small pages at all: exit 3.
	cf.GPUs[0].Major = 5
	code, _, errOut = run(t, cli.Table)
	if code != cli.ExitNotSupported || !strings.Contains(errOut, "Pascal") {
		t.Errorf("Maxwell: code %d: %s", code, errOut)
	}
}

func TestLibcudaMissing(t *testing.T) {
	withDevice(t, os.DevNull)
	// A patched module answering GET_INFO on the device file.
	defer ioctl.SetRawIoctl(func(_ int, cmd uint32, arg unsafe.Pointer) unix.Errno {
		if cmd == ioctl.UVM_VATTN_GET_INFO {
			(*ioctl.UVM_VATTN_GET_INFO_PARAMS)(arg).ABIVersion = ioctl.UVM_VATTN_ABI_VERSION
		}
		return 0
	})()
	old := cudaLib
	cudaLib = func() (*cudaLibT, error) { return nil, errNoLib }
	defer func() { cudaLib = old }()
	code, out, _ := run(t, cli.Table)
	if code != cli.ExitLibraryMissing || !strings.Contains(out, "PASS  probe") || !strings.Contains(out, "FAIL  load libcuda") {
		t.Fatalf("code %d\n%s", code, out)
	}
}

type cudaLibT = cuda.Lib

var errNoLib = errors.New("libcuda.so.1 not found")

// With the vattn module loaded selftest checks the batched path: over the
// fake CUDA driver and the fake RM/UVM with the module's batched commands,
// every step runs, the report says "batched", each refused batch is refused
// with the status the header gives and changes nothing, and the fakes hold
// nothing afterwards; the pattern read-back fails because the fake GPU stores
// nothing, which proves the check can fail.
func TestBatchedOnFakes(t *testing.T) {
	withDevice(t, os.DevNull)
	defer ioctl.SetRawIoctl(func(_ int, cmd uint32, arg unsafe.Pointer) unix.Errno {
		if cmd == ioctl.UVM_VATTN_GET_INFO {
			p := (*ioctl.UVM_VATTN_GET_INFO_PARAMS)(arg)
			p.ABIVersion, p.MaxBatch, p.MaxGpus = ioctl.UVM_VATTN_ABI_VERSION, ioctl.UVM_VATTN_MAX_BATCH, ioctl.UVM_VATTN_MAX_GPUS
		}
		return 0
	})()
	cf := cmdtest.FakeCUDA(t, &cudaLib)
	var fakes []*stockfake.Driver
	newStockDriver = func() uvm.StockDriver {
		d := stockfake.New()
		fakes = append(fakes, d)
		return stockfake.Batched{Driver: d}
	}
	defer func() { newStockDriver = func() uvm.StockDriver { return nil } }()
	code, out, errOut := run(t, cli.JSON)
	var rep Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if code != cli.ExitFailure || rep.Result != "fail" || !rep.Probe.Patched() || rep.Path != "batched" || rep.Mode != "patched" {
		t.Fatalf("code %d result %s path %s: %s\n%s", code, rep.Result, rep.Path, errOut, out)
	}
	steps := map[string]Step{}
	for _, s := range rep.Steps {
		steps[s.Name] = s
	}
	var refused int
	for name, s := range steps {
		if strings.HasPrefix(name, "batch refusals: ") {
			refused++
			if !s.OK {
				t.Errorf("%s: %s", name, s.Detail)
			}
		}
	}
	if refused < 9 {
		t.Errorf("only %d batch refusal steps ran", refused)
	}
	if s, ok := steps["path: batched"]; !ok || !s.OK {
		t.Errorf("no path step: %+v", rep.Steps)
	}
	for _, ps := range []string{"64k", "128k", "256k", "2m"} {
		for _, name := range []string{"map them in one batch", "write a pattern with a GPU kernel", "close"} {
			if s, ok := steps[ps+": "+name]; !ok || !s.OK {
				t.Errorf("%s: %s: %+v", ps, name, s)
			}
		}
	}
	if s := steps["close with live pages releases them"]; !s.OK {
		t.Errorf("close with live pages: %+v", s)
	}
	for _, d := range fakes {
		if live := d.Live(); live != (stockfake.Live{}) {
			t.Errorf("selftest left %s in the driver", live)
		}
		if d.Calls(stockfake.OpMapBatch) == 0 {
			t.Errorf("a backend never used the batched map")
		}
	}
	if live := cf.Live(); live != (cudafake.Live{}) {
		t.Errorf("selftest left %s", live)
	}
}
