package driver

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
)

// A patch series is applied here, not by patch(1), so that the proof that a series
// fits a source (install-driver's refusal, tools/series) and its application are one
// piece of code. The rule is stricter than patch -p1 --fuzz=0: a hunk applies only
// where its context and removed lines occur exactly once in the file, byte for byte.
// A hunk may sit at other line numbers than its header says (an offset: the file
// grew or shrank above it), never at a place chosen among several.

// Patch is one unified diff of a series.
type Patch struct {
	Name   string
	Header string // the free text before the first file, kept by Format
	Files  []FilePatch
}

// FilePatch is a unified diff's part for one file.
type FilePatch struct {
	Path   string   // relative to the kernel-open top, the a/ or b/ prefix removed
	Create bool     // --- /dev/null
	Lead   []string // the diff/---/+++ lines, kept by Format
	Hunks  []Hunk
}

// Hunk is one @@ block.
type Hunk struct {
	OldStart, OldLines int // from the header, 1-based
	NewStart, NewLines int
	Tail               string   // what follows the second @@ (a function name), kept by Format
	Body               []string // the lines with their ' ', '-' or '+' prefix
}

func (h Hunk) old() []string  { return h.side('+') }
func (h Hunk) repl() []string { return h.side('-') }

// side returns the hunk's lines without those that start with skip, prefixes removed.
func (h Hunk) side(skip byte) []string {
	var out []string
	for _, l := range h.Body {
		if l[0] != skip {
			out = append(out, l[1:])
		}
	}
	return out
}

// ParsePatch reads a unified diff as diff -u writes it (paths with a/ and b/).
func ParsePatch(name string, b []byte) (*Patch, error) {
	p := &Patch{Name: name}
	lines := strings.SplitAfter(string(b), "\n")
	if n := len(lines); n > 0 && lines[n-1] == "" {
		lines = lines[:n-1]
	}
	bad := func(i int, format string, args ...any) error {
		return fmt.Errorf("%s:%d: %s", name, i+1, fmt.Sprintf(format, args...))
	}
	var header strings.Builder
	var cur *FilePatch
	var lead []string
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if !strings.HasSuffix(l, "\n") {
			return nil, bad(i, "the last line has no newline")
		}
		l = strings.TrimSuffix(l, "\n")
		switch {
		case strings.HasPrefix(l, "--- ") && i+1 < len(lines) && strings.HasPrefix(lines[i+1], "+++ "):
			from := strings.TrimSuffix(lines[i+1], "\n")
			fp := FilePatch{Lead: append(lead, l, from)}
			lead = nil
			oldPath, newPath := diffPath(l[4:]), diffPath(from[4:])
			switch {
			case newPath == "/dev/null":
				return nil, bad(i, "file removals are not supported")
			case oldPath == "/dev/null":
				fp.Create = true
			}
			rel, ok := stripOne(newPath)
			if !ok {
				return nil, bad(i+1, "path %q has no a/ or b/ component to strip", newPath)
			}
			fp.Path = rel
			p.Files = append(p.Files, fp)
			cur = &p.Files[len(p.Files)-1]
			i++
		case strings.HasPrefix(l, "@@ "):
			if cur == nil {
				return nil, bad(i, "hunk before any file")
			}
			h, err := parseHunkHeader(l)
			if err != nil {
				return nil, bad(i, "%v", err)
			}
			nOld, nNew := 0, 0
			for nOld < h.OldLines || nNew < h.NewLines {
				i++
				if i >= len(lines) {
					return nil, bad(i-1, "hunk ends early (%d of %d old, %d of %d new lines)", nOld, h.OldLines, nNew, h.NewLines)
				}
				bl := strings.TrimSuffix(lines[i], "\n")
				if bl == "" {
					bl = " " // some editors strip the blank context line's space
				}
				switch bl[0] {
				case ' ':
					nOld++
					nNew++
				case '-':
					nOld++
				case '+':
					nNew++
				case '\\':
					return nil, bad(i, "\"\\ No newline at end of file\" is not supported")
				default:
					return nil, bad(i, "hunk ends early (%d of %d old, %d of %d new lines)", nOld, h.OldLines, nNew, h.NewLines)
				}
				h.Body = append(h.Body, bl)
			}
			if nOld != h.OldLines || nNew != h.NewLines {
				return nil, bad(i, "hunk holds %d old and %d new lines, its header says %d and %d", nOld, nNew, h.OldLines, h.NewLines)
			}
			if i+1 < len(lines) && strings.HasPrefix(lines[i+1], `\`) {
				return nil, bad(i+1, "\"\\ No newline at end of file\" is not supported")
			}
			cur.Hunks = append(cur.Hunks, h)
		case cur == nil && !strings.HasPrefix(l, "diff "):
			header.WriteString(l + "\n")
		case strings.HasPrefix(l, "diff ") || strings.HasPrefix(l, "index ") || strings.HasPrefix(l, "Only in "):
			lead = append(lead, l)
		default:
			return nil, bad(i, "unexpected line %q", l)
		}
	}
	if len(p.Files) == 0 {
		return nil, fmt.Errorf("%s: no file in the patch", name)
	}
	for _, f := range p.Files {
		if len(f.Hunks) == 0 {
			return nil, fmt.Errorf("%s: %s has no hunk", name, f.Path)
		}
	}
	p.Header = header.String()
	return p, nil
}

// diffPath is a ---/+++ line's path, without the timestamp diff may append.
func diffPath(s string) string {
	if i := strings.IndexByte(s, '\t'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// stripOne removes the first path component, as patch -p1 does.
func stripOne(p string) (string, bool) {
	_, rest, ok := strings.Cut(p, "/")
	if !ok || rest == "" {
		return "", false
	}
	return path.Clean(rest), true
}

func parseHunkHeader(l string) (Hunk, error) {
	// @@ -a[,b] +c[,d] @@[ tail]
	rest, ok := strings.CutPrefix(l, "@@ -")
	if !ok {
		return Hunk{}, fmt.Errorf("bad hunk header %q", l)
	}
	ranges, tail, ok := strings.Cut(rest, " @@")
	if !ok {
		return Hunk{}, fmt.Errorf("bad hunk header %q", l)
	}
	o, n, ok := strings.Cut(ranges, " +")
	if !ok {
		return Hunk{}, fmt.Errorf("bad hunk header %q", l)
	}
	var h Hunk
	var err1, err2 error
	h.OldStart, h.OldLines, err1 = parseRange(o)
	h.NewStart, h.NewLines, err2 = parseRange(n)
	if err := errors.Join(err1, err2); err != nil {
		return Hunk{}, fmt.Errorf("bad hunk header %q: %w", l, err)
	}
	h.Tail = tail
	return h, nil
}

func parseRange(s string) (start, count int, err error) {
	a, b, has := strings.Cut(s, ",")
	if start, err = strconv.Atoi(a); err != nil {
		return 0, 0, err
	}
	count = 1
	if has {
		if count, err = strconv.Atoi(b); err != nil {
			return 0, 0, err
		}
	}
	if start < 0 || count < 0 {
		return 0, 0, fmt.Errorf("negative range %q", s)
	}
	return start, count, nil
}

// Format writes the patch back as a unified diff: its header, each file's lead lines
// and each hunk with its header's numbers.
func (p *Patch) Format() []byte {
	var b bytes.Buffer
	b.WriteString(p.Header)
	for _, f := range p.Files {
		for _, l := range f.Lead {
			b.WriteString(l + "\n")
		}
		for _, h := range f.Hunks {
			fmt.Fprintf(&b, "@@ -%s +%s @@%s\n", formatRange(h.OldStart, h.OldLines), formatRange(h.NewStart, h.NewLines), h.Tail)
			for _, l := range h.Body {
				b.WriteString(l + "\n")
			}
		}
	}
	return b.Bytes()
}

func formatRange(start, count int) string {
	if count == 1 {
		return strconv.Itoa(start)
	}
	return fmt.Sprintf("%d,%d", start, count)
}

// HunkResult is where one hunk applied.
type HunkResult struct {
	Patch  string `json:"patch"`
	File   string `json:"file"`
	Hunk   int    `json:"hunk"`   // 1-based, within the file's part of the patch
	Stated int    `json:"stated"` // the line its header names (old side)
	At     int    `json:"at"`     // the line its old text starts at, in the file as the patch found it
	Offset int    `json:"offset"` // At - Stated
}

// HunkError is a hunk that does not apply with no fuzz.
type HunkError struct {
	HunkResult
	Found int // how often the hunk's old text occurs in the file (0: nowhere)
}

func (e *HunkError) Error() string {
	what := "its context and removed lines are not in the file"
	if e.Found == 1 {
		what = "its context and removed lines occur only above the hunk before it"
	} else if e.Found > 1 {
		what = fmt.Sprintf("its context and removed lines occur %d times", e.Found)
	}
	return fmt.Sprintf("%s: %s hunk %d (line %d): %s", e.Patch, e.File, e.Hunk, e.Stated, what)
}

// ErrNoFuzz is what every hunk that does not apply with no fuzz wraps.
var ErrNoFuzz = errors.New("does not apply with no fuzz")

func (e *HunkError) Unwrap() error { return ErrNoFuzz }

// Tree is the text of the files a series touches: read from a source, changed in
// memory, written out only once every patch applied.
type Tree struct {
	Files map[string]string // relative path → content; absent: the file does not exist
}

// ApplyResult is what applying patches to a tree did.
type ApplyResult struct {
	Hunks []HunkResult `json:"hunks"`
}

// Exact says whether every hunk sat where its header says.
func (r *ApplyResult) Exact() bool {
	for _, h := range r.Hunks {
		if h.Offset != 0 {
			return false
		}
	}
	return true
}

// Touched lists the files the patches touch, in first-touch order.
func Touched(patches []*Patch) []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range patches {
		for _, f := range p.Files {
			if !seen[f.Path] {
				seen[f.Path] = true
				out = append(out, f.Path)
			}
		}
	}
	return out
}

// Apply applies the patches in order to t. Every hunk must find its old text exactly
// once; on the first that does not, t is left as it was and the error lists every
// failing hunk of that patch. Each applied hunk's header numbers are set to where it
// applied, so that Format writes the patches as they fit this tree.
func (t *Tree) Apply(patches []*Patch) (*ApplyResult, error) {
	work := make(map[string]string, len(t.Files))
	for k, v := range t.Files {
		work[k] = v
	}
	res := &ApplyResult{}
	var refreshed [][]FilePatch
	for _, p := range patches {
		var errs []error
		files := make([]FilePatch, len(p.Files))
		for fi, f := range p.Files {
			content, exists := work[f.Path]
			switch {
			case f.Create && exists:
				errs = append(errs, fmt.Errorf("%s: creates %s, which exists", p.Name, f.Path))
				continue
			case !f.Create && !exists:
				errs = append(errs, fmt.Errorf("%s: %s: %w", p.Name, f.Path, errNoSuchFile))
				continue
			}
			lines := splitLines(content)
			nf := f
			nf.Hunks = make([]Hunk, len(f.Hunks))
			shift := 0 // lines added minus removed by this file's hunks above
			from := 0  // hunks apply in order: none before the end of the previous one
			for hi, h := range f.Hunks {
				r := HunkResult{Patch: p.Name, File: f.Path, Hunk: hi + 1, Stated: h.OldStart}
				old := h.old()
				var at, found int
				if f.Create {
					at, found = 0, 1
				} else if len(old) == 0 {
					errs = append(errs, fmt.Errorf("%s: %s hunk %d has no context to anchor on", p.Name, f.Path, hi+1))
					continue
				} else {
					at, found = findUnique(lines, old, from)
				}
				if found != 1 || at < 0 {
					errs = append(errs, &HunkError{HunkResult: r, Found: found})
					continue
				}
				// The old side's line: a hunk with no old lines names the line before it.
				r.At = at + 1 - shift
				want := h.OldStart
				if h.OldLines == 0 {
					want++
				}
				r.Offset = r.At - want
				repl := h.repl()
				for i := range repl {
					repl[i] += "\n"
				}
				lines = append(lines[:at], append(repl, lines[at+len(old):]...)...)
				from = at + len(repl)
				nh := h
				nh.OldStart = at + 1 - shift
				nh.NewStart = at + 1
				if h.OldLines == 0 {
					nh.OldStart--
				}
				if h.NewLines == 0 {
					nh.NewStart--
				}
				nf.Hunks[hi] = nh
				shift += len(repl) - len(old)
				res.Hunks = append(res.Hunks, r)
			}
			work[f.Path] = strings.Join(lines, "")
			files[fi] = nf
		}
		if len(errs) > 0 {
			return res, errors.Join(errs...)
		}
		refreshed = append(refreshed, files)
	}
	t.Files = work
	for i, p := range patches {
		p.Files = refreshed[i]
	}
	return res, nil
}

var errNoSuchFile = errors.New("no such file in the source")

// splitLines splits text into lines that keep their "\n".
func splitLines(s string) []string {
	out := strings.SplitAfter(s, "\n")
	if n := len(out); n > 0 && out[n-1] == "" {
		out = out[:n-1]
	}
	return out
}

// findUnique returns where old (lines without "\n") first occurs in lines at or after
// from (-1: nowhere there), and how often it occurs in the whole file.
func findUnique(lines, old []string, from int) (at, found int) {
	at = -1
	for i := 0; i+len(old) <= len(lines); i++ {
		match := true
		for j, o := range old {
			if lines[i+j] != o+"\n" {
				match = false
				break
			}
		}
		if match {
			found++
			if at < 0 && i >= from {
				at = i
			}
		}
	}
	return at, found
}

// readPatches parses each named patch of fsys.
func readPatches(read func(string) ([]byte, error), names []string) ([]*Patch, error) {
	var out []*Patch
	for _, n := range names {
		b, err := read(n)
		if err != nil {
			return nil, err
		}
		p, err := ParsePatch(path.Base(n), b)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// seriesList reads a series file: one patch name a line, # comments.
func seriesList(b []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out
}
