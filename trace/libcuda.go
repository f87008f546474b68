package trace

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// CUDAOps are the CUDA driver calls the cuda source probes: the virtual
// memory management path a VMM-based KV cache takes.
var CUDAOps = []string{
	"cuMemCreate", "cuMemMap", "cuMemSetAccess", "cuMemUnmap", "cuMemRelease",
	"cuMemAddressReserve", "cuMemAddressFree",
}

// libcudaPaths are tried, in order, when the ldconfig cache does not list
// libcuda. Uprobes attach to the file's inode, so any symlink to the library a
// process loads will do.
var libcudaPaths = []string{
	"/usr/lib/x86_64-linux-gnu/libcuda.so.1",
	"/usr/lib64/libcuda.so.1",
	"/usr/lib/libcuda.so.1",
	"/usr/local/nvidia/lib64/libcuda.so.1", // driver mounted into containers
	"/usr/local/nvidia/lib/libcuda.so.1",
	"/usr/local/cuda/compat/libcuda.so.1",
	"/usr/lib/wsl/lib/libcuda.so.1",
}

// FindLibcuda returns the path of libcuda.so.1 from the ldconfig cache or the
// usual locations.
func FindLibcuda() (string, error) {
	if p := ldconfigLookup("libcuda.so.1"); p != "" {
		return p, nil
	}
	for _, p := range libcudaPaths {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("find libcuda.so.1: %w (not in the ldconfig cache nor in %s)", ErrNotPresent, strings.Join(libcudaPaths, ", "))
}

// ldconfigArch is how "ldconfig -p" tags libraries of this machine's ABI.
var ldconfigArch = map[string]string{"amd64": "x86-64", "arm64": "AArch64"}

// ldconfigLookup finds lib in "ldconfig -p" output for this machine's word
// size, or returns "".
func ldconfigLookup(lib string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out []byte
	for _, bin := range []string{"/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig"} {
		b, err := exec.CommandContext(ctx, bin, "-p").Output()
		if err == nil {
			out = b
			break
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		// "\tlibcuda.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so.1"
		line := strings.TrimSpace(sc.Text())
		name, rest, ok := strings.Cut(line, " (")
		if !ok || name != lib {
			continue
		}
		flags, path, ok := strings.Cut(rest, ") => ")
		if ok && strings.Contains(flags, ldconfigArch[runtime.GOARCH]) {
			return path
		}
	}
	return ""
}

// dynamicSymbols lists the functions lib defines (not merely imports).
func dynamicSymbols(lib string) (map[string]bool, error) {
	f, err := elf.Open(lib)
	if err != nil {
		return nil, fmt.Errorf("read symbols: %w", err)
	}
	defer f.Close()
	syms, err := f.DynamicSymbols()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return nil, fmt.Errorf("read symbols of %s: %w", lib, err)
	}
	out := map[string]bool{}
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Section != elf.SHN_UNDEF {
			// Versioned names ("cuMemMap@@libcuda.so.1") are not used by
			// libcuda; the plain name is what uprobes resolve.
			out[s.Name] = true
		}
	}
	return out, nil
}
