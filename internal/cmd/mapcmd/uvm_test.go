package mapcmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vattn/vattn/backend/uvm"
	"github.com/vattn/vattn/cuda/cudafake"
	"github.com/vattn/vattn/internal/cli"
	"github.com/vattn/vattn/ioctl"
)

// A stock module: the uvm entry refuses with exit 3 and says how to install
// the patch, and leaves nothing in the driver.
func TestMapUVMStock(t *testing.T) {
	f := withFake(t)
	dir := t.TempDir()
	if err := os.Symlink(uvm.DevicePath, filepath.Join(dir, "6")); err != nil {
		t.Fatal(err)
	}
	defer uvm.SetProcFDDir(dir)()
	defer ioctl.SetRawIoctl(func(_ int, cmd uint32, arg unsafe.Pointer) unix.Errno {
		if cmd == ioctl.UVM_PAGEABLE_MEM_ACCESS {
			return 0 // fd 6 is CUDA's va_space file
		}
		return unix.ENOSYS
	})()
	code, _, errOut := run(t, "--backend", "uvm", "--page-size", "64k")
	if code != cli.ExitNotSupported || !strings.Contains(errOut, "vattnctl install-driver") || !strings.Contains(errOut, "ENOSYS") {
		t.Fatalf("code %d: %s", code, errOut)
	}
	if live := f.Live(); live != (cudafake.Live{}) {
		t.Errorf("left %s", live)
	}
}
