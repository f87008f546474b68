package driver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/vattn/vattn/dkms"
)

// PlanUninstall returns the steps that remove every vattn-uvm version from DKMS, the
// modprobe.d redirect and our staged sources. With nothing installed the plan is
// empty: uninstall is idempotent. A loaded patched module stays loaded (unloading it
// under a running CUDA process is not ours to do); a note says how to switch.
func (e *Env) PlanUninstall(ctx context.Context) (*Plan, error) {
	p := &Plan{}
	entries, have, err := e.DKMSStatus(ctx, dkms.PackageName)
	if err != nil {
		return nil, err
	}
	versions := map[string]bool{}
	for _, en := range entries {
		versions[en.Version] = true
	}
	trees, _ := filepath.Glob(e.path("/usr/src/" + dkms.PackageName + "-*"))
	if len(versions) > 0 && !have {
		return nil, ErrNoDKMS
	}
	var vs []string
	for v := range versions {
		vs = append(vs, v)
	}
	sort.Strings(vs)
	for _, v := range vs {
		p.Steps = append(p.Steps, Step{
			ID:     "dkms-remove",
			Title:  fmt.Sprintf("remove %s/%s from DKMS (every kernel)", dkms.PackageName, v),
			Detail: []string{"dkms remove -m " + dkms.PackageName + " -v " + v + " --all", "depmod -a (run by dkms)"},
			Do:     func(ctx context.Context) error { return e.dkmsRemove(ctx, v) },
		})
	}
	if _, err := os.Stat(e.path(dkms.ModprobeConf)); err == nil {
		p.Steps = append(p.Steps, Step{
			ID: "modprobe-conf", Title: "remove the modprobe.d redirect",
			Detail: []string{"rm " + dkms.ModprobeConf},
			Do:     func(context.Context) error { return removeIfExists(e.path(dkms.ModprobeConf)) },
		})
	}
	for _, t := range trees {
		t := t
		p.Steps = append(p.Steps, Step{
			ID: "sources", Title: "remove " + filepath.Base(t) + " from /usr/src",
			Detail: []string{"rm -r " + "/usr/src/" + filepath.Base(t)},
			Do:     func(context.Context) error { return os.RemoveAll(t) },
		})
	}
	if _, err := os.Stat(e.path(StateFile)); err == nil {
		before, lerr := e.LoadSnapshot()
		p.Steps = append(p.Steps, Step{
			ID: "state", Title: "compare with the state recorded before install, then forget it",
			Detail: []string{"diff against " + StateFile, "rm " + StateFile},
			Do: func(ctx context.Context) error {
				if lerr == nil {
					after, err := e.TakeSnapshot(ctx, before.Kernel)
					if err != nil {
						return err
					}
					for _, d := range before.Diff(after) {
						p.Notes = append(p.Notes, "differs from before install: "+d)
					}
				}
				if err := os.Remove(e.path(StateFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return err
				}
				return nil
			},
		})
	}
	if e.ModuleLoaded("nvidia_uvm") && len(p.Steps) > 0 {
		p.Notes = append(p.Notes, "a loaded nvidia_uvm stays loaded; the stock module is used after a reboot or "+
			"`modprobe -r nvidia_uvm && modprobe nvidia-uvm`")
	}
	return p, nil
}
