package driver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseProcVersion(t *testing.T) {
	cases := []struct {
		text string
		want Driver
	}{
		{"NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build  (dvs-builder@U16-I3-B08-3-3)  Thu Sep 25 16:13:33 UTC 2025\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14+deb12u1)\n",
			Driver{Version: "580.159.04", Flavor: FlavorOpen, Arch: "x86_64", GCC: "gcc version 12.2.0 (Debian 12.2.0-14+deb12u1)"}},
		{"NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  550.163.01  Release Build  (dvs-builder@U16-A24-2-1)  Tue Apr 29 2025\n",
			Driver{Version: "550.163.01", Flavor: FlavorOpen, Arch: "aarch64"}},
		{"NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.261.03  Wed Jul 30 21:43:51 UTC 2025\nGCC version:  gcc version 11.4.0 (Ubuntu 11.4.0-1ubuntu1~22.04)\n",
			Driver{Version: "535.261.03", Flavor: FlavorProprietary, Arch: "x86_64", GCC: "gcc version 11.4.0 (Ubuntu 11.4.0-1ubuntu1~22.04)"}},
		{"NVRM version: NVIDIA UNIX x86_64 Kernel Module  470.256.02  Thu May  2 14:37:44 UTC 2024\n",
			Driver{Version: "470.256.02", Flavor: FlavorProprietary, Arch: "x86_64"}},
		{"NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.86.15  Release Build  (dvs-builder@U16-T02-35-3)  Thu Jan 23 2025",
			Driver{Version: "570.86.15", Flavor: FlavorOpen, Arch: "x86_64"}},
	}
	for _, c := range cases {
		got, err := ParseProcVersion(c.text)
		if err != nil || got != c.want {
			t.Errorf("ParseProcVersion(%q) = %+v, %v; want %+v", c.text, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "hello", "NVRM version: NVIDIA UNIX x86_64 Kernel Module  \n"} {
		if _, err := ParseProcVersion(bad); !errors.Is(err, ErrBadVersionFile) {
			t.Errorf("ParseProcVersion(%q) err = %v, want ErrBadVersionFile", bad, err)
		}
	}
}

func TestKbuildVersion(t *testing.T) {
	if v := kbuildVersion(`ccflags-y += -DNV_VERSION_STRING=\"535.261.03\"`); v != "535.261.03" {
		t.Errorf("got %q", v)
	}
	if v := kbuildVersion("ccflags-y += -I$(src)/common/inc"); v != "" {
		t.Errorf("got %q", v)
	}
}

func TestParseDKMSStatus(t *testing.T) {
	out := `vattn-uvm/535.261.03-vattn1, 6.1.0-56-amd64, x86_64: installed
vattn-uvm/550.163.01-vattn1: added
nvidia-current, 535.216.01, 6.1.0-28-amd64, x86_64: installed (WARNING! Diff between built and installed module!)
Warning: something odd: here
`
	got := ParseDKMSStatus(out)
	want := []DKMSEntry{
		{Module: "vattn-uvm", Version: "535.261.03-vattn1", Kernel: "6.1.0-56-amd64", Arch: "x86_64", State: "installed"},
		{Module: "vattn-uvm", Version: "550.163.01-vattn1", State: "added"},
		{Module: "nvidia-current", Version: "535.216.01", Kernel: "6.1.0-28-amd64", Arch: "x86_64", State: "installed"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries: %+v", len(got), got)
	}
	for i := range want {
		got[i].Line = ""
		if got[i] != want[i] {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestVersionTable(t *testing.T) {
	vs := SupportedVersions()
	if !reflect.DeepEqual(vs, []string{"535.261.03", "550.163.01", "570.211.01", "575.64.05", "580.142", "590.48.01", "595.45.04"}) {
		t.Fatalf("SupportedVersions = %v", vs)
	}
	for _, v := range vs {
		s, err := LookupSeries(v)
		if err != nil || len(s.Patches) == 0 {
			t.Fatalf("LookupSeries(%s) = %+v, %v", v, s, err)
		}
		if !strings.HasSuffix(s.Patches[len(s.Patches)-1], "0001-nvidia-uvm-vattn-hooks.patch") {
			t.Errorf("%s: last patch %s", v, s.Patches[len(s.Patches)-1])
		}
	}
	_, err := LookupSeries("580.159.04")
	var ue *UnsupportedError
	if !errors.As(err, &ue) || !errors.Is(err, ErrUnsupportedVersion) || !reflect.DeepEqual(ue.Supported, vs) {
		t.Fatalf("LookupSeries(580.159.04) = %v", err)
	}
	if near, ok := NearestSeries("580.159.04"); near != "580.142" || !ok {
		t.Errorf("NearestSeries(580.159.04) = %s, %v", near, ok)
	}
	if !strings.Contains(err.Error(), "535.261.03, 550.163.01") {
		t.Errorf("error does not list the supported versions: %v", err)
	}
	if len(OurFiles()) < 2 {
		t.Errorf("OurFiles = %v", OurFiles())
	}
}

func TestHoldersFindsAnOpenCharDevice(t *testing.T) {
	dev := "/dev/full"
	if _, err := os.Stat(dev); err != nil {
		t.Skipf("%s: %v", dev, err)
	}
	e := &Env{}
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	hs, err := e.Holders(dev)
	if err != nil {
		t.Fatal(err)
	}
	if !hasPID(hs, os.Getpid()) {
		t.Fatalf("holders of %s = %v, missing this process %d", dev, hs, os.Getpid())
	}
	f.Close()
	hs, _ = e.Holders(dev)
	if hasPID(hs, os.Getpid()) {
		t.Fatalf("after close, holders still list this process: %v", hs)
	}
	if _, err := e.Holders(t.TempDir()); err == nil {
		t.Error("Holders on a directory: no error")
	}
	if _, err := e.Holders("/nonexistent/dev"); err == nil {
		t.Error("Holders on a missing path: no error")
	}
}

func hasPID(hs []Holder, pid int) bool {
	for _, h := range hs {
		if h.PID == pid {
			return true
		}
	}
	return false
}

// fakeMachine is a scratch root with what detection reads, and an Exec that answers
// modinfo and dkms the way a machine with stock NVIDIA `nv` for kernel kver answers.
type fakeMachine struct {
	t       *testing.T
	env     *Env
	nv      string
	dkms    string // `dkms status` output
	missing map[string]bool
	calls   []string
}

const testKernel = "6.1.0-56-amd64"

func newFake(t *testing.T, nv string) *fakeMachine {
	root := t.TempDir()
	m := &fakeMachine{t: t, nv: nv, missing: map[string]bool{}}
	m.env = &Env{
		Root: root,
		Exec: func(_ context.Context, name string, args ...string) ([]byte, error) {
			m.calls = append(m.calls, name+" "+strings.Join(args, " "))
			switch {
			case name == "modinfo" && args[len(args)-1] == "nvidia":
				if m.nv == "" {
					return []byte("modinfo: ERROR: Module nvidia not found.\n"), errors.New("exit status 1")
				}
				return []byte(m.nv + "\n"), nil
			case name == "dkms" && args[0] == "status":
				return []byte(m.dkms), nil
			}
			return nil, fmt.Errorf("unexpected command %s %v", name, args)
		},
		LookPath: func(n string) (string, error) {
			if m.missing[n] {
				return "", errors.New("not found")
			}
			return "/usr/sbin/" + n, nil
		},
	}
	m.write("/proc/sys/kernel/osrelease", testKernel+"\n")
	m.write("/lib/modules/"+testKernel+"/build/Makefile", "")
	m.write("/proc/driver/nvidia/version", "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  "+nv+"  Release Build  (x)  2025\n")
	m.write("/usr/src/nvidia-"+nv+"/Kbuild", `ccflags-y += -DNV_VERSION_STRING=\"`+nv+`\"`+"\n")
	m.write("/usr/src/nvidia-"+nv+"/nvidia-uvm/uvm.c", "")
	if near, ok := NearestSeries(nv); ok {
		for f, content := range preimage(t, near) {
			m.write("/usr/src/nvidia-"+nv+"/"+f, content)
		}
	}
	return m
}

// preimage makes, from the series of version v, the smallest source it applies to:
// each touched file holds the old text of its hunks, in order, between filler lines.
func preimage(t *testing.T, v string) map[string]string {
	t.Helper()
	s, err := LookupSeries(v)
	if err != nil {
		t.Fatal(err)
	}
	patches, err := s.Parse()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range patches {
		for _, f := range p.Files {
			if _, ok := out[f.Path]; ok {
				t.Fatalf("%s: %s touched by two patches", v, f.Path)
			}
			var b strings.Builder
			for i, h := range f.Hunks {
				fmt.Fprintf(&b, "/* filler %d */\n", i)
				for _, l := range h.old() {
					b.WriteString(l + "\n")
				}
			}
			b.WriteString("/* end */\n")
			out[f.Path] = b.String()
		}
	}
	return out
}

func (m *fakeMachine) write(p, content string) {
	full := filepath.Join(m.env.Root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		m.t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
		m.t.Fatal(err)
	}
}

func removeAll(t *testing.T, m *fakeMachine, p string) {
	t.Helper()
	if err := os.RemoveAll(filepath.Join(m.env.Root, p)); err != nil {
		t.Fatal(err)
	}
}
