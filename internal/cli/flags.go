package cli

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// onceValue refuses a second value for a flag. pflag lets the last of
// "--page-size 64k --page-size 2m" win silently; the user meant something
// by both, so neither is guessed.
type onceValue struct {
	pflag.Value
	name string
	set  bool
}

func (v *onceValue) Set(s string) error {
	if v.set {
		return fmt.Errorf("given more than once (a list is comma-separated: --%s a,b)", v.name)
	}
	v.set = true
	return v.Value.Set(s)
}

// RefuseRepeats makes every flag of cmd and its subcommands refuse to be
// given twice, except list flags, which collect repeated values by design.
// Call it once the command tree is complete.
func RefuseRepeats(cmd *cobra.Command) {
	wrap := func(f *pflag.Flag) {
		if _, done := f.Value.(*onceValue); done || strings.HasSuffix(f.Value.Type(), "Slice") ||
			strings.HasSuffix(f.Value.Type(), "Array") {
			return
		}
		f.Value = &onceValue{Value: f.Value, name: f.Name}
	}
	cmd.Flags().VisitAll(wrap)
	cmd.PersistentFlags().VisitAll(wrap)
	for _, c := range cmd.Commands() {
		RefuseRepeats(c)
	}
}

// maxFlagError bounds a flag-parsing error message.
const maxFlagError = 300

// FlagError turns a flag-parsing error into a bad-argument error whose text
// is one short line: pflag repeats the offending argument verbatim, which
// may hold newlines, control characters or a megabyte of text.
func FlagError(err error) error {
	if err == nil {
		return nil
	}
	msg := strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(err.Error(), "?"))
	if len(msg) > maxFlagError {
		cut := maxFlagError
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + fmt.Sprintf("… (%d bytes)", len(msg))
	}
	return &ExitError{Code: ExitBadArgument, Err: errors.New(msg)}
}
