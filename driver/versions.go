package driver

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/vattn/vattn/kernel"
)

// Series is the patch for one NVIDIA version: the patch files to apply in order.
type Series struct {
	Version string
	Patches []string // paths inside kernel.Patch
}

// ErrUnsupportedVersion means no patch series exists for an NVIDIA version.
var ErrUnsupportedVersion = errors.New("unsupported NVIDIA driver version")

// UnsupportedError names the version asked for and those the patch supports.
type UnsupportedError struct {
	Version   string
	Supported []string
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("NVIDIA driver %s has no vattn patch (supported: %s)",
		e.Version, strings.Join(e.Supported, ", "))
}

func (e *UnsupportedError) Unwrap() error { return ErrUnsupportedVersion }

const patchRoot = "nvidia-uvm-patch"

// SupportedVersions lists the NVIDIA versions with a patch series, oldest first.
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
	sort.Strings(out)
	return out
}

// LookupSeries returns the patch series for NVIDIA version v.
func LookupSeries(v string) (Series, error) {
	dir := path.Join(patchRoot, "series", v)
	b, err := fs.ReadFile(kernel.Patch, path.Join(dir, "series"))
	if err != nil {
		return Series{}, &UnsupportedError{Version: v, Supported: SupportedVersions()}
	}
	s := Series{Version: v}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s.Patches = append(s.Patches, path.Join(dir, line))
	}
	if len(s.Patches) == 0 {
		return Series{}, fmt.Errorf("series %s: no patches listed", v)
	}
	return s, nil
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
