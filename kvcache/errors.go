package kvcache

import "errors"

// Errors the cache returns (wrapped with detail); branch on them with
// errors.Is. After any of them the cache is as it was before the call,
// except that pages no request needs (idle slots', and active slots' beyond
// what their requests used) may have been reclaimed into the pool.
var (
	ErrBadConfig      = errors.New("bad cache config")
	ErrSlotRange      = errors.New("batch slot out of range")
	ErrSlotInactive   = errors.New("batch slot not active")
	ErrBadLength      = errors.New("bad sequence length")
	ErrBadSize        = errors.New("bad byte count")
	ErrLayerRange     = errors.New("layer out of range")
	ErrContextTooLong = errors.New("sequence longer than max context")
	ErrNoFreeSlot     = errors.New("no free batch slot")
	ErrOutOfPages     = errors.New("out of physical pages")
	ErrBackend        = errors.New("backend failure")
	ErrClosed         = errors.New("cache closed")
)
