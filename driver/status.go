package driver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vattn/vattn/dkms"
	"github.com/vattn/vattn/ioctl"
	"github.com/vattn/vattn/ioctl/branch"
)

// Probe is what the loaded nvidia-uvm says about the vattn ABI.
type Probe struct {
	Probed     bool   `json:"probed"`
	Patched    bool   `json:"patched"`
	ABIVersion uint32 `json:"abi_version,omitempty"`
	Detail     string `json:"detail,omitempty"`
}

// ProbeUVM asks the nvidia-uvm device at path for the vattn ABI. nil
// (the default) means status reports "not probed"; vattnctl sets it to backend/uvm's
// probe.
var ProbeUVM func(path string) (Probe, error)

// VerifyLoaded checks that the loaded module answers UVM_VATTN_GET_INFO: through
// ProbeUVM when set, else by issuing the command itself. A driver status in the reply
// still proves the command exists; an errno (ENOTTY, EINVAL) means a stock module.
func (e *Env) VerifyLoaded() error {
	dev := e.path(UVMDevice)
	if ProbeUVM != nil {
		p, err := ProbeUVM(dev)
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		if !p.Patched {
			return fmt.Errorf("verify: %s does not answer the vattn ABI (%s)", dev, p.Detail)
		}
		return nil
	}
	fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("verify: open %s: %w", dev, err)
	}
	defer unix.Close(fd)
	p, err := ioctl.GetInfo(fd)
	var st ioctl.Status
	if (err == nil || errors.As(err, &st)) && p.ABIVersion == ioctl.UVM_VATTN_ABI_VERSION {
		return nil
	}
	if err == nil || errors.As(err, &st) {
		return fmt.Errorf("verify: %s answers vattn ABI %d, this build speaks ABI %d", dev, p.ABIVersion, ioctl.UVM_VATTN_ABI_VERSION)
	}
	return fmt.Errorf("verify: %s does not answer UVM_VATTN_GET_INFO: %w", dev, err)
}

// Status is what vattnctl status reports.
type Status struct {
	Kernel        string  `json:"kernel"`
	RunningKernel string  `json:"running_kernel"`
	DriverLoaded  bool    `json:"driver_loaded"`
	Driver        *Driver `json:"driver,omitempty"`
	// DriverVersionSys is /sys/module/nvidia/version (matches Driver.Version when loaded).
	DriverVersionSys string `json:"driver_version_sys,omitempty"`
	// InstalledNVIDIA is the nvidia.ko version installed for Kernel (modinfo).
	InstalledNVIDIA string `json:"installed_nvidia_version"`
	Supported       bool   `json:"patch_supported"`
	// Series is the proven version whose series install-driver would try: the version's
	// own, or the nearest proven one of its branch (empty: none in its branch).
	Series  string `json:"series,omitempty"`
	Package struct {
		Name    string      `json:"name"`
		State   string      `json:"state"` // DKMS's word for Kernel, or "not installed"
		Entries []DKMSEntry `json:"entries,omitempty"`
	} `json:"dkms"`
	ModprobeResolves    string `json:"modprobe_resolves"` // the nvidia-uvm file modprobe loads for Kernel
	Redirected          bool   `json:"redirected"`        // our modprobe.d redirect is in place
	UVMLoaded           bool   `json:"uvm_loaded"`
	LoadedSrcversion    string `json:"loaded_srcversion,omitempty"`
	InstalledSrcversion string `json:"installed_srcversion,omitempty"` // of our nvidia-uvm-vattn.ko
	LoadedIsVattn       bool   `json:"loaded_is_vattn"`
	Probe               Probe  `json:"probe"`
	SmallPages          string `json:"small_pages"` // "available, <path> path (...): sizes", "unavailable: ..."
	// MapPath is the calls small pages are mapped with: "batched" (the vattn
	// module, one call per batch), "stock" (NVIDIA's driver, one call per
	// run), or "" when small pages are unavailable.
	MapPath    string            `json:"map_path,omitempty"`
	SigEnforce string            `json:"sig_enforce"` // "enforced", "not enforced", "unknown"
	SecureBoot string            `json:"secure_boot"`
	Signer     string            `json:"signer,omitempty"`
	Tools      map[string]string `json:"tools"`
	Warnings   []string          `json:"warnings,omitempty"`
}

// CollectStatus gathers the status for kernel kver ("" = running). It fails only when
// kver is not installed; everything missing is reported in the Status.
func (e *Env) CollectStatus(ctx context.Context, kver string) (*Status, error) {
	s := &Status{Tools: map[string]string{}}
	s.RunningKernel, _ = e.RunningKernel()
	s.Kernel = kver
	if s.Kernel == "" {
		s.Kernel = s.RunningKernel
	}
	if err := e.CheckKernel(s.Kernel); err != nil && kver != "" {
		return nil, err
	}
	for _, t := range []string{"dkms", "modinfo", "modprobe", "mokutil"} {
		if e.LookPath != nil {
			if p, err := e.LookPath(t); err == nil {
				s.Tools[t] = p
				continue
			}
		}
		s.Tools[t] = NotInstalled
	}
	if d, err := e.LoadedDriver(); err == nil {
		s.DriverLoaded, s.Driver = true, &d
	} else if !errors.Is(err, ErrDriverNotLoaded) {
		s.Warnings = append(s.Warnings, err.Error())
	}
	s.DriverVersionSys = e.ModuleAttr("nvidia", "version")
	if v, err := e.InstalledNVIDIA(ctx, s.Kernel); err == nil {
		s.InstalledNVIDIA = v
	} else {
		s.InstalledNVIDIA = err.Error()
	}
	ver := s.InstalledNVIDIA
	if s.Driver != nil && s.Kernel == s.RunningKernel {
		ver = s.Driver.Version
	}
	s.Series, s.Supported = NearestSeries(ver)

	s.Package.Name = dkms.PackageName
	s.Package.State = NotInstalled
	entries, have, err := e.DKMSStatus(ctx, dkms.PackageName)
	switch {
	case !have:
		s.Package.State = "unknown (dkms " + NotInstalled + ")"
	case err != nil:
		s.Warnings = append(s.Warnings, err.Error())
	default:
		s.Package.Entries = entries
		for _, en := range entries {
			if en.Kernel == s.Kernel || (en.Kernel == "" && s.Package.State == NotInstalled) {
				s.Package.State = en.State
			}
		}
	}
	s.ModprobeResolves, s.Redirected = e.resolveUVM(ctx, s.Kernel)
	if e.Have("modinfo") {
		if out, err := e.Exec(ctx, "modinfo", "-k", s.Kernel, "-F", "srcversion", dkms.ModuleFile); err == nil {
			s.InstalledSrcversion = strings.TrimSpace(string(out))
		}
		if out, err := e.Exec(ctx, "modinfo", "-k", s.Kernel, "-F", "signer", dkms.ModuleFile); err == nil {
			s.Signer = strings.TrimSpace(string(out))
		}
	}
	s.UVMLoaded = e.ModuleLoaded("nvidia_uvm")
	s.LoadedSrcversion = e.ModuleAttr("nvidia_uvm", "srcversion")
	s.LoadedIsVattn = s.UVMLoaded && s.LoadedSrcversion != "" && s.LoadedSrcversion == s.InstalledSrcversion
	switch {
	case !s.UVMLoaded:
		s.Probe.Detail = "nvidia_uvm not loaded"
	case ProbeUVM == nil:
		s.Probe.Detail = "not probed"
	default:
		p, err := ProbeUVM(e.path(UVMDevice))
		if err != nil {
			p.Detail = err.Error()
		}
		p.Probed = err == nil
		s.Probe = p
	}
	version := s.DriverVersionSys
	if s.Driver != nil && s.Driver.Version != "" {
		version = s.Driver.Version
	}
	const sizes = "64KiB, 128KiB, 256KiB, 2MiB"
	switch {
	case !s.DriverLoaded:
		s.SmallPages = "unavailable: the NVIDIA driver is not loaded"
	case !s.UVMLoaded:
		s.SmallPages = "unavailable: nvidia_uvm is not loaded"
	case !s.Probe.Probed && s.LoadedIsVattn:
		s.SmallPages = "unknown: the loaded nvidia_uvm is vattn-uvm, not probed"
	default:
		// Both paths map RM memory into UVM external ranges with the
		// branch's stock commands; the vattn module batches the mapping.
		if _, err := branch.Lookup(version); err != nil {
			s.SmallPages = "unavailable: " + err.Error()
		} else if s.Probe.Patched {
			s.MapPath = "batched"
			s.SmallPages = "available, batched path (the vattn module: one call per batch): " + sizes
		} else {
			s.MapPath = "stock"
			s.SmallPages = "available, stock path (stock driver: one call per run): " + sizes
		}
	}
	s.SigEnforce = sigEnforce(e.ModuleAttr("module", "parameters/sig_enforce"))
	s.SecureBoot = e.secureBoot(ctx)
	return s, nil
}

func sigEnforce(v string) string {
	switch v {
	case "Y":
		return "enforced"
	case "N":
		return "not enforced"
	}
	return "unknown"
}

// resolveUVM says which file modprobe loads for nvidia-uvm on kver. Our redirect is an
// install command, which --show-depends prints as such; follow it to our module.
func (e *Env) resolveUVM(ctx context.Context, kver string) (string, bool) {
	if !e.Have("modprobe") {
		return "unknown (modprobe " + NotInstalled + ")", false
	}
	out, err := e.Exec(ctx, "modprobe", "-S", kver, "--show-depends", "nvidia-uvm")
	if err != nil {
		return "none (" + strings.TrimSpace(string(out)) + ")", false
	}
	text := string(out)
	if strings.Contains(text, dkms.InstallMarker) {
		if o2, err := e.Exec(ctx, "modprobe", "-S", kver, "--show-depends", dkms.ModuleFile); err == nil {
			return lastInsmod(string(o2)), true
		}
		o3, _ := e.Exec(ctx, "modprobe", "-S", kver, "--ignore-install", "--show-depends", "nvidia-uvm")
		return lastInsmod(string(o3)) + " (no vattn build for this kernel)", true
	}
	return lastInsmod(text), false
}

func lastInsmod(text string) string {
	last := ""
	for _, l := range strings.Split(text, "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "insmod" {
			last = f[1]
		} else if len(f) >= 2 && f[0] == "builtin" {
			last = "builtin " + f[1]
		}
	}
	if last == "" {
		return strings.TrimSpace(text)
	}
	return last
}

const secureBootVar = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"

// secureBoot reports the Secure Boot state: mokutil's words when installed, else the
// EFI variable, else "not an EFI system".
func (e *Env) secureBoot(ctx context.Context) string {
	if e.Have("mokutil") {
		if out, err := e.Exec(ctx, "mokutil", "--sb-state"); err == nil {
			return strings.TrimSpace(string(out))
		}
	}
	b, err := os.ReadFile(e.path(secureBootVar))
	switch {
	case err == nil && len(b) == 5: // 4 attribute bytes, then the value
		if b[4] == 1 {
			return "SecureBoot enabled (efivars)"
		}
		return "SecureBoot disabled (efivars)"
	case err == nil:
		return "unknown (unexpected efivar size)"
	}
	if _, err := os.Stat(e.path("/sys/firmware/efi")); err != nil {
		return "not an EFI system"
	}
	return "unknown (mokutil " + NotInstalled + ")"
}
