package trace

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestGPUs(t *testing.T) {
	dir := t.TempDir()
	for pci, uuid := range map[string]string{
		"0000:c1:00.0": "GPU-bbbbbbbb-0000-0000-0000-000000000000",
		"0000:41:00.0": "GPU-aaaaaaaa-0000-0000-0000-000000000000",
	} {
		if err := os.MkdirAll(filepath.Join(dir, pci), 0o755); err != nil {
			t.Fatal(err)
		}
		info := "Model: \t\t NVIDIA H100 80GB HBM3\nIRQ:   \t\t 0\nGPU UUID: \t " + uuid + "\nVideo BIOS: \t ??.??.??.??.??\n"
		if err := os.WriteFile(filepath.Join(dir, pci, "information"), []byte(info), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gpus, err := gpusUnder(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"GPU-aaaaaaaa-0000-0000-0000-000000000000", "GPU-bbbbbbbb-0000-0000-0000-000000000000"}
	if !reflect.DeepEqual(gpus, want) {
		t.Fatalf("gpus = %v, want %v (PCI order)", gpus, want)
	}
	for spec, want := range map[string]string{"1": want[1], "0": want[0], "gpu-AAAAAAAA-0000-0000-0000-000000000000": want[0]} {
		if got, err := ResolveGPU(spec, gpus); err != nil || got != want {
			t.Errorf("ResolveGPU(%q) = %q, %v; want %q", spec, got, err, want)
		}
	}
	for _, spec := range []string{"2", "GPU-cccccccc-0000-0000-0000-000000000000"} {
		if _, err := ResolveGPU(spec, gpus); !errors.Is(err, ErrNoGPU) {
			t.Errorf("ResolveGPU(%q): err = %v, want ErrNoGPU", spec, err)
		}
	}
	if _, err := ResolveGPU("-1", gpus); err == nil || errors.Is(err, ErrNoGPU) {
		t.Errorf("ResolveGPU(-1): err = %v", err)
	}
	if GPUIndex(want[1], gpus) != "1" || GPUIndex("GPU-x", gpus) != "" {
		t.Error("GPUIndex")
	}
	if g, err := gpusUnder(filepath.Join(dir, "absent")); err != nil || g != nil {
		t.Errorf("no driver: %v, %v", g, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "0000:41:00.0", "information"), []byte("Model: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := gpusUnder(dir); err == nil {
		t.Error("information without UUID: no error")
	}
}
