package version

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestFromBuild(t *testing.T) {
	bi := &debug.BuildInfo{Main: debug.Module{Path: "github.com/vattn/vattn", Version: "v0.3.1"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"},
			{Key: "vcs.time", Value: "2025-01-02T03:04:05Z"}, {Key: "vcs.modified", Value: "true"}}}
	info := fromBuild(bi, true)
	if info.Version != "v0.3.1" || info.Commit != "0123456789abcdef0123" || !info.Modified || info.CommitAt == "" {
		t.Fatalf("%+v", info)
	}
	s := info.String()
	for _, want := range []string{"vattnctl v0.3.1", "commit 0123456789ab ", "2025-01-02", "uncommitted"} {
		if !strings.Contains(s, want) {
			t.Errorf("%q lacks %q", s, want)
		}
	}
	bare := fromBuild(&debug.BuildInfo{}, true)
	if bare.Version != "(devel)" || !strings.Contains(bare.String(), "no VCS revision") {
		t.Errorf("no version, no VCS: %+v %q", bare, bare.String())
	}
	if fromBuild(nil, false).Version != "unknown" {
		t.Error("no build info")
	}
	old := Version
	Version = "v9.9.9"
	defer func() { Version = old }()
	if fromBuild(bi, true).Version != "v9.9.9" {
		t.Error("the link-time version does not win")
	}
}
