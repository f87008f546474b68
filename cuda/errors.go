package cuda

import (
	"errors"
	"fmt"

	"github.com/vattn/vattn/backend"
)

// Error is a CUresult other than CUDA_SUCCESS, with the driver's own name
// and description of it and the call that returned it.
type Error struct {
	Code    Result
	Name    string // "CUDA_ERROR_OUT_OF_MEMORY"
	Message string // "out of memory"
	Call    string // "cuMemCreate"
}

func (e *Error) Error() string {
	name := e.Name
	if name == "" {
		name = fmt.Sprintf("CUresult %d", e.Code)
	}
	if e.Message != "" {
		return fmt.Sprintf("%s: %s: %s", e.Call, name, e.Message)
	}
	return fmt.Sprintf("%s: %s", e.Call, name)
}

// Sentinels for the CUresults callers branch on. errors.Is(err, ErrX)
// matches a *Error with that code.
var (
	ErrNoDevice       = errors.New("no CUDA-capable device")
	ErrInvalidDevice  = errors.New("invalid CUDA device")
	ErrOutOfMemory    = errors.New("CUDA out of memory")
	ErrInvalidValue   = errors.New("invalid value")
	ErrNotReady       = errors.New("not ready")
	ErrNotSupported   = errors.New("not supported")
	ErrNotPermitted   = errors.New("not permitted")
	ErrDriverTooOld   = errors.New("CUDA driver too old or mismatched")
	ErrNotInitialized = errors.New("CUDA not initialized")
	ErrInvalidHandle  = errors.New("invalid handle")
	ErrLaunchFailed   = errors.New("kernel launch or execution failed")
)

// Is maps the code onto the sentinels above, and onto the backend's: an
// out-of-memory result is backend.ErrOutOfMemory, a machine that cannot run
// CUDA (no device, driver too old, stub library) is backend.ErrUnavailable.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNoDevice:
		return e.Code == CUDA_ERROR_NO_DEVICE
	case ErrInvalidDevice:
		return e.Code == CUDA_ERROR_INVALID_DEVICE
	case ErrOutOfMemory, backend.ErrOutOfMemory:
		return e.Code == CUDA_ERROR_OUT_OF_MEMORY
	case ErrInvalidValue:
		return e.Code == CUDA_ERROR_INVALID_VALUE
	case ErrNotReady:
		return e.Code == CUDA_ERROR_NOT_READY
	case ErrNotSupported:
		return e.Code == CUDA_ERROR_NOT_SUPPORTED
	case ErrNotPermitted:
		return e.Code == CUDA_ERROR_NOT_PERMITTED
	case ErrDriverTooOld:
		return e.Code == CUDA_ERROR_INSUFFICIENT_DRIVER || e.Code == CUDA_ERROR_SYSTEM_DRIVER_MISMATCH
	case ErrNotInitialized:
		return e.Code == CUDA_ERROR_NOT_INITIALIZED || e.Code == CUDA_ERROR_DEINITIALIZED
	case ErrInvalidHandle:
		return e.Code == CUDA_ERROR_INVALID_HANDLE
	case ErrLaunchFailed:
		return e.Code == CUDA_ERROR_LAUNCH_FAILED || e.Code == CUDA_ERROR_ILLEGAL_ADDRESS
	case backend.ErrUnavailable:
		switch e.Code {
		case CUDA_ERROR_NO_DEVICE, CUDA_ERROR_INSUFFICIENT_DRIVER, CUDA_ERROR_SYSTEM_DRIVER_MISMATCH, CUDA_ERROR_STUB_LIBRARY:
			return true
		}
	}
	return false
}

// check turns r into nil or an *Error naming call, asking the driver for
// the result's name and text. If the driver does not know the code either,
// the error still carries the number.
func (d *Driver) check(call string, r Result) error {
	if r == CUDA_SUCCESS {
		return nil
	}
	e := &Error{Code: r, Call: call}
	var p *byte
	if d.GetErrorName != nil && d.GetErrorName(r, &p) == CUDA_SUCCESS {
		e.Name = cString(p)
	}
	p = nil
	if d.GetErrorString != nil && d.GetErrorString(r, &p) == CUDA_SUCCESS {
		e.Message = cString(p)
	}
	return e
}
