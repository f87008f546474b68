// Package cuda is a minimal binding of the CUDA driver API, loaded at run
// time from libcuda.so.1 through purego: building needs no CUDA SDK and no
// cgo, and a machine without the driver gets an error that says what is
// missing (backend.ErrUnavailable) instead of a binary that will not start.
//
// It binds only what vattn uses: devices and their UUIDs, the primary
// context, the virtual memory management calls (reserve, create, map, set
// access, unmap, release), memset and copies, streams, events, and module
// loading and kernel launch for the small verification kernels embedded as
// PTX (kernels.ptx). Every entry point sits in a Driver, a struct of
// function fields, which is where tests put a fake driver (cudafake).
//
// The driver keeps the current context per OS thread, so calls bound to a
// context go through Ctx.Do (or Enter/Exit), which locks the goroutine to
// its thread and makes the context current there. CUresults become *Error
// values carrying the driver's name and text for the code and the call that
// returned it; errors.Is matches them against this package's sentinels and
// against backend.ErrOutOfMemory and backend.ErrUnavailable.
package cuda
