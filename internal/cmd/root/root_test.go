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
	for _, args := range [][]string{{"version", "-o", "yaml"}, {"version", "--nope"}, {"nope"}} {
		code, _, errOut := run(args...)
		if code == 0 || errOut == "" {
			t.Errorf("%v: code %d, stderr %q", args, code, errOut)
		}
	}
	if code, _, _ := run("version", "-o", "yaml"); code != cli.ExitBadArgument {
		t.Errorf("bad flag value exits %d, want %d", code, cli.ExitBadArgument)
	}
}
