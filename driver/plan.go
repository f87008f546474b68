package driver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
)

// Step is one change to the machine. Do makes it; Undo reverts it and must be safe to
// call after a Do that failed half way (it is called for the failed step too).
type Step struct {
	ID     string   // short stable name: "stage", "dkms-build", ...
	Title  string   // what it does, for progress and --dry-run
	Detail []string // the commands or files involved, for --dry-run
	Do     func(ctx context.Context) error
	Undo   func(ctx context.Context) error
}

// Plan is an ordered list of steps built from the detected state of the machine.
type Plan struct {
	Steps    []Step
	Warnings []string
	Notes    []string // printed after success: what the operator may still have to do
	// Verify, when set, runs after rollback and returns how the machine differs from
	// the state recorded before the plan started (nil: identical).
	Verify func() ([]string, error)
}

// IDs lists the step IDs in order.
func (p *Plan) IDs() []string {
	out := make([]string, len(p.Steps))
	for i, s := range p.Steps {
		out[i] = s.ID
	}
	return out
}

// Print writes every step with its details: the --dry-run output.
func (p *Plan) Print(w io.Writer) {
	for _, warn := range p.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	if len(p.Steps) == 0 {
		fmt.Fprintln(w, "nothing to do")
	}
	for i, s := range p.Steps {
		fmt.Fprintf(w, "%d. %s\n", i+1, s.Title)
		for _, d := range s.Detail {
			fmt.Fprintf(w, "     %s\n", d)
		}
	}
}

// StepError is a failed step, after the rollback ran.
type StepError struct {
	Step        string
	Err         error
	RollbackErr error    // nil when every Undo succeeded
	Residue     []string // how the machine still differs from before, after rollback
}

func (e *StepError) Error() string {
	msg := fmt.Sprintf("step %s: %v", e.Step, e.Err)
	if e.RollbackErr != nil {
		msg += fmt.Sprintf("; rollback failed: %v", e.RollbackErr)
	} else if len(e.Residue) > 0 {
		msg += fmt.Sprintf("; rolled back, but %d differences remain (first: %s)", len(e.Residue), e.Residue[0])
	} else {
		msg += "; rolled back, the machine is as before"
	}
	return msg
}

func (e *StepError) Unwrap() error { return e.Err }

// FailStepEnv names a step ID at which Run fails after the step's Do, to exercise the
// rollback in tests (tests/dkms). It has no effect unless set.
const FailStepEnv = "VATTNCTL_TEST_FAIL_STEP"

// ErrInjected is the failure FailStepEnv injects.
var ErrInjected = errors.New("failure injected by " + FailStepEnv)

// Run executes the plan, printing progress to w. On the first failure it undoes the
// failed step and every step before it, in reverse order.
func (p *Plan) Run(ctx context.Context, w io.Writer) error {
	inject := os.Getenv(FailStepEnv)
	for i, s := range p.Steps {
		fmt.Fprintf(w, "[%d/%d] %s\n", i+1, len(p.Steps), s.Title)
		err := s.Do(ctx)
		if err == nil && inject == s.ID {
			err = ErrInjected
		}
		if err == nil {
			continue
		}
		fmt.Fprintf(w, "[%d/%d] failed: %v\nrolling back\n", i+1, len(p.Steps), err)
		se := &StepError{Step: s.ID, Err: err}
		// Rollback must run even when ctx was cancelled (Ctrl-C during a build).
		rctx := context.WithoutCancel(ctx)
		for j := i; j >= 0; j-- {
			if p.Steps[j].Undo == nil {
				continue
			}
			if uerr := p.Steps[j].Undo(rctx); uerr != nil {
				fmt.Fprintf(w, "  undo %s: %v\n", p.Steps[j].ID, uerr)
				se.RollbackErr = errors.Join(se.RollbackErr, fmt.Errorf("undo %s: %w", p.Steps[j].ID, uerr))
			} else {
				fmt.Fprintf(w, "  undone: %s\n", p.Steps[j].Title)
			}
		}
		if p.Verify != nil && se.RollbackErr == nil {
			res, verr := p.Verify()
			if verr != nil {
				se.RollbackErr = fmt.Errorf("verify rollback: %w", verr)
			}
			se.Residue = res
		}
		return se
	}
	for _, n := range p.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	return nil
}
