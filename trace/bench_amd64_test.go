package trace

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkIoctlOverhead times ioctl(2) on the traced device with and without
// the ioctl source, and a syscall the source does not keep (getppid), which
// still passes through its sys_enter/sys_exit programs.
func BenchmarkIoctlOverhead(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	f, err := os.Open("/dev/null")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	fd := f.Fd()
	ioctl := func(b *testing.B) {
		for b.Loop() {
			unix.Syscall(unix.SYS_IOCTL, fd, testCmd, 0)
		}
	}
	other := func(b *testing.B) {
		for b.Loop() {
			unix.Syscall(unix.SYS_GETPPID, 0, 0, 0)
		}
	}
	b.Run("ioctl/untraced", ioctl)
	b.Run("getppid/untraced", other)
	tr, err := Open(Options{Sources: []Source{SourceIoctl}, Device: "/dev/null"})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	b.Run("ioctl/traced", ioctl)
	b.Run("getppid/traced", other)
}
