// Package version implements "vattnctl version".
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/vattn/vattn/internal/cli"
)

// Version is set at link time (-ldflags "-X .../version.Version=v1.2.3").
var Version = "dev"

// Info is what "version -o json" prints.
type Info struct {
	Version   string `json:"version"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
	Commit    string `json:"commit,omitempty"`
}

// Get returns the version of this binary.
func Get() Info {
	info := Info{Version: Version, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				info.Commit = s.Value
			}
		}
	}
	return info
}

// NewCmd returns the version command.
func NewCmd(format *cli.Format) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the vattnctl version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info := Get()
			if *format == cli.JSON {
				return cli.WriteJSON(cmd.OutOrStdout(), info)
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "vattnctl %s (%s, %s)\n", info.Version, info.GoVersion, info.Platform)
			return err
		},
	}
}
