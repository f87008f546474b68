package uvm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/ioctl"
)

// DevicePath is the UVM character device.
const DevicePath = "/dev/nvidia-uvm"

// States a probe reports.
const (
	StatePatched  = "patched"   // the vattn commands answer: ABI version, sizes, limits are filled in
	StateStock    = "stock"     // nvidia-uvm without the vattn patch; Errno says what it answered
	StateNoDevice = "no-device" // no UVM device (module not loaded), or no UVM file in this process
	StateNotUVM   = "not-uvm"   // the path is not the UVM device
)

// ProbeResult is what a probe found, ready for JSON.
type ProbeResult struct {
	State  string `json:"state"`
	Path   string `json:"path,omitempty"`   // the device, or /proc/self/fd/N in a process probe
	FD     int    `json:"fd,omitempty"`     // process probe: the va_space file it asked
	Errno  string `json:"errno,omitempty"`  // stock/not-uvm: "ENOSYS", "EINVAL", "ENOTTY"
	Detail string `json:"detail,omitempty"` // one line for people

	ABIVersion uint32 `json:"abi_version,omitempty"`
	MaxBatch   uint32 `json:"max_batch,omitempty"`
	MaxGPUs    uint32 `json:"max_gpus,omitempty"`
}

// Patched reports whether the vattn module's batched commands answered, in
// the ABI this build speaks.
func (r ProbeResult) Patched() bool { return r.State == StatePatched }

// askInfo issues GET_INFO on fd and classifies the answer. A file that is not a
// va_space file yet gives NV_ERR_ILLEGAL_ACTION, returned as an error for the
// caller to act on.
func askInfo(fd int, r *ProbeResult) error {
	p, err := ioctl.GetInfo(fd)
	var errno unix.Errno
	switch {
	case err == nil:
	case errors.Is(err, ioctl.ErrUnknownCommand) && errors.As(err, &errno):
		r.Errno = unix.ErrnoName(errno)
		if errno == unix.ENOTTY {
			r.State, r.Detail = StateNotUVM, "the file does not take UVM commands (ENOTTY): not the nvidia-uvm device"
			return nil
		}
		r.State = StateStock
		r.Detail = fmt.Sprintf("stock nvidia-uvm: the vattn commands are unknown to it (%s); small pages go through the stock path, one call per run; the vattn module ('vattnctl install-driver') would batch them", r.Errno)
		return nil
	default:
		return err
	}
	r.ABIVersion = p.ABIVersion
	if p.ABIVersion != ioctl.UVM_VATTN_ABI_VERSION {
		r.State = StateStock
		r.Detail = fmt.Sprintf("a vattn module of ABI %d, this build speaks ABI %d: its commands are not used; small pages go through the stock path", p.ABIVersion, ioctl.UVM_VATTN_ABI_VERSION)
		return nil
	}
	r.State = StatePatched
	r.MaxBatch, r.MaxGPUs = p.MaxBatch, p.MaxGpus
	r.Detail = fmt.Sprintf("vattn ABI %d: batched map and unmap into UVM external ranges, up to %d entries and %d GPUs a call", p.ABIVersion, p.MaxBatch, p.MaxGpus)
	return nil
}

// ProbeDevice asks the UVM device at path (DevicePath when "") which driver is
// behind it, for admin tools without a CUDA context. It opens its own file, asks,
// and closes it; if the vattn commands want a va_space file, it initializes one on
// that file, which the close destroys, so nothing is left behind. A missing device
// is StateNoDevice and a file that is not UVM StateNotUVM, neither an error; the
// error is for what the probe could not find out (no permission, a failed command).
func ProbeDevice(path string) (ProbeResult, error) {
	if path == "" {
		path = DevicePath
	}
	r := ProbeResult{Path: path}
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		r.State, r.Detail = StateNoDevice, path+" does not exist: nvidia-uvm is not loaded (modprobe nvidia-uvm, or run any CUDA program once)"
		return r, nil
	case err != nil:
		return r, fmt.Errorf("probe %s: %w", path, err)
	case st.Mode()&os.ModeCharDevice == 0:
		r.State, r.Detail = StateNotUVM, path+" is not a character device"
		return r, nil
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return r, fmt.Errorf("probe %s: open: %w", path, err)
	}
	defer unix.Close(fd)
	err = askInfo(fd, &r)
	if errors.Is(err, ioctl.NV_ERR_ILLEGAL_ACTION) {
		// A fresh file is not a va_space file yet. Make it one (bound to this
		// process's mm, gone at close) and ask again.
		if _, ierr := ioctl.Initialize(fd, 0); ierr != nil {
			return r, fmt.Errorf("probe %s: %w", path, ierr)
		}
		err = askInfo(fd, &r)
	}
	if err != nil {
		return r, fmt.Errorf("probe %s: %w", path, err)
	}
	return r, nil
}

// procFDDir is where a process's open files are listed; tests point it elsewhere.
var procFDDir = "/proc/self/fd"

// uvmFDs lists the descriptors of this process open on the UVM device.
func uvmFDs() ([]int, error) {
	ents, err := os.ReadDir(procFDDir)
	if err != nil {
		return nil, fmt.Errorf("list open files: %w", err)
	}
	var fds []int
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if target, err := os.Readlink(filepath.Join(procFDDir, e.Name())); err == nil && target == DevicePath {
			fds = append(fds, fd)
		}
	}
	return fds, nil
}

// ProbeProcess finds the CUDA driver's own UVM file among this process's open
// files and asks it. CUDA can hold two (a va_space file and an mm file); the
// va_space one is the one that answers UVM_PAGEABLE_MEM_ACCESS with NV_OK, and the
// only one whose va_space CUDA kernels use. Call it after a CUDA context exists.
// Nothing is opened or changed.
func ProbeProcess() (ProbeResult, error) {
	r := ProbeResult{}
	fds, err := uvmFDs()
	if err != nil {
		return r, fmt.Errorf("probe process: %w", err)
	}
	if len(fds) == 0 {
		r.State, r.Detail = StateNoDevice, "no "+DevicePath+" file is open in this process (no CUDA context yet?)"
		return r, nil
	}
	var tried []error
	for _, fd := range fds {
		_, err := ioctl.PageableMemAccess(fd)
		if err != nil {
			tried = append(tried, fmt.Errorf("fd %d: %w", fd, err))
			continue
		}
		r.FD, r.Path = fd, filepath.Join(procFDDir, strconv.Itoa(fd))
		if err := askInfo(fd, &r); err != nil {
			return r, fmt.Errorf("probe process: fd %d: %w", fd, err)
		}
		return r, nil
	}
	return r, fmt.Errorf("probe process: none of the %d %s files is a va_space file: %w", len(fds), DevicePath, errors.Join(tried...))
}

// VASpaceFDs lists this process's /dev/nvidia-uvm files that are va_space
// files (UVM_PAGEABLE_MEM_ACCESS answers NV_OK), in descriptor order. A CUDA
// process normally has one; the stock path, which must use the one whose
// va_space holds CUDA's GPU, tries each.
func VASpaceFDs() ([]int, error) {
	fds, err := uvmFDs()
	if err != nil {
		return nil, fmt.Errorf("probe process: %w", err)
	}
	var out []int
	for _, fd := range fds {
		if _, err := ioctl.PageableMemAccess(fd); err == nil {
			out = append(out, fd)
		}
	}
	if len(out) == 0 {
		if len(fds) == 0 {
			return nil, fmt.Errorf("no %s file is open in this process (no CUDA context yet?): %w", DevicePath, backend.ErrUnavailable)
		}
		return nil, fmt.Errorf("none of the %d %s files is a va_space file: %w", len(fds), DevicePath, backend.ErrUnavailable)
	}
	return out, nil
}

// SetProcFDDir points ProbeProcess at another directory of open-file links and
// returns a function restoring the old one. It exists for tests of packages
// built on this one (with a fake module answering the ioctls); nothing else may
// call it.
func SetProcFDDir(dir string) (restore func()) {
	old := procFDDir
	procFDDir = dir
	return func() { procFDDir = old }
}
