package cli

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ParseBytes reads a memory size with a binary unit: "80GiB", "80g",
// "512MiB", "4096B". Units are powers of 1024. A bare number is refused:
// "--gpu-mem 80" meaning 80 bytes is never what was meant.
func ParseBytes(text string) (uint64, error) {
	t := strings.ToLower(strings.TrimSpace(text))
	num := strings.TrimRight(t, "abcdefghijklmnopqrstuvwxyz")
	var shift uint
	switch strings.TrimPrefix(t, num) {
	case "":
		if _, err := strconv.ParseFloat(num, 64); err == nil {
			return 0, fmt.Errorf("size %s has no unit: write %sGiB, %sMiB or %sB", Quote(text), num, num, num)
		}
		return 0, fmt.Errorf("size %s: not a size (e.g. 80GiB, 512MiB)", Quote(text))
	case "b":
	case "k", "kb", "kib":
		shift = 10
	case "m", "mb", "mib":
		shift = 20
	case "g", "gb", "gib":
		shift = 30
	case "t", "tb", "tib":
		shift = 40
	default:
		return 0, fmt.Errorf("size %s: unknown unit (use B, KiB, MiB, GiB or TiB)", Quote(text))
	}
	v, err := strconv.ParseFloat(num, 64)
	// NaN fails every comparison, so the test is written to let only a
	// finite positive value through.
	if err != nil || !(v > 0 && v*float64(uint64(1)<<shift) < 1<<63) {
		return 0, fmt.Errorf("size %s: not a positive size", Quote(text))
	}
	if v*float64(uint64(1)<<shift) < 1 {
		return 0, fmt.Errorf("size %s: less than one byte", Quote(text))
	}
	return uint64(v * float64(uint64(1)<<shift)), nil
}

// FormatBytes prints a byte count with a binary unit: "55.9 GiB".
func FormatBytes(n uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	v, i := float64(n), 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}

// IsTerminal reports whether f is a character device, i.e. progress lines
// are worth drawing on it.
func IsTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
