package root

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/vattn/vattn/internal/cli"
)

func run(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := Main(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestVersion(t *testing.T) {
	code, out, _ := run("version")
	if code != 0 || !strings.HasPrefix(out, "vattnctl ") {
		t.Fatalf("version: code %d, out %q", code, out)
	}
	code, out, _ = run("version", "-o", "json")
	var info map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &info) != nil || info["version"] == nil {
		t.Fatalf("version -o json: code %d, out %q", code, out)
	}
}

func TestBadArguments(t *testing.T) {
	for _, args := range [][]string{{"version", "-o", "yaml"}, {"version", "--nope"}, {"nope"}, {"help", "nope"},
		{"version", "extra"}, {"-o", "json", "-o", "table", "version"}} {
		code, out, errOut := run(args...)
		if code != cli.ExitBadArgument || out != "" || strings.Count(errOut, "\n") != 1 || !strings.HasPrefix(errOut, "vattnctl: ") {
			t.Errorf("%v: code %d, stdout %q, stderr %q; want %d and one line on stderr", args, code, out, errOut, cli.ExitBadArgument)
		}
	}
	if _, _, errOut := run("simulat"); !strings.Contains(errOut, "did you mean simulate") {
		t.Errorf("no suggestion for a misspelt command: %q", errOut)
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{}, {"help"}, {"help", "simulate"}, {"simulate", "--help"}} {
		code, out, errOut := run(args...)
		if code != 0 || !strings.Contains(out, "Usage:") || errOut != "" {
			t.Errorf("%v: code %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	if _, out, _ := run("help", "simulate"); !strings.Contains(out, "--trace") {
		t.Errorf("help simulate is not simulate's help: %q", out)
	}
}
