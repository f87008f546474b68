// Package drivercmd holds vattnctl's install-driver, uninstall-driver and status
// commands: flag parsing, output and exit codes around package driver.
package drivercmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vattn/vattn/driver"
	"github.com/vattn/vattn/internal/cli"
)

// NewEnv returns the machine the commands work on; tests replace it.
var NewEnv = driver.System

// codeOf maps driver errors to vattnctl's exit codes (nvidia-smi's meanings).
func codeOf(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, driver.ErrDriverNotLoaded):
		return cli.WithCode(cli.ExitDriverNotLoaded, err)
	case errors.Is(err, driver.ErrUnsupportedVersion), errors.Is(err, driver.ErrProprietary):
		return cli.WithCode(cli.ExitNotSupported, err)
	case errors.Is(err, driver.ErrKernelNotInstalled), errors.Is(err, driver.ErrSourceNotFound),
		errors.Is(err, driver.ErrNoNVIDIA), errors.Is(err, driver.ErrNoHeaders), errors.Is(err, driver.ErrNoDKMS),
		errors.Is(err, driver.ErrSourceVersion):
		return cli.WithCode(cli.ExitNotFound, err)
	case errors.Is(err, fs.ErrNotExist):
		return cli.WithCode(cli.ExitNotFound, err)
	case errors.Is(err, os.ErrPermission):
		return cli.WithCode(cli.ExitNoPermission, err)
	}
	return err
}

func needRoot(dryRun bool) error {
	if dryRun || os.Geteuid() == 0 {
		return nil
	}
	return cli.WithCode(cli.ExitNoPermission, errors.New("must run as root (or use --dry-run)"))
}

type installOptions struct {
	driver.InstallOptions
	DryRun bool
}

// NewInstallCmd builds `vattnctl install-driver`.
func NewInstallCmd(format *cli.Format) *cobra.Command {
	var o installOptions
	cmd := &cobra.Command{
		Use:   "install-driver",
		Short: "build and install the vattn-patched nvidia-uvm with DKMS",
		Long: `install-driver detects the NVIDIA driver and kernel, finds the exact-version
NVIDIA open kernel source, applies the vattn patch for that version and builds and
installs it with DKMS as package vattn-uvm (file nvidia-uvm-vattn.ko), selected by
/etc/modprobe.d/vattn-uvm.conf. NVIDIA's own files are never touched. The state before
any change is recorded in /var/lib/vattnctl/state.json; a failure at any step rolls the
machine back to it. See docs/driver-install.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.NoLoad && o.Reload {
				return cli.Usagef("--no-load and --reload exclude each other")
			}
			// --source first: a typo there is the cheapest thing to fix.
			srcErr := checkSource(o.Source)
			if o.DryRun {
				return dryRunInstall(cmd, *format, NewEnv(), o, srcErr)
			}
			if srcErr != nil {
				return srcErr
			}
			if err := needRoot(o.DryRun); err != nil {
				return err
			}
			w, progress := cmd.OutOrStdout(), cmd.OutOrStdout()
			if *format == cli.JSON {
				progress = cmd.ErrOrStderr() // stdout is for the JSON
			}
			res, err := runInstall(cmd.Context(), progress, NewEnv(), o)
			if *format == cli.JSON && res != nil {
				if werr := cli.WriteJSON(w, res); werr != nil && err == nil {
					err = werr
				}
			}
			return codeOf(err)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Kernel, "kernel", "", "build for this installed kernel (default: the running one)")
	f.StringVar(&o.Source, "source", "", "NVIDIA kernel-open source: a directory or tarball of the exact driver version")
	f.BoolVar(&o.NoLoad, "no-load", false, "install only; load nothing")
	f.BoolVar(&o.Reload, "reload", false, "replace a loaded nvidia_uvm now (refused while a process holds /dev/nvidia-uvm)")
	f.BoolVar(&o.DryRun, "dry-run", false, "print every step and change nothing")
	return cmd
}

// checkSource checks --source before anything else: a path that does not
// exist is not found (6); one that is not an NVIDIA kernel-open source is a
// bad argument (2).
func checkSource(src string) error {
	if src == "" {
		return nil
	}
	if _, err := driver.InspectSource(src); err != nil {
		code := cli.ExitBadArgument
		if errors.Is(err, fs.ErrNotExist) {
			code = cli.ExitNotFound
		}
		return cli.WithCode(code, fmt.Errorf("install-driver: --source: %w", err))
	}
	return nil
}

// dryRunInstall prints every precondition and the whole plan; it exits
// with the code of the first failed precondition, --source's first.
func dryRunInstall(cmd *cobra.Command, format cli.Format, env *driver.Env, o installOptions, srcErr error) error {
	d := env.DryRunInstall(cmd.Context(), o.InstallOptions)
	if format == cli.JSON {
		if err := cli.WriteJSON(cmd.OutOrStdout(), d); err != nil {
			return err
		}
	} else {
		d.Print(cmd.OutOrStdout())
	}
	if srcErr != nil {
		return srcErr
	}
	if err := d.Err(); err != nil {
		return codeOf(fmt.Errorf("install-driver: a precondition failed (the plan above shows it): %w", err))
	}
	return nil
}

// installResult is what install-driver -o json prints.
type installResult struct {
	Target    driver.Target `json:"target"`
	Installed bool          `json:"installed"`
	Message   string        `json:"message"`
	Warnings  []string      `json:"warnings,omitempty"`
	Notes     []string      `json:"notes,omitempty"`
}

func runInstall(ctx context.Context, w io.Writer, env *driver.Env, o installOptions) (*installResult, error) {
	plan, t, err := env.PlanInstall(ctx, o.InstallOptions)
	if errors.Is(err, driver.ErrAlreadyInstalled) {
		fmt.Fprintf(w, "%v: nothing to do\n", err)
		return &installResult{Target: t, Installed: true, Message: err.Error() + ": nothing to do"}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("install-driver: %w", err)
	}
	fmt.Fprintf(w, "kernel %s, NVIDIA %s, source %s (%s), series %s, package %s\n",
		t.Kernel, t.NVIDIA, t.Source.Path, t.Source.Kind, t.Series, t.Package)
	for _, warn := range plan.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	res := &installResult{Target: t, Warnings: plan.Warnings, Notes: plan.Notes}
	if err := plan.Run(ctx, w); err != nil {
		res.Message = err.Error()
		return res, fmt.Errorf("install-driver: %w", err)
	}
	res.Installed = true
	res.Message = fmt.Sprintf("installed %s/%s for %s", "vattn-uvm", t.Package, t.Kernel)
	fmt.Fprintln(w, res.Message)
	return res, nil
}

// NewUninstallCmd builds `vattnctl uninstall-driver`.
func NewUninstallCmd(format *cli.Format) *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "uninstall-driver",
		Short: "remove the vattn-patched nvidia-uvm; modprobe loads NVIDIA's module again",
		Long: `uninstall-driver removes every vattn-uvm version from DKMS (all kernels), the
modprobe.d redirect and the staged sources. It is idempotent: with nothing installed it
does nothing. A loaded patched module stays loaded until a reboot or a manual reload.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := needRoot(dryRun); err != nil {
				return err
			}
			env := NewEnv()
			plan, err := env.PlanUninstall(cmd.Context())
			if err != nil {
				return codeOf(fmt.Errorf("uninstall-driver: %w", err))
			}
			w, progress := cmd.OutOrStdout(), cmd.OutOrStdout()
			if *format == cli.JSON {
				progress = cmd.ErrOrStderr() // stdout is for the JSON
			}
			res := uninstallResult{DryRun: dryRun, Warnings: plan.Warnings, Steps: []driver.PlannedStep{}}
			for _, s := range plan.Steps {
				res.Steps = append(res.Steps, driver.PlannedStep{ID: s.ID, Title: s.Title, Detail: s.Detail})
			}
			if dryRun || len(plan.Steps) == 0 {
				if *format == cli.JSON {
					return cli.WriteJSON(w, res)
				}
				plan.Print(w)
				return nil
			}
			err = plan.Run(cmd.Context(), progress)
			res.Done = err == nil
			if *format == cli.JSON {
				if werr := cli.WriteJSON(w, res); werr != nil && err == nil {
					return werr
				}
			}
			if err != nil {
				return codeOf(fmt.Errorf("uninstall-driver: %w (run it again to finish)", err))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print every step and change nothing")
	return cmd
}

// uninstallResult is what uninstall-driver -o json prints.
type uninstallResult struct {
	DryRun   bool                 `json:"dry_run"`
	Steps    []driver.PlannedStep `json:"steps"` // empty: nothing installed, nothing to do
	Done     bool                 `json:"done"`
	Warnings []string             `json:"warnings,omitempty"`
}

// NewStatusCmd builds `vattnctl status`.
func NewStatusCmd(format *cli.Format) *cobra.Command {
	var kernel string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "show the NVIDIA driver, the vattn-uvm package and whether small pages work",
		Long: `status reports the NVIDIA driver (version, open or proprietary), the kernel, the
vattn-uvm DKMS package state (in dkms status wording), which nvidia-uvm file modprobe
loads, the loaded module against the installed build (srcversion), the vattn ABI and
page sizes when the patched module is loaded, module signature enforcement and Secure
Boot. Missing tools are reported as "not installed".

Exit codes: 0 the NVIDIA driver is loaded (whether or not small pages are available:
read small_pages); 9 the NVIDIA driver is not loaded (status is still printed);
6 --kernel names a kernel that is not installed; 2 bad arguments.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := NewEnv().CollectStatus(cmd.Context(), kernel)
			if err != nil {
				return codeOf(fmt.Errorf("status: %w", err))
			}
			w := cmd.OutOrStdout()
			if *format == cli.JSON {
				if err := cli.WriteJSON(w, s); err != nil {
					return err
				}
			} else {
				printStatus(w, s)
			}
			if !s.DriverLoaded {
				return cli.WithCode(cli.ExitDriverNotLoaded, driver.ErrDriverNotLoaded)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&kernel, "kernel", "", "report for this installed kernel (default: the running one)")
	return cmd
}

func printStatus(w io.Writer, s *driver.Status) {
	row := func(k, v string) { fmt.Fprintf(w, "%-22s %s\n", k+":", v) }
	drv := "not loaded"
	if s.Driver != nil {
		drv = fmt.Sprintf("%s (%s kernel module, %s)", s.Driver.Version, s.Driver.Flavor, s.Driver.Arch)
	}
	row("NVIDIA driver", drv)
	row("kernel", s.Kernel+map[bool]string{true: " (running)", false: " (not running: " + s.RunningKernel + ")"}[s.Kernel == s.RunningKernel])
	row("installed nvidia.ko", s.InstalledNVIDIA)
	switch {
	case !s.Supported:
		row("vattn patch", "no series for this driver branch (supported: "+strings.Join(driver.SupportedVersions(), ", ")+")")
	case s.Series == s.InstalledNVIDIA || (s.Driver != nil && s.Series == s.Driver.Version):
		row("vattn patch", "series "+s.Series+", this version's own")
	default:
		row("vattn patch", "series "+s.Series+", the nearest proven version (install-driver proves it fits this version's source)")
	}
	pkg := s.Package.State
	for _, e := range s.Package.Entries {
		pkg += "\n" + strings.Repeat(" ", 23) + e.Line
	}
	row("dkms "+s.Package.Name, pkg)
	row("modprobe nvidia-uvm", s.ModprobeResolves)
	uvm := "not loaded"
	if s.UVMLoaded {
		uvm = "loaded, srcversion " + s.LoadedSrcversion
		if s.LoadedIsVattn {
			uvm += " (vattn-uvm)"
		} else if s.InstalledSrcversion != "" {
			uvm += " (not the installed vattn-uvm " + s.InstalledSrcversion + ")"
		}
	}
	row("nvidia_uvm", uvm)
	if s.Probe.Probed {
		row("vattn ABI", fmt.Sprintf("%d", s.Probe.ABIVersion))
	} else {
		row("vattn ABI", s.Probe.Detail)
	}
	row("small pages", s.SmallPages)
	row("module signatures", s.SigEnforce)
	row("secure boot", s.SecureBoot)
	if s.Signer != "" {
		row("vattn-uvm signer", s.Signer)
	}
	for _, t := range []string{"dkms", "modinfo", "modprobe", "mokutil"} {
		if s.Tools[t] == driver.NotInstalled {
			row(t, driver.NotInstalled)
		}
	}
	for _, warn := range s.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
}
