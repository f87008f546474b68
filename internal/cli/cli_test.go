package cli

import (
	"errors"
	"fmt"
	"testing"
)

func TestParseBytes(t *testing.T) {
	good := map[string]uint64{"80GiB": 80 << 30, "80g": 80 << 30, "512MiB": 512 << 20, "1024": 1024,
		"1.5g": 3 << 29, " 2TiB ": 2 << 40, "4kb": 4096, "7B": 7}
	for in, want := range good {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "-1g", "lots", "1x", "1e30t", "g"} {
		if _, err := ParseBytes(bad); err == nil {
			t.Errorf("ParseBytes(%q) succeeded", bad)
		}
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 57 << 30: "57.0 GiB", 3 << 40: "3.0 TiB"} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestExitCodes(t *testing.T) {
	if CodeOf(nil) != ExitOK || CodeOf(errors.New("x")) != ExitFailure {
		t.Fatal("plain errors")
	}
	err := fmt.Errorf("wrapped: %w", WithCode(ExitDriverNotLoaded, errors.New("no driver")))
	if CodeOf(err) != ExitDriverNotLoaded || WithCode(3, nil) != nil {
		t.Fatal("wrapped exit code lost")
	}
	if CodeOf(Usagef("bad %d", 1)) != ExitBadArgument {
		t.Fatal("usage code")
	}
	var f Format
	if f.Set("JSON") != nil || f != JSON || f.Set("yaml") == nil || f.Type() != "format" {
		t.Fatal("format flag")
	}
}
