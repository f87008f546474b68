package uvm

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vattn/vattn/backend/uvm/uvmfake"
	"github.com/vattn/vattn/ioctl"
	"github.com/vattn/vattn/pagesize"
)

var testUUID = [16]byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}

func TestProbeDeviceMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nvidia-uvm")
	r, err := ProbeDevice(path)
	if err != nil || r.State != StateNoDevice || !strings.Contains(r.Detail, "not loaded") {
		t.Fatalf("missing device: %+v %v", r, err)
	}
}

func TestProbeDeviceNotCharDevice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := ProbeDevice(path)
	if err != nil || r.State != StateNotUVM {
		t.Fatalf("regular file: %+v %v", r, err)
	}
}

// /dev/null is a character device that takes no ioctl: the real kernel answers
// ENOTTY, and the probe leaves nothing open.
func TestProbeDeviceDevNull(t *testing.T) {
	before := openFDs(t)
	r, err := ProbeDevice(os.DevNull)
	if err != nil || r.State != StateNotUVM || r.Errno != "ENOTTY" {
		t.Fatalf("/dev/null: %+v %v", r, err)
	}
	if after := openFDs(t); after != before {
		t.Errorf("open files %d before, %d after", before, after)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestProbeDeviceStock(t *testing.T) {
	for _, errno := range []unix.Errno{unix.ENOSYS, unix.EINVAL} {
		f := uvmfake.New(-1, testUUID, 16)
		f.Errno = errno
		restore := f.Install()
		r, err := ProbeDevice(os.DevNull)
		restore()
		if err != nil || r.State != StateStock || r.Errno != unix.ErrnoName(errno) || !strings.Contains(r.Detail, "vattnctl install-driver") {
			t.Errorf("%v: %+v %v", errno, r, err)
		}
		if f.Inits() != 0 {
			t.Errorf("%v: a stock driver needs no va_space, %d made", errno, f.Inits())
		}
	}
}

func TestProbeDevicePatched(t *testing.T) {
	f := uvmfake.New(-1, testUUID, 16) // no file is a va_space file until initialized
	defer f.Install()()
	r, err := ProbeDevice(os.DevNull)
	if err != nil || !r.Patched() {
		t.Fatalf("patched: %+v %v", r, err)
	}
	if f.Inits() != 1 || r.ABIVersion != ioctl.UVM_VATTN_ABI_VERSION || r.MaxBatch != 16 || len(r.GPUs) != 1 {
		t.Fatalf("patched: inits %d, %+v", f.Inits(), r)
	}
	if g := r.GPUs[0]; g.UUID != "GPU-deadbeef-0102-0304-0506-0708090a0b0c" || len(g.PageSizes) != 4 || g.PageSizes[0] != pagesize.Size64K {
		t.Errorf("gpu %+v", g)
	}
}

func TestProbeDeviceFailures(t *testing.T) {
	f := uvmfake.New(-1, testUUID, 16)
	defer f.Install()()
	f.FailNext(ioctl.UVM_VATTN_GET_INFO, 1, 0, unix.EAGAIN, 0)
	if _, err := ProbeDevice(os.DevNull); !errors.Is(err, unix.EAGAIN) {
		t.Errorf("EAGAIN: %v", err)
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o700)
	if os.Geteuid() != 0 {
		if _, err := ProbeDevice(filepath.Join(dir, "x")); err == nil {
			t.Error("unreadable directory: no error")
		}
	}
}

// fdDir makes a fake /proc/self/fd: each name links to its target.
func fdDir(t *testing.T, links map[int]string) {
	t.Helper()
	dir := t.TempDir()
	for fd, target := range links {
		if err := os.Symlink(target, filepath.Join(dir, strconv.Itoa(fd))); err != nil {
			t.Fatal(err)
		}
	}
	old := procFDDir
	procFDDir = dir
	t.Cleanup(func() { procFDDir = old })
}

func TestProbeProcessPicksVASpaceFile(t *testing.T) {
	// CUDA holds an mm file (5) and the va_space file (6); 7 is something else.
	fdDir(t, map[int]string{5: DevicePath, 6: DevicePath, 7: os.DevNull})
	f := uvmfake.New(6, testUUID, 16)
	defer f.Install()()
	r, err := ProbeProcess()
	if err != nil || !r.Patched() || r.FD != 6 {
		t.Fatalf("process probe: %+v %v", r, err)
	}
	f.Errno = unix.ENOSYS
	r, err = ProbeProcess()
	if err != nil || r.State != StateStock || r.Errno != "ENOSYS" || r.FD != 6 {
		t.Fatalf("stock: %+v %v", r, err)
	}
}

func TestProbeProcessNoFile(t *testing.T) {
	fdDir(t, map[int]string{3: os.DevNull})
	r, err := ProbeProcess()
	if err != nil || r.State != StateNoDevice {
		t.Fatalf("%+v %v", r, err)
	}
	fdDir(t, map[int]string{5: DevicePath})
	f := uvmfake.New(99, testUUID, 16) // fd 5 is not a va_space file
	defer f.Install()()
	if _, err := ProbeProcess(); !errors.Is(err, ioctl.NV_ERR_ILLEGAL_ACTION) {
		t.Errorf("no va_space file: %v", err)
	}
	procFDDir = filepath.Join(t.TempDir(), "gone")
	if _, err := ProbeProcess(); err == nil {
		t.Error("unreadable fd directory: no error")
	}
}
