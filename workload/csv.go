package workload

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The CSV columns of Sarathi-Serve / metron request-length traces. Only the
// first two are required; num_total_tokens is checked when present; pd_ratio
// and any other column are ignored.
const (
	ColPrefill = "num_prefill_tokens"
	ColDecode  = "num_decode_tokens"
	ColTotal   = "num_total_tokens"
)

// Errors wrapped by ParseError (and by the empty-input error) so callers can
// branch on what was wrong.
var (
	ErrEmptyTrace      = errors.New("no requests")
	ErrMissingColumn   = errors.New("missing column")
	ErrDuplicateColumn = errors.New("duplicate column")
	ErrNotInteger      = errors.New("not an integer")
	ErrOutOfRange      = errors.New("out of range")
	ErrTotalMismatch   = errors.New("total is not prefill+decode")
	ErrTooLarge        = errors.New("too large")
)

// Bounds on what ReadCSV accepts, so that a wrong file (/dev/zero, a binary,
// a CSV with one huge field) fails fast with little memory instead of
// filling it. Real traces have lines of tens of bytes and thousands of rows.
const (
	// MaxLineBytes bounds one line, and so every field.
	MaxLineBytes = 64 << 10
	// MaxRequests bounds the requests of a trace (16 bytes each in memory).
	MaxRequests = 10_000_000
)

// The bounds ReadCSV applies: variables so that a test reaches them quickly.
var (
	maxRequests = MaxRequests
	// maxLines bounds lines, blank ones included, so a file of newlines ends.
	maxLines = 2 * MaxRequests
)

// ParseError is a malformed trace file: which file, which line (1-based, the
// header is line 1), which column and value, and what is wrong.
type ParseError struct {
	File   string
	Line   int
	Column string // empty for errors about the whole row or file
	Value  string
	Err    error
}

func (e *ParseError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Column != "" {
		fmt.Fprintf(&b, "%s %s: ", e.Column, quote(e.Value))
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *ParseError) Unwrap() error { return e.Err }

// LoadCSV reads a trace file; the trace is named after the file, without
// directory or extension. Errors name the path as given.
func LoadCSV(path string) (Trace, error) {
	f, err := os.Open(path)
	if err != nil {
		return Trace{}, fmt.Errorf("load trace: %w", err)
	}
	defer f.Close()
	t, err := ReadCSV(f, path)
	if err != nil {
		return Trace{}, err
	}
	t.Name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	return t, nil
}

// ReadCSV reads a trace in the Sarathi-Serve / metron CSV format from r; name
// labels the trace and its errors. Columns are found by header name, in any
// order. Counts may be written as integral floats ("2730.0"); a fractional
// count, a prefill below 1, a negative decode, a total that is not their sum,
// a missing column or a file without requests is a *ParseError.
//
// A line longer than MaxLineBytes, more than MaxRequests requests, or more
// lines than twice that is a *ParseError wrapping ErrTooLarge, found before
// the input is read further.
func ReadCSV(r io.Reader, name string) (Trace, error) {
	lr := &lineLimiter{r: r, line: 1}
	cr := csv.NewReader(lr)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err == io.EOF {
		return Trace{}, &ParseError{File: name, Err: fmt.Errorf("empty file: %w", ErrEmptyTrace)}
	}
	if err != nil {
		return Trace{}, csvError(name, err)
	}
	cols := map[string]int{ColPrefill: -1, ColDecode: -1, ColTotal: -1}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		if j, ok := cols[h]; ok {
			if j >= 0 {
				return Trace{}, &ParseError{File: name, Line: 1, Err: fmt.Errorf("%w %s", ErrDuplicateColumn, h)}
			}
			cols[h] = i
		}
	}
	for _, c := range []string{ColPrefill, ColDecode} {
		if cols[c] < 0 {
			return Trace{}, &ParseError{File: name, Line: 1, Err: fmt.Errorf("%w %s (header: %s)",
				ErrMissingColumn, c, quote(strings.Join(header, ",")))}
		}
	}
	iPrefill, iDecode, iTotal := cols[ColPrefill], cols[ColDecode], cols[ColTotal]

	t := Trace{Name: name}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return Trace{}, csvError(name, err)
		}
		line, _ := cr.FieldPos(0)
		if len(t.Requests) == maxRequests {
			return Trace{}, &ParseError{File: name, Line: line,
				Err: fmt.Errorf("%w: more than %d requests", ErrTooLarge, maxRequests)}
		}
		field := func(col string, i int, minimum int) (int, error) {
			v, err := parseCount(rec[i], minimum)
			if err != nil {
				return 0, &ParseError{File: name, Line: line, Column: col, Value: rec[i], Err: err}
			}
			return v, nil
		}
		var req Request
		if req.Prefill, err = field(ColPrefill, iPrefill, 1); err != nil {
			return Trace{}, err
		}
		if req.Decode, err = field(ColDecode, iDecode, 0); err != nil {
			return Trace{}, err
		}
		if iTotal >= 0 {
			total, err := field(ColTotal, iTotal, 0)
			if err != nil {
				return Trace{}, err
			}
			if total != req.Total() {
				return Trace{}, &ParseError{File: name, Line: line, Column: ColTotal, Value: rec[iTotal],
					Err: fmt.Errorf("%w (%d+%d=%d)", ErrTotalMismatch, req.Prefill, req.Decode, req.Total())}
			}
		}
		t.Requests = append(t.Requests, req)
	}
	if len(t.Requests) == 0 {
		return Trace{}, &ParseError{File: name, Line: 1, Err: fmt.Errorf("header only: %w", ErrEmptyTrace)}
	}
	return t, nil
}

// maxCount bounds a token count: far beyond any context length, and small
// enough that sums of counts cannot overflow.
const maxCount = 1 << 40

// parseCount reads a token count of at least minimum. Some traces write
// counts through a float column ("2730.0"), so integral floats are accepted.
func parseCount(s string, minimum int) (int, error) {
	s = strings.TrimSpace(s)
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || math.IsNaN(f) || math.IsInf(f, 0) || f != math.Trunc(f) {
			return 0, ErrNotInteger
		}
		if math.Abs(f) > maxCount {
			return 0, fmt.Errorf("%w: above %d", ErrOutOfRange, int64(maxCount))
		}
		v = int64(f)
	}
	switch {
	case v < int64(minimum):
		return 0, fmt.Errorf("%w: below %d", ErrOutOfRange, minimum)
	case v > maxCount:
		return 0, fmt.Errorf("%w: above %d", ErrOutOfRange, int64(maxCount))
	}
	return int(v), nil
}

// csvError turns encoding/csv's errors (bad quoting, a row with a different
// number of fields) into a ParseError with the line, dropping their own
// "record on line N" prefix so the line is said once. Reader failures stay
// plain wrapped errors: they are not the file's fault.
func csvError(name string, err error) error {
	var le *limitError
	if errors.As(err, &le) {
		return &ParseError{File: name, Line: le.line, Err: le.err}
	}
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &ParseError{File: name, Line: pe.Line, Err: pe.Err}
	}
	return fmt.Errorf("read trace %s: %w", name, err)
}

// lineLimiter passes its reader's bytes through while counting lines, and
// fails once a line grows past MaxLineBytes or the lines pass maxLines.
// encoding/csv has no such bound: it would buffer /dev/zero until memory
// runs out.
type lineLimiter struct {
	r       io.Reader
	line    int // 1-based line of the next byte
	lineLen int // bytes of that line read so far
	err     error
}

// limitError is the lineLimiter's failure, which csv.Reader passes back
// unchanged.
type limitError struct {
	line int
	err  error
}

func (e *limitError) Error() string { return fmt.Sprintf("line %d: %v", e.line, e.err) }

func (l *lineLimiter) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	// Never hand out more than the rest of the current line's allowance,
	// so the limit is found before csv.Reader buffers past it.
	if room := MaxLineBytes + 1 - l.lineLen; len(p) > room {
		p = p[:room]
	}
	n, err := l.r.Read(p)
	for _, c := range p[:n] {
		if c == '\n' {
			l.line++
			l.lineLen = 0
			if l.line > maxLines {
				l.err = &limitError{l.line, fmt.Errorf("%w: more than %d lines", ErrTooLarge, maxLines)}
				return 0, l.err
			}
			continue
		}
		l.lineLen++
		if l.lineLen > MaxLineBytes {
			l.err = &limitError{l.line, fmt.Errorf("%w: a line longer than %d bytes (is this a CSV trace?)", ErrTooLarge, MaxLineBytes)}
			return 0, l.err
		}
	}
	return n, err
}

// maxQuoted is how much of a bad value an error repeats.
const maxQuoted = 40

// quote quotes a value for an error message, cut to a short prefix.
func quote(v string) string {
	if len(v) <= maxQuoted {
		return strconv.Quote(v)
	}
	cut := maxQuoted
	for cut > 0 && !utf8.RuneStart(v[cut]) {
		cut--
	}
	return fmt.Sprintf("%s… (%d bytes)", strconv.Quote(v[:cut]), len(v))
}
