package driver

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// The GPU machine: stock open 580.159.04 loaded, nvidia_uvm loaded, signatures
// enforced, no dkms, modinfo or mokutil.
func TestStatusOnStockEnforcingMachine(t *testing.T) {
	m := newFake(t, "580.159.04")
	m.write("/sys/module/nvidia/version", "580.159.04\n")
	m.write("/sys/module/nvidia_uvm/srcversion", "5D0B7B55F1A2C3E4F5A6B7C\n")
	m.write("/sys/module/module/parameters/sig_enforce", "Y\n")
	for _, tool := range []string{"dkms", "modinfo", "mokutil", "modprobe"} {
		m.missing[tool] = true
	}
	s, err := m.env.CollectStatus(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if !s.DriverLoaded || s.Driver.Version != "580.159.04" || s.Driver.Flavor != FlavorOpen || s.DriverVersionSys != "580.159.04" {
		t.Errorf("driver = %+v (%s)", s.Driver, s.DriverVersionSys)
	}
	// No series of its own: the nearest proven one of its branch, which install-driver
	// still has to prove against the source.
	if !s.Supported || s.Series != "580.142" {
		t.Errorf("580.159.04: supported %v, series %q", s.Supported, s.Series)
	}
	if s.SigEnforce != "enforced" {
		t.Errorf("sig_enforce = %q", s.SigEnforce)
	}
	if s.SmallPages != "available, stock path (stock driver: one call per run): 64KiB, 128KiB, 256KiB, 2MiB" || s.MapPath != "stock" {
		t.Errorf("small pages = %q", s.SmallPages)
	}
	if s.Package.State != "unknown (dkms not installed)" || s.Tools["dkms"] != NotInstalled || s.Tools["mokutil"] != NotInstalled {
		t.Errorf("package = %+v tools = %v", s.Package, s.Tools)
	}
	if s.Probe.Detail != "not probed" || s.LoadedIsVattn || s.SecureBoot != "not an EFI system" {
		t.Errorf("probe = %+v vattn = %v sb = %q", s.Probe, s.LoadedIsVattn, s.SecureBoot)
	}
}

func TestStatusUsesProbe(t *testing.T) {
	m := newFake(t, "535.261.03")
	m.write("/sys/module/nvidia_uvm/srcversion", "X\n")
	m.write("/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c", "\x06\x00\x00\x00\x01")
	m.missing["mokutil"] = true
	old := ProbeUVM
	defer func() { ProbeUVM = old }()
	ProbeUVM = func(string) (Probe, error) {
		return Probe{Patched: true, ABIVersion: 2}, nil
	}
	s, err := m.env.CollectStatus(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if !s.Probe.Probed || s.SmallPages != "available, batched path (the vattn module: one call per batch): 64KiB, 128KiB, 256KiB, 2MiB" || s.MapPath != "batched" || s.SecureBoot != "SecureBoot enabled (efivars)" {
		t.Errorf("status = %+v", s)
	}
	ProbeUVM = func(string) (Probe, error) { return Probe{}, errors.New("no such ioctl") }
	s, _ = m.env.CollectStatus(context.Background(), "")
	if s.Probe.Probed || s.Probe.Detail != "no such ioctl" {
		t.Errorf("probe = %+v", s.Probe)
	}
}

func TestStatusDriverNotLoadedAndUnknownKernel(t *testing.T) {
	m := newFake(t, "535.261.03")
	m.missing["modprobe"] = true
	if _, err := m.env.CollectStatus(context.Background(), "9.9.9"); !errors.Is(err, ErrKernelNotInstalled) {
		t.Fatalf("err = %v", err)
	}
	removeAll(t, m, "/proc/driver")
	s, err := m.env.CollectStatus(context.Background(), "")
	if err != nil || s.DriverLoaded || s.SmallPages != "unavailable: the NVIDIA driver is not loaded" {
		t.Fatalf("status = %+v, %v", s, err)
	}
	if s.InstalledNVIDIA != "535.261.03" || !s.Supported || s.Package.State != NotInstalled {
		t.Errorf("status = %+v", s)
	}
}

// A stock driver of a branch vattn has no ABI tables for: small pages are
// unavailable, and status says which branches are known.
func TestStatusUnknownBranch(t *testing.T) {
	m := newFake(t, "999.1.2")
	m.write("/sys/module/nvidia_uvm/srcversion", "X\n")
	s, err := m.env.CollectStatus(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.SmallPages, "unavailable: ") || !strings.Contains(s.SmallPages, "999.1.2") || !strings.Contains(s.SmallPages, "580") {
		t.Errorf("small pages = %q", s.SmallPages)
	}
}
