package driver

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// Flavor is the kind of NVIDIA kernel module: open (kernel-open) or proprietary.
type Flavor string

// Flavors.
const (
	FlavorOpen        Flavor = "open"
	FlavorProprietary Flavor = "proprietary"
)

// Driver is what /proc/driver/nvidia/version says about the loaded nvidia.ko.
type Driver struct {
	Version string `json:"version"`
	Flavor  Flavor `json:"flavor"`
	Arch    string `json:"arch,omitempty"`
	GCC     string `json:"gcc,omitempty"`
}

// ErrDriverNotLoaded means nvidia.ko is not loaded (no /proc/driver/nvidia/version).
var ErrDriverNotLoaded = errors.New("the NVIDIA driver is not loaded")

// ErrBadVersionFile means /proc/driver/nvidia/version has an unknown format.
var ErrBadVersionFile = errors.New("unrecognized /proc/driver/nvidia/version")

var (
	// "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build ..."
	openRE = regexp.MustCompile(`NVIDIA UNIX Open Kernel Module for (\S+)\s+(\d+\.\d+(?:\.\d+)?)\b`)
	// "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.261.03  Wed Jul 30 ..."
	propRE = regexp.MustCompile(`NVIDIA UNIX (\S+) Kernel Module\s+(\d+\.\d+(?:\.\d+)?)\b`)
	gccRE  = regexp.MustCompile(`(?m)^GCC version:\s*(.*?)\s*$`)
)

// ParseProcVersion parses the text of /proc/driver/nvidia/version.
func ParseProcVersion(text string) (Driver, error) {
	var d Driver
	line, _, _ := strings.Cut(text, "\n")
	if m := openRE.FindStringSubmatch(line); m != nil {
		d = Driver{Version: m[2], Flavor: FlavorOpen, Arch: m[1]}
	} else if m := propRE.FindStringSubmatch(line); m != nil {
		d = Driver{Version: m[2], Flavor: FlavorProprietary, Arch: m[1]}
	} else {
		return Driver{}, fmt.Errorf("%w: %q", ErrBadVersionFile, line)
	}
	if m := gccRE.FindStringSubmatch(text); m != nil {
		d.GCC = m[1]
	}
	return d, nil
}

// LoadedDriver reads the loaded driver from /proc/driver/nvidia/version under e.Root.
func (e *Env) LoadedDriver() (Driver, error) {
	b, err := os.ReadFile(e.path("/proc/driver/nvidia/version"))
	if errors.Is(err, os.ErrNotExist) {
		return Driver{}, ErrDriverNotLoaded
	}
	if err != nil {
		return Driver{}, fmt.Errorf("read driver version: %w", err)
	}
	return ParseProcVersion(string(b))
}

// ModuleAttr reads /sys/module/<mod>/<attr> ("" when the module is not loaded or
// the attribute is absent: built-in modules have no srcversion).
func (e *Env) ModuleAttr(mod, attr string) string {
	b, err := os.ReadFile(e.path("/sys/module/" + mod + "/" + attr))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// ModuleLoaded reports whether /sys/module/<mod> exists.
func (e *Env) ModuleLoaded(mod string) bool {
	_, err := os.Stat(e.path("/sys/module/" + mod))
	return err == nil
}

// RunningKernel returns the running kernel release (/proc/sys/kernel/osrelease, which
// is what uname -r prints).
func (e *Env) RunningKernel() (string, error) {
	b, err := os.ReadFile(e.path("/proc/sys/kernel/osrelease"))
	if err != nil {
		return "", fmt.Errorf("running kernel: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// ErrKernelNotInstalled means /lib/modules/<kver> does not exist.
var ErrKernelNotInstalled = errors.New("kernel not installed")

// InstalledKernels lists the kernels under /lib/modules.
func (e *Env) InstalledKernels() []string {
	ents, _ := os.ReadDir(e.path("/lib/modules"))
	var out []string
	for _, d := range ents {
		if d.IsDir() {
			out = append(out, d.Name())
		}
	}
	return out
}

// CheckKernel returns an error wrapping ErrKernelNotInstalled, naming the installed
// kernels, when kver has no /lib/modules/<kver>.
func (e *Env) CheckKernel(kver string) error {
	if fi, err := os.Stat(e.path("/lib/modules/" + kver)); err == nil && fi.IsDir() {
		return nil
	}
	return fmt.Errorf("kernel %s: %w (installed: %s)", kver, ErrKernelNotInstalled,
		strings.Join(e.InstalledKernels(), ", "))
}

// ErrNoHeaders means the kernel's build headers (/lib/modules/<kver>/build) are missing.
var ErrNoHeaders = errors.New("kernel headers not installed")

// CheckHeaders reports whether the kernel headers for kver are installed.
func (e *Env) CheckHeaders(kver string) error {
	if _, err := os.Stat(e.path("/lib/modules/" + kver + "/build/Makefile")); err != nil {
		return fmt.Errorf("kernel %s: %w (install linux-headers-%s)", kver, ErrNoHeaders, kver)
	}
	return nil
}
