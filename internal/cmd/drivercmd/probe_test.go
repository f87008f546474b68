package drivercmd

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestProbeUVMOnNonUVMDevices(t *testing.T) {
	p, err := ProbeUVM("/dev/null")
	if err != nil || !p.Probed || p.Patched || !strings.HasPrefix(p.Detail, "not-uvm") {
		t.Fatalf("/dev/null: %+v, %v", p, err)
	}
	p, err = ProbeUVM(filepath.Join(t.TempDir(), "nvidia-uvm"))
	if err != nil || p.Patched || !strings.HasPrefix(p.Detail, "no-device") {
		t.Fatalf("missing device: %+v, %v", p, err)
	}
}
