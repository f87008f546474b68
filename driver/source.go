package driver

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// SourceKind says how a NVIDIA source is packaged.
type SourceKind string

// Source kinds.
const (
	SourceDir     SourceKind = "dir"
	SourceTarball SourceKind = "tarball"
)

// Source is an NVIDIA kernel-open source of a known version.
type Source struct {
	Path    string     `json:"path"`
	Kind    SourceKind `json:"kind"`
	Version string     `json:"version"`
	// Top is the folder inside the tarball (or under Path) holding Kbuild, nvidia/
	// and nvidia-uvm/ ("" for the top itself).
	Top string `json:"top,omitempty"`
}

// ErrSourceNotFound means no NVIDIA source of the wanted version was found.
var ErrSourceNotFound = errors.New("NVIDIA source not found")

// ErrSourceVersion means a source has another version than the one wanted.
var ErrSourceVersion = errors.New("NVIDIA source version mismatch")

var kbuildVersionRE = regexp.MustCompile(`NV_VERSION_STRING=\\?"(\d+\.\d+(?:\.\d+)?)\\?"`)

// kbuildVersion reads the version from a kernel-open Kbuild file's text.
func kbuildVersion(text string) string {
	if m := kbuildVersionRE.FindStringSubmatch(text); m != nil {
		return m[1]
	}
	return ""
}

// InspectSource reads the version of a source tree or tarball at p.
func InspectSource(p string) (Source, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return Source{}, fmt.Errorf("inspect source: %w", err)
	}
	if fi.IsDir() {
		for _, top := range []string{"", "kernel-open", "modules/nvidia-open-kernel"} {
			b, err := os.ReadFile(filepath.Join(p, top, "Kbuild"))
			if err != nil {
				continue
			}
			if _, err := os.Stat(filepath.Join(p, top, "nvidia-uvm")); err != nil {
				continue
			}
			if v := kbuildVersion(string(b)); v != "" {
				return Source{Path: p, Kind: SourceDir, Version: v, Top: top}, nil
			}
		}
		return Source{}, fmt.Errorf("inspect source %s: no kernel-open tree (Kbuild with NV_VERSION_STRING, nvidia-uvm/)", p)
	}
	var top, version string
	err = walkTarball(p, func(h *tar.Header, r io.Reader) (bool, error) {
		if path.Base(h.Name) != "Kbuild" || h.Typeflag != tar.TypeReg {
			return true, nil
		}
		b, err := io.ReadAll(io.LimitReader(r, 1<<20))
		if err != nil {
			return false, err
		}
		if v := kbuildVersion(string(b)); v != "" {
			version, top = v, strings.TrimSuffix(path.Dir(path.Clean(h.Name)), ".")
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return Source{}, fmt.Errorf("inspect source %s: %w", p, err)
	}
	if version == "" {
		return Source{}, fmt.Errorf("inspect source %s: no kernel-open Kbuild with NV_VERSION_STRING", p)
	}
	return Source{Path: p, Kind: SourceTarball, Version: version, Top: top}, nil
}

// LocateSource finds the NVIDIA kernel-open source of version v: explicit when given
// (a directory or a tarball), else the vendor DKMS trees /usr/src/nvidia-<v> and
// /usr/src/nvidia-open-<v>, else the tarballs Debian's nvidia-open-kernel-source and
// nvidia-current-open packages put under /usr/src.
func (e *Env) LocateSource(v, explicit string) (Source, error) {
	if explicit != "" {
		s, err := InspectSource(explicit)
		if err != nil {
			return Source{}, err
		}
		if s.Version != v {
			return Source{}, fmt.Errorf("source %s is NVIDIA %s, need %s: %w", explicit, s.Version, v, ErrSourceVersion)
		}
		return s, nil
	}
	var tried []string
	cands := []string{e.path("/usr/src/nvidia-" + v), e.path("/usr/src/nvidia-open-" + v)}
	tarballs, _ := filepath.Glob(e.path("/usr/src/nvidia-*open*.tar.*"))
	cands = append(cands, tarballs...)
	for _, c := range cands {
		tried = append(tried, c)
		s, err := InspectSource(c)
		if err == nil && s.Version == v {
			return s, nil
		}
	}
	return Source{}, fmt.Errorf("NVIDIA %s (tried %s; pass --source DIR|TARBALL): %w",
		v, strings.Join(tried, ", "), ErrSourceNotFound)
}

// walkTarball calls fn for each entry of a .tar, .tar.gz or .tar.xz (decompressed by
// the xz/gzip tools, which every distribution has) until fn returns false.
func walkTarball(p string, fn func(*tar.Header, io.Reader) (bool, error)) error {
	var r io.Reader
	var cmd *exec.Cmd
	switch {
	case strings.HasSuffix(p, ".tar.xz"):
		cmd = exec.Command("xz", "-dc", p)
	case strings.HasSuffix(p, ".tar.gz"), strings.HasSuffix(p, ".tgz"):
		cmd = exec.Command("gzip", "-dc", p)
	case strings.HasSuffix(p, ".tar"):
	default:
		return fmt.Errorf("%s: not a .tar, .tar.gz or .tar.xz", p)
	}
	if cmd != nil {
		out, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("decompress: %w", err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		r = out
	} else {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read tarball: %w", err)
		}
		more, err := fn(h, tr)
		if err != nil || !more {
			return err
		}
	}
}
