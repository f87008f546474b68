// Package pagesize defines the physical page sizes vattn can map: 64, 128 and
// 256 KiB through the patched nvidia-uvm driver, and 2 MiB through the stock
// CUDA VMM API. It parses the spellings users type ("64k", "2MB", "2097152"),
// prints sizes canonically, and does the page arithmetic the allocator needs.
package pagesize

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Size is a supported physical page size in bytes. The zero value is not a
// valid size; use Parse or one of the constants.
type Size uint64

// The supported page sizes.
const (
	Size64K  Size = 64 << 10
	Size128K Size = 128 << 10
	Size256K Size = 256 << 10
	Size2M   Size = 2 << 20
)

// All lists the supported sizes, smallest first.
func All() []Size { return []Size{Size64K, Size128K, Size256K, Size2M} }

// ErrUnsupported is returned (wrapped) for a size vattn cannot map.
var ErrUnsupported = errors.New("unsupported page size")

// Valid reports whether s is one of the supported sizes.
func (s Size) Valid() bool {
	switch s {
	case Size64K, Size128K, Size256K, Size2M:
		return true
	}
	return false
}

// Bytes returns the size in bytes.
func (s Size) Bytes() uint64 { return uint64(s) }

// String prints the canonical form: "64KiB", "128KiB", "256KiB", "2MiB".
// Sizes that are not supported print as a plain byte count with a "B" suffix.
func (s Size) String() string {
	switch {
	case s != 0 && s%(1<<20) == 0:
		return strconv.FormatUint(uint64(s)>>20, 10) + "MiB"
	case s != 0 && s%(1<<10) == 0:
		return strconv.FormatUint(uint64(s)>>10, 10) + "KiB"
	}
	return strconv.FormatUint(uint64(s), 10) + "B"
}

// Short prints the compact form users type on the command line: "64k", "2m".
func (s Size) Short() string {
	switch {
	case s != 0 && s%(1<<20) == 0:
		return strconv.FormatUint(uint64(s)>>20, 10) + "m"
	case s != 0 && s%(1<<10) == 0:
		return strconv.FormatUint(uint64(s)>>10, 10) + "k"
	}
	return strconv.FormatUint(uint64(s), 10)
}

// Pages returns how many pages of size s are needed to hold n bytes.
func (s Size) Pages(n uint64) uint64 { return (n + uint64(s) - 1) / uint64(s) }

// RoundUp rounds n up to a multiple of s.
func (s Size) RoundUp(n uint64) uint64 { return s.Pages(n) * uint64(s) }

// Aligned reports whether n is a multiple of s.
func (s Size) Aligned(n uint64) bool { return n%uint64(s) == 0 }

func validList() string {
	names := make([]string, 0, 4)
	for _, s := range All() {
		names = append(names, s.Short())
	}
	return strings.Join(names, ", ")
}

// Parse reads a page size. It accepts a byte count ("65536"), or a number with
// a binary unit in any case: k, kb, kib, m, mb, mib ("64k", "64KB", "64KiB",
// "2m", "2MB"). Units are always powers of two: "64KB" means 65536 bytes, as
// in every GPU page-size table. Anything that is not a supported size is an
// error that lists the valid ones.
func Parse(text string) (Size, error) {
	t := strings.ToLower(strings.TrimSpace(text))
	digits := len(t) - len(strings.TrimLeft(t, "0123456789"))
	num, unit := t[:digits], t[digits:]
	var shift uint
	switch unit {
	case "", "b":
	case "k", "kb", "kib":
		shift = 10
	case "m", "mb", "mib":
		shift = 20
	default:
		return 0, fmt.Errorf("page size %q: %w (valid: %s)", text, ErrUnsupported, validList())
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil || n > (1<<63)>>shift {
		return 0, fmt.Errorf("page size %q: %w (valid: %s)", text, ErrUnsupported, validList())
	}
	s := Size(n << shift)
	if !s.Valid() {
		return 0, fmt.Errorf("page size %q: %w (valid: %s)", text, ErrUnsupported, validList())
	}
	return s, nil
}

// ParseList reads a comma-separated list of page sizes ("64k,256k,2m"),
// rejecting empty entries and duplicates.
func ParseList(text string) ([]Size, error) {
	var out []Size
	seen := map[Size]bool{}
	for _, f := range strings.Split(text, ",") {
		s, err := Parse(f)
		if err != nil {
			return nil, err
		}
		if seen[s] {
			return nil, fmt.Errorf("page size %s listed twice", s)
		}
		seen[s] = true
		out = append(out, s)
	}
	return out, nil
}

// Set implements pflag.Value so a Size can be a command-line flag.
func (s *Size) Set(text string) error {
	v, err := Parse(text)
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Type implements pflag.Value.
func (s *Size) Type() string { return "pagesize" }

// MarshalText prints the canonical form, so JSON output reads "64KiB".
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses any form Parse accepts.
func (s *Size) UnmarshalText(b []byte) error { return s.Set(string(b)) }
