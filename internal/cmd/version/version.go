// Package version implements "vattnctl version".
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/vattn/vattn/internal/cli"
)

// Version is set at link time (-ldflags "-X .../version.Version=v1.2.3");
// when it is not, the module version from the build info is used.
var Version = ""

// Info is what "version -o json" prints.
type Info struct {
	Version   string `json:"version"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
	Commit    string `json:"commit,omitempty"`
	CommitAt  string `json:"commit_time,omitempty"`
	Modified  bool   `json:"modified,omitempty"` // built from a tree with uncommitted changes
}

// Get returns the version of this binary.
func Get() Info { return fromBuild(debug.ReadBuildInfo()) }

// fromBuild reads the version from the build info: the module version
// ("v1.2.0", or "(devel)" for a build in the checkout) and, when the build
// ran in a VCS checkout, the revision it was built from.
func fromBuild(bi *debug.BuildInfo, ok bool) Info {
	info := Info{Version: Version, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if !ok {
		if info.Version == "" {
			info.Version = "unknown"
		}
		return info
	}
	if info.Version == "" {
		info.Version = bi.Main.Version
	}
	if info.Version == "" {
		info.Version = "(devel)"
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Commit = s.Value
		case "vcs.time":
			info.CommitAt = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
}

// String is the one-line form "version" prints.
func (i Info) String() string {
	s := "vattnctl " + i.Version
	switch {
	case i.Commit != "":
		c := i.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		s += " commit " + c
		if i.CommitAt != "" {
			s += " (" + i.CommitAt + ")"
		}
		if i.Modified {
			s += " with uncommitted changes"
		}
	default:
		s += " (no VCS revision in the build info: built outside a git checkout, or with -buildvcs=false)"
	}
	return fmt.Sprintf("%s, %s, %s", s, i.GoVersion, i.Platform)
}

// NewCmd returns the version command.
func NewCmd(format *cli.Format) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the vattnctl version and the commit it was built from",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info := Get()
			if *format == cli.JSON {
				return cli.WriteJSON(cmd.OutOrStdout(), info)
			}
			_, err := fmt.Fprintln(cmd.OutOrStdout(), info)
			return err
		},
	}
}
