package cuda

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/vattn/vattn/backend"
)

func TestABILayout(t *testing.T) {
	var p AllocationProp
	if unsafe.Sizeof(p) != 32 || unsafe.Offsetof(p.Location) != 8 || unsafe.Offsetof(p.Win32HandleMetaData) != 16 ||
		unsafe.Offsetof(p.CompressionType) != 24 || unsafe.Offsetof(p.Usage) != 26 {
		t.Errorf("CUmemAllocationProp layout: size %d", unsafe.Sizeof(p))
	}
	var a AccessDesc
	if unsafe.Sizeof(a) != 12 || unsafe.Offsetof(a.Flags) != 8 {
		t.Errorf("CUmemAccessDesc layout: size %d", unsafe.Sizeof(a))
	}
	if unsafe.Sizeof(UUID{}) != 16 {
		t.Error("CUuuid is not 16 bytes")
	}
}

func TestSymbolsCoverDriver(t *testing.T) {
	typ := reflect.TypeFor[Driver]()
	if typ.NumField() != len(Symbols) {
		t.Errorf("Driver has %d fields, Symbols %d entries", typ.NumField(), len(Symbols))
	}
	for i := range typ.NumField() {
		if _, ok := Symbols[typ.Field(i).Name]; !ok {
			t.Errorf("Driver.%s has no symbol", typ.Field(i).Name)
		}
	}
	for _, versioned := range []string{"MemGetInfo", "DevicePrimaryCtxRelease", "DeviceGetUuid", "MemcpyDtoH", "MemsetD32", "EventDestroy", "StreamDestroy"} {
		if !strings.HasSuffix(Symbols[versioned], "_v2") {
			t.Errorf("%s is bound to %s, not the _v2 symbol", versioned, Symbols[versioned])
		}
	}
}

type fakeOpener struct {
	libs map[string]map[string]bool // path → symbols present
}

func (o fakeOpener) open(path string) (func(string) (uintptr, error), error) {
	syms, ok := o.libs[path]
	if !ok {
		return nil, errors.New(path + ": cannot open shared object file: No such file or directory")
	}
	return func(s string) (uintptr, error) {
		if !syms[s] {
			return 0, errors.New("undefined symbol: " + s)
		}
		return 0x1000, nil
	}, nil
}

func allSymbols(except ...string) map[string]bool {
	m := map[string]bool{}
	for _, s := range Symbols {
		m[s] = true
	}
	for _, s := range except {
		delete(m, s)
	}
	return m
}

func TestLoadMissingLibrary(t *testing.T) {
	_, _, err := loadFrom(fakeOpener{}, []string{"libcuda.so.1", "/usr/lib64/libcuda.so.1"})
	var le *LibraryError
	if !errors.As(err, &le) || !errors.Is(err, ErrLibraryMissing) || !errors.Is(err, backend.ErrUnavailable) {
		t.Fatalf("missing library: %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"libcuda.so.1", "/usr/lib64/libcuda.so.1", "No such file", "install the NVIDIA driver", LibraryEnv} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q: %s", want, msg)
		}
	}
}

func TestLoadPicksFirstThatOpens(t *testing.T) {
	o := fakeOpener{libs: map[string]map[string]bool{"/b/libcuda.so.1": allSymbols()}}
	d, path, err := loadFrom(o, []string{"/a/libcuda.so.1", "/b/libcuda.so.1"})
	if err != nil || path != "/b/libcuda.so.1" {
		t.Fatalf("load: %q %v", path, err)
	}
	v := reflect.ValueOf(d).Elem()
	for i := range v.NumField() {
		if v.Field(i).IsNil() {
			t.Errorf("Driver.%s not bound", v.Type().Field(i).Name)
		}
	}
}

func TestLoadMissingSymbols(t *testing.T) {
	o := fakeOpener{libs: map[string]map[string]bool{"/old/libcuda.so.1": allSymbols("cuMemMap", "cuDeviceGetUuid_v2")}}
	_, _, err := loadFrom(o, []string{"/old/libcuda.so.1"})
	var ms *MissingSymbolError
	if !errors.As(err, &ms) || !errors.Is(err, backend.ErrUnavailable) {
		t.Fatalf("missing symbols: %v", err)
	}
	if !reflect.DeepEqual(ms.Symbols, []string{"cuDeviceGetUuid_v2", "cuMemMap"}) || ms.Library != "/old/libcuda.so.1" {
		t.Errorf("reported %v in %q", ms.Symbols, ms.Library)
	}
	if !strings.Contains(err.Error(), "/old/libcuda.so.1 lacks cuDeviceGetUuid_v2, cuMemMap") {
		t.Errorf("message: %v", err)
	}
}

// TestLoadRealDlopen goes through purego's dlopen: a path that does not exist,
// and a compiled library that has only two of the symbols.
func TestLoadRealDlopen(t *testing.T) {
	_, _, err := loadFrom(dlopener{}, []string{"/nonexistent/libcuda.so.1"})
	if !errors.Is(err, ErrLibraryMissing) || !strings.Contains(err.Error(), "/nonexistent/libcuda.so.1") {
		t.Fatalf("dlopen of a missing file: %v", err)
	}
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("gcc not found; CI must have gcc")
		}
		t.Skip("gcc not found: cannot build the partial libcuda")
	}
	so := filepath.Join(t.TempDir(), "libcuda.so.1")
	if out, err := exec.Command(gcc, "-shared", "-fPIC", "-o", so, "testdata/partial_libcuda.c").CombinedOutput(); err != nil {
		t.Fatalf("build partial libcuda: %v\n%s", err, out)
	}
	_, _, err = loadFrom(dlopener{}, []string{so})
	var ms *MissingSymbolError
	if !errors.As(err, &ms) || len(ms.Symbols) != len(Symbols)-2 {
		t.Fatalf("partial library: %v", err)
	}
	for _, s := range ms.Symbols {
		if s == "cuInit" || s == "cuGetErrorName" {
			t.Errorf("%s reported missing but the library has it", s)
		}
	}
}

// TestLoadOnThisMachine checks what Load says here: on a machine without
// libcuda (CI), the library error; with one, a working driver or a clear
// device error.
func TestLoadOnThisMachine(t *testing.T) {
	lib, err := Load()
	if err != nil {
		if !errors.Is(err, backend.ErrUnavailable) {
			t.Fatalf("Load failed with an error that is not ErrUnavailable: %v", err)
		}
		t.Logf("no CUDA here: %v", err)
		return
	}
	if lib.DriverVersion <= 0 {
		t.Errorf("driver version %d", lib.DriverVersion)
	}
}
