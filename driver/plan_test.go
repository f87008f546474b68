package driver

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func planIDs(t *testing.T, m *fakeMachine, o InstallOptions) ([]string, *Plan) {
	t.Helper()
	p, tg, err := m.env.PlanInstall(context.Background(), o)
	if err != nil {
		t.Fatalf("PlanInstall: %v", err)
	}
	if tg.Package != m.nv+"-vattn1" || tg.SourceTree != "/usr/src/vattn-uvm-"+m.nv+"-vattn1" || tg.Source.Kind != SourceDir {
		t.Errorf("target = %+v", tg)
	}
	return p.IDs(), p
}

var buildSteps = []string{"record", "stage", "dkms-add", "dkms-build", "dkms-install", "modprobe-conf"}

func TestPlanPerSituation(t *testing.T) {
	t.Run("no-load", func(t *testing.T) {
		m := newFake(t, "535.261.03")
		ids, p := planIDs(t, m, InstallOptions{NoLoad: true})
		if !reflect.DeepEqual(ids, buildSteps) {
			t.Errorf("steps = %v", ids)
		}
		if len(p.Notes) != 1 || !strings.Contains(p.Notes[0], "--no-load") {
			t.Errorf("notes = %v", p.Notes)
		}
	})
	t.Run("load when nvidia_uvm is not loaded", func(t *testing.T) {
		m := newFake(t, "535.261.03")
		ids, _ := planIDs(t, m, InstallOptions{})
		if !reflect.DeepEqual(ids, append(append([]string{}, buildSteps...), "load", "verify")) {
			t.Errorf("steps = %v", ids)
		}
	})
	t.Run("stock nvidia_uvm loaded, no --reload", func(t *testing.T) {
		m := newFake(t, "550.163.01")
		m.write("/sys/module/nvidia_uvm/srcversion", "ABC\n")
		ids, p := planIDs(t, m, InstallOptions{})
		if !reflect.DeepEqual(ids, buildSteps) || len(p.Notes) != 1 || !strings.Contains(p.Notes[0], "--reload") {
			t.Errorf("steps = %v notes = %v", ids, p.Notes)
		}
	})
	t.Run("reload, nothing holds the device", func(t *testing.T) {
		m := newFake(t, "550.163.01")
		m.write("/sys/module/nvidia_uvm/srcversion", "ABC\n")
		ids, _ := planIDs(t, m, InstallOptions{Reload: true})
		if !reflect.DeepEqual(ids, append(append([]string{}, buildSteps...), "unload", "load", "verify")) {
			t.Errorf("steps = %v", ids)
		}
	})
	t.Run("reload, a process holds the device", func(t *testing.T) {
		m := newFake(t, "550.163.01")
		m.write("/sys/module/nvidia_uvm/srcversion", "ABC\n")
		// The fake /dev/nvidia-uvm is /dev/full; the fake /proc has this process.
		if err := os.Symlink("/dev/full", filepath.Join(m.env.Root, "dev/nvidia-uvm")); err != nil {
			if err := os.MkdirAll(filepath.Join(m.env.Root, "dev"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("/dev/full", filepath.Join(m.env.Root, "dev/nvidia-uvm")); err != nil {
				t.Fatal(err)
			}
		}
		pid := os.Getpid()
		if err := os.Symlink(filepath.Join("/proc", itoa(pid)), filepath.Join(m.env.Root, "proc", itoa(pid))); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open("/dev/full")
		if err != nil {
			t.Skip(err)
		}
		defer f.Close()
		_, _, err = m.env.PlanInstall(context.Background(), InstallOptions{Reload: true})
		var be *BusyError
		if !errors.As(err, &be) || !errors.Is(err, ErrDeviceBusy) || !hasPID(be.Holders, pid) {
			t.Fatalf("err = %v", err)
		}
		if !strings.Contains(err.Error(), itoa(pid)) {
			t.Errorf("error does not list the holder: %v", err)
		}
	})
	t.Run("another kernel", func(t *testing.T) {
		m := newFake(t, "535.261.03")
		m.write("/lib/modules/6.1.0-99-amd64/build/Makefile", "")
		ids, p := planIDs(t, m, InstallOptions{Kernel: "6.1.0-99-amd64"})
		if !reflect.DeepEqual(ids, buildSteps) || !strings.Contains(p.Notes[0], "not running") {
			t.Errorf("steps = %v notes = %v", ids, p.Notes)
		}
		var buf bytes.Buffer
		p.Print(&buf)
		if !strings.Contains(buf.String(), "dkms build -m vattn-uvm -v 535.261.03-vattn1 -k 6.1.0-99-amd64") {
			t.Errorf("dry-run output:\n%s", buf.String())
		}
	})
}

func itoa(i int) string { return strconv.Itoa(i) }

// An untagged version of a proven branch (the GPU machine's 580.159.04) is built from
// its own source with the nearest proven version's series, which must fit it.
func TestPlanNearestSeries(t *testing.T) {
	m := newFake(t, "580.159.04")
	p, tg, err := m.env.PlanInstall(context.Background(), InstallOptions{NoLoad: true})
	if err != nil {
		t.Fatalf("PlanInstall: %v", err)
	}
	if tg.Series != "580.142" || tg.Package != "580.159.04-vattn1" || tg.NVIDIA != "580.159.04" {
		t.Errorf("target = %+v", tg)
	}
	if len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0], "the series of 580.142, the nearest proven version") {
		t.Errorf("warnings = %v", p.Warnings)
	}
	if !strings.Contains(strings.Join(p.Steps[1].Detail, "\n"), "apply series/580.142 with no fuzz") {
		t.Errorf("stage step = %+v", p.Steps[1])
	}
}

func TestPlanRefusals(t *testing.T) {
	cases := []struct {
		name  string
		setup func(m *fakeMachine)
		opts  InstallOptions
		want  error
	}{
		{"a branch with no series", func(m *fakeMachine) { m.nv = "560.35.03" }, InstallOptions{}, ErrUnsupportedVersion},
		{"proprietary", func(m *fakeMachine) {
			m.write("/proc/driver/nvidia/version", "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.261.03  Wed Jul 30 2025\n")
		}, InstallOptions{}, ErrProprietary},
		{"no headers", func(m *fakeMachine) {
			os.RemoveAll(filepath.Join(m.env.Root, "lib/modules", testKernel, "build"))
		}, InstallOptions{}, ErrNoHeaders},
		{"kernel not installed", nil, InstallOptions{Kernel: "5.10.0-1-amd64"}, ErrKernelNotInstalled},
		{"no dkms", func(m *fakeMachine) { m.missing["dkms"] = true }, InstallOptions{}, ErrNoDKMS},
		{"no nvidia for the kernel", func(m *fakeMachine) {
			m.nv = ""
			os.Remove(filepath.Join(m.env.Root, "proc/driver/nvidia/version"))
		}, InstallOptions{NoLoad: true}, ErrNoNVIDIA},
		{"no source", func(m *fakeMachine) {
			os.RemoveAll(filepath.Join(m.env.Root, "usr/src"))
		}, InstallOptions{}, ErrSourceNotFound},
		{"source of another version", func(m *fakeMachine) {
			m.write("/tmp/src/Kbuild", `-DNV_VERSION_STRING=\"550.163.01\"`)
			m.write("/tmp/src/nvidia-uvm/uvm.c", "")
		}, InstallOptions{}, ErrSourceVersion},
		{"already installed", func(m *fakeMachine) {
			m.dkms = "vattn-uvm/535.261.03-vattn1, " + testKernel + ", x86_64: installed\n"
		}, InstallOptions{}, ErrAlreadyInstalled},
		{"another version installed", func(m *fakeMachine) {
			m.dkms = "vattn-uvm/550.163.01-vattn1, " + testKernel + ", x86_64: installed\n"
		}, InstallOptions{}, ErrOtherInstalled},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := newFake(t, "535.261.03")
			if c.setup != nil {
				c.setup(m)
			}
			o := c.opts
			if c.want == ErrSourceVersion {
				o.Source = filepath.Join(m.env.Root, "tmp/src")
			}
			_, _, err := m.env.PlanInstall(context.Background(), o)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
}

func TestRunRollsBackInReverse(t *testing.T) {
	var log []string
	step := func(id string, fail bool) Step {
		return Step{ID: id, Title: id,
			Do: func(context.Context) error {
				log = append(log, "do "+id)
				if fail {
					return errors.New("boom")
				}
				return nil
			},
			Undo: func(context.Context) error { log = append(log, "undo "+id); return nil },
		}
	}
	p := &Plan{Steps: []Step{step("a", false), step("b", false), step("c", true), step("d", false)},
		Verify: func() ([]string, error) { return []string{"added: /x"}, nil }}
	var out bytes.Buffer
	err := p.Run(context.Background(), &out)
	var se *StepError
	if !errors.As(err, &se) || se.Step != "c" || len(se.Residue) != 1 {
		t.Fatalf("err = %v", err)
	}
	want := []string{"do a", "do b", "do c", "undo c", "undo b", "undo a"}
	if !reflect.DeepEqual(log, want) {
		t.Errorf("log = %v, want %v", log, want)
	}
	if !strings.Contains(err.Error(), "differences remain") {
		t.Errorf("err = %v", err)
	}

	log = nil
	t.Setenv(FailStepEnv, "b")
	p = &Plan{Steps: []Step{step("a", false), step("b", false), step("c", false)}}
	err = p.Run(context.Background(), &out)
	if !errors.Is(err, ErrInjected) || !reflect.DeepEqual(log, []string{"do a", "do b", "undo b", "undo a"}) {
		t.Fatalf("err = %v log = %v", err, log)
	}
	if !strings.Contains(err.Error(), "the machine is as before") {
		t.Errorf("err = %v", err)
	}

	log = nil
	p = &Plan{Steps: []Step{step("a", false), {ID: "b", Title: "b",
		Do:   func(context.Context) error { return errors.New("boom") },
		Undo: func(context.Context) error { return errors.New("stuck") }}}}
	err = p.Run(context.Background(), &out)
	if !errors.As(err, &se) || se.RollbackErr == nil || !strings.Contains(err.Error(), "rollback failed") {
		t.Fatalf("err = %v", err)
	}
}

func TestSnapshotDiffAndWriteFileUndo(t *testing.T) {
	m := newFake(t, "535.261.03")
	m.dkms = "nvidia-current/535.261.03, 6.1.0-56-amd64, x86_64: installed\n"
	m.write("/lib/modules/"+testKernel+"/modules.dep", "a\n")
	m.write("/etc/modprobe.d/nvidia.conf", "options nvidia x=1\n")
	ctx := context.Background()
	before, err := m.env.TakeSnapshot(ctx, testKernel)
	if err != nil {
		t.Fatal(err)
	}
	st := m.env.writeFileStep("w", "w", "/etc/modprobe.d/nvidia.conf", []byte("changed\n"))
	st2 := m.env.writeFileStep("w2", "w2", "/etc/modprobe.d/vattn-uvm.conf", []byte("new\n"))
	for _, s := range []Step{st, st2} {
		if err := s.Do(ctx); err != nil {
			t.Fatal(err)
		}
	}
	m.write("/lib/modules/"+testKernel+"/modules.dep", "b\n")
	mid, _ := m.env.TakeSnapshot(ctx, testKernel)
	d := before.Diff(mid)
	if len(d) != 3 || !strings.HasPrefix(d[0], "added: /etc/modprobe.d/vattn-uvm.conf") {
		t.Fatalf("diff = %v", d)
	}
	for _, s := range []Step{st2, st} {
		if err := s.Undo(ctx); err != nil {
			t.Fatal(err)
		}
	}
	m.write("/lib/modules/"+testKernel+"/modules.dep", "a\n")
	after, _ := m.env.TakeSnapshot(ctx, testKernel)
	if d := before.Diff(after); len(d) != 0 {
		t.Fatalf("after undo: %v", d)
	}
	if err := m.env.SaveSnapshot(before); err != nil {
		t.Fatal(err)
	}
	back, err := m.env.LoadSnapshot()
	if err != nil || len(before.Diff(back)) != 0 {
		t.Fatalf("LoadSnapshot: %v %v", err, before.Diff(back))
	}
}

func TestUninstallIsIdempotent(t *testing.T) {
	m := newFake(t, "535.261.03")
	p, err := m.env.PlanUninstall(context.Background())
	if err != nil || len(p.Steps) != 0 {
		t.Fatalf("plan = %v, %v", p.IDs(), err)
	}
	m.dkms = "vattn-uvm/535.261.03-vattn1, " + testKernel + ", x86_64: installed\n"
	m.write("/etc/modprobe.d/vattn-uvm.conf", "install nvidia_uvm ...\n")
	m.write("/usr/src/vattn-uvm-535.261.03-vattn1/dkms.conf", "")
	p, err = m.env.PlanUninstall(context.Background())
	if err != nil || !reflect.DeepEqual(p.IDs(), []string{"dkms-remove", "modprobe-conf", "sources"}) {
		t.Fatalf("plan = %v, %v", p.IDs(), err)
	}
}

func TestForeignRedirects(t *testing.T) {
	m := newFake(t, "535.261.03")
	m.write("/etc/modprobe.d/nvidia-kernel-common.conf", "alias nvidia-uvm nvidia-current-uvm\n")
	m.write("/etc/modprobe.d/vattn-uvm.conf", "install nvidia_uvm /sbin/modprobe --ignore-install nvidia-uvm-vattn\n")
	w := m.env.ForeignRedirects()
	if len(w) != 1 || !strings.Contains(w[0], "nvidia-kernel-common.conf") {
		t.Fatalf("warnings = %v", w)
	}
}
