package branch

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"

	"github.com/vattn/vattn/internal/testenv"
	"github.com/vattn/vattn/ioctl"
	"github.com/vattn/vattn/ioctl/internal/abiprobe"
	"github.com/vattn/vattn/ioctl/rm"
)

// headersDir is where NVIDIA's headers of every branch are: $VATTN_NVIDIA_HEADERS,
// else ../shared/nvidia-headers beside the repository root. Missing, the test
// fails under CI and skips elsewhere.
func headersDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("VATTN_NVIDIA_HEADERS")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "nvidia-headers")
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		if testenv.InCI() {
			t.Fatalf("NVIDIA headers not found at %s (set VATTN_NVIDIA_HEADERS): %v", dir, err)
		}
		t.Skipf("skipping: NVIDIA headers not found at %s (set VATTN_NVIDIA_HEADERS)", dir)
	}
	return dir
}

// goStructs is every C struct the probe prints with its Go mirror for abi.
func goStructs(abi *ABI) map[string]reflect.Type {
	return map[string]reflect.Type{
		"NVOS21_PARAMETERS":                     reflect.TypeFor[rm.NVOS21_PARAMETERS](),
		"NVOS54_PARAMETERS":                     reflect.TypeFor[rm.NVOS54_PARAMETERS](),
		"NVOS00_PARAMETERS":                     reflect.TypeFor[rm.NVOS00_PARAMETERS](),
		"nv_pci_info_t":                         reflect.TypeFor[rm.NvPciInfo](),
		"nv_ioctl_card_info_t":                  reflect.TypeFor[rm.NvCardInfo](),
		"nv_ioctl_register_fd_t":                reflect.TypeFor[rm.NvRegisterFD](),
		"NV0080_ALLOC_PARAMETERS":               reflect.TypeFor[rm.NV0080_ALLOC_PARAMETERS](),
		"NV2080_ALLOC_PARAMETERS":               reflect.TypeFor[rm.NV2080_ALLOC_PARAMETERS](),
		"NV_MEMORY_ALLOCATION_PARAMS":           abi.RM.MemoryAllocationParams,
		"NV0000_CTRL_GPU_GET_UUID_INFO_PARAMS":  reflect.TypeFor[rm.NV0000_CTRL_GPU_GET_UUID_INFO_PARAMS](),
		"NV0000_CTRL_GPU_GET_ID_INFO_V2_PARAMS": reflect.TypeFor[rm.NV0000_CTRL_GPU_GET_ID_INFO_V2_PARAMS](),
		"UvmGpuMappingAttributes":               reflect.TypeFor[ioctl.UvmGpuMappingAttributes](),
		"UVM_CREATE_EXTERNAL_RANGE_PARAMS":      reflect.TypeFor[ioctl.UVM_CREATE_EXTERNAL_RANGE_PARAMS](),
		"UVM_MAP_EXTERNAL_ALLOCATION_PARAMS":    abi.UVM.MapExternal.Type,
		"UVM_UNMAP_EXTERNAL_PARAMS":             reflect.TypeFor[ioctl.UVM_UNMAP_EXTERNAL_PARAMS](),
		"UVM_FREE_PARAMS":                       abi.UVM.Free.Type,
	}
}

// goConsts is every constant the probe prints with the Go value (by name, so no
// number is typed twice).
var goConsts = map[string]uint64{
	"NV_IOCTL_MAGIC":         rm.NV_IOCTL_MAGIC,
	"NV_IOCTL_BASE":          rm.NV_IOCTL_BASE,
	"NV_ESC_CARD_INFO":       rm.NV_ESC_CARD_INFO,
	"NV_ESC_REGISTER_FD":     rm.NV_ESC_REGISTER_FD,
	"NV_ESC_RM_ALLOC":        rm.NV_ESC_RM_ALLOC,
	"NV_ESC_RM_CONTROL":      rm.NV_ESC_RM_CONTROL,
	"NV_ESC_RM_FREE":         rm.NV_ESC_RM_FREE,
	"ioc:NV_ESC_RM_ALLOC":    uint64(rm.Request(rm.NV_ESC_RM_ALLOC, reflect.TypeFor[rm.NVOS21_PARAMETERS]().Size())),
	"ioc:NV_ESC_RM_CONTROL":  uint64(rm.Request(rm.NV_ESC_RM_CONTROL, reflect.TypeFor[rm.NVOS54_PARAMETERS]().Size())),
	"ioc:NV_ESC_RM_FREE":     uint64(rm.Request(rm.NV_ESC_RM_FREE, reflect.TypeFor[rm.NVOS00_PARAMETERS]().Size())),
	"ioc:NV_ESC_REGISTER_FD": uint64(rm.Request(rm.NV_ESC_REGISTER_FD, reflect.TypeFor[rm.NvRegisterFD]().Size())),
	"NV_MAX_DEVICES":         rm.NV_MAX_DEVICES,
	"NV01_ROOT_CLIENT":       rm.NV01_ROOT_CLIENT,
	"NV01_DEVICE_0":          rm.NV01_DEVICE_0,
	"NV20_SUBDEVICE_0":       rm.NV20_SUBDEVICE_0,
	"NV01_MEMORY_LOCAL_USER": rm.NV01_MEMORY_LOCAL_USER,
	"NV_DEVICE_ALLOCATION_VAMODE_MULTIPLE_VASPACES":         rm.NV_DEVICE_ALLOCATION_VAMODE_MULTIPLE_VASPACES,
	"NV0000_CTRL_CMD_GPU_GET_UUID_INFO":                     rm.NV0000_CTRL_CMD_GPU_GET_UUID_INFO,
	"NV0000_CTRL_CMD_GPU_GET_UUID_INFO_FLAGS_FORMAT_BINARY": rm.NV0000_CTRL_CMD_GPU_GET_UUID_INFO_FLAGS_FORMAT_BINARY,
	"NV0000_CTRL_CMD_GPU_GET_UUID_INFO_FLAGS_TYPE_SHA1":     rm.NV0000_CTRL_CMD_GPU_GET_UUID_INFO_FLAGS_TYPE_SHA1,
	"NV0000_GPU_MAX_GID_LENGTH":                             rm.NV0000_GPU_MAX_GID_LENGTH,
	"NV0000_CTRL_CMD_GPU_GET_ID_INFO_V2":                    rm.NV0000_CTRL_CMD_GPU_GET_ID_INFO_V2,
	"NV0000_CTRL_GPU_INVALID_ID":                            rm.NV0000_CTRL_GPU_INVALID_ID,
	"NVOS32_TYPE_IMAGE":                                     rm.NVOS32_TYPE_IMAGE,
	"NVOS32_ALLOC_FLAGS_IGNORE_BANK_PLACEMENT":              rm.NVOS32_ALLOC_FLAGS_IGNORE_BANK_PLACEMENT,
	"NVOS32_ALLOC_FLAGS_ALIGNMENT_FORCE":                    rm.NVOS32_ALLOC_FLAGS_ALIGNMENT_FORCE,
	"NVOS32_ALLOC_FLAGS_MAP_NOT_REQUIRED":                   rm.NVOS32_ALLOC_FLAGS_MAP_NOT_REQUIRED,
	"NVOS32_ALLOC_FLAGS_PERSISTENT_VIDMEM":                  rm.NVOS32_ALLOC_FLAGS_PERSISTENT_VIDMEM,
	"NVOS32_ATTR_PAGE_SIZE_BIG":                             rm.NVOS32_ATTR_PAGE_SIZE_BIG,
	"NVOS32_ATTR_PAGE_SIZE_HUGE":                            rm.NVOS32_ATTR_PAGE_SIZE_HUGE,
	"NVOS32_ATTR_LOCATION_VIDMEM":                           rm.NVOS32_ATTR_LOCATION_VIDMEM,
	"NVOS32_ATTR_PHYSICALITY_ALLOW_NONCONTIGUOUS":           rm.NVOS32_ATTR_PHYSICALITY_ALLOW_NONCONTIGUOUS,
	"DRF_SHIFT(NVOS32_ATTR_PAGE_SIZE)":                      rm.NVOS32_ATTR_PAGE_SIZE_SHIFT,
	"DRF_SHIFT(NVOS32_ATTR_LOCATION)":                       rm.NVOS32_ATTR_LOCATION_SHIFT,
	"DRF_SHIFT(NVOS32_ATTR_PHYSICALITY)":                    rm.NVOS32_ATTR_PHYSICALITY_SHIFT,
	"UVM_CREATE_EXTERNAL_RANGE":                             ioctl.UVM_CREATE_EXTERNAL_RANGE,
	"UVM_MAP_EXTERNAL_ALLOCATION":                           ioctl.UVM_MAP_EXTERNAL_ALLOCATION,
	"UVM_UNMAP_EXTERNAL":                                    ioctl.UVM_UNMAP_EXTERNAL,
	"UVM_FREE":                                              ioctl.UVM_FREE,
	"UvmGpuMappingTypeDefault":                              ioctl.UvmGpuMappingTypeDefault,
	"UvmGpuCachingTypeDefault":                              ioctl.UvmGpuCachingTypeDefault,
	"UvmGpuFormatTypeDefault":                               ioctl.UvmGpuFormatTypeDefault,
	"UvmGpuFormatElementBitsDefault":                        ioctl.UvmGpuFormatElementBitsDefault,
	"UvmGpuCompressionTypeDefault":                          ioctl.UvmGpuCompressionTypeDefault,
}

// statusNames are the NV_STATUS codes the probe prints; their Go values and
// names come from ioctl.Status.
var statusNames = []ioctl.Status{
	ioctl.NV_OK, ioctl.NV_ERR_ILLEGAL_ACTION, ioctl.NV_ERR_IN_USE, ioctl.NV_ERR_INSUFFICIENT_RESOURCES,
	ioctl.NV_ERR_INVALID_ADDRESS, ioctl.NV_ERR_INVALID_ARGUMENT, ioctl.NV_ERR_INVALID_DEVICE,
	ioctl.NV_ERR_INVALID_LIMIT, ioctl.NV_ERR_INVALID_OFFSET, ioctl.NV_ERR_INVALID_STATE,
	ioctl.NV_ERR_NO_MEMORY, ioctl.NV_ERR_NOT_SUPPORTED, ioctl.NV_ERR_OBJECT_NOT_FOUND,
	ioctl.NV_ERR_UVM_ADDRESS_IN_USE, ioctl.NV_ERR_INVALID_CLIENT, ioctl.NV_ERR_INVALID_OBJECT_HANDLE,
	ioctl.NV_ERR_INVALID_CLASS, ioctl.NV_ERR_INSUFFICIENT_PERMISSIONS, ioctl.NV_ERR_OPERATING_SYSTEM,
	ioctl.NV_ERR_INVALID_PARAM_STRUCT,
}

func allConsts() map[string]uint64 {
	m := make(map[string]uint64, len(goConsts)+len(statusNames))
	for k, v := range goConsts {
		m[k] = v
	}
	for _, s := range statusNames {
		m[s.Name()] = uint64(s)
	}
	return m
}

// TestStockABI compiles testdata/stock_abi_probe.c against each branch folder of
// the headers and compares every size, field offset, command number and constant
// the Go side uses with what gcc says. Every folder must have a Table entry and
// every entry a folder.
func TestStockABI(t *testing.T) {
	dir := headersDir(t)
	cc := testenv.NeedTool(t, "gcc", "the distribution's gcc package")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	folders := map[string]bool{}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		tag := e.Name()
		folders[tag] = true
		t.Run(tag, func(t *testing.T) {
			var abi *ABI
			for i := range Table {
				if Table[i].Tag == tag {
					abi = &Table[i]
				}
			}
			if abi == nil {
				t.Fatalf("headers of %s have no entry in Table: add the branch (and any new layout)", tag)
			}
			if got, err := Lookup(tag); err != nil || got != abi {
				t.Errorf("Lookup(%q) = %v, %v; want the %d entry", tag, got, err, abi.Major)
			}
			checkBranch(t, cc, filepath.Join(dir, tag), abi)
		})
	}
	for _, a := range Table {
		if !folders[a.Tag] {
			t.Errorf("Table entry %d names headers %s, which %s lacks", a.Major, a.Tag, dir)
		}
	}
}

func checkBranch(t *testing.T, cc, hdr string, abi *ABI) {
	bin := filepath.Join(t.TempDir(), "stock_abi_probe")
	args := []string{"-std=gnu11", "-Wall", "-Werror", "-DVATTN_MAJOR=" + strconv.Itoa(abi.Major)}
	for _, inc := range []string{"src/common/sdk/nvidia/inc", "src/common/sdk/nvidia/inc/ctrl",
		"kernel-open/common/inc", "kernel-open/nvidia-uvm", "src/nvidia/arch/nvalloc/unix/include"} {
		args = append(args, "-I", filepath.Join(hdr, inc))
	}
	args = append(args, "-o", bin, filepath.Join("testdata", "stock_abi_probe.c"))
	if out, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
		t.Fatalf("compile stock_abi_probe: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatalf("run stock_abi_probe: %v", err)
	}

	abiprobe.Check(t, out, goStructs(abi), allConsts())

	// The client fills the newest memory-allocation block and passes the
	// branch's size: the branch's layout must be a prefix of it.
	newest := reflect.TypeFor[rm.NV_MEMORY_ALLOCATION_PARAMS]()
	mine := abi.RM.MemoryAllocationParams
	if mine.Size() > newest.Size() {
		t.Errorf("branch %d's memory-allocation block is larger than %s", abi.Major, newest.Name())
	}
	for i := range mine.NumField() {
		f := mine.Field(i)
		if f.Name == "_" {
			continue
		}
		if g, ok := newest.FieldByName(f.Name); !ok || g.Offset != f.Offset || g.Type != f.Type {
			t.Errorf("branch %d's %s is not at the same place in %s", abi.Major, f.Name, newest.Name())
		}
	}
}
