package drivercmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/vattn/vattn/driver"
	"github.com/vattn/vattn/internal/cli"
)

func fakeEnv(t *testing.T, files map[string]string) func() *driver.Env {
	root := t.TempDir()
	for p, c := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return func() *driver.Env {
		return &driver.Env{Root: root,
			Exec: func(context.Context, string, ...string) ([]byte, error) {
				return nil, errors.New("no tools here")
			},
			LookPath: func(string) (string, error) { return "", errors.New("not found") },
		}
	}
}

func run(t *testing.T, cmd func(*cli.Format) *cobra.Command, format cli.Format, args ...string) (string, int) {
	t.Helper()
	c := cmd(&format)
	var out bytes.Buffer
	c.SetOut(&out)
	c.SetErr(&out)
	c.SetArgs(args)
	err := c.ExecuteContext(context.Background())
	return out.String(), cli.CodeOf(err)
}

func TestStatusExitCodes(t *testing.T) {
	old := NewEnv
	defer func() { NewEnv = old }()
	NewEnv = fakeEnv(t, map[string]string{
		"/proc/sys/kernel/osrelease":                "6.1.0-56-amd64\n",
		"/lib/modules/6.1.0-56-amd64/modules.dep":   "",
		"/proc/driver/nvidia/version":               "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build  (x)  2025\n",
		"/sys/module/nvidia_uvm/srcversion":         "ABC\n",
		"/sys/module/module/parameters/sig_enforce": "Y\n",
	})
	out, code := run(t, NewStatusCmd, cli.Table)
	if code != cli.ExitOK {
		t.Fatalf("exit %d\n%s", code, out)
	}
	for _, want := range []string{"580.159.04 (open kernel module", "small pages:           available, stock path", "module signatures:     enforced", "dkms:                  not installed"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if want := "vattn patch:           series 580.142, the nearest proven version (install-driver proves it fits this version's source)"; !strings.Contains(out, want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
	out, code = run(t, NewStatusCmd, cli.JSON)
	var s driver.Status
	if code != cli.ExitOK || json.Unmarshal([]byte(out), &s) != nil || s.Driver.Version != "580.159.04" || s.SigEnforce != "enforced" {
		t.Fatalf("json exit %d: %s", code, out)
	}
	_, code = run(t, NewStatusCmd, cli.Table, "--kernel", "9.9.9")
	if code != cli.ExitNotFound {
		t.Errorf("unknown kernel: exit %d", code)
	}

	NewEnv = fakeEnv(t, map[string]string{"/proc/sys/kernel/osrelease": "6.1.0-56-amd64\n"})
	out, code = run(t, NewStatusCmd, cli.Table)
	if code != cli.ExitDriverNotLoaded || !strings.Contains(out, "NVIDIA driver:         not loaded") {
		t.Errorf("not loaded: exit %d\n%s", code, out)
	}
}

func TestInstallFlagsAndCodes(t *testing.T) {
	old := NewEnv
	defer func() { NewEnv = old }()
	_, code := run(t, NewInstallCmd, cli.Table, "--no-load", "--reload", "--dry-run")
	if code != cli.ExitBadArgument {
		t.Errorf("--no-load --reload: exit %d", code)
	}
	NewEnv = fakeEnv(t, map[string]string{
		"/proc/sys/kernel/osrelease":              "6.1.0-56-amd64\n",
		"/lib/modules/6.1.0-56-amd64/modules.dep": "",
		"/proc/driver/nvidia/version":             "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  560.35.03  Release Build  (x)  2025\n",
	})
	out, code := run(t, NewInstallCmd, cli.Table, "--dry-run")
	if code != cli.ExitNotSupported {
		t.Errorf("unsupported version: exit %d %s", code, out)
	}
	out, code = run(t, NewUninstallCmd, cli.Table, "--dry-run")
	if code != cli.ExitOK || !strings.Contains(out, "nothing to do") {
		t.Errorf("uninstall with nothing installed: exit %d %s", code, out)
	}
}

func TestDryRunPrintsPlanAndJSON(t *testing.T) {
	old := NewEnv
	defer func() { NewEnv = old }()
	// No headers, no dkms, no NVIDIA source: every failure is marked, the
	// plan is printed, and the exit code is the first failure's.
	NewEnv = fakeEnv(t, map[string]string{
		"/proc/sys/kernel/osrelease":              "6.1.0-56-amd64\n",
		"/lib/modules/6.1.0-56-amd64/modules.dep": "",
		"/proc/driver/nvidia/version":             "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  535.261.03  Release Build  (x)  2025\n",
	})
	out, code := run(t, NewInstallCmd, cli.Table, "--dry-run")
	for _, want := range []string{"FAILED driver source", "FAILED dkms", "FAILED kernel headers", "linux-headers-6.1.0-56-amd64", "dkms build", "a precondition failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run lacks %q:\n%s", want, out)
		}
	}
	if code != cli.ExitNotFound {
		t.Errorf("exit %d", code)
	}
	out, code = run(t, NewInstallCmd, cli.JSON, "--dry-run", "--source", "/nonexistent/nvidia")
	var d driver.DryRun
	if code != cli.ExitNotFound || json.Unmarshal([]byte(strings.SplitN(out, "\n}\n", 2)[0]+"\n}"), &d) != nil ||
		d.Checks[0].Name != "source" || d.Checks[0].OK || len(d.Steps) == 0 {
		t.Errorf("json, missing source: exit %d\n%s", code, out)
	}
	// Without --dry-run the source is checked before root or anything else.
	out, code = run(t, NewInstallCmd, cli.Table, "--source", "/nonexistent/nvidia")
	if code != cli.ExitNotFound || !strings.Contains(out, "--source") {
		t.Errorf("missing source: exit %d %s", code, out)
	}
	out, code = run(t, NewInstallCmd, cli.Table, "--source", "/etc")
	if code != cli.ExitBadArgument || !strings.Contains(out, "no kernel-open tree") {
		t.Errorf("not a source: exit %d %s", code, out)
	}
	out, code = run(t, NewUninstallCmd, cli.JSON, "--dry-run")
	var u struct {
		DryRun bool              `json:"dry_run"`
		Steps  []json.RawMessage `json:"steps"`
	}
	if code != cli.ExitOK || json.Unmarshal([]byte(out), &u) != nil || !u.DryRun || u.Steps == nil {
		t.Errorf("uninstall -o json: exit %d %s", code, out)
	}
}

// A driver version without a series of its own, whose source the nearest proven
// version's series does not fit with no fuzz, is refused before any change: exit code
// 3 (not supported), the nearest proven version named, the machine untouched.
func TestInstallRefusesASeriesThatDoesNotFit(t *testing.T) {
	old := NewEnv
	defer func() { NewEnv = old }()
	files := map[string]string{
		"/proc/sys/kernel/osrelease":              "6.1.0-56-amd64\n",
		"/lib/modules/6.1.0-56-amd64/modules.dep": "",
		"/proc/driver/nvidia/version":             "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.170.01  Release Build  (x)  2025\n",
		"/usr/src/nvidia-550.170.01/Kbuild":       `ccflags-y += -DNV_VERSION_STRING=\"550.170.01\"` + "\n",
	}
	for _, f := range []string{"conftest.sh", "nvidia/nvidia.Kbuild", "nvidia/nv-pci.c", "nvidia-uvm/uvm.c", "nvidia-uvm/uvm_va_space.h",
		"nvidia-uvm/uvm_va_space.c", "nvidia-uvm/uvm_va_range.c", "nvidia-uvm/nvidia-uvm-sources.Kbuild", "nvidia-uvm/nvidia-uvm.Kbuild"} {
		files["/usr/src/nvidia-550.170.01/"+f] = "/* a version whose hooks moved */\n"
	}
	NewEnv = fakeEnv(t, files)
	root := NewEnv().Root
	before := listTree(t, root)
	check := func(out string, code int) {
		t.Helper()
		if code != cli.ExitNotSupported {
			t.Errorf("exit %d, want %d\n%s", code, cli.ExitNotSupported, out)
		}
		for _, want := range []string{"NVIDIA 550.170.01 has no vattn series of its own", "nearest proven version, 550.163.01", "does not apply to its source with no fuzz", "needs a port"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if after := listTree(t, root); !slices.Equal(before, after) {
			t.Errorf("the machine changed:\nbefore %v\nafter  %v", before, after)
		}
	}
	out, code := run(t, NewInstallCmd, cli.Table, "--dry-run")
	if !strings.Contains(out, "FAILED series fits the source") {
		t.Errorf("dry run does not mark the series check:\n%s", out)
	}
	check(out, code)
	if os.Geteuid() != 0 {
		t.Skip("install-driver without --dry-run needs root")
	}
	check(run(t, NewInstallCmd, cli.Table))
}

// listTree lists every path under root with its size.
func listTree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out = append(out, fmt.Sprintf("%s %d", p, fi.Size()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
