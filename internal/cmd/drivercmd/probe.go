package drivercmd

import (
	"github.com/vattn/vattn/backend/uvm"
	"github.com/vattn/vattn/driver"
)

// ProbeUVM answers driver.ProbeUVM with backend/uvm's admin-mode probe, so
// status and install-driver see the module the way the library does.
func ProbeUVM(path string) (driver.Probe, error) {
	r, err := uvm.ProbeDevice(path)
	if err != nil {
		return driver.Probe{}, err
	}
	p := driver.Probe{Probed: true, Patched: r.State == uvm.StatePatched, ABIVersion: r.ABIVersion, Detail: r.Detail}
	if r.State != uvm.StatePatched {
		p.Detail = r.State
		if r.Errno != "" {
			p.Detail += " (" + r.Errno + ")"
		}
		if r.Detail != "" {
			p.Detail += ": " + r.Detail
		}
		return p, nil
	}
	return p, nil
}
