package driver

import (
	"context"
	"os/exec"
	"path/filepath"
)

// Env is the machine the package works on. Root prefixes every absolute path it reads
// or writes (tests point it at a scratch tree; "" is the real machine); Exec runs a
// command and returns its combined output.
type Env struct {
	Root     string
	Exec     func(ctx context.Context, name string, args ...string) ([]byte, error)
	LookPath func(name string) (string, error)
}

// System is the real machine.
func System() *Env {
	return &Env{
		Exec: func(ctx context.Context, name string, args ...string) ([]byte, error) {
			return exec.CommandContext(ctx, name, args...).CombinedOutput()
		},
		LookPath: exec.LookPath,
	}
}

func (e *Env) path(p string) string {
	if e.Root == "" {
		return p
	}
	return filepath.Join(e.Root, p)
}

// Have reports whether tool is on PATH.
func (e *Env) Have(tool string) bool {
	if e.LookPath == nil {
		return false
	}
	_, err := e.LookPath(tool)
	return err == nil
}

// NotInstalled is how a missing tool is reported.
const NotInstalled = "not installed"
