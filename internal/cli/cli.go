// Package cli holds what every vattnctl command shares: the output format
// flag and printer, stable exit codes, and errors that carry them.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Exit codes, following nvidia-smi's meanings where one fits.
const (
	ExitOK              = 0
	ExitFailure         = 1   // the operation ran and failed (a test, a check), or produced no result
	ExitBadArgument     = 2   // bad command, flag, argument or input file
	ExitNotSupported    = 3   // the machine cannot do this (no GPU, no small pages on this GPU or driver branch)
	ExitNoPermission    = 4   // needs root or a capability
	ExitNotFound        = 6   // a named GPU, file, kernel, source or module does not exist
	ExitDriverNotLoaded = 9   // the NVIDIA driver or nvidia-uvm is not loaded
	ExitLibraryMissing  = 12  // libcuda could not be loaded
	ExitInterrupted     = 130 // stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it)
	ExitOther           = 255 // anything else
)

// ExitCodes is the exit-code table users read: each code and what it means.
// README.md's table is checked against it.
var ExitCodes = []struct {
	Code    int
	Meaning string
}{
	{ExitOK, "ok"},
	{ExitFailure, "the operation ran and failed (a check, a step), or produced no result (every request skipped)"},
	{ExitBadArgument, "bad command, flag, argument or input file (including a malformed trace)"},
	{ExitNotSupported, "not supported here (no GPU backend; a GPU or driver branch that cannot do small pages; for install-driver, the proprietary driver or a driver version no vattn series fits with no fuzz)"},
	{ExitNoPermission, "no permission (needs root or a capability)"},
	{ExitNotFound, "not found (a GPU, file, kernel, driver source or tool)"},
	{ExitDriverNotLoaded, "the NVIDIA driver or nvidia-uvm is not loaded"},
	{ExitLibraryMissing, "libcuda missing"},
	{ExitInterrupted, "interrupted (Ctrl-C, SIGTERM); what finished is printed"},
	{ExitOther, "other"},
}

// ExitError is an error with the exit code vattnctl should end with.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// WithCode attaches an exit code to err (nil stays nil).
func WithCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &ExitError{Code: code, Err: err}
}

// Usagef reports a bad argument (exit code 2).
func Usagef(format string, args ...any) error {
	return &ExitError{Code: ExitBadArgument, Err: fmt.Errorf(format, args...)}
}

// CodeOf is the one place an error becomes an exit code: its ExitError
// code; ExitInterrupted for work stopped by a cancelled context (Ctrl-C);
// else ExitFailure.
func CodeOf(err error) int {
	if err == nil {
		return ExitOK
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	if errors.Is(err, context.Canceled) {
		return ExitInterrupted
	}
	return ExitFailure
}

// maxQuoted is how much of a user's input an error message repeats.
const maxQuoted = 40

// Quote quotes input for an error message, cut to a short prefix so that a
// huge bad value (a 1 GB CSV field) is never echoed whole.
func Quote(input string) string {
	if len(input) <= maxQuoted {
		return strconv.Quote(input)
	}
	cut := maxQuoted
	for cut > 0 && !utf8RuneStart(input[cut]) {
		cut--
	}
	return strconv.Quote(input[:cut]) + fmt.Sprintf("… (%d bytes)", len(input))
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

// Format is the value of the -o/--output flag.
type Format string

// Output formats.
const (
	Table Format = "table"
	JSON  Format = "json"
)

// Set implements pflag.Value.
func (f *Format) Set(s string) error {
	switch Format(strings.ToLower(s)) {
	case Table, "":
		*f = Table
	case JSON:
		*f = JSON
	default:
		return fmt.Errorf("unknown output format %s (valid: table, json)", Quote(s))
	}
	return nil
}

func (f *Format) String() string {
	if *f == "" {
		return string(Table)
	}
	return string(*f)
}

// Type implements pflag.Value.
func (f *Format) Type() string { return "format" }

// WriteJSON writes v as indented JSON followed by a newline.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // "<NVIDIA version>" stays readable
	return enc.Encode(v)
}
