package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for f, c := range files {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

const hook = `hooks for nvidia-uvm 9.1
diff -u a/nvidia-uvm/uvm.c b/nvidia-uvm/uvm.c
--- a/nvidia-uvm/uvm.c
+++ b/nvidia-uvm/uvm.c
@@ -1,3 +1,4 @@
 a
 b
+hook
 c
`

// A series made for 9.1 fits a 9.2 source two lines lower: prove says so, -exact
// refuses it, refresh writes 9.2's own series at 9.2's lines, apply changes the tree.
func TestProveRefreshApply(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	write(t, src, map[string]string{
		"Kbuild":           `ccflags-y += -DNV_VERSION_STRING=\"9.2\"` + "\n",
		"nvidia-uvm/uvm.c": "x\ny\na\nb\nc\n",
	})
	s91 := filepath.Join(dir, "9.1")
	write(t, s91, map[string]string{"series": "0001-hook.patch\n", "0001-hook.patch": hook})
	call := func(args ...string) (int, string) {
		var out bytes.Buffer
		code := run(args, &out, &out)
		return code, out.String()
	}
	if code, out := call("prove", "-series", s91, src); code != 0 || !strings.Contains(out, "series 9.1 fits NVIDIA 9.2 with no fuzz (1 hunks") {
		t.Fatalf("prove: %d %s", code, out)
	}
	if code, out := call("prove", "-exact", "-series", s91, src); code != 1 || !strings.Contains(out, "not this version's own series") {
		t.Fatalf("prove -exact: %d %s", code, out)
	}
	s92 := filepath.Join(dir, "9.2")
	if code, out := call("refresh", "-from", s91, "-out", s92, src); code != 0 || !strings.Contains(out, "every hunk at its stated line") {
		t.Fatalf("refresh: %d %s", code, out)
	}
	b, _ := os.ReadFile(filepath.Join(s92, "0001-hook.patch"))
	if !strings.HasPrefix(string(b), "hooks for nvidia-uvm 9.2\n") || !strings.Contains(string(b), "@@ -3,3 +3,4 @@\n") {
		t.Fatalf("refreshed patch:\n%s", b)
	}
	if code, out := call("refresh", "-from", s91, "-out", s92, src); code != 1 || !strings.Contains(out, "exists") {
		t.Fatalf("refresh over an existing folder: %d %s", code, out)
	}
	if code, out := call("apply", "-series", s92, src); code != 0 {
		t.Fatalf("apply: %d %s", code, out)
	}
	if b, _ := os.ReadFile(filepath.Join(src, "nvidia-uvm/uvm.c")); string(b) != "x\ny\na\nb\nhook\nc\n" {
		t.Fatalf("applied: %q", b)
	}
	// Applied once, the hunk's old text is gone: a second apply does not fit.
	if code, out := call("prove", "-series", s92, src); code != 1 || !strings.Contains(out, "series 9.2 does not apply to the NVIDIA 9.2 source with no fuzz") {
		t.Fatalf("prove after apply: %d %s", code, out)
	}
	if code, _ := call("frobnicate", src); code != 2 {
		t.Fatalf("unknown command: %d", code)
	}
}
