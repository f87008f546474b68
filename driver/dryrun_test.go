package driver

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"strings"
	"testing"
)

func checkNames(d *DryRun) (ok, failed []string) {
	for _, c := range d.Checks {
		if c.OK {
			ok = append(ok, c.Name)
		} else {
			failed = append(failed, c.Name)
		}
	}
	return ok, failed
}

func TestDryRunReady(t *testing.T) {
	m := newFake(t, "535.261.03")
	d := m.env.DryRunInstall(context.Background(), InstallOptions{NoLoad: true})
	ok, failed := checkNames(d)
	if !d.Ready || d.Err() != nil || len(failed) != 0 || len(ok) < 5 {
		t.Fatalf("ready machine: ok %v failed %v (%v)", ok, failed, d.Err())
	}
	if len(d.Steps) != len(buildSteps) || d.Target.Source.Path == "" || d.Target.NVIDIA != "535.261.03" {
		t.Errorf("plan %+v target %+v", d.Steps, d.Target)
	}
}

// Missing headers, no dkms and no source: each is marked with its fix, and
// the whole plan is still shown.
func TestDryRunMarksEveryFailure(t *testing.T) {
	m := newFake(t, "535.261.03")
	removeAll(t, m, "/lib/modules/"+testKernel+"/build")
	removeAll(t, m, "/usr/src/nvidia-535.261.03")
	m.missing["dkms"] = true
	d := m.env.DryRunInstall(context.Background(), InstallOptions{NoLoad: true})
	_, failed := checkNames(d)
	if d.Ready || strings.Join(failed, ",") != "driver source,dkms,kernel headers" {
		t.Fatalf("failed checks %v", failed)
	}
	if !errors.Is(d.Err(), ErrSourceNotFound) {
		t.Errorf("first error %v", d.Err())
	}
	var out bytes.Buffer
	d.Print(&out)
	for _, want := range []string{"FAILED kernel headers", "fix: install linux-headers-" + testKernel, "FAILED dkms", "apt-get install dkms",
		"FAILED driver source", "nvidia-open-kernel-source", "plan (would run once", "dkms build -m vattn-uvm -v 535.261.03-vattn1"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("dry run lacks %q:\n%s", want, out.String())
		}
	}
	if len(d.Steps) != len(buildSteps) {
		t.Errorf("%d steps, want the whole plan", len(d.Steps))
	}
}

func TestDryRunSourceFirst(t *testing.T) {
	m := newFake(t, "535.261.03")
	d := m.env.DryRunInstall(context.Background(), InstallOptions{Source: "/nonexistent/src"})
	if len(d.Checks) == 0 || d.Checks[0].Name != "source" || d.Checks[0].OK || !errors.Is(d.Err(), fs.ErrNotExist) {
		t.Fatalf("checks %+v", d.Checks)
	}
	// A source of another version than the driver's.
	m.write("/tmp/src/Kbuild", `-DNV_VERSION_STRING=\"550.163.01\"`)
	m.write("/tmp/src/nvidia-uvm/uvm.c", "")
	d = m.env.DryRunInstall(context.Background(), InstallOptions{Source: m.env.Root + "/tmp/src"})
	if !errors.Is(d.Err(), ErrSourceVersion) {
		t.Errorf("other version: %v", d.Err())
	}
}

func TestDryRunNoKernel(t *testing.T) {
	m := newFake(t, "535.261.03")
	d := m.env.DryRunInstall(context.Background(), InstallOptions{Kernel: "9.9.9"})
	if !errors.Is(d.Err(), ErrKernelNotInstalled) || len(d.Steps) == 0 || d.Target.NVIDIA != "<NVIDIA version>" {
		t.Fatalf("err %v, %d steps, target %+v", d.Err(), len(d.Steps), d.Target)
	}
}
