package driver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// StateFile is where install-driver records the machine's state before changing it.
const StateFile = "/var/lib/vattnctl/state.json"

// Snapshot is the part of the machine install-driver may change: DKMS's view, the module
// tree of the kernel, modprobe.d and depmod.d, our source trees under /usr/src and the
// DKMS tree. Files are recorded by content hash (symlinks by target), except the
// distribution's own kernel/ subtree, recorded by size and mode, which we never touch.
type Snapshot struct {
	Taken      time.Time         `json:"taken"`
	Kernel     string            `json:"kernel"`
	DKMSStatus []string          `json:"dkms_status"`
	Files      map[string]string `json:"files"`
}

// TakeSnapshot records the state for kernel kver.
func (e *Env) TakeSnapshot(ctx context.Context, kver string) (*Snapshot, error) {
	s := &Snapshot{Taken: time.Now().UTC(), Kernel: kver, Files: map[string]string{}}
	if e.Have("dkms") {
		out, err := e.Exec(ctx, "dkms", "status")
		if err != nil {
			return nil, fmt.Errorf("snapshot: dkms status: %w: %s", err, out)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "Warning:") {
				s.DKMSStatus = append(s.DKMSStatus, l)
			}
		}
		sort.Strings(s.DKMSStatus)
	}
	roots := []struct {
		dir     string
		shallow []string // subtrees recorded by size only
		depth   int      // 0: unlimited
	}{
		{"/lib/modules/" + kver, []string{"kernel"}, 0},
		{"/etc/modprobe.d", nil, 0},
		{"/etc/depmod.d", nil, 0},
		{"/usr/src", nil, 1},
		{"/var/lib/dkms", nil, 3},
	}
	for _, r := range roots {
		if err := e.record(s.Files, r.dir, r.shallow, r.depth); err != nil {
			return nil, fmt.Errorf("snapshot: %w", err)
		}
	}
	return s, nil
}

func (e *Env) record(files map[string]string, dir string, shallow []string, depth int) error {
	base := e.path(dir)
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(base, p)
		key := filepath.Join(dir, rel)
		if depth > 0 && rel != "." && strings.Count(rel, string(filepath.Separator))+1 > depth {
			return fs.SkipDir
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			t, _ := os.Readlink(p)
			files[key] = "link:" + t
		case d.IsDir():
			files[key] = "dir"
		default:
			top, _, _ := strings.Cut(rel, string(filepath.Separator))
			fi, err := d.Info()
			if err != nil {
				return err
			}
			if contains(shallow, top) || depth > 0 {
				files[key] = fmt.Sprintf("size:%d mode:%v", fi.Size(), fi.Mode())
				return nil
			}
			h, err := hashFile(p)
			if err != nil {
				return err
			}
			files[key] = fmt.Sprintf("sha256:%s mode:%v", h, fi.Mode())
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func hashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Diff lists how b differs from a, one line per difference, sorted.
func (a *Snapshot) Diff(b *Snapshot) []string {
	var out []string
	if strings.Join(a.DKMSStatus, "\n") != strings.Join(b.DKMSStatus, "\n") {
		out = append(out, fmt.Sprintf("dkms status: %q -> %q", a.DKMSStatus, b.DKMSStatus))
	}
	for k, v := range a.Files {
		w, ok := b.Files[k]
		switch {
		case !ok:
			out = append(out, "removed: "+k)
		case v != w:
			out = append(out, fmt.Sprintf("changed: %s (%s -> %s)", k, v, w))
		}
	}
	for k := range b.Files {
		if _, ok := a.Files[k]; !ok {
			out = append(out, "added: "+k)
		}
	}
	sort.Strings(out)
	return out
}

// SaveSnapshot writes s to the state file under e.Root.
func (e *Env) SaveSnapshot(s *Snapshot) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	p := e.path(StateFile)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	if err := os.WriteFile(p+".tmp", b, 0o644); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	return os.Rename(p+".tmp", p)
}

// LoadSnapshot reads the state file (fs.ErrNotExist when there is none).
func (e *Env) LoadSnapshot() (*Snapshot, error) {
	b, err := os.ReadFile(e.path(StateFile))
	if err != nil {
		return nil, fmt.Errorf("load state: %w", err)
	}
	var s Snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("load state: %w", err)
	}
	return &s, nil
}
