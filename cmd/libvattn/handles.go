package main

import (
	"errors"
	"fmt"
	"runtime/debug"
	"sync"

	"github.com/vattn/vattn/backend"
	"github.com/vattn/vattn/backend/cudavmm"
	"github.com/vattn/vattn/backend/sim"
	"github.com/vattn/vattn/backend/uvm"
	"github.com/vattn/vattn/cuda"
	"github.com/vattn/vattn/kvcache"
	"github.com/vattn/vattn/pagesize"
)

// status mirrors the C enum vattn_status (main.go); the C test checks
// that every value a call returns is the one the header names.
type status int

const (
	stOK status = iota
	stBadHandle
	stBadArgument
	stBadConfig
	stSlotRange
	stSlotInactive
	stBadLength
	stContextTooLong
	stNoFreeSlot
	stOutOfPages
	stBackend
	stUnavailable
	stPanic
	stBufferTooSmall
)

var (
	errBadHandle   = errors.New("bad handle")
	errBadArgument = errors.New("bad argument")
	errNull        = fmt.Errorf("%w: null pointer", errBadArgument)
)

func errArg(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errBadArgument}, args...)...)
}

// panicError is a recovered panic, reported as VATTN_ERR_PANIC.
type panicError struct {
	value any
	stack string
}

func (p *panicError) Error() string {
	return fmt.Sprintf("internal error (please report): panic: %v\n%s", p.value, p.stack)
}

// codeOf maps an error to its status. Order matters: kvcache wraps backend
// errors, and a backend that is unavailable is not a plain failure.
func codeOf(err error) status {
	var pe *panicError
	switch {
	case err == nil:
		return stOK
	case errors.As(err, &pe):
		return stPanic
	case errors.Is(err, errBadHandle), errors.Is(err, kvcache.ErrClosed):
		// ErrClosed: the handle was destroyed while this call waited.
		return stBadHandle
	case errors.Is(err, errBadArgument), errors.Is(err, kvcache.ErrLayerRange), errors.Is(err, kvcache.ErrBadSize):
		return stBadArgument
	case errors.Is(err, backend.ErrUnavailable), errors.Is(err, cuda.ErrNoDevice), errors.Is(err, cuda.ErrDeviceNotFound):
		return stUnavailable
	case errors.Is(err, kvcache.ErrBadConfig), errors.Is(err, pagesize.ErrUnsupported):
		return stBadConfig
	case errors.Is(err, kvcache.ErrSlotRange):
		return stSlotRange
	case errors.Is(err, kvcache.ErrSlotInactive):
		return stSlotInactive
	case errors.Is(err, kvcache.ErrBadLength):
		return stBadLength
	case errors.Is(err, kvcache.ErrContextTooLong):
		return stContextTooLong
	case errors.Is(err, kvcache.ErrNoFreeSlot):
		return stNoFreeSlot
	case errors.Is(err, kvcache.ErrOutOfPages):
		return stOutOfPages
	default:
		return stBackend
	}
}

// cacheHandle is one cache behind a C handle. mu serializes the calls that
// change the cache; Stats-like calls go around it (kvcache makes them safe).
type cacheHandle struct {
	mu    sync.Mutex
	cache *kvcache.Cache
	be    backend.Backend
	buf   []int // step lengths, reused under mu

	errMu   sync.Mutex
	lastErr string
}

var (
	tableMu sync.RWMutex
	table   = map[int64]*cacheHandle{}
	nextID  int64

	globalErrMu sync.Mutex
	globalErr   string
)

type createConfig struct {
	layers, kvHeads, headDim, dtypeBytes, maxBatch, maxContext int
	megacache, eagerReclaim, growPool                          bool
	mapAhead, growMargin, growLimit, growLimitPages            int
	pageSize                                                   pagesize.Size
	simGPUMemory                                               int64
}

func create(name string, device int, cc createConfig) (int64, error) {
	if device < 0 {
		return 0, errArg("negative device %d", device)
	}
	if cc.simGPUMemory < 0 {
		return 0, errArg("negative sim gpu memory %d", cc.simGPUMemory)
	}
	var be backend.Backend
	var err error
	if name == "" || name == "auto" {
		// Below 2 MiB only nvidia-uvm maps pages; at 2 MiB the CUDA VMM API.
		name = "cudavmm"
		if cc.pageSize != 0 && cc.pageSize < pagesize.Size2M {
			name = "uvm"
		}
	}
	switch name {
	case "sim":
		if cc.pageSize == 0 {
			return 0, fmt.Errorf("%w: page size must be set", kvcache.ErrBadConfig)
		}
		be, err = sim.New(sim.Config{PageSize: cc.pageSize, GPUMemory: uint64(cc.simGPUMemory)})
	case "cudavmm":
		be, err = cudavmm.New(cudavmm.Options{Device: fmt.Sprint(device), PageSize: cc.pageSize})
	case "uvm":
		be, err = uvm.Open(uvm.Options{Device: fmt.Sprint(device), PageSize: cc.pageSize})
	default:
		return 0, errArg("unknown backend %q (want auto, sim, cudavmm or uvm)", name)
	}
	if err != nil {
		if codeOf(err) == stUnavailable {
			return 0, fmt.Errorf("create: %w; without a GPU, use the simulator: backend \"sim\" "+
				"(Python: VATTN_BACKEND=sim or backend=\"sim\")", err)
		}
		return 0, fmt.Errorf("create: %w", err)
	}
	c, err := kvcache.New(kvcache.Config{
		Layers: cc.layers, KVHeads: cc.kvHeads, HeadDim: cc.headDim, DTypeBytes: cc.dtypeBytes,
		MaxBatch: cc.maxBatch, MaxContext: cc.maxContext, Megacache: cc.megacache,
		EagerReclaim: cc.eagerReclaim, GrowPool: cc.growPool, MapAhead: cc.mapAhead,
		GrowMargin: cc.growMargin, GrowLimit: cc.growLimit, GrowLimitPages: cc.growLimitPages,
	}, be)
	if err != nil {
		return 0, errors.Join(fmt.Errorf("create: %w", err), be.Close())
	}
	tableMu.Lock()
	defer tableMu.Unlock()
	nextID++
	table[nextID] = &cacheHandle{cache: c, be: be}
	return nextID, nil
}

func destroy(h int64) error {
	tableMu.Lock()
	c, ok := table[h]
	delete(table, h)
	tableMu.Unlock()
	if !ok {
		return fmt.Errorf("destroy: %w %d", errBadHandle, h)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return errors.Join(c.cache.Close(), c.be.Close())
}

func lookup(h int64) (*cacheHandle, bool) {
	tableMu.RLock()
	defer tableMu.RUnlock()
	c, ok := table[h]
	return c, ok
}

// lastError returns the message stored for h (0: the global one).
func lastError(h int64) (string, bool) {
	if h == 0 {
		globalErrMu.Lock()
		defer globalErrMu.Unlock()
		return globalErr, true
	}
	c, ok := lookup(h)
	if !ok {
		return "", false
	}
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.lastErr, true
}

func setError(c *cacheHandle, err error) {
	if c == nil {
		globalErrMu.Lock()
		globalErr = err.Error()
		globalErrMu.Unlock()
		return
	}
	c.errMu.Lock()
	c.lastErr = err.Error()
	c.errMu.Unlock()
}

// run calls fn, turning a panic into a panicError.
func run(fn func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &panicError{value: v, stack: string(debug.Stack())}
		}
	}()
	return fn()
}

// guard runs a call that has no handle yet and records its error globally.
func guard(_ int64, fn func() error) status {
	err := run(fn)
	if err != nil {
		setError(nil, err)
	}
	return codeOf(err)
}

// guardHandle runs fn on h's cache, under its mutex when exclusive.
func guardHandle(h int64, exclusive bool, fn func(*cacheHandle) error) status {
	c, ok := lookup(h)
	if !ok {
		setError(nil, fmt.Errorf("%w %d", errBadHandle, h))
		return stBadHandle
	}
	err := run(func() error {
		if exclusive {
			c.mu.Lock()
			defer c.mu.Unlock()
		}
		return fn(c)
	})
	if err != nil {
		setError(c, err)
	}
	return codeOf(err)
}
