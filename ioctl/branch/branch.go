// Package branch maps the running NVIDIA driver's version to the ABI of its
// branch: which layouts the stock RM escapes (ioctl/rm) and nvidia-uvm commands
// (ioctl) take there. UVM commands carry no size, so a block of the wrong branch
// is misread without an error: an unknown branch is refused, never guessed.
package branch

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/vattn/vattn/ioctl"
	"github.com/vattn/vattn/ioctl/rm"
)

// ABI is what one driver branch takes.
type ABI struct {
	Major int    // the branch: 580 for every 580.x driver
	Tag   string // the release of NVIDIA's headers the layouts were checked against
	UVM   *ioctl.StockLayout
	RM    rm.Layout
}

// Table lists the known branches. It is keyed by major version: every minor of
// a known branch uses the branch's layouts (NVIDIA keeps a branch's ABI stable;
// the GPU machine's 580.159.04, which has no public tag, runs with 580.142's).
// TestStockABI compiles a probe against the headers of each Tag (in
// nvidia-headers) and compares every size, offset and number the Go side uses;
// a headers folder without an entry here fails it.
var Table = []ABI{
	{Major: 535, Tag: "535.261.03", UVM: ioctl.StockLayout535, RM: rm.Layout535},
	{Major: 550, Tag: "550.163.01", UVM: ioctl.StockLayout550, RM: rm.Layout550},
	{Major: 570, Tag: "570.211.01", UVM: ioctl.StockLayout550, RM: rm.Layout550},
	{Major: 575, Tag: "575.64.05", UVM: ioctl.StockLayout550, RM: rm.Layout550},
	{Major: 580, Tag: "580.142", UVM: ioctl.StockLayout550, RM: rm.Layout550},
	{Major: 590, Tag: "590.48.01", UVM: ioctl.StockLayout590, RM: rm.Layout550},
	{Major: 595, Tag: "595.45.04", UVM: ioctl.StockLayout590, RM: rm.Layout550},
}

// ErrUnknownBranch: the driver's branch has no table. errors.Is-able; the
// error's message names the version and the branches known.
var ErrUnknownBranch = errors.New("unknown NVIDIA driver branch")

// UnknownBranchError is the error Lookup returns for a version it cannot serve.
type UnknownBranchError struct {
	Version string
}

func (e *UnknownBranchError) Error() string {
	known := make([]string, len(Table))
	for i, a := range Table {
		known[i] = strconv.Itoa(a.Major)
	}
	return fmt.Sprintf("NVIDIA driver %q: unknown branch; vattn knows the layouts of branches %s; "+
		"please report this version to the vattn project", e.Version, strings.Join(known, ", "))
}

// Is makes errors.Is(err, ErrUnknownBranch) hold.
func (e *UnknownBranchError) Is(target error) bool { return target == ErrUnknownBranch }

// Lookup returns the ABI of the branch of version ("580.159.04").
func Lookup(version string) (*ABI, error) {
	major, _, _ := strings.Cut(strings.TrimSpace(version), ".")
	n, err := strconv.Atoi(major)
	if err == nil {
		i := sort.Search(len(Table), func(i int) bool { return Table[i].Major >= n })
		if i < len(Table) && Table[i].Major == n {
			return &Table[i], nil
		}
	}
	return nil, &UnknownBranchError{Version: version}
}

// Where the running kernel driver says its version: the module's own file, and
// the older procfs line.
const (
	SysVersionPath  = "/sys/module/nvidia/version"
	ProcVersionPath = "/proc/driver/nvidia/version"
)

// DriverVersion reads the running kernel driver's version from SysVersionPath,
// falling back to ProcVersionPath.
func DriverVersion() (string, error) {
	return ReadDriverVersion(SysVersionPath, ProcVersionPath)
}

// ReadDriverVersion reads the version from sysPath ("580.159.04\n"), or when
// that is missing from procPath, whose first line holds it among other words
// ("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release
// Build …").
func ReadDriverVersion(sysPath, procPath string) (string, error) {
	b, sysErr := os.ReadFile(sysPath)
	if sysErr == nil {
		if v := strings.TrimSpace(string(b)); isVersion(v) {
			return v, nil
		}
		sysErr = fmt.Errorf("%s: no version in %q", sysPath, strings.TrimSpace(string(b)))
	}
	b, procErr := os.ReadFile(procPath)
	if procErr == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		for _, w := range strings.Fields(line) {
			if isVersion(w) {
				return w, nil
			}
		}
		procErr = fmt.Errorf("%s: no version in %q", procPath, line)
	}
	return "", fmt.Errorf("nvidia driver version (is the nvidia module loaded?): %w", errors.Join(sysErr, procErr))
}

// isVersion accepts dotted decimal numbers of two or three parts.
func isVersion(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return false
	}
	for _, p := range parts {
		if _, err := strconv.ParseUint(p, 10, 32); err != nil {
			return false
		}
	}
	return true
}
