package trace

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// The test's ioctl command: a made-up number no driver knows (the calls fail
// with ENOTTY, and are counted all the same), so that ioctls other processes
// make on /dev/null while the test runs cannot be mistaken for the test's.
const testCmd = 0x7a7a0000 + 0x6

// TestMain lets a test run this binary as a child that issues ioctls.
func TestMain(m *testing.M) {
	if n := os.Getenv("VATTN_TRACE_CHILD_IOCTLS"); n != "" {
		count, _ := strconv.Atoi(n)
		if err := issueIoctls(os.Getenv("VATTN_TRACE_CHILD_DEVICE"), testCmd, count); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if name := os.Getenv("VATTN_TRACE_CHILD_RENAME"); name != "" {
		if err := os.WriteFile("/proc/self/comm", []byte(name), 0); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if os.Getenv("VATTN_TRACE_CHILD_OPEN") != "" {
		_, err := Open(Options{Device: "/dev/null"})
		fmt.Println(err)
		if errors.Is(err, ErrPermission) {
			os.Exit(0)
		}
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func issueIoctls(path string, cmd uintptr, n int) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for range n {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), cmd, 0)
		if errno != unix.ENOTTY {
			return fmt.Errorf("ioctl %#x on %s: got errno %v, want ENOTTY", cmd, path, errno)
		}
	}
	return nil
}

func runChildIoctls(t *testing.T, path string, n int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "VATTN_TRACE_CHILD_IOCTLS="+strconv.Itoa(n), "VATTN_TRACE_CHILD_DEVICE="+path)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v: %s", err, out)
	}
}

func TestIoctlSourceCountsOnlyTheDevice(t *testing.T) {
	needRoot(t)
	tr, err := Open(Options{Sources: []Source{SourceIoctl}, Device: "/dev/null"})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if st := tr.Status(); len(st) != 1 || !st[0].Attached {
		t.Fatalf("status = %v", st)
	}
	const n = 37
	if err := issueIoctls("/dev/null", testCmd, n); err != nil {
		t.Fatal(err)
	}
	// The same command on another character device must not count.
	if err := issueIoctls("/dev/zero", testCmd, 11); err != nil {
		t.Fatal(err)
	}
	// A child on the same device counts: no PID filter.
	runChildIoctls(t, "/dev/null", 5)
	snap, err := tr.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	h, ok := snap.Find(SourceIoctl, IoctlName(testCmd))
	if !ok {
		t.Fatalf("no histogram for %s in %+v", IoctlName(testCmd), snap.Hists)
	}
	if h.Count != n+5 || h.Errors != n+5 {
		t.Errorf("count = %d, errors = %d; want %d each", h.Count, h.Errors, n+5)
	}
	var slotSum uint64
	for _, c := range h.Slots {
		slotSum += c
	}
	if slotSum != h.Count || h.SumNs == 0 {
		t.Errorf("slots sum to %d, count %d, sum %dns", slotSum, h.Count, h.SumNs)
	}
}

func TestIoctlSourcePIDFilter(t *testing.T) {
	needRoot(t)
	tr, err := Open(Options{Sources: []Source{SourceIoctl}, Device: "1:3", PID: os.Getpid(), Unit: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	before, err := tr.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	runChildIoctls(t, "/dev/null", 9)
	const n = 20
	if err := issueIoctls("/dev/null", testCmd, n); err != nil {
		t.Fatal(err)
	}
	after, err := tr.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	h, ok := after.Sub(before).Find(SourceIoctl, IoctlName(testCmd))
	if !ok || h.Count != n {
		t.Fatalf("count = %d (found %v), want %d: the child's ioctls must not count", h.Count, ok, n)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Snapshot(); err == nil {
		t.Error("snapshot after close: no error")
	}
}

func TestIoctlSourceMissingDevice(t *testing.T) {
	needRoot(t)
	_, err := Open(Options{Sources: []Source{SourceIoctl}, Device: "/nonexistent/dev"})
	if !errors.Is(err, ErrNoSource) {
		t.Fatalf("err = %v, want ErrNoSource", err)
	}
}
