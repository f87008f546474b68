package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/spf13/cobra"
)

func TestParseBytes(t *testing.T) {
	good := map[string]uint64{"80GiB": 80 << 30, "80g": 80 << 30, "512MiB": 512 << 20, "1024b": 1024,
		"1.5g": 3 << 29, " 2TiB ": 2 << 40, "4kb": 4096, "7B": 7}
	for in, want := range good {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "-1g", "lots", "1x", "1e30t", "g", "NaNg", "nan", "infGiB", "0.5b", "80", "1024"} {
		if _, err := ParseBytes(bad); err == nil {
			t.Errorf("ParseBytes(%q) succeeded", bad)
		}
	}
	if _, err := ParseBytes("80"); err == nil || !strings.Contains(err.Error(), "80GiB") {
		t.Errorf("a bare number's error does not suggest a unit: %v", err)
	}
}

func TestQuote(t *testing.T) {
	if got := Quote("abc"); got != `"abc"` {
		t.Errorf("Quote(abc) = %s", got)
	}
	long := strings.Repeat("é", 1000)
	got := Quote(long)
	if len(got) > 80 || !strings.Contains(got, "2000 bytes") || !utf8.ValidString(got) {
		t.Errorf("Quote of 2000 bytes = %s", got)
	}
}

func TestRefuseRepeats(t *testing.T) {
	run := func(args ...string) (string, []int, error) {
		var s string
		var list []int
		cmd := &cobra.Command{Use: "x", RunE: func(*cobra.Command, []string) error { return nil }}
		cmd.Flags().StringVar(&s, "page-size", "", "")
		cmd.Flags().IntSliceVar(&list, "batch", nil, "")
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		RefuseRepeats(cmd)
		cmd.SetArgs(args)
		err := cmd.Execute()
		return s, list, err
	}
	if s, list, err := run("--batch", "1", "--batch", "2", "--page-size", "64k"); err != nil || s != "64k" || len(list) != 2 {
		t.Fatalf("single value and repeated list: %v, %q, %v", err, s, list)
	}
	if _, _, err := run("--page-size", "64k", "--page-size", "2m"); err == nil || !strings.Contains(err.Error(), "more than once") {
		t.Fatalf("repeated flag: %v", err)
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
	if CodeOf(fmt.Errorf("simulate: %w", context.Canceled)) != ExitInterrupted {
		t.Fatal("a cancelled run is not exit 130")
	}
	if CodeOf(Usagef("bad %d", 1)) != ExitBadArgument {
		t.Fatal("usage code")
	}
	var f Format
	if f.Set("JSON") != nil || f != JSON || f.Set("yaml") == nil || f.Type() != "format" {
		t.Fatal("format flag")
	}
}

func TestFlagError(t *testing.T) {
	err := FlagError(fmt.Errorf("invalid argument %q for \"--x\" flag", "a\nb"+strings.Repeat("z", 5000)))
	if CodeOf(err) != ExitBadArgument || strings.ContainsAny(err.Error(), "\n\r\x00") || len(err.Error()) > 400 {
		t.Errorf("%q", err)
	}
	if FlagError(nil) != nil {
		t.Error("nil")
	}
	if got := FlagError(errors.New("unknown shorthand flag: '\n' in -\n")).Error(); got != "unknown shorthand flag: '?' in -?" {
		t.Errorf("%q", got)
	}
}
