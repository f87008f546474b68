package driver

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Holder is a process with a file descriptor open on a device.
type Holder struct {
	PID  int    `json:"pid"`
	Comm string `json:"comm"`
}

func (h Holder) String() string { return fmt.Sprintf("%d (%s)", h.PID, h.Comm) }

// Holders lists the processes that hold the character device dev open, by scanning
// /proc/*/fd under e.Root and comparing device numbers, as fuser does. Processes whose
// fds cannot be read (another user's, when not root) are skipped.
func (e *Env) Holders(dev string) ([]Holder, error) {
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		return nil, fmt.Errorf("holders of %s: %w", dev, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR {
		return nil, fmt.Errorf("holders of %s: not a character device", dev)
	}
	want := st.Rdev
	procs, err := os.ReadDir(e.path("/proc"))
	if err != nil {
		return nil, fmt.Errorf("holders of %s: %w", dev, err)
	}
	var out []Holder
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		fdDir := filepath.Join(e.path("/proc"), p.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			var fst unix.Stat_t
			if unix.Stat(filepath.Join(fdDir, fd.Name()), &fst) != nil {
				continue
			}
			if fst.Mode&unix.S_IFMT == unix.S_IFCHR && fst.Rdev == want {
				comm, _ := os.ReadFile(filepath.Join(e.path("/proc"), p.Name(), "comm"))
				out = append(out, Holder{PID: pid, Comm: strings.TrimSpace(string(comm))})
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out, nil
}
