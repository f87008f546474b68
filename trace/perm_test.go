package trace

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Without privileges Open says what is needed, as ErrPermission. The test
// runs a copy of its own binary as user nobody.
func TestOpenWithoutPrivilege(t *testing.T) {
	needRoot(t)
	dir, err := os.MkdirTemp("", "vattn-trace-perm")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "trace.test")
	src, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "VATTN_TRACE_CHILD_OPEN=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("unprivileged Open: %v: %s (want ErrPermission)", err, out)
	}
	if !strings.Contains(string(out), "needs root or CAP_BPF+CAP_PERFMON") {
		t.Errorf("message %q does not say what is needed", out)
	}
}
