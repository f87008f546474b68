package driver

import (
	"context"
	"strings"
)

// DKMSEntry is one line of `dkms status`.
type DKMSEntry struct {
	Module  string `json:"module"`
	Version string `json:"version"`
	Kernel  string `json:"kernel,omitempty"`
	Arch    string `json:"arch,omitempty"`
	State   string `json:"state"` // added, built, installed (DKMS's words)
	Line    string `json:"line"`
}

// ParseDKMSStatus parses `dkms status` output: DKMS 3's "mod/ver, kver, arch: state" and
// DKMS 2's "mod, ver, kver, arch: state", with "added" lines that carry no kernel.
func ParseDKMSStatus(out string) []DKMSEntry {
	var es []DKMSEntry
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		head, state, ok := strings.Cut(line, ": ")
		if !ok || strings.HasPrefix(line, "Warning") || strings.HasPrefix(line, "Error") {
			continue
		}
		// "installed (WARNING! Diff between built and installed module!)" keeps its first word.
		state, _, _ = strings.Cut(strings.TrimSpace(state), " ")
		f := strings.Split(head, ", ")
		var e DKMSEntry
		if m, v, ok := strings.Cut(f[0], "/"); ok {
			e.Module, e.Version = m, v
			f = f[1:]
		} else if len(f) >= 2 {
			e.Module, e.Version = f[0], f[1]
			f = f[2:]
		} else {
			continue
		}
		if len(f) >= 1 {
			e.Kernel = f[0]
		}
		if len(f) >= 2 {
			e.Arch = f[1]
		}
		e.State = state
		e.Line = line
		es = append(es, e)
	}
	return es
}

// DKMSStatus runs `dkms status -m module` and parses it (nil, false when dkms is missing).
func (e *Env) DKMSStatus(ctx context.Context, module string) ([]DKMSEntry, bool, error) {
	if !e.Have("dkms") {
		return nil, false, nil
	}
	out, err := e.Exec(ctx, "dkms", "status", "-m", module)
	if err != nil {
		return nil, true, &ToolError{Tool: "dkms status", Err: err, Output: string(out)}
	}
	return ParseDKMSStatus(string(out)), true, nil
}

// ToolError is a command that failed, with its output.
type ToolError struct {
	Tool   string
	Err    error
	Output string
}

func (e *ToolError) Error() string {
	return e.Tool + ": " + e.Err.Error() + tail(e.Output, 20)
}

func (e *ToolError) Unwrap() error { return e.Err }

// tail returns the last n lines of s, indented, or "" for empty s.
func tail(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "\n    " + strings.Join(lines, "\n    ")
}
