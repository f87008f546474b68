package driver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/vattn/vattn/dkms"
)

// Check is one precondition of an install, as --dry-run reports it.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`        // what was found, or what is wrong
	Fix    string `json:"fix,omitempty"` // what to install or pass, when it failed
	Err    error  `json:"-"`
}

// PlannedStep is a step as --dry-run shows it.
type PlannedStep struct {
	ID     string   `json:"id"`
	Title  string   `json:"title"`
	Detail []string `json:"detail,omitempty"`
}

// DryRun is what install-driver --dry-run reports: every precondition with
// its state, and the whole plan, also when some precondition fails (then
// with what detection could not tell left as <placeholders>).
type DryRun struct {
	Target   Target        `json:"target"`
	Checks   []Check       `json:"checks"`
	Ready    bool          `json:"ready"` // every check passed: the plan would run
	Warnings []string      `json:"warnings,omitempty"`
	Steps    []PlannedStep `json:"steps"`
	Notes    []string      `json:"notes,omitempty"`
}

// Err is the first failed check's error, nil when all passed.
func (d *DryRun) Err() error {
	for _, c := range d.Checks {
		if !c.OK {
			return c.Err
		}
	}
	return nil
}

// DryRunInstall checks every precondition of an install, without stopping
// at the first that fails, and lays out the plan. It changes nothing.
func (e *Env) DryRunInstall(ctx context.Context, opts InstallOptions) *DryRun {
	d := &DryRun{Steps: []PlannedStep{}}
	add := func(name, detail string, err error, fix string) bool {
		c := Check{Name: name, OK: err == nil, Detail: detail, Err: err}
		if err != nil {
			c.Detail, c.Fix = err.Error(), fix
		}
		d.Checks = append(d.Checks, c)
		return err == nil
	}
	t := Target{Kernel: opts.Kernel, NVIDIA: "<NVIDIA version>"}
	var given *Source
	if opts.Source != "" {
		s, err := InspectSource(opts.Source)
		if err != nil {
			err = fmt.Errorf("--source: %w", err)
		}
		if add("source", fmt.Sprintf("%s (%s, NVIDIA %s)", s.Path, s.Kind, s.Version), err,
			"pass --source the NVIDIA kernel-open directory or tarball of the installed driver's version") {
			given = &s
		}
	}
	running, _ := e.RunningKernel()
	if t.Kernel == "" {
		t.Kernel = running
	}
	kernelOK := add("kernel", t.Kernel+" is installed", e.CheckKernel(t.Kernel),
		"pass --kernel one of the installed kernels, or install linux-image-"+t.Kernel)
	var version string
	if kernelOK {
		tt, warns, err := e.detectDriver(ctx, t.Kernel, running)
		d.Warnings = append(d.Warnings, warns...)
		fix := "install NVIDIA's open kernel modules (nvidia-open, or the .run installer with -m=kernel-open)"
		if add("nvidia driver", fmt.Sprintf("NVIDIA %s %s", tt.NVIDIA, tt.Flavor), err, fix) {
			version, t.NVIDIA, t.Flavor = tt.NVIDIA, tt.NVIDIA, tt.Flavor
		}
	}
	if version == "" && given != nil {
		version = given.Version // the best guess there is for the plan
		t.NVIDIA = version
	}
	if version != "" {
		near, ok := NearestSeries(version)
		var err error
		if !ok {
			err = &UnsupportedError{Version: version, Supported: SupportedVersions()}
		}
		detail := "a patch series exists for NVIDIA " + version
		if near != version {
			detail = fmt.Sprintf("NVIDIA %s has no series of its own; the nearest proven version of its branch is %s", version, near)
		}
		seriesOK := add("vattn patch", detail, err, "use a driver version of a supported branch")
		srcOK := false
		if opts.Source == "" || given != nil {
			src, err := e.LocateSource(version, opts.Source)
			if err == nil {
				t.Source, srcOK = src, true
			}
			if opts.Source == "" || err != nil {
				add("driver source", fmt.Sprintf("%s (%s)", src.Path, src.Kind), err,
					"install the NVIDIA "+version+" kernel-open source (Debian: nvidia-open-kernel-source), or pass --source DIR|TARBALL")
			}
		}
		if seriesOK && srcOK {
			fit, err := FitSource(t.Source)
			detail := ""
			if err == nil {
				t.Series = fit.Series
				detail = fmt.Sprintf("series %s applies to the NVIDIA %s source with no fuzz (%d hunks, each where its text occurs once)",
					fit.Series, version, len(fit.Hunks))
			}
			add("series fits the source", detail, err,
				fmt.Sprintf("NVIDIA %s needs a port of the vattn hooks, or install the driver of a proven version (%s)",
					version, strings.Join(SupportedVersions(), ", ")))
		}
	}
	if t.Series == "" {
		t.Series = "<series>"
	}
	var dkmsErr error
	if !e.Have("dkms") {
		dkmsErr = ErrNoDKMS
	}
	add("dkms", "dkms is installed", dkmsErr, "apt-get install dkms, or dnf install dkms")
	if kernelOK {
		add("kernel headers", "/lib/modules/"+t.Kernel+"/build", e.CheckHeaders(t.Kernel),
			"install linux-headers-"+t.Kernel+" (Debian/Ubuntu) or kernel-devel-"+t.Kernel+" (Fedora/RHEL)")
	}
	if t.Source.Path == "" {
		t.Source = Source{Path: "<NVIDIA kernel-open source>"}
	}
	t.Package = PackageVersion(t.NVIDIA)
	t.SourceTree = "/usr/src/" + dkms.PackageName + "-" + t.Package
	d.Target = t
	d.Ready = d.Err() == nil
	var p *Plan
	if d.Ready {
		// Everything above holds: the real planner has the last word (an
		// installed package, a busy device).
		var err error
		p, _, err = e.PlanInstall(ctx, opts)
		if err != nil {
			add("install state", "", err, "")
			d.Ready = false
		}
	}
	if p == nil {
		p = e.installPlan(t, opts, nil)
	}
	d.Warnings = append(d.Warnings, p.Warnings...)
	d.Notes = p.Notes
	for _, s := range p.Steps {
		d.Steps = append(d.Steps, PlannedStep{ID: s.ID, Title: s.Title, Detail: s.Detail})
	}
	return d
}

// detectDriver finds the NVIDIA version and flavor for kernel kver, as
// detect does.
func (e *Env) detectDriver(ctx context.Context, kver, running string) (Target, []string, error) {
	t, warns, err := e.detect(ctx, InstallOptions{Kernel: kver})
	if err != nil && t.NVIDIA != "" && !errors.Is(err, ErrProprietary) {
		// detect went on to the patch series and the source, which are
		// checks of their own here: the driver itself was found.
		return t, warns, nil
	}
	return t, warns, err
}

// Print writes the dry run: the target, every check marked ok or FAILED
// with its fix, and every step.
func (d *DryRun) Print(w io.Writer) {
	t := d.Target
	fmt.Fprintf(w, "kernel %s, NVIDIA %s, source %s, series %s, package %s\n", t.Kernel, t.NVIDIA, t.Source.Path, t.Series, t.Package)
	fmt.Fprintln(w, "preconditions:")
	for _, c := range d.Checks {
		mark := "ok    "
		if !c.OK {
			mark = "FAILED"
		}
		fmt.Fprintf(w, "  %s %s: %s\n", mark, c.Name, c.Detail)
		if !c.OK && c.Fix != "" {
			fmt.Fprintf(w, "         fix: %s\n", c.Fix)
		}
	}
	for _, warn := range d.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	if d.Ready {
		fmt.Fprintln(w, "plan:")
	} else {
		fmt.Fprintln(w, "plan (would run once the failed preconditions are fixed):")
	}
	for i, s := range d.Steps {
		fmt.Fprintf(w, "%d. %s\n", i+1, s.Title)
		for _, x := range s.Detail {
			fmt.Fprintf(w, "     %s\n", x)
		}
	}
	for _, n := range d.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}
