package driver

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/vattn/vattn/kernel"
)

// Series is the patch for one NVIDIA version: the patch files to apply in order.
type Series struct {
	Version string
	Patches []string // paths inside FS
	FS      fs.FS    // kernel.Patch, or a folder for tools/series
}

// ErrUnsupportedVersion means no patch series fits an NVIDIA version.
var ErrUnsupportedVersion = errors.New("unsupported NVIDIA driver version")

// UnsupportedError names the version asked for and those the patch supports.
type UnsupportedError struct {
	Version   string
	Supported []string
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("NVIDIA driver %s has no vattn patch: no series of its own nor of its branch %s (supported: %s)",
		e.Version, Branch(e.Version), strings.Join(e.Supported, ", "))
}

func (e *UnsupportedError) Unwrap() error { return ErrUnsupportedVersion }

const patchRoot = "nvidia-uvm-patch"

// SupportedVersions lists the NVIDIA versions with a patch series of their own, the
// proven versions, oldest first.
func SupportedVersions() []string {
	ents, err := fs.ReadDir(kernel.Patch, patchRoot+"/series")
	if err != nil {
		return nil
	}
	var out []string
	for _, d := range ents {
		if d.IsDir() {
			out = append(out, d.Name())
		}
	}
	sort.Slice(out, func(i, j int) bool { return CompareVersions(out[i], out[j]) < 0 })
	return out
}

// Branch is an NVIDIA version's branch: "580" for 580.159.04.
func Branch(v string) string {
	b, _, _ := strings.Cut(v, ".")
	return b
}

// CompareVersions orders NVIDIA versions by their numeric parts (580.95.05 before
// 580.105.08); a part that is not a number compares as text.
func CompareVersions(a, b string) int {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(pa) && i < len(pb); i++ {
		na, ea := strconv.Atoi(pa[i])
		nb, eb := strconv.Atoi(pb[i])
		switch {
		case ea == nil && eb == nil && na != nb:
			if na < nb {
				return -1
			}
			return 1
		case (ea != nil || eb != nil) && pa[i] != pb[i]:
			return strings.Compare(pa[i], pb[i])
		}
	}
	return len(pa) - len(pb)
}

// NearestSeries returns the proven version whose series install-driver tries for
// version v: v itself when it has a series; else, in v's branch, the newest proven
// version older than v, or failing that the oldest newer one. Other branches are never
// tried: their hooks differ (the 580 hooks take a managed range, 535's a va_range) and
// the branch is compiled into uvm_vattn_kernel.c. ok is false when v's branch has none.
func NearestSeries(v string) (nearest string, ok bool) {
	var older, newer string
	for _, s := range SupportedVersions() {
		if Branch(s) != Branch(v) {
			continue
		}
		switch c := CompareVersions(s, v); {
		case c == 0:
			return s, true
		case c < 0:
			older = s // ascending: the last one wins
		case newer == "":
			newer = s
		}
	}
	if older != "" {
		return older, true
	}
	return newer, newer != ""
}

// LookupSeries returns the patch series of NVIDIA version v (its own, not the nearest).
func LookupSeries(v string) (Series, error) {
	s, err := LoadSeries(kernel.Patch, path.Join(patchRoot, "series", v), v)
	if errors.Is(err, fs.ErrNotExist) {
		return Series{}, &UnsupportedError{Version: v, Supported: SupportedVersions()}
	}
	return s, err
}

// LoadSeries reads the series file of folder dir of fsys.
func LoadSeries(fsys fs.FS, dir, version string) (Series, error) {
	b, err := fs.ReadFile(fsys, path.Join(dir, "series"))
	if err != nil {
		return Series{}, fmt.Errorf("series %s: %w", version, err)
	}
	s := Series{Version: version, FS: fsys}
	for _, name := range seriesList(b) {
		s.Patches = append(s.Patches, path.Join(dir, name))
	}
	if len(s.Patches) == 0 {
		return Series{}, fmt.Errorf("series %s: no patches listed", version)
	}
	return s, nil
}

// Parse reads and parses the series' patches.
func (s Series) Parse() ([]*Patch, error) {
	return readPatches(func(n string) ([]byte, error) { return fs.ReadFile(s.FS, n) }, s.Patches)
}

// ReadFiles returns the named files of the source (paths relative to its kernel-open
// top) that exist; absent ones are left out.
func (s Source) ReadFiles(names []string) (map[string]string, error) {
	out := map[string]string{}
	if s.Kind == SourceDir {
		for _, n := range names {
			b, err := os.ReadFile(filepath.Join(s.Path, s.Top, filepath.FromSlash(n)))
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, err
			}
			out[n] = string(b)
		}
		return out, nil
	}
	want := map[string]string{}
	for _, n := range names {
		want[path.Join(s.Top, n)] = n
	}
	err := walkTarball(s.Path, func(h *tar.Header, r io.Reader) (bool, error) {
		n, ok := want[path.Clean(h.Name)]
		if !ok || h.Typeflag != tar.TypeReg {
			return true, nil
		}
		b, err := io.ReadAll(r)
		if err != nil {
			return false, err
		}
		out[n] = string(b)
		return len(out) < len(want), nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.Path, err)
	}
	return out, nil
}

// Fit is a series proven against a source: every hunk applies with no fuzz.
type Fit struct {
	Source string       `json:"source_version"`
	Series string       `json:"series"` // the proven version whose series fits
	Hunks  []HunkResult `json:"hunks"`
}

// Exact says whether the series is the source version's own and every hunk sat at
// the line its header names.
func (f *Fit) Exact() bool {
	r := ApplyResult{Hunks: f.Hunks}
	return f.Series == f.Source && r.Exact()
}

// NoFitError is a version whose series, or the nearest proven version's, does not
// apply to its source with no fuzz.
type NoFitError struct {
	Version string // the source's
	Nearest string // the series tried
	Err     error  // the hunks that failed
	// Given: the caller named the series (tools/series -series), none was picked.
	Given bool
}

func (e *NoFitError) Error() string {
	if e.Given {
		return fmt.Sprintf("series %s does not apply to the NVIDIA %s source with no fuzz: %v", e.Nearest, e.Version, oneLine(e.Err))
	}
	if e.Nearest == e.Version {
		return fmt.Sprintf("the vattn series of NVIDIA %s does not apply to this source with no fuzz: %v", e.Version, oneLine(e.Err))
	}
	return fmt.Sprintf("NVIDIA %s has no vattn series of its own, and that of the nearest proven version, %s, "+
		"does not apply to its source with no fuzz (%v): NVIDIA %s needs a port (kernel/nvidia-uvm-patch/README.md)",
		e.Version, e.Nearest, oneLine(e.Err), e.Version)
}

func (e *NoFitError) Unwrap() []error { return []error{ErrUnsupportedVersion, e.Err} }

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// FitSource finds the series for a source's version (its own, else NearestSeries) and
// proves it applies with no fuzz, reading only the files the series touches.
func FitSource(src Source) (*Fit, error) {
	near, ok := NearestSeries(src.Version)
	if !ok {
		return nil, &UnsupportedError{Version: src.Version, Supported: SupportedVersions()}
	}
	s, err := LookupSeries(near)
	if err != nil {
		return nil, err
	}
	return ProveSeries(s, src)
}

// ProveSeries applies series s to the files of src in memory and reports where each
// hunk applied; it changes nothing on disk.
func ProveSeries(s Series, src Source) (*Fit, error) {
	patches, err := s.Parse()
	if err != nil {
		return nil, err
	}
	files, err := src.ReadFiles(Touched(patches))
	if err != nil {
		return nil, err
	}
	t := &Tree{Files: files}
	res, err := t.Apply(patches)
	if err != nil {
		return nil, &NoFitError{Version: src.Version, Nearest: s.Version, Err: err}
	}
	return &Fit{Source: src.Version, Series: s.Version, Hunks: res.Hunks}, nil
}

// ApplySeries applies series s to the kernel-open folder dir, all or nothing, as
// install-driver's stage step does.
func ApplySeries(dir string, s Series) error {
	patches, err := s.Parse()
	if err != nil {
		return err
	}
	return applyPatches(dir, patches)
}

func applyPatches(dir string, patches []*Patch) error {
	src := Source{Path: dir, Kind: SourceDir}
	files, err := src.ReadFiles(Touched(patches))
	if err != nil {
		return err
	}
	t := &Tree{Files: files}
	if _, err := t.Apply(patches); err != nil {
		return err
	}
	for n, content := range t.Files {
		if files[n] == content {
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(n))
		mode := fs.FileMode(0o644)
		if fi, err := os.Stat(p); err == nil {
			mode = fi.Mode().Perm()
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			return err
		}
	}
	return nil
}

// OurFiles lists our C files and headers that go into nvidia-uvm/ before patching.
func OurFiles() []string {
	ents, _ := fs.ReadDir(kernel.Patch, patchRoot)
	var out []string
	for _, d := range ents {
		if !d.IsDir() && (strings.HasSuffix(d.Name(), ".c") || strings.HasSuffix(d.Name(), ".h")) {
			out = append(out, path.Join(patchRoot, d.Name()))
		}
	}
	return out
}
