package selftest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vattn/vattn/cuda"
	"github.com/vattn/vattn/internal/cli"
	"github.com/vattn/vattn/ioctl"
)

func run(t *testing.T, format cli.Format, args ...string) (int, string, string) {
	t.Helper()
	cmd := NewCmd(&format)
	var out, errOut bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.ExecuteContext(context.Background())
	if err != nil {
		errOut.WriteString(err.Error())
	}
	return cli.CodeOf(err), out.String(), errOut.String()
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

func TestStockDriver(t *testing.T) {
	withDevice(t, os.DevNull)
	defer ioctl.SetRawIoctl(func(int, uint32, unsafe.Pointer) unix.Errno { return unix.ENOSYS })()
	code, out, errOut := run(t, cli.JSON)
	var rep Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if code != cli.ExitNotSupported || rep.Result != "not-supported" || rep.Probe.Errno != "ENOSYS" || !strings.Contains(errOut, "vattnctl install-driver") {
		t.Fatalf("code %d %+v\n%s", code, rep, errOut)
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
