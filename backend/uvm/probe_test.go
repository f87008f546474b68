package uvm

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vattn/vattn/ioctl"
)

// testModule answers what the probes ask of nvidia-uvm: UVM_INITIALIZE,
// UVM_PAGEABLE_MEM_ACCESS (refused on a file that is not a va_space file) and
// the vattn module's GET_INFO, or, with Errno set, what a stock module answers
// for unknown commands.
type testModule struct {
	mu      sync.Mutex
	vaFDs   map[int]bool
	inits   int
	Errno   unix.Errno
	ABI     uint32
	failGet unix.Errno // the next GET_INFO fails with this errno
}

func newTestModule(vaFD int) *testModule {
	m := &testModule{vaFDs: map[int]bool{}, ABI: ioctl.UVM_VATTN_ABI_VERSION}
	if vaFD >= 0 {
		m.vaFDs[vaFD] = true
	}
	return m
}

func (m *testModule) Inits() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.inits
}

func (m *testModule) Install() (restore func()) { return ioctl.SetRawIoctl(m.ioctl) }

func (m *testModule) ioctl(fd int, cmd uint32, arg unsafe.Pointer) unix.Errno {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch cmd {
	case ioctl.UVM_INITIALIZE:
		m.inits++
		m.vaFDs[fd] = true
		return 0
	case ioctl.UVM_PAGEABLE_MEM_ACCESS:
		if !m.vaFDs[fd] {
			(*ioctl.UVM_PAGEABLE_MEM_ACCESS_PARAMS)(arg).RMStatus = ioctl.NV_ERR_ILLEGAL_ACTION
		}
		return 0
	}
	if m.Errno != 0 {
		return m.Errno
	}
	if cmd != ioctl.UVM_VATTN_GET_INFO {
		return unix.EINVAL
	}
	if e := m.failGet; e != 0 {
		m.failGet = 0
		return e
	}
	p := (*ioctl.UVM_VATTN_GET_INFO_PARAMS)(arg)
	p.ABIVersion, p.MaxBatch, p.MaxGpus = m.ABI, 16, ioctl.UVM_VATTN_MAX_GPUS
	if !m.vaFDs[fd] {
		p.RMStatus = ioctl.NV_ERR_ILLEGAL_ACTION
	}
	return 0
}

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
		f := newTestModule(-1)
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
	f := newTestModule(-1) // no file is a va_space file until initialized
	defer f.Install()()
	r, err := ProbeDevice(os.DevNull)
	if err != nil || !r.Patched() {
		t.Fatalf("patched: %+v %v", r, err)
	}
	if f.Inits() != 1 || r.ABIVersion != ioctl.UVM_VATTN_ABI_VERSION || r.MaxBatch != 16 || r.MaxGPUs != ioctl.UVM_VATTN_MAX_GPUS ||
		!strings.Contains(r.Detail, "batched") {
		t.Fatalf("patched: inits %d, %+v", f.Inits(), r)
	}
}

// A module of the retired ABI 1 answers GET_INFO with version 1: the probe
// reads it as not usable, and the stock path serves.
func TestProbeDeviceOtherABI(t *testing.T) {
	f := newTestModule(-1)
	f.ABI = 1
	defer f.Install()()
	r, err := ProbeDevice(os.DevNull)
	if err != nil || r.Patched() || r.State != StateStock || r.ABIVersion != 1 || !strings.Contains(r.Detail, "ABI 1") {
		t.Fatalf("ABI 1: %+v %v", r, err)
	}
}

func TestProbeDeviceFailures(t *testing.T) {
	f := newTestModule(-1)
	defer f.Install()()
	f.failGet = unix.EAGAIN
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
	f := newTestModule(6)
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
	f := newTestModule(99) // fd 5 is not a va_space file
	defer f.Install()()
	if _, err := ProbeProcess(); !errors.Is(err, ioctl.NV_ERR_ILLEGAL_ACTION) {
		t.Errorf("no va_space file: %v", err)
	}
	procFDDir = filepath.Join(t.TempDir(), "gone")
	if _, err := ProbeProcess(); err == nil {
		t.Error("unreadable fd directory: no error")
	}
}
