package trace

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// bpfFDs counts this process's descriptors of BPF objects and perf events.
func bpfFDs(t *testing.T) map[string]int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err == nil && (strings.HasPrefix(target, "anon_inode:bpf") || target == "anon_inode:[perf_event]") {
			n[target]++
		}
	}
	return n
}

// Close gives back every program, map, link and perf event Open took.
func TestCloseReleasesEverything(t *testing.T) {
	needRoot(t)
	lib, _ := buildFakeCUDA(t)
	before := bpfFDs(t)
	tr, err := Open(Options{LibPath: lib, Device: "/dev/null", Events: []string{"task:task_rename"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range tr.Status() {
		if !s.Attached {
			t.Fatalf("%v", s)
		}
	}
	// task_rename records do not decode as vattn events: they must be
	// counted as such, not lost silently.
	if err := os.WriteFile("/proc/self/comm", []byte("vattn-close"), 0); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		if time.Now().After(deadline) {
			t.Fatal("the task_rename record never showed as undecoded")
		}
		snap, err := tr.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if snap.Undecoded > 0 {
			break
		}
		runtime.Gosched()
	}
	if open := bpfFDs(t); len(open) == 0 {
		t.Fatal("no BPF descriptors while open: the count would prove nothing")
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	after := bpfFDs(t)
	for k, v := range after {
		if v != before[k] {
			t.Errorf("%s: %d descriptors before Open, %d after Close", k, before[k], v)
		}
	}
}
