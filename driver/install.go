package driver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/vattn/vattn/dkms"
	"github.com/vattn/vattn/kernel"
)

// InstallOptions are install-driver's flags.
type InstallOptions struct {
	Kernel string // "" = running kernel
	Source string // "" = search /usr/src
	NoLoad bool   // build and install, load nothing
	Reload bool   // unload a loaded nvidia_uvm and load ours (fails while it is held)
	LogDir string // where build logs are kept; "" = /var/lib/vattnctl
}

// Sentinel errors install-driver callers branch on.
var (
	ErrNoDKMS           = errors.New("dkms is not installed")
	ErrProprietary      = errors.New("the vattn patch applies to NVIDIA's open kernel modules; the installed driver is proprietary")
	ErrAlreadyInstalled = errors.New("vattn-uvm is already installed")
	ErrOtherInstalled   = errors.New("another vattn-uvm version is installed; run vattnctl uninstall-driver first")
	ErrDeviceBusy       = errors.New("/dev/nvidia-uvm is in use")
	ErrNoNVIDIA         = errors.New("no NVIDIA driver installed for this kernel")
)

// BusyError lists the processes holding /dev/nvidia-uvm.
type BusyError struct{ Holders []Holder }

func (e *BusyError) Error() string {
	s := make([]string, len(e.Holders))
	for i, h := range e.Holders {
		s[i] = h.String()
	}
	return fmt.Sprintf("%v: held by %s; stop them or install with --no-load and reboot", ErrDeviceBusy, strings.Join(s, ", "))
}

func (e *BusyError) Unwrap() error { return ErrDeviceBusy }

// PackageVersion is our DKMS package version for NVIDIA version v.
func PackageVersion(v string) string { return fmt.Sprintf("%s-vattn%d", v, dkms.Revision) }

// UVMDevice is the device the nvidia-uvm module creates.
const UVMDevice = "/dev/nvidia-uvm"

// Target is what install-driver detected: the kernel, the NVIDIA version and source.
type Target struct {
	Kernel  string `json:"kernel"`
	NVIDIA  string `json:"nvidia_version"`
	Flavor  Flavor `json:"flavor,omitempty"`
	Package string `json:"package_version"`
	Source  Source `json:"source"`
	// Series is the proven version whose patch series applies to Source with no fuzz:
	// NVIDIA itself, or the nearest proven version of its branch (NearestSeries).
	Series     string `json:"series"`
	SourceTree string `json:"source_tree"` // /usr/src/vattn-uvm-<pkgver>
}

// InstalledNVIDIA returns the version of the nvidia.ko modprobe resolves for kver.
func (e *Env) InstalledNVIDIA(ctx context.Context, kver string) (string, error) {
	if !e.Have("modinfo") {
		return "", fmt.Errorf("modinfo: %s", NotInstalled)
	}
	out, err := e.Exec(ctx, "modinfo", "-k", kver, "-F", "version", "nvidia")
	if err != nil {
		return "", fmt.Errorf("kernel %s: %w", kver, ErrNoNVIDIA)
	}
	v, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if v == "" {
		return "", fmt.Errorf("kernel %s: %w", kver, ErrNoNVIDIA)
	}
	return v, nil
}

// detect works out the target of an install; it reads and changes nothing else.
func (e *Env) detect(ctx context.Context, opts InstallOptions) (Target, []string, error) {
	var t Target
	var warns []string
	running, _ := e.RunningKernel()
	t.Kernel = opts.Kernel
	if t.Kernel == "" {
		t.Kernel = running
	}
	if err := e.CheckKernel(t.Kernel); err != nil {
		return t, nil, err
	}
	loaded, lerr := e.LoadedDriver()
	if lerr != nil && !errors.Is(lerr, ErrDriverNotLoaded) {
		return t, nil, lerr
	}
	installed, ierr := e.InstalledNVIDIA(ctx, t.Kernel)
	switch {
	case ierr == nil:
		t.NVIDIA = installed
	case lerr == nil && t.Kernel == running:
		t.NVIDIA = loaded.Version
		warns = append(warns, fmt.Sprintf("cannot read the installed nvidia.ko (%v); using the loaded driver's version", ierr))
	default:
		return t, nil, ierr
	}
	if lerr == nil && t.Kernel == running {
		t.Flavor = loaded.Flavor
		if loaded.Flavor == FlavorProprietary {
			return t, nil, ErrProprietary
		}
		if loaded.Version != t.NVIDIA {
			warns = append(warns, fmt.Sprintf("loaded driver is %s but %s is installed for %s: reboot before loading vattn-uvm", loaded.Version, t.NVIDIA, t.Kernel))
		}
	}
	if _, ok := NearestSeries(t.NVIDIA); !ok {
		return t, nil, &UnsupportedError{Version: t.NVIDIA, Supported: SupportedVersions()}
	}
	src, err := e.LocateSource(t.NVIDIA, opts.Source)
	if err != nil {
		return t, nil, err
	}
	t.Source = src
	// The proof reads only the files the series touches: a refusal changes nothing.
	fit, err := FitSource(src)
	if err != nil {
		return t, nil, err
	}
	t.Series = fit.Series
	if fit.Series != t.NVIDIA {
		warns = append(warns, fmt.Sprintf("NVIDIA %s has no series of its own: the series of %s, the nearest proven version, "+
			"applies to its source with no fuzz and is built against it", t.NVIDIA, fit.Series))
	}
	t.Package = PackageVersion(t.NVIDIA)
	t.SourceTree = "/usr/src/" + dkms.PackageName + "-" + t.Package
	return t, warns, nil
}

// PlanInstall detects the machine's state and returns the steps that install our module
// for it. Detection problems (unsupported version, missing headers, no dkms, a busy
// device with --reload) are returned here, before any step runs.
func (e *Env) PlanInstall(ctx context.Context, opts InstallOptions) (*Plan, Target, error) {
	t, warns, err := e.detect(ctx, opts)
	if err != nil {
		return nil, t, err
	}
	if !e.Have("dkms") {
		return nil, t, fmt.Errorf("%w (apt-get install dkms, or dnf install dkms)", ErrNoDKMS)
	}
	if err := e.CheckHeaders(t.Kernel); err != nil && os.Getenv(SkipHeaderCheckEnv) == "" {
		return nil, t, err
	}
	entries, _, err := e.DKMSStatus(ctx, dkms.PackageName)
	if err != nil {
		return nil, t, err
	}
	// Any vattn-uvm already known to DKMS is either exactly this install (nothing to do)
	// or something uninstall-driver must clear first: we never modify a package in place.
	for _, en := range entries {
		if en.Version == t.Package && en.Kernel == t.Kernel && en.State == "installed" {
			return nil, t, fmt.Errorf("%w for %s (%s)", ErrAlreadyInstalled, t.Kernel, en.Line)
		}
	}
	if len(entries) > 0 {
		return nil, t, fmt.Errorf("%w (%s)", ErrOtherInstalled, entries[0].Line)
	}
	if _, err := os.Stat(e.path(t.SourceTree)); err == nil {
		return nil, t, fmt.Errorf("%s exists but DKMS does not know it: remove it first", t.SourceTree)
	}
	warns = append(warns, e.ForeignRedirects()...)

	running, _ := e.RunningKernel()
	uvmLoaded := e.ModuleLoaded("nvidia_uvm")
	var holders []Holder
	if opts.Reload && !opts.NoLoad && t.Kernel == running && uvmLoaded {
		if _, err := os.Stat(e.path(UVMDevice)); err == nil {
			holders, err = e.Holders(e.path(UVMDevice))
			if err != nil {
				return nil, t, err
			}
		}
		if len(holders) > 0 {
			return nil, t, &BusyError{Holders: holders}
		}
	}

	return e.installPlan(t, opts, warns), t, nil
}

// installPlan builds the install's steps for target t. It checks nothing:
// PlanInstall calls it once every precondition holds, and DryRunInstall to
// show the plan even when some do not.
func (e *Env) installPlan(t Target, opts InstallOptions, warns []string) *Plan {
	running, _ := e.RunningKernel()
	uvmLoaded := e.ModuleLoaded("nvidia_uvm")
	logDir := opts.LogDir
	if logDir == "" {
		logDir = filepath.Dir(StateFile)
	}
	p := &Plan{Warnings: warns}
	var before *Snapshot
	var priorState []byte
	var priorStateErr error
	p.Steps = append(p.Steps, Step{
		ID:     "record",
		Title:  "record the current state to " + StateFile,
		Detail: []string{"dkms status; files under /lib/modules/" + t.Kernel + ", /etc/modprobe.d, /etc/depmod.d, /usr/src, /var/lib/dkms"},
		Do: func(ctx context.Context) error {
			priorState, priorStateErr = os.ReadFile(e.path(StateFile))
			s, err := e.TakeSnapshot(ctx, t.Kernel)
			if err != nil {
				return err
			}
			before = s
			return e.SaveSnapshot(s)
		},
		Undo: func(context.Context) error {
			if priorStateErr == nil {
				return os.WriteFile(e.path(StateFile), priorState, 0o644)
			}
			if err := os.Remove(e.path(StateFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			return nil
		},
	})
	p.Verify = func() ([]string, error) {
		if before == nil {
			return nil, nil
		}
		after, err := e.TakeSnapshot(context.Background(), t.Kernel)
		if err != nil {
			return nil, err
		}
		return before.Diff(after), nil
	}
	p.Steps = append(p.Steps, e.stageStep(t))
	pkg := []string{"-m", dkms.PackageName, "-v", t.Package}
	p.Steps = append(p.Steps, Step{
		ID:     "dkms-add",
		Title:  fmt.Sprintf("add %s/%s to DKMS", dkms.PackageName, t.Package),
		Detail: []string{"dkms add " + strings.Join(pkg, " ")},
		Do:     func(ctx context.Context) error { return e.run(ctx, "dkms", append([]string{"add"}, pkg...)...) },
		Undo:   func(ctx context.Context) error { return e.dkmsRemove(ctx, t.Package) },
	})
	mokKey := e.path("/var/lib/dkms/mok.key")
	mokPub := e.path("/var/lib/dkms/mok.pub")
	var hadMOK bool
	buildLog := filepath.Join(logDir, fmt.Sprintf("build-%s-%s.log", t.Package, t.Kernel))
	p.Steps = append(p.Steps, Step{
		ID:    "dkms-build",
		Title: fmt.Sprintf("build nvidia-uvm for %s (about 2 minutes on 2 cores; log %s)", t.Kernel, buildLog),
		Detail: []string{"dkms build " + strings.Join(pkg, " ") + " -k " + t.Kernel,
			"signs the module with DKMS's MOK key (/var/lib/dkms/mok.key), created when missing"},
		Do: func(ctx context.Context) error {
			_, err := os.Stat(mokKey)
			hadMOK = err == nil
			out, err := e.Exec(ctx, "dkms", append(append([]string{"build"}, pkg...), "-k", t.Kernel)...)
			log := append([]byte(nil), out...)
			makeLog, rerr := os.ReadFile(e.path(filepath.Join("/var/lib/dkms", dkms.PackageName, t.Package, "build", "make.log")))
			if rerr == nil {
				log = append(append(log, "\n--- make.log ---\n"...), makeLog...)
			}
			_ = os.MkdirAll(filepath.Dir(e.path(buildLog)), 0o755)
			_ = os.WriteFile(e.path(buildLog), log, 0o644)
			if err != nil {
				return &ToolError{Tool: "dkms build (log " + buildLog + ")", Err: err, Output: string(log)}
			}
			return nil
		},
		Undo: func(context.Context) error {
			if hadMOK {
				return nil
			}
			// The key DKMS created for this build goes with it: nothing was enrolled yet.
			return errors.Join(removeIfExists(mokKey), removeIfExists(mokPub))
		},
	})
	p.Steps = append(p.Steps, Step{
		ID:    "dkms-install",
		Title: fmt.Sprintf("install it as %s.ko (PRE_INSTALL checks nvidia.ko is %s)", dkms.ModuleFile, t.NVIDIA),
		Detail: []string{"dkms install " + strings.Join(pkg, " ") + " -k " + t.Kernel,
			"/lib/modules/" + t.Kernel + "/updates/dkms/" + dkms.ModuleFile + ".ko; depmod -a " + t.Kernel},
		Do: func(ctx context.Context) error {
			return e.run(ctx, "dkms", append(append([]string{"install"}, pkg...), "-k", t.Kernel)...)
		},
		Undo: func(ctx context.Context) error {
			en, _, err := e.DKMSStatus(ctx, dkms.PackageName)
			if err != nil {
				return err
			}
			for _, x := range en {
				if x.Version == t.Package && x.Kernel == t.Kernel && x.State == "installed" {
					return e.run(ctx, "dkms", append(append([]string{"uninstall"}, pkg...), "-k", t.Kernel)...)
				}
			}
			return nil
		},
	})
	p.Steps = append(p.Steps, e.writeFileStep("modprobe-conf", "redirect modprobe nvidia-uvm to "+dkms.ModuleFile,
		dkms.ModprobeConf, dkms.ModprobeRedirect()))
	switch {
	case opts.NoLoad:
		p.Notes = append(p.Notes, "not loaded (--no-load): the module is used after a reboot or vattnctl install-driver --reload")
	case t.Kernel != running:
		p.Notes = append(p.Notes, fmt.Sprintf("built for %s, which is not running: the module is used after booting it", t.Kernel))
	case uvmLoaded && !opts.Reload:
		p.Notes = append(p.Notes, "the stock nvidia_uvm is loaded: the patched module is used after a reboot, or now with --reload")
	default:
		if uvmLoaded {
			p.Steps = append(p.Steps, Step{
				ID: "unload", Title: "unload the stock nvidia_uvm (nothing holds " + UVMDevice + ")",
				Detail: []string{"modprobe -r nvidia_uvm"},
				Do:     func(ctx context.Context) error { return e.run(ctx, "modprobe", "-r", "nvidia_uvm") },
				Undo: func(ctx context.Context) error {
					if e.ModuleLoaded("nvidia_uvm") {
						return nil
					}
					return e.run(ctx, "modprobe", "--ignore-install", "nvidia_uvm")
				},
			})
		}
		p.Steps = append(p.Steps, Step{
			ID: "load", Title: "load the patched nvidia-uvm",
			Detail: []string{"modprobe nvidia-uvm"},
			Do:     func(ctx context.Context) error { return e.run(ctx, "modprobe", "nvidia-uvm") },
			Undo: func(ctx context.Context) error {
				if !e.ModuleLoaded("nvidia_uvm") {
					return nil
				}
				return e.run(ctx, "modprobe", "-r", "nvidia_uvm")
			},
		}, Step{
			ID: "verify", Title: "check the loaded module answers UVM_VATTN_GET_INFO",
			Detail: []string{"open " + UVMDevice + "; ioctl UVM_VATTN_GET_INFO"},
			Do:     func(context.Context) error { return e.VerifyLoaded() },
		})
	}
	return p
}

// SkipHeaderCheckEnv, when set, lets PlanInstall go on without kernel headers so that
// tests can show the build step fails and rolls back when they are missing.
const SkipHeaderCheckEnv = "VATTNCTL_TEST_SKIP_HEADER_CHECK"

func removeIfExists(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func (e *Env) run(ctx context.Context, name string, args ...string) error {
	out, err := e.Exec(ctx, name, args...)
	if err != nil {
		return &ToolError{Tool: name + " " + strings.Join(args, " "), Err: err, Output: string(out)}
	}
	return nil
}

// dkmsRemove removes every kernel's build of our package version, when DKMS knows it.
func (e *Env) dkmsRemove(ctx context.Context, version string) error {
	en, _, err := e.DKMSStatus(ctx, dkms.PackageName)
	if err != nil {
		return err
	}
	for _, x := range en {
		if x.Version == version {
			if err := e.run(ctx, "dkms", "remove", "-m", dkms.PackageName, "-v", version, "--all"); err != nil {
				return err
			}
			break
		}
	}
	// DKMS leaves /var/lib/dkms/<module> behind once its last version is gone.
	_ = os.Remove(e.path(filepath.Join("/var/lib/dkms", dkms.PackageName)))
	return nil
}

// writeFileStep writes content to p; Undo restores what was there (or removes it).
func (e *Env) writeFileStep(id, title, p string, content []byte) Step {
	var prior []byte
	var existed bool
	return Step{
		ID: id, Title: title, Detail: []string{"write " + p},
		Do: func(context.Context) error {
			b, err := os.ReadFile(e.path(p))
			prior, existed = b, err == nil
			if err := os.MkdirAll(filepath.Dir(e.path(p)), 0o755); err != nil {
				return err
			}
			return os.WriteFile(e.path(p), content, 0o644)
		},
		Undo: func(context.Context) error {
			if existed {
				return os.WriteFile(e.path(p), prior, 0o644)
			}
			return removeIfExists(e.path(p))
		},
	}
}

// ForeignRedirects returns a warning for each modprobe.d line, not ours, that redirects
// or aliases nvidia-uvm (Debian's nvidia-kernel-common and vendor packages ship such
// lines); modprobe applies the first install command it reads.
func (e *Env) ForeignRedirects() []string {
	var out []string
	files, _ := filepath.Glob(e.path("/etc/modprobe.d/*.conf"))
	more, _ := filepath.Glob(e.path("/lib/modprobe.d/*.conf"))
	for _, f := range append(files, more...) {
		if strings.HasSuffix(f, filepath.Base(dkms.ModprobeConf)) && strings.HasPrefix(f, e.path("/etc")) {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			fs := strings.Fields(line)
			if len(fs) >= 3 && (fs[0] == "install" || fs[0] == "alias") &&
				strings.ReplaceAll(fs[1], "-", "_") == "nvidia_uvm" {
				out = append(out, fmt.Sprintf("%s also redirects nvidia-uvm (%q): remove or comment it out so %s takes effect",
					strings.TrimPrefix(f, e.Root), strings.TrimSpace(line), dkms.ModprobeConf))
			}
		}
	}
	return out
}

// stageStep makes /usr/src/vattn-uvm-<ver>: the NVIDIA kernel-open tree with our files
// and the series applied, dkms.conf and the PRE_INSTALL script.
func (e *Env) stageStep(t Target) Step {
	dest := e.path(t.SourceTree)
	tmp := dest + ".staging"
	return Step{
		ID:    "stage",
		Title: fmt.Sprintf("stage NVIDIA %s with the vattn patch in %s", t.NVIDIA, t.SourceTree),
		Detail: []string{fmt.Sprintf("unpack %s (%s)", t.Source.Path, t.Source.Kind),
			"copy our nvidia-uvm files; apply series/" + t.Series + " with no fuzz (each hunk where its text occurs once)",
			"write dkms.conf and " + dkms.PreInstall},
		Do: func(ctx context.Context) error {
			if err := os.RemoveAll(tmp); err != nil {
				return err
			}
			if err := e.unpack(ctx, t.Source, tmp); err != nil {
				return err
			}
			if err := applyPatch(tmp, t.Series); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(tmp, "dkms.conf"), dkms.Conf(t.Package, t.NVIDIA), 0o644); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(tmp, dkms.PreInstall), dkms.PreInstallScript(), 0o755); err != nil {
				return err
			}
			if os.Getenv(CorruptStageEnv) != "" {
				if err := corruptFirstObject(tmp); err != nil {
					return err
				}
			}
			return os.Rename(tmp, dest)
		},
		Undo: func(context.Context) error {
			return errors.Join(os.RemoveAll(tmp), os.RemoveAll(dest))
		},
	}
}

// Test hooks for the rollback tests (tests/dkms): CorruptStageEnv makes the build fail
// on its first object; ExtraPatchEnv names a patch applied after the series.
const (
	CorruptStageEnv = "VATTNCTL_TEST_CORRUPT_STAGE"
	ExtraPatchEnv   = "VATTNCTL_TEST_EXTRA_PATCH"
)

// corruptFirstObject breaks a header every NVIDIA object includes, so the build fails on
// the first object it compiles (after conftest) instead of minutes later.
func corruptFirstObject(tree string) error {
	p := filepath.Join(tree, "common", "inc", "nvtypes.h")
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	return os.WriteFile(p, append([]byte("#error \"corrupted by "+CorruptStageEnv+"\"\n"), b...), 0o644)
}

func (e *Env) unpack(ctx context.Context, s Source, dest string) error {
	switch s.Kind {
	case SourceDir:
		if err := e.run(ctx, "cp", "-a", filepath.Join(s.Path, s.Top), dest); err != nil {
			return fmt.Errorf("unpack: %w", err)
		}
	case SourceTarball:
		x := dest + ".x"
		defer os.RemoveAll(x)
		if err := os.MkdirAll(x, 0o755); err != nil {
			return err
		}
		if err := e.run(ctx, "tar", "-xf", s.Path, "-C", x); err != nil {
			return fmt.Errorf("unpack: %w", err)
		}
		if err := os.Rename(filepath.Join(x, s.Top), dest); err != nil {
			return fmt.Errorf("unpack: %w", err)
		}
	default:
		return fmt.Errorf("unpack: unknown source kind %q", s.Kind)
	}
	return nil
}

func applyPatch(tree, series string) error {
	s, err := LookupSeries(series)
	if err != nil {
		return err
	}
	for _, f := range OurFiles() {
		b, err := fs.ReadFile(kernel.Patch, f)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(tree, "nvidia-uvm", filepath.Base(f)), b, 0o644); err != nil {
			return fmt.Errorf("stage: %w", err)
		}
	}
	if err := ApplySeries(tree, s); err != nil {
		return fmt.Errorf("stage: series %s: %w", series, err)
	}
	if x := os.Getenv(ExtraPatchEnv); x != "" {
		b, err := os.ReadFile(x)
		if err != nil {
			return err
		}
		p, err := ParsePatch(filepath.Base(x), b)
		if err != nil {
			return fmt.Errorf("stage: %w", err)
		}
		if err := applyPatches(tree, []*Patch{p}); err != nil {
			return fmt.Errorf("stage: %w", err)
		}
	}
	return nil
}
