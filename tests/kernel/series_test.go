package kernel

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var patchRoot = filepath.Join("..", "..", "kernel", "nvidia-uvm-patch")

// hookFiles are the only NVIDIA files the vattn hooks may touch: routing, the state
// pointer, the release hook, the fence (uvm_va_range.c's block creation and range
// destroy, uvm_va_space.c's GPU VA space removal) and the build entries. Anything else
// (uvm_mmu.c's chunk sizes, uvm_va_block.c's fast path, the fault handlers) would
// change behaviour for processes that never use vattn.
var hookFiles = []string{
	"nvidia-uvm/uvm.c", "nvidia-uvm/uvm_va_space.h", "nvidia-uvm/uvm_va_space.c",
	"nvidia-uvm/uvm_va_range.c", "nvidia-uvm/nvidia-uvm-sources.Kbuild", "nvidia-uvm/nvidia-uvm.Kbuild",
}

// fenceCalls are the added lines without which MAP's PTE writes would be unsound
// (DRIVER-NOTES §1.11): every hook patch must add each exactly once.
var fenceCalls = []string{
	"+        if (uvm_vattn_block_create_denied(",
	"+    uvm_vattn_va_range_destroy(va_range);",
	"+    uvm_vattn_gpu_va_space_remove(gpu_va_space);",
	"+    uvm_vattn_va_space_destroy(va_space);",
}

// seriesDirs lists every branch's series and port folder: 535.261.03, 550.163.01
// and the 580.142 port at least.
func seriesDirs(t *testing.T) []string {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(patchRoot, "series", "*"))
	ports, _ := filepath.Glob(filepath.Join(patchRoot, "ports", "*"))
	dirs = append(dirs, ports...)
	if len(dirs) < 3 {
		t.Fatalf("expected series for 535.261.03, 550.163.01 and the 580.142 port, found %v", dirs)
	}
	return dirs
}

func TestSeriesCarryTheFence(t *testing.T) {
	for _, dir := range seriesDirs(t) {
		hooks, _ := filepath.Glob(filepath.Join(dir, "0001-*.patch"))
		if len(hooks) != 1 {
			t.Fatalf("%s: hook patches %v, want one", dir, hooks)
		}
		b, err := os.ReadFile(hooks[0])
		if err != nil {
			t.Fatal(err)
		}
		for _, call := range fenceCalls {
			n := 0
			for _, line := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(line, call) {
					n++
				}
			}
			if n != 1 {
				t.Errorf("%s: %q added %d times, want once", hooks[0], call, n)
			}
		}
	}
}

// compatFiles are what the labelled build-compatibility patches may touch.
var compatFiles = []string{"conftest.sh", "nvidia/nvidia.Kbuild", "nvidia/nv-pci.c"}

// touchedFiles lists the b/ paths a unified diff modifies.
func touchedFiles(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var files []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if name, ok := strings.CutPrefix(sc.Text(), "+++ b/"); ok {
			files = append(files, strings.Fields(name)[0])
		}
	}
	return files
}

func TestSeriesTouchOnlyHooks(t *testing.T) {
	for _, dir := range seriesDirs(t) {
		list, err := os.ReadFile(filepath.Join(dir, "series"))
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		listed := strings.Fields(string(list))
		onDisk, _ := filepath.Glob(filepath.Join(dir, "*.patch"))
		if len(onDisk) != len(listed) {
			t.Errorf("%s: series lists %v, folder has %d patches", dir, listed, len(onDisk))
		}
		hooks := 0
		for _, p := range listed {
			allowed := hookFiles
			if strings.HasPrefix(p, "0000-build-compat-") {
				allowed = compatFiles
			} else {
				hooks++
			}
			files := touchedFiles(t, filepath.Join(dir, p))
			if len(files) == 0 {
				t.Errorf("%s/%s: touches nothing", dir, p)
			}
			for _, f := range files {
				if !slices.Contains(allowed, f) {
					t.Errorf("%s/%s touches %s, outside %v", dir, p, f, allowed)
				}
			}
		}
		if hooks != 1 {
			t.Errorf("%s: %d hook patches, want exactly one", dir, hooks)
		}
	}
}

// TestOurFilesAreOurs: every C file of ours carries our licence line and none carries
// NVIDIA's copyright notice (nothing copied from NVIDIA's sources).
func TestOurFilesAreOurs(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(patchRoot, "uvm_vattn*.[ch]"))
	shim, _ := filepath.Glob(filepath.Join("shim", "*.[ch]"))
	files = append(files, shim...)
	if len(files) < 8 {
		t.Fatalf("found only %v", files)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "SPDX-License-Identifier: MIT") {
			t.Errorf("%s: no SPDX line", f)
		}
		if strings.Contains(string(b), "NVIDIA CORPORATION") {
			t.Errorf("%s: carries NVIDIA's copyright notice", f)
		}
	}
}
