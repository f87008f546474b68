package workload

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReadCSV(t *testing.T) {
	tests := []struct {
		name, in string
		want     []Request
	}{
		{"sarathi header", "num_prefill_tokens,num_decode_tokens,num_total_tokens,pd_ratio\n3772,54,3826,69.85\n2015,156,2171,12.9\n",
			[]Request{{3772, 54}, {2015, 156}}},
		{"no trailing newline", "num_prefill_tokens,num_decode_tokens\n1,2\n3,4",
			[]Request{{1, 2}, {3, 4}}},
		{"columns reordered, extras ignored", "pd_ratio,id,num_decode_tokens,num_total_tokens,num_prefill_tokens\nx,a,10,110,100\ny,b,0,7,7\n",
			[]Request{{100, 10}, {7, 0}}},
		{"no total column", "num_decode_tokens,num_prefill_tokens\n5,6\n",
			[]Request{{6, 5}}},
		{"integral floats", "num_prefill_tokens,num_decode_tokens,num_total_tokens\n2730.0,167.0,2897\n1e3,2.00,1002.0\n",
			[]Request{{2730, 167}, {1000, 2}}},
		{"BOM, spaces, case, CRLF, blank lines", "\ufeffNum_Prefill_Tokens , num_decode_tokens\r\n 12 , 3 \r\n\r\n4,5\r\n",
			[]Request{{12, 3}, {4, 5}}},
		{"quoted fields", "\"num_prefill_tokens\",\"num_decode_tokens\"\n\"8\",\"9\"\n",
			[]Request{{8, 9}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := ReadCSV(strings.NewReader(tt.in), "t.csv")
			if err != nil {
				t.Fatal(err)
			}
			if tr.Name != "t.csv" || !slices.Equal(tr.Requests, tt.want) {
				t.Errorf("got %+v, want %v", tr, tt.want)
			}
		})
	}
}

func TestReadCSVErrors(t *testing.T) {
	const hdr = "num_prefill_tokens,num_decode_tokens,num_total_tokens,pd_ratio\n"
	tests := []struct {
		name, in string
		sentinel error // nil: only the *ParseError is checked
		line     int
		column   string
		msg      string
	}{
		{"empty file", "", ErrEmptyTrace, 0, "", "arxiv.csv: empty file: no requests"},
		{"header only", hdr, ErrEmptyTrace, 1, "", "arxiv.csv:1: header only: no requests"},
		{"missing decode column", "num_prefill_tokens,num_total_tokens\n1,1\n", ErrMissingColumn, 1, "",
			"arxiv.csv:1: missing column num_decode_tokens (header: \"num_prefill_tokens,num_total_tokens\")"},
		{"missing prefill column", "prompt,num_decode_tokens\n1,1\n", ErrMissingColumn, 1, "", "missing column num_prefill_tokens"},
		{"duplicate column", "num_prefill_tokens,num_decode_tokens,NUM_PREFILL_TOKENS\n1,2,3\n", ErrDuplicateColumn, 1, "",
			"arxiv.csv:1: duplicate column num_prefill_tokens"},
		{"not an integer", hdr + "1,2,3,1\n" + strings.Repeat("5,5,10,1\n", 14) + "4,abc,7,1\n", ErrNotInteger, 17, ColDecode,
			`arxiv.csv:17: num_decode_tokens "abc": not an integer`},
		{"fractional", hdr + "2730.5,1,2731.5,1\n", ErrNotInteger, 2, ColPrefill, `arxiv.csv:2: num_prefill_tokens "2730.5": not an integer`},
		{"empty value", hdr + ",1,1,1\n", ErrNotInteger, 2, ColPrefill, `num_prefill_tokens "": not an integer`},
		{"NaN", hdr + "NaN,1,1,1\n", ErrNotInteger, 2, ColPrefill, "not an integer"},
		{"Inf", hdr + "1,+Inf,1,1\n", ErrNotInteger, 2, ColDecode, "not an integer"},
		{"hex", hdr + "0x10,1,17,1\n", ErrNotInteger, 2, ColPrefill, "not an integer"},
		{"zero prefill", hdr + "0,5,5,0\n", ErrOutOfRange, 2, ColPrefill, `arxiv.csv:2: num_prefill_tokens "0": out of range: below 1`},
		{"negative prefill", hdr + "-3,5,2,0\n", ErrOutOfRange, 2, ColPrefill, "below 1"},
		{"negative decode", hdr + "3,-1,2,0\n", ErrOutOfRange, 2, ColDecode, `num_decode_tokens "-1": out of range: below 0`},
		{"negative float decode", hdr + "3,-1.0,2,0\n", ErrOutOfRange, 2, ColDecode, "below 0"},
		{"huge", hdr + "99999999999999999999,1,1,1\n", ErrOutOfRange, 2, ColPrefill, "above 1099511627776"},
		{"huge int", hdr + "1,1099511627777,1,1\n", ErrOutOfRange, 2, ColDecode, "above 1099511627776"},
		{"bad total", hdr + "100,10,111,10\n", ErrTotalMismatch, 2, ColTotal,
			`arxiv.csv:2: num_total_tokens "111": total is not prefill+decode (100+10=110)`},
		{"unparsable total", hdr + "100,10,x,10\n", ErrNotInteger, 2, ColTotal, `num_total_tokens "x": not an integer`},
		{"short row", hdr + "1,2,3,1\n4,5\n", nil, 3, "", "arxiv.csv:3: wrong number of fields"},
		{"bad quote", hdr + "1,\"2,3,1\n", nil, 2, "", "arxiv.csv:2: extraneous or missing \" in quoted-field"},
		{"bad quote in header", "num_prefill_tokens,\"num_decode_tokens\n", nil, 1, "", "arxiv.csv:1: extraneous or missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadCSV(strings.NewReader(tt.in), "arxiv.csv")
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v (%T) is not a *ParseError", err, err)
			}
			if tt.sentinel != nil && !errors.Is(err, tt.sentinel) {
				t.Errorf("error %v does not wrap %v", err, tt.sentinel)
			}
			if pe.File != "arxiv.csv" || pe.Line != tt.line || pe.Column != tt.column {
				t.Errorf("ParseError{File: %q, Line: %d, Column: %q}, want arxiv.csv, %d, %q", pe.File, pe.Line, pe.Column, tt.line, tt.column)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not contain %q", err, tt.msg)
			}
		})
	}
}

// endless is an input that never ends: b repeated.
type endless byte

func (e endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(e)
	}
	return len(p), nil
}

func TestReadCSVBounds(t *testing.T) {
	const hdr = "num_prefill_tokens,num_decode_tokens\n"
	huge := strings.Repeat("7", 1<<20)
	for _, tc := range []struct {
		name string
		in   io.Reader
		line int
		msg  string
	}{
		{"endless zeros", endless(0), 1, "longer than 65536 bytes"},
		{"endless header", io.MultiReader(strings.NewReader("num_prefill_tokens,"), endless('x')), 1, "longer than"},
		{"huge field", strings.NewReader(hdr + "1,2\n" + huge + ",1\n"), 3, "longer than"},
		{"huge quoted field", strings.NewReader(hdr + "\"" + huge + "\",1\n"), 2, "longer than"},
		{"endless newlines", io.MultiReader(strings.NewReader(hdr+"1,2\n"), endless('\n')), 1001, "more than 1000 lines"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := maxLines
			maxLines = 1000
			defer func() { maxLines = old }()
			_, err := ReadCSV(tc.in, "big.csv")
			var pe *ParseError
			if !errors.As(err, &pe) || !errors.Is(err, ErrTooLarge) || pe.Line != tc.line || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %v (%T), want a ParseError at line %d wrapping ErrTooLarge with %q", err, err, tc.line, tc.msg)
			}
			if len(err.Error()) > 200 {
				t.Errorf("error is %d bytes long", len(err.Error()))
			}
		})
	}
	// A long bad value is quoted by a prefix only.
	_, err := ReadCSV(strings.NewReader(hdr+strings.Repeat("x", 60000)+",1\n"), "big.csv")
	if !errors.Is(err, ErrNotInteger) || len(err.Error()) > 200 || !strings.Contains(err.Error(), "(60000 bytes)") {
		t.Errorf("long bad value: %v", err)
	}
}

func TestReadCSVTooManyRequests(t *testing.T) {
	old := maxRequests
	maxRequests = 5
	defer func() { maxRequests = old }()
	in := "num_prefill_tokens,num_decode_tokens\n" + strings.Repeat("1,1\n", 5)
	if tr, err := ReadCSV(strings.NewReader(in), "many.csv"); err != nil || len(tr.Requests) != 5 {
		t.Fatalf("at the cap: %d requests, %v", len(tr.Requests), err)
	}
	_, err := ReadCSV(strings.NewReader(in+"\n2,2\n"), "many.csv")
	var pe *ParseError
	if !errors.As(err, &pe) || !errors.Is(err, ErrTooLarge) || pe.Line != 8 || !strings.Contains(err.Error(), "more than 5 requests") {
		t.Fatalf("error %v, want ErrTooLarge at line 8", err)
	}
}

func TestReadCSVReaderFailure(t *testing.T) {
	boom := errors.New("disk on fire")
	_, err := ReadCSV(iotest.ErrReader(boom), "x.csv")
	var pe *ParseError
	if !errors.Is(err, boom) || errors.As(err, &pe) || err.Error() != "read trace x.csv: disk on fire" {
		t.Errorf("error = %v, want a plain wrapped reader error", err)
	}
	// A failure after the header, too.
	r := iotest.TimeoutReader(strings.NewReader("num_prefill_tokens,num_decode_tokens\n1,2\n"))
	if _, err := ReadCSV(iotest.OneByteReader(r), "x.csv"); !errors.Is(err, iotest.ErrTimeout) {
		t.Errorf("error = %v, want the reader's timeout", err)
	}
}

func TestLoadCSV(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "my.trace.csv")
	if err := os.WriteFile(path, []byte("num_prefill_tokens,num_decode_tokens\n10,20\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tr, err := LoadCSV(path)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Name != "my.trace" || !slices.Equal(tr.Requests, []Request{{10, 20}}) {
		t.Errorf("LoadCSV = %+v", tr)
	}

	bad := filepath.Join(dir, "bad.csv")
	if err := os.WriteFile(bad, []byte("num_prefill_tokens,num_decode_tokens\n10,2.5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = LoadCSV(bad)
	if want := bad + `:2: num_decode_tokens "2.5": not an integer`; err == nil || err.Error() != want {
		t.Errorf("LoadCSV(bad) error = %v, want %s", err, want)
	}

	_, err = LoadCSV(filepath.Join(dir, "missing.csv"))
	if !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "load trace: open ") {
		t.Errorf("LoadCSV(missing) error = %v, want a wrapped fs.ErrNotExist", err)
	}
}

// FuzzReadCSV feeds arbitrary bytes to the trace reader: it must never
// panic, every trace it accepts must hold only requests the simulator can
// take, and every error must be a short *ParseError naming the file.
// The seeds under testdata/fuzz/FuzzReadCSV run with go test.
func FuzzReadCSV(f *testing.F) {
	f.Add([]byte("num_prefill_tokens,num_decode_tokens,num_total_tokens,pd_ratio\n3772,54,3826,69.85\n"))
	f.Add([]byte("num_decode_tokens,num_prefill_tokens\n5,6\n\n\"7\",8\n"))
	f.Add([]byte("num_prefill_tokens,num_decode_tokens\n1e3,2.0\n-1,2\n"))
	f.Add([]byte("\ufeffnum_prefill_tokens,num_decode_tokens\r\n1,\"2\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		tr, err := ReadCSV(bytes.NewReader(in), "fuzz.csv")
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.File != "fuzz.csv" || tr.Requests != nil {
				t.Fatalf("error %v (%T) is not a ParseError for fuzz.csv, or came with requests", err, err)
			}
			if len(err.Error()) > 400 {
				t.Fatalf("error of %d bytes: %.100s…", len(err.Error()), err)
			}
			return
		}
		if len(tr.Requests) == 0 || len(tr.Requests) > MaxRequests {
			t.Fatalf("%d requests accepted", len(tr.Requests))
		}
		for i, r := range tr.Requests {
			if r.Prefill < 1 || r.Decode < 0 || r.Total() > 2*maxCount {
				t.Fatalf("request %d accepted: %+v", i, r)
			}
		}
	})
}
