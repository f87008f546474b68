package ioctl

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vattn/vattn/ioctl/internal/abiprobe"
)

// goStructs lists every params struct of the header with its Go mirror.
var goStructs = map[string]reflect.Type{
	"UVM_VATTN_GET_INFO_PARAMS":    reflect.TypeFor[UVM_VATTN_GET_INFO_PARAMS](),
	"UVM_VATTN_MAP_ENTRY":          reflect.TypeFor[UVM_VATTN_MAP_ENTRY](),
	"UVM_VATTN_UNMAP_ENTRY":        reflect.TypeFor[UVM_VATTN_UNMAP_ENTRY](),
	"UVM_VATTN_MAP_BATCH_PARAMS":   reflect.TypeFor[UVM_VATTN_MAP_BATCH_PARAMS](),
	"UVM_VATTN_UNMAP_BATCH_PARAMS": reflect.TypeFor[UVM_VATTN_UNMAP_BATCH_PARAMS](),
}

// goConsts lists every constant of the header with its Go mirror (by name, so no
// number is typed twice).
var goConsts = map[string]uint64{
	"UVM_VATTN_ABI_VERSION":               UVM_VATTN_ABI_VERSION,
	"UVM_VATTN_IOCTL_BASE":                UVM_VATTN_IOCTL_BASE,
	"UVM_VATTN_GET_INFO":                  UVM_VATTN_GET_INFO,
	"UVM_VATTN_MAP_BATCH":                 UVM_VATTN_MAP_BATCH,
	"UVM_VATTN_UNMAP_BATCH":               UVM_VATTN_UNMAP_BATCH,
	"UVM_VATTN_IOCTL_FIRST":               UVM_VATTN_IOCTL_FIRST,
	"UVM_VATTN_IOCTL_LAST":                UVM_VATTN_IOCTL_LAST,
	"UVM_VATTN_MAX_BATCH":                 UVM_VATTN_MAX_BATCH,
	"UVM_VATTN_MAX_GPUS":                  UVM_VATTN_MAX_GPUS,
	"UVM_VATTN_PAGE_SIZE":                 UVM_VATTN_PAGE_SIZE,
	"UVM_VATTN_NV_OK":                     uint64(NV_OK),
	"UVM_VATTN_NV_ERR_ILLEGAL_ACTION":     uint64(NV_ERR_ILLEGAL_ACTION),
	"UVM_VATTN_NV_ERR_INVALID_ADDRESS":    uint64(NV_ERR_INVALID_ADDRESS),
	"UVM_VATTN_NV_ERR_INVALID_ARGUMENT":   uint64(NV_ERR_INVALID_ARGUMENT),
	"UVM_VATTN_NV_ERR_INVALID_DEVICE":     uint64(NV_ERR_INVALID_DEVICE),
	"UVM_VATTN_NV_ERR_INVALID_LIMIT":      uint64(NV_ERR_INVALID_LIMIT),
	"UVM_VATTN_NV_ERR_INVALID_OFFSET":     uint64(NV_ERR_INVALID_OFFSET),
	"UVM_VATTN_NV_ERR_NO_MEMORY":          uint64(NV_ERR_NO_MEMORY),
	"UVM_VATTN_NV_ERR_NOT_SUPPORTED":      uint64(NV_ERR_NOT_SUPPORTED),
	"UVM_VATTN_NV_ERR_UVM_ADDRESS_IN_USE": uint64(NV_ERR_UVM_ADDRESS_IN_USE),
}

// runProbe compiles testdata/abi_probe.c against the header and returns its output.
func runProbe(t *testing.T) []byte {
	t.Helper()
	cc, err := exec.LookPath("gcc")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("gcc not found, needed for the ABI probe: %v", err)
		}
		t.Skipf("gcc not found; the ABI probe needs it: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "abi_probe")
	out, err := exec.Command(cc, "-std=c11", "-Wall", "-Wextra", "-Werror",
		"-I", filepath.Join("..", "kernel", "nvidia-uvm-patch"),
		"-o", bin, filepath.Join("testdata", "abi_probe.c")).CombinedOutput()
	if err != nil {
		t.Fatalf("compile abi_probe: %v\n%s", err, out)
	}
	out, err = exec.Command(bin).Output()
	if err != nil {
		t.Fatalf("run abi_probe: %v", err)
	}
	return out
}

func TestABIMatchesHeader(t *testing.T) {
	sizes := abiprobe.Check(t, runProbe(t), goStructs, goConsts)
	for name, size := range sizes {
		if size%8 != 0 {
			t.Errorf("%s: C size %d is not a multiple of 8", name, size)
		}
	}
	// Every status the header lists has a name in the Go table.
	for name, v := range goConsts {
		if strings.HasPrefix(name, "UVM_VATTN_NV_") && Status(v).Name() != strings.TrimPrefix(name, "UVM_VATTN_") {
			t.Errorf("%s: Go name %q", name, Status(v).Name())
		}
	}
}

// TestProbeListsEveryHeaderStruct guards the probe itself: a typedef added to the
// header but not to the probe would otherwise go unchecked.
func TestProbeListsEveryHeaderStruct(t *testing.T) {
	hdr, err := os.ReadFile(filepath.Join("..", "kernel", "nvidia-uvm-patch", "uvm_vattn_ioctl.h"))
	if err != nil {
		t.Fatal(err)
	}
	probe, err := os.ReadFile(filepath.Join("testdata", "abi_probe.c"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(hdr), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "} UVM_VATTN_") {
			name := strings.TrimSuffix(strings.TrimPrefix(line, "} "), ";")
			if !strings.Contains(string(probe), "S("+name+")") {
				t.Errorf("header struct %s is not probed", name)
			}
		}
		if strings.HasPrefix(line, "#define UVM_VATTN_") && !strings.HasPrefix(line, "#define UVM_VATTN_IOCTL_H") {
			name := strings.Fields(line)[1]
			if strings.Contains(name, "(") {
				continue
			}
			if !strings.Contains(string(probe), "C("+name+")") {
				t.Errorf("header constant %s is not probed", name)
			}
		}
	}
}
