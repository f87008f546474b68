package backend

import "errors"

// Errors every backend returns (wrapped, with the detail) so callers can
// branch on them with errors.Is.
var (
	// ErrOutOfMemory: the device has no memory left for the pages asked for.
	ErrOutOfMemory = errors.New("out of device memory")
	// ErrAlreadyMapped: a page is already mapped at the address, or the page
	// is already mapped somewhere.
	ErrAlreadyMapped = errors.New("already mapped")
	// ErrNotMapped: nothing is mapped at the address.
	ErrNotMapped = errors.New("not mapped")
	// ErrMisaligned: an address or size is not a multiple of the page size.
	ErrMisaligned = errors.New("not page-aligned")
	// ErrOutOfRange: an address lies outside every reserved region.
	ErrOutOfRange = errors.New("address outside any reserved region")
	// ErrUnknownPage: the page ID was never made by this backend, or was freed.
	ErrUnknownPage = errors.New("unknown page")
	// ErrPageMapped: freeing a page that is still mapped.
	ErrPageMapped = errors.New("page is still mapped")
	// ErrRegionInUse: releasing a region with pages still mapped in it.
	ErrRegionInUse = errors.New("region has mapped pages")
	// ErrFenceNotReached: unmapping pages whose readers have not finished.
	ErrFenceNotReached = errors.New("fence not reached: GPU work may still read the page")
	// ErrBadArgument: a size, count or argument the backend cannot accept.
	ErrBadArgument = errors.New("bad argument")
	// ErrClosed: the backend was closed.
	ErrClosed = errors.New("backend closed")
	// ErrInjected: a failure injected by a test (simulator only).
	ErrInjected = errors.New("injected failure")
	// ErrUnavailable: the backend cannot run on this machine (no libcuda, no
	// GPU, stock driver where the patched one is needed). The wrapping error
	// says what to install or change.
	ErrUnavailable = errors.New("backend unavailable")
)
