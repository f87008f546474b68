package trace

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrNotCharDevice is returned for a device path that is not a character device.
var ErrNotCharDevice = errors.New("not a character device")

// Device is a character device number.
type Device struct{ Major, Minor uint32 }

func (d Device) String() string { return fmt.Sprintf("%d:%d", d.Major, d.Minor) }

// kernelDev is the device number as the kernel keeps it in inode->i_rdev
// (MKDEV: major<<20 | minor), which differs from the user-space dev_t that
// stat(2) returns.
func (d Device) kernelDev() uint32 { return d.Major<<20 | d.Minor&(1<<20-1) }

// ParseDevice reads "MAJ:MIN" or the path of a character device.
func ParseDevice(s string) (Device, error) {
	if maj, min, ok := strings.Cut(s, ":"); ok && !strings.Contains(s, "/") {
		a, err1 := strconv.ParseUint(maj, 10, 12)
		b, err2 := strconv.ParseUint(min, 10, 20)
		if err1 != nil || err2 != nil {
			return Device{}, fmt.Errorf("parse device %q: want MAJ:MIN (major < 4096, minor < 1048576) or a path", s)
		}
		return Device{uint32(a), uint32(b)}, nil
	}
	var st unix.Stat_t
	if err := unix.Stat(s, &st); err != nil {
		return Device{}, fmt.Errorf("parse device: %w", &os.PathError{Op: "stat", Path: s, Err: err})
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR {
		return Device{}, fmt.Errorf("parse device %s: %w", s, ErrNotCharDevice)
	}
	return Device{unix.Major(st.Rdev), unix.Minor(st.Rdev)}, nil
}
