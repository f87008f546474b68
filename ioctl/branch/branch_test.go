package branch

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLookup(t *testing.T) {
	for v, major := range map[string]int{"580.159.04": 580, "535.261.03": 535, "550.54.14": 550, "595.45.04\n": 595} {
		abi, err := Lookup(v)
		if err != nil || abi.Major != major {
			t.Errorf("Lookup(%q) = %v, %v; want branch %d", v, abi, err, major)
		}
	}
	for _, v := range []string{"600.1.2", "545.23.06", "470.256.02", "", "nvidia", "5800.1"} {
		_, err := Lookup(v)
		if !errors.Is(err, ErrUnknownBranch) {
			t.Errorf("Lookup(%q): %v, want ErrUnknownBranch", v, err)
			continue
		}
		msg := err.Error()
		for _, want := range []string{v, "535", "595", "report"} {
			if !strings.Contains(msg, want) {
				t.Errorf("Lookup(%q): message %q lacks %q", v, msg, want)
			}
		}
	}
}

func TestTableSorted(t *testing.T) {
	for i := 1; i < len(Table); i++ {
		if Table[i-1].Major >= Table[i].Major {
			t.Errorf("Table not sorted by major at %d", Table[i].Major)
		}
	}
}

func TestReadDriverVersion(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sys := write("sys", "580.159.04\n")
	proc := write("proc", "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.163.01  Release Build  (dvs-builder@U16)  Thu Jan  1 00:00:00 UTC 2026\nGCC version:  gcc version 12.2.0\n")
	missing := filepath.Join(dir, "missing")

	if v, err := ReadDriverVersion(sys, proc); err != nil || v != "580.159.04" {
		t.Errorf("sys first: %q, %v", v, err)
	}
	if v, err := ReadDriverVersion(missing, proc); err != nil || v != "550.163.01" {
		t.Errorf("proc fallback: %q, %v", v, err)
	}
	bad := write("bad", "garbage\n")
	if v, err := ReadDriverVersion(bad, proc); err != nil || v != "550.163.01" {
		t.Errorf("proc after unreadable sys: %q, %v", v, err)
	}
	_, err := ReadDriverVersion(missing, missing)
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "nvidia module loaded") {
		t.Errorf("neither file: %v", err)
	}
}
