package cuda

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/ebitengine/purego"

	"github.com/vattn/vattn/backend"
)

// LibraryEnv names an environment variable that, when set, is the only path
// tried for the driver library.
const LibraryEnv = "VATTN_LIBCUDA"

// DefaultLibraryPaths are tried in order: the soname first (the dynamic
// loader's own search, which honours ld.so.cache and LD_LIBRARY_PATH), then
// where distributions and container runtimes put the driver's library.
var DefaultLibraryPaths = []string{
	"libcuda.so.1",
	"/usr/lib/x86_64-linux-gnu/libcuda.so.1",
	"/usr/lib64/libcuda.so.1",
	"/usr/lib/aarch64-linux-gnu/libcuda.so.1",
	"/usr/local/nvidia/lib64/libcuda.so.1",
	"/usr/lib/wsl/lib/libcuda.so.1",
}

// ErrLibraryMissing: libcuda.so.1 could not be loaded. It also matches
// backend.ErrUnavailable.
var ErrLibraryMissing = fmt.Errorf("libcuda.so.1 not loadable: %w", backend.ErrUnavailable)

// LibraryError says which paths were tried for the driver library and why
// each failed, and what to install.
type LibraryError struct {
	Tried  []string
	Causes []string
}

func (e *LibraryError) Error() string {
	var b strings.Builder
	b.WriteString("load CUDA driver library: libcuda.so.1 not found (tried ")
	for i, p := range e.Tried {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(p)
		if i < len(e.Causes) && e.Causes[i] != "" {
			b.WriteString(" [" + e.Causes[i] + "]")
		}
	}
	b.WriteString("): install the NVIDIA driver (it ships libcuda.so.1; on Debian the libcuda1 or nvidia-driver package), or set " + LibraryEnv + " to its path")
	return b.String()
}

// Unwrap makes the error match ErrLibraryMissing and backend.ErrUnavailable.
func (e *LibraryError) Unwrap() []error { return []error{ErrLibraryMissing, backend.ErrUnavailable} }

// opener loads a shared library and looks symbols up in it: purego's dlopen
// for real, a fake in tests.
type opener interface {
	open(path string) (lookup func(string) (uintptr, error), err error)
}

type dlopener struct{}

func (dlopener) open(path string) (func(string) (uintptr, error), error) {
	h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		return nil, err
	}
	return func(sym string) (uintptr, error) { return purego.Dlsym(h, sym) }, nil
}

// loadFrom tries each path with op and binds the driver from the first one
// that opens. It does not call cuInit.
func loadFrom(op opener, paths []string) (*Driver, string, error) {
	le := &LibraryError{}
	for _, p := range paths {
		lookup, err := op.open(p)
		if err != nil {
			le.Tried = append(le.Tried, p)
			le.Causes = append(le.Causes, shortCause(err))
			continue
		}
		d, err := bindDriver(lookup)
		if err != nil {
			var ms *MissingSymbolError
			if errors.As(err, &ms) {
				ms.Library = p
			}
			return nil, p, err
		}
		return d, p, nil
	}
	return nil, "", le
}

// shortCause trims dlerror's text, which repeats the path.
func shortCause(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}

var (
	loadOnce  sync.Once
	loaded    *Lib
	loadErr   error
	libOpener opener = dlopener{}
)

// Load loads libcuda (once per process), binds the driver API and calls
// cuInit. Errors match backend.ErrUnavailable when the machine cannot run
// CUDA: ErrLibraryMissing without the library, ErrNoDevice without a GPU.
func Load() (*Lib, error) {
	loadOnce.Do(func() {
		paths := DefaultLibraryPaths
		if p := os.Getenv(LibraryEnv); p != "" {
			paths = []string{p}
		}
		d, path, err := loadFrom(libOpener, paths)
		if err != nil {
			loadErr = err
			return
		}
		loaded, loadErr = NewLib(d, path)
	})
	return loaded, loadErr
}
