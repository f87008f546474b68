// Command series proves that a patch series fits an NVIDIA kernel-open source with no
// fuzz, and writes a series for a source's exact version from the nearest proven one.
// It applies hunks with the same code as vattnctl install-driver (package driver):
// a hunk applies only where its context and removed lines occur exactly once.
//
//	go run ./kernel/nvidia-uvm-patch/tools/series prove [-series DIR] [-exact] SOURCE
//	go run ./kernel/nvidia-uvm-patch/tools/series refresh [-from DIR] [-out DIR] SOURCE
//	go run ./kernel/nvidia-uvm-patch/tools/series apply [-series DIR] TREE
//
// SOURCE is a kernel-open tree or a tarball of one (its Kbuild names the version).
// prove without -series picks the series install-driver would (the version's own, or
// the nearest proven version of its branch); -exact also demands the version's own
// series with every hunk at the line its header names. refresh applies DIR's series
// (default: the one prove would pick) and writes it with the hunks at the source's
// lines to OUT (default kernel/nvidia-uvm-patch/series/<version>), then proves it
// exact. apply changes TREE, a kernel-open folder, as install-driver's stage step does
// (all or nothing); the other commands change nothing under SOURCE. Exit status: 0
// fits, 1 does not, 2 usage.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/vattn/vattn/driver"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	usage := func() int {
		fmt.Fprintln(stderr, "usage: series prove [-series DIR] [-exact] SOURCE | series refresh [-from DIR] [-out DIR] [-force] SOURCE | series apply [-series DIR] TREE")
		return 2
	}
	if len(args) == 0 {
		return usage()
	}
	fl := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fl.SetOutput(stderr)
	var seriesDir, outDir string
	var exact, force bool
	switch args[0] {
	case "prove", "apply":
		fl.StringVar(&seriesDir, "series", "", "a series folder (default: the one install-driver would pick)")
		if args[0] == "prove" {
			fl.BoolVar(&exact, "exact", false, "demand the version's own series with every hunk at its stated line")
		}
	case "refresh":
		fl.StringVar(&seriesDir, "from", "", "the series folder to start from (default: the one install-driver would pick)")
		fl.StringVar(&outDir, "out", "", "where to write the series (default kernel/nvidia-uvm-patch/series/<version>)")
		fl.BoolVar(&force, "force", false, "replace an existing output folder")
	default:
		return usage()
	}
	if err := fl.Parse(args[1:]); err != nil || fl.NArg() != 1 {
		return usage()
	}
	src, err := driver.InspectSource(fl.Arg(0))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	s, err := pickSeries(src, seriesDir)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	switch args[0] {
	case "prove":
		return prove(src, s, seriesDir != "", exact, stdout, stderr)
	case "apply":
		if src.Kind != driver.SourceDir {
			fmt.Fprintln(stderr, "apply: TREE must be a folder")
			return 2
		}
		if err := driver.ApplySeries(filepath.Join(src.Path, src.Top), s); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		fmt.Fprintf(stdout, "applied series %s to %s\n", s.Version, fl.Arg(0))
		return 0
	}
	if outDir == "" {
		outDir = filepath.Join("kernel", "nvidia-uvm-patch", "series", src.Version)
	}
	if err := refresh(src, s, outDir, force); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s from series %s\n", outDir, s.Version)
	fresh, err := driver.LoadSeries(os.DirFS(outDir), ".", src.Version)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return prove(src, fresh, true, true, stdout, stderr)
}

// pickSeries loads dir's series, or the one install-driver would pick for src.
func pickSeries(src driver.Source, dir string) (driver.Series, error) {
	if dir == "" {
		near, ok := driver.NearestSeries(src.Version)
		if !ok {
			return driver.Series{}, &driver.UnsupportedError{Version: src.Version, Supported: driver.SupportedVersions()}
		}
		return driver.LookupSeries(near)
	}
	return driver.LoadSeries(os.DirFS(dir), ".", filepath.Base(filepath.Clean(dir)))
}

func prove(src driver.Source, s driver.Series, named, exact bool, stdout, stderr io.Writer) int {
	fit, err := driver.ProveSeries(s, src)
	var nf *driver.NoFitError
	if errors.As(err, &nf) && named {
		nf.Given = true
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%-44s %-40s %4s %6s %6s %6s\n", "patch", "file", "hunk", "stated", "at", "offset")
	for _, h := range fit.Hunks {
		fmt.Fprintf(stdout, "%-44s %-40s %4d %6d %6d %+6d\n", h.Patch, h.File, h.Hunk, h.Stated, h.At, h.Offset)
	}
	verdict := fmt.Sprintf("series %s fits NVIDIA %s with no fuzz (%d hunks, each where its text occurs once)", fit.Series, fit.Source, len(fit.Hunks))
	if exact && !fit.Exact() {
		fmt.Fprintf(stderr, "%s, but not exactly: ", verdict)
		if fit.Series != fit.Source {
			fmt.Fprintf(stderr, "it is not this version's own series (series refresh writes one)\n")
		} else {
			fmt.Fprintf(stderr, "some hunks sit at other lines than their headers name (series refresh rewrites them)\n")
		}
		return 1
	}
	if fit.Exact() {
		verdict += ", every hunk at its stated line"
	}
	fmt.Fprintln(stdout, verdict)
	return 0
}

// refresh applies s to src's files and writes s with the hunks at src's lines, the
// source version in the patches' headers in place of the series'.
func refresh(src driver.Source, s driver.Series, outDir string, force bool) error {
	if _, err := os.Stat(outDir); err == nil && !force {
		return fmt.Errorf("%s exists (pass -force to replace it)", outDir)
	}
	patches, err := s.Parse()
	if err != nil {
		return err
	}
	files, err := src.ReadFiles(driver.Touched(patches))
	if err != nil {
		return err
	}
	if _, err := (&driver.Tree{Files: files}).Apply(patches); err != nil {
		return &driver.NoFitError{Version: src.Version, Nearest: s.Version, Err: err, Given: true}
	}
	tmp := outDir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	var names []string
	for i, p := range patches {
		p.Header = strings.ReplaceAll(p.Header, s.Version, src.Version)
		name := filepath.Base(s.Patches[i])
		names = append(names, name)
		if err := os.WriteFile(filepath.Join(tmp, name), p.Format(), 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, "series"), []byte(strings.Join(names, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	return errors.Join(os.RemoveAll(outDir), os.Rename(tmp, outDir))
}
