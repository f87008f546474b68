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
		fmt.Fprintf(&b, "%s %q: ", e.Column, e.Value)
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
func ReadCSV(r io.Reader, name string) (Trace, error) {
	cr := csv.NewReader(r)
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
				ErrMissingColumn, c, strings.Join(header, ","))}
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
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &ParseError{File: name, Line: pe.Line, Err: pe.Err}
	}
	return fmt.Errorf("read trace %s: %w", name, err)
}
