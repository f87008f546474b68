package trace

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// ErrNoGPU is returned when a GPU index or UUID names no GPU of this machine.
var ErrNoGPU = errors.New("no such GPU")

// nvidiaProcGPUs lists one directory per GPU, named by PCI address, each with
// an "information" file that holds the GPU UUID.
const nvidiaProcGPUs = "/proc/driver/nvidia/gpus"

// GPUs lists the UUIDs of the machine's NVIDIA GPUs in nvidia-smi's default
// index order (PCI bus order), from /proc/driver/nvidia. No driver: none.
func GPUs() ([]string, error) { return gpusUnder(nvidiaProcGPUs) }

func gpusUnder(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list GPUs: %w", err)
	}
	var pci []string
	for _, e := range ents {
		pci = append(pci, e.Name())
	}
	sort.Strings(pci)
	var uuids []string
	for _, p := range pci {
		u, err := gpuUUID(filepath.Join(dir, p, "information"))
		if err != nil {
			return nil, err
		}
		uuids = append(uuids, u)
	}
	return uuids, nil
}

func gpuUUID(info string) (string, error) {
	f, err := os.Open(info)
	if err != nil {
		return "", fmt.Errorf("read GPU information: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "GPU UUID" {
			return strings.TrimSpace(v), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read GPU information %s: %w", info, err)
	}
	return "", fmt.Errorf("read GPU information %s: no GPU UUID line", info)
}

// ResolveGPU turns nvidia-smi's -i argument (an index or a "GPU-…" UUID)
// into a UUID, checked against gpus (as GPUs returns them).
func ResolveGPU(spec string, gpus []string) (string, error) {
	if strings.HasPrefix(strings.ToUpper(spec), "GPU-") {
		for _, u := range gpus {
			if strings.EqualFold(u, spec) {
				return u, nil
			}
		}
		return "", fmt.Errorf("resolve GPU %s: %w", spec, ErrNoGPU)
	}
	i, err := strconv.Atoi(spec)
	if err != nil || i < 0 {
		return "", fmt.Errorf("resolve GPU %q: want an index or a GPU-… UUID", spec)
	}
	if i >= len(gpus) {
		return "", fmt.Errorf("resolve GPU %d: %w (%d GPUs)", i, ErrNoGPU, len(gpus))
	}
	return gpus[i], nil
}

// GPUIndex is the index of uuid in gpus, or "" when it is not there.
func GPUIndex(uuid string, gpus []string) string {
	for i, u := range gpus {
		if strings.EqualFold(u, uuid) {
			return strconv.Itoa(i)
		}
	}
	return ""
}
