//go:build !amd64

package trace

import (
	"errors"
	"fmt"
	"runtime"
)

// The eBPF programs read x86-64 registers; other architectures get no source.
var errArch = fmt.Errorf("eBPF programs are built for amd64 only, not %s: %w", runtime.GOARCH, errors.ErrUnsupported)

func openCUDA(Options) (source, string, error)  { return nil, "", errArch }
func openIoctl(Options) (source, string, error) { return nil, "", errArch }

type recorder struct{}

func openRecorder([]string, int, func(Record)) (*recorder, []string, error) { return nil, nil, errArch }
func (*recorder) lost() (uint64, error)                                     { return 0, errArch }
func (*recorder) close() error                                              { return nil }
