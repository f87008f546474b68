package kernel

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestKernelCheck runs scripts/kernel-check.sh (patch, build both driver branches
// against the bookworm headers, compare warnings, sparse, tracepoint layout) when
// VATTN_KERNEL_CHECK=1. It is opt-in because a cold run builds four trees (about ten
// minutes on two cores) and needs root for scripts/kernel-deps.sh; run it with
//
//	VATTN_KERNEL_CHECK=1 go test -p 1 -timeout 40m -run TestKernelCheck ./tests/kernel/
//
// CI calls the script directly instead.
func TestKernelCheck(t *testing.T) {
	if os.Getenv("VATTN_KERNEL_CHECK") != "1" {
		t.Skip("set VATTN_KERNEL_CHECK=1 to build the patched driver (or run scripts/kernel-check.sh)")
	}
	script := filepath.Join("..", "..", "scripts", "kernel-check.sh")
	out, err := exec.Command(script).CombinedOutput()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	last := lines[len(lines)-1]
	t.Log(string(out))
	if err != nil || !strings.HasSuffix(last, " 0 failed") {
		t.Fatalf("kernel-check: %v; %s", err, last)
	}
}
