// Package cli holds what every vattnctl command shares: the output format
// flag and printer, stable exit codes, and errors that carry them.
package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Exit codes, following nvidia-smi's meanings where one fits.
const (
	ExitOK              = 0
	ExitFailure         = 1   // the operation ran and failed (a test, a check)
	ExitBadArgument     = 2   // bad flag or argument
	ExitNotSupported    = 3   // the machine cannot do this (no GPU, stock driver)
	ExitNoPermission    = 4   // needs root or a capability
	ExitNotFound        = 6   // a named GPU, file or module does not exist
	ExitDriverNotLoaded = 9   // the NVIDIA driver or nvidia-uvm is not loaded
	ExitLibraryMissing  = 12  // libcuda could not be loaded
	ExitOther           = 255 // anything else
)

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

// CodeOf returns the exit code for err: its ExitError code, else 1.
func CodeOf(err error) int {
	if err == nil {
		return ExitOK
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return ExitFailure
}

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
		return fmt.Errorf("unknown output format %q (valid: table, json)", s)
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
	return enc.Encode(v)
}
