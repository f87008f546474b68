// Command libvattn is vattn's C ABI: built with
//
//	go build -buildmode=c-shared -o build/libvattn.so ./cmd/libvattn
//
// it exports the kvcache allocator to C and, through ctypes, to Python
// (python/vattn). The generated build/libvattn.h declares every function,
// the error codes (enum vattn_status) and the structs.
//
// Handles: vattn_create returns an opaque int64 handle; Go pointers never
// cross the boundary. Every function returns a vattn_status and never
// aborts: panics are recovered at the boundary and reported as
// VATTN_ERR_PANIC.
//
// Errors: each handle keeps the message of its last failed call, read with
// vattn_last_error(handle, ...). Handle 0 holds the last error of a call
// that had no valid handle (vattn_create, or any call given a bad handle);
// it is process-wide. Messages are overwritten by the next failure on the
// same handle, so a thread that shares a handle with others should read the
// message right after the failing call or accept a neighbour's message.
//
// Integers: every index, length and count is an int64_t, so no caller's
// value is narrowed on the way in; vattn checks each against its range
// (a slot against max_batch, a layer against layers, a length against
// max_context) and answers an error naming it. Lengths are read once, into
// vattn's own copy, before they are checked: a caller that rewrites its
// array during the call cannot slip a value past the checks.
//
// Threads: calls on one handle are serialized by a per-handle mutex, so any
// call may be made from any thread at any time; a call simply waits for
// the one in progress. vattn_stats, vattn_free_kvblocks, vattn_wait_layer
// and vattn_last_error do not take that mutex and run concurrently with a
// step in progress. Calls on different handles run in parallel.
// vattn_destroy waits for the call in progress on its handle; calls made
// after it fail with VATTN_ERR_BAD_HANDLE.
package main

/*
#include <stdint.h>
#include <stddef.h>

typedef enum {
	VATTN_OK = 0,
	VATTN_ERR_BAD_HANDLE = 1,      // no cache has this handle (never made, or destroyed)
	VATTN_ERR_BAD_ARGUMENT = 2,    // a null pointer, negative count or unknown name
	VATTN_ERR_BAD_CONFIG = 3,      // the cache config is invalid for the backend
	VATTN_ERR_SLOT_RANGE = 4,      // a batch slot index out of range
	VATTN_ERR_SLOT_INACTIVE = 5,   // a batch slot that holds no request
	VATTN_ERR_BAD_LENGTH = 6,      // a negative or zero sequence length where one is needed
	VATTN_ERR_CONTEXT_TOO_LONG = 7,// a sequence longer than max_context
	VATTN_ERR_NO_FREE_SLOT = 8,    // every batch slot is in use
	VATTN_ERR_OUT_OF_PAGES = 9,    // no physical page left (reserve more, or free requests)
	VATTN_ERR_BACKEND = 10,        // the driver failed
	VATTN_ERR_UNAVAILABLE = 11,    // the backend cannot run here (no libcuda, no GPU)
	VATTN_ERR_PANIC = 12,          // a bug in vattn; the message says where
	VATTN_ERR_BUFFER_TOO_SMALL = 13 // vattn_last_error's buffer could not hold the message
} vattn_status;

// The sequence lengths a step reads; vattn never writes through them.
typedef const int64_t vattn_seq_len_t;

typedef struct {
	int32_t layers;        // transformer layers
	int32_t kv_heads;      // key/value heads on this GPU
	int32_t head_dim;      // elements per head
	int32_t dtype_bytes;   // 2 for fp16/bf16, 1 for fp8
	int32_t max_batch;     // request slots
	int32_t max_context;   // tokens a request may grow to
	int32_t megacache;     // non-zero: one K and one V range for all layers
	int32_t eager_reclaim; // non-zero: unmap freed slots as soon as the GPU is done
	int32_t grow_pool;     // non-zero: steps allocate pages beyond the reservation
	int32_t map_ahead;     // page indexes a growing slot gets beyond its need (small pages: fewer driver calls)
	int64_t page_size;     // physical page bytes: 65536, 131072, 262144 or 2097152
	int64_t sim_gpu_memory;// sim backend only: device bytes (0: 80 GiB)
	int32_t grow_margin;   // StepAsync also grows slots within this many tokens of their mapped end (0: off)
	int32_t grow_limit;    // at most this many page indexes grown ahead per background job (0: the default)
	int32_t grow_limit_pages; // and at most this many physical pages, rounded down to whole indexes, at least one (0: no page bound)
} vattn_config_t;

typedef struct {
	int64_t page_size;
	int32_t megacache;
	int32_t ranges;          // 2*layers, or 2 with megacache
	int64_t slot_bytes;      // stride between batch slots
	int64_t token_bytes;     // stride between tokens of one slot
	int64_t layer_bytes;     // K or V of one token in one layer
	int64_t head_bytes;      // one head's vector
	int32_t pages_per_index; // physical pages behind one page index of a slot
	int32_t indexes_per_slot;
	int32_t tokens_per_page; // 0 when one token spans several pages
} vattn_layout_t;

typedef struct {
	int64_t reserved_pages, free_pages, mapped_pages, idle_pages;
	int64_t active_slots, live_tokens;
	int64_t mapped_bytes, live_bytes;
	int64_t fg_map_calls, fg_map_pages;   double fg_map_seconds;
	int64_t fg_unmap_calls, fg_unmap_pages; double fg_unmap_seconds;
	int64_t bg_map_calls, bg_map_pages;   double bg_map_seconds;
	int64_t bg_unmap_calls, bg_unmap_pages; double bg_unmap_seconds;
	int64_t alloc_calls, alloc_pages;     double alloc_seconds;
	int64_t reclaimed_pages, fence_waits, background_errors, inconsistencies;
} vattn_stats_t;
*/
import "C"

import (
	"fmt"
	"slices"
	"time"
	"unsafe"

	"github.com/vattn/vattn/kvcache"
	"github.com/vattn/vattn/pagesize"
)

func main() {}

// vattn_create makes a cache. backend is "sim" or "cudavmm"; device is the
// GPU index (cudavmm binds that GPU's primary context, the one PyTorch
// uses). On success *out holds the handle.
//
//export vattn_create
func vattn_create(backendName *C.char, device C.int32_t, cfg *C.vattn_config_t, out *C.int64_t) C.vattn_status {
	return call(0, func() error {
		if backendName == nil || cfg == nil || out == nil {
			return errNull
		}
		h, err := create(C.GoString(backendName), int(device), goConfig(cfg))
		if err != nil {
			return err
		}
		*out = C.int64_t(h)
		return nil
	})
}

func goConfig(c *C.vattn_config_t) createConfig {
	return createConfig{
		layers: int(c.layers), kvHeads: int(c.kv_heads), headDim: int(c.head_dim),
		dtypeBytes: int(c.dtype_bytes), maxBatch: int(c.max_batch), maxContext: int(c.max_context),
		megacache: c.megacache != 0, eagerReclaim: c.eager_reclaim != 0, growPool: c.grow_pool != 0,
		pageSize: pagesize.Size(c.page_size), simGPUMemory: int64(c.sim_gpu_memory), mapAhead: int(c.map_ahead),
		growMargin: int(c.grow_margin), growLimit: int(c.grow_limit), growLimitPages: int(c.grow_limit_pages),
	}
}

// vattn_destroy closes the cache, unmaps and frees everything it holds and
// invalidates the handle.
//
//export vattn_destroy
func vattn_destroy(h C.int64_t) C.vattn_status {
	return call(0, func() error { return destroy(int64(h)) })
}

// vattn_reserve_physical allocates bytes of physical pages into the pool.
//
//export vattn_reserve_physical
func vattn_reserve_physical(h C.int64_t, bytes C.int64_t) C.vattn_status {
	return with(h, func(c *cacheHandle) error {
		if bytes < 0 {
			return errArg("negative byte count %d", int64(bytes))
		}
		return c.cache.ReservePhysical(uint64(bytes))
	})
}

// vattn_layout fills *out with the strides kernels need.
//
//export vattn_layout
func vattn_layout(h C.int64_t, out *C.vattn_layout_t) C.vattn_status {
	return with(h, func(c *cacheHandle) error {
		if out == nil {
			return errNull
		}
		l := c.cache.Layout()
		*out = C.vattn_layout_t{
			page_size: C.int64_t(l.PageSize.Bytes()), megacache: cbool(l.Megacache), ranges: C.int32_t(l.Ranges),
			slot_bytes: C.int64_t(l.SlotBytes), token_bytes: C.int64_t(l.TokenBytes),
			layer_bytes: C.int64_t(l.LayerBytes), head_bytes: C.int64_t(l.HeadBytes),
			pages_per_index: C.int32_t(l.PagesPerIndex), indexes_per_slot: C.int32_t(l.IndexesPerSlot),
			tokens_per_page: C.int32_t(l.TokensPerPage),
		}
		return nil
	})
}

// vattn_kv_pointers gives the device addresses of layer's K and V tensors
// (layer in [0, layers), else VATTN_ERR_BAD_ARGUMENT).
//
//export vattn_kv_pointers
func vattn_kv_pointers(h C.int64_t, layer C.int64_t, k, v *C.uint64_t) C.vattn_status {
	return with(h, func(c *cacheHandle) error {
		if k == nil || v == nil {
			return errNull
		}
		kp, err := c.cache.K(int(layer))
		if err != nil {
			return err
		}
		vp, err := c.cache.V(int(layer))
		if err != nil {
			return err
		}
		*k, *v = C.uint64_t(kp), C.uint64_t(vp)
		return nil
	})
}

// vattn_alloc_batch_idx takes a free slot for a request of seq_len tokens
// (its prompt) and stores its index in *out.
//
//export vattn_alloc_batch_idx
func vattn_alloc_batch_idx(h C.int64_t, seqLen C.int64_t, out *C.int32_t) C.vattn_status {
	return with(h, func(c *cacheHandle) error {
		if out == nil {
			return errNull
		}
		i, err := c.cache.AllocBatchIdx(int(seqLen))
		if err != nil {
			return err
		}
		*out = C.int32_t(i)
		return nil
	})
}

// vattn_free_batch_idx releases a slot once its request has finished.
//
//export vattn_free_batch_idx
func vattn_free_batch_idx(h C.int64_t, idx C.int64_t) C.vattn_status {
	return with(h, func(c *cacheHandle) error { return c.cache.FreeBatchIdx(int(idx)) })
}

// vattn_step maps what every slot needs for seq_lens[i] tokens (n entries,
// one per slot; missing ones are 0).
//
//export vattn_step
func vattn_step(h C.int64_t, seqLens *C.vattn_seq_len_t, n C.int64_t) C.vattn_status {
	return with(h, func(c *cacheHandle) error {
		lens, err := c.lens(seqLens, n)
		if err != nil {
			return err
		}
		return c.cache.Step(lens)
	})
}

// vattn_step_async is vattn_step, then maps the next decode step's pages in
// the background; the next call on the handle (or vattn_wait) waits for it.
//
//export vattn_step_async
func vattn_step_async(h C.int64_t, seqLens *C.vattn_seq_len_t, n C.int64_t) C.vattn_status {
	return with(h, func(c *cacheHandle) error {
		lens, err := c.lens(seqLens, n)
		if err != nil {
			return err
		}
		return c.cache.StepAsync(lens)
	})
}

// vattn_step_layered is vattn_step for a prefill run layer by layer: layer
// 0's pages are mapped when it returns, the other layers' in the
// background; call vattn_wait_layer(l) before layer l's attention.
//
//export vattn_step_layered
func vattn_step_layered(h C.int64_t, seqLens *C.vattn_seq_len_t, n C.int64_t) C.vattn_status {
	return with(h, func(c *cacheHandle) error {
		lens, err := c.lens(seqLens, n)
		if err != nil {
			return err
		}
		return c.cache.StepLayered(lens)
	})
}

// vattn_wait_layer blocks until layer's pages for the last
// vattn_step_layered are mapped. It does not take the handle's mutex, so
// it runs while the background mapping is in flight (another thread's
// call on the handle may be waiting for that mapping to end).
//
//export vattn_wait_layer
func vattn_wait_layer(h C.int64_t, layer C.int64_t) C.vattn_status {
	return withShared(h, func(c *cacheHandle) error {
		return c.cache.WaitLayer(int(layer))
	})
}

// vattn_wait blocks until background mapping has finished.
//
//export vattn_wait
func vattn_wait(h C.int64_t) C.vattn_status {
	return with(h, func(c *cacheHandle) error { return c.cache.Wait() })
}

// vattn_shrink gives the device back what the cache does not use now: idle
// slots' pages (after the GPU work that may read them), active slots' pages
// beyond their length plus one token, and the unmapped pool. *freed (may be
// NULL) gets the number of pages freed.
//
//export vattn_shrink
func vattn_shrink(h C.int64_t, freed *C.int64_t) C.vattn_status {
	return with(h, func(c *cacheHandle) error {
		n, err := c.cache.Shrink()
		if freed != nil {
			*freed = C.int64_t(n)
		}
		return err
	})
}

// vattn_free_kvblocks stores in *out how many page indexes could still be
// mapped without allocating (vAttention's num_free_kvblocks). It does not
// wait for a call in progress.
//
//export vattn_free_kvblocks
func vattn_free_kvblocks(h C.int64_t, out *C.int64_t) C.vattn_status {
	return withShared(h, func(c *cacheHandle) error {
		if out == nil {
			return errNull
		}
		*out = C.int64_t(c.cache.FreeIndexes())
		return nil
	})
}

// vattn_stats fills *out with a snapshot of the cache. It does not wait for
// a call in progress.
//
//export vattn_stats
func vattn_stats(h C.int64_t, out *C.vattn_stats_t) C.vattn_status {
	return withShared(h, func(c *cacheHandle) error {
		if out == nil {
			return errNull
		}
		s := c.cache.Stats()
		*out = C.vattn_stats_t{
			reserved_pages: i64(s.ReservedPages), free_pages: i64(s.FreePages),
			mapped_pages: i64(s.MappedPages), idle_pages: i64(s.IdlePages),
			active_slots: i64(s.ActiveSlots), live_tokens: C.int64_t(s.LiveTokens),
			mapped_bytes: C.int64_t(s.MappedBytes), live_bytes: C.int64_t(s.LiveBytes),
			fg_map_calls: C.int64_t(s.Foreground.Map.Calls), fg_map_pages: C.int64_t(s.Foreground.Map.Pages), fg_map_seconds: C.double(s.Foreground.Map.Seconds),
			fg_unmap_calls: C.int64_t(s.Foreground.Unmap.Calls), fg_unmap_pages: C.int64_t(s.Foreground.Unmap.Pages), fg_unmap_seconds: C.double(s.Foreground.Unmap.Seconds),
			bg_map_calls: C.int64_t(s.Background.Map.Calls), bg_map_pages: C.int64_t(s.Background.Map.Pages), bg_map_seconds: C.double(s.Background.Map.Seconds),
			bg_unmap_calls: C.int64_t(s.Background.Unmap.Calls), bg_unmap_pages: C.int64_t(s.Background.Unmap.Pages), bg_unmap_seconds: C.double(s.Background.Unmap.Seconds),
			alloc_calls: C.int64_t(s.Alloc.Calls), alloc_pages: C.int64_t(s.Alloc.Pages), alloc_seconds: C.double(s.Alloc.Seconds),
			reclaimed_pages: C.int64_t(s.ReclaimedPages), fence_waits: C.int64_t(s.FenceWaits),
			background_errors: C.int64_t(s.BackgroundErrors), inconsistencies: C.int64_t(s.Inconsistencies),
		}
		return nil
	})
}

// vattn_last_error copies the handle's last error message (handle 0: the
// process-wide one) into buf, NUL-terminated, and stores its length
// without the NUL in *len_out (may be null). An empty message means no
// error. A buffer too small gets a truncated message and
// VATTN_ERR_BUFFER_TOO_SMALL; this call never changes any stored message.
//
//export vattn_last_error
func vattn_last_error(h C.int64_t, buf *C.char, size C.size_t, lenOut *C.size_t) (st C.vattn_status) {
	defer func() {
		if recover() != nil {
			st = C.VATTN_ERR_PANIC
		}
	}()
	msg, ok := lastError(int64(h))
	if !ok {
		return C.VATTN_ERR_BAD_HANDLE
	}
	if lenOut != nil {
		*lenOut = C.size_t(len(msg))
	}
	if buf == nil || size == 0 {
		if len(msg) == 0 && buf == nil && lenOut != nil {
			return C.VATTN_OK
		}
		if buf == nil && lenOut != nil {
			return C.VATTN_ERR_BUFFER_TOO_SMALL
		}
		return C.VATTN_ERR_BAD_ARGUMENT
	}
	dst := unsafe.Slice((*byte)(unsafe.Pointer(buf)), int(size))
	n := copy(dst[:len(dst)-1], msg)
	dst[n] = 0
	if n < len(msg) {
		return C.VATTN_ERR_BUFFER_TOO_SMALL
	}
	return C.VATTN_OK
}

// lens copies n C lengths into the handle's reusable slice; kvcache checks
// the values. The count is checked first, so no more than max_batch
// entries are ever read.
func (c *cacheHandle) lens(p *C.vattn_seq_len_t, n C.int64_t) ([]int, error) {
	if n < 0 {
		return nil, errArg("negative length count %d", int64(n))
	}
	if slots := c.cache.Config().MaxBatch; n > C.int64_t(slots) {
		return nil, fmt.Errorf("%w: %d lengths for %d slots", kvcache.ErrSlotRange, int64(n), slots)
	}
	if n > 0 && p == nil {
		return nil, errNull
	}
	// An int is an int64 here (checked below at compile time), so the
	// lengths are copied as they are, with one memmove: this copy is on
	// every step's path.
	src := unsafe.Slice((*int)(unsafe.Pointer(p)), int(n))
	buf := slices.Grow(c.buf[:0], len(src))[:len(src)]
	copy(buf, src)
	c.buf = buf
	return buf, nil
}

// Every C int64_t is passed on as a Go int: this fails to compile where an
// int is narrower than 64 bits.
var _ [unsafe.Sizeof(int(0)) - 8]struct{}

func cbool(b bool) C.int32_t {
	if b {
		return 1
	}
	return 0
}

func i64(v int) C.int64_t { return C.int64_t(v) }

func call(h int64, fn func() error) C.vattn_status {
	return C.vattn_status(guard(h, fn))
}

func with(h C.int64_t, fn func(*cacheHandle) error) C.vattn_status {
	return C.vattn_status(guardHandle(int64(h), true, fn))
}

func withShared(h C.int64_t, fn func(*cacheHandle) error) C.vattn_status {
	return C.vattn_status(guardHandle(int64(h), false, fn))
}

// vattn_time_steps calls Step (async non-zero: StepAsync, then waiting for
// its background mapping outside the timed part) iters times from Go with
// the given lengths, and writes the p50 and p99 of one call in nanoseconds.
// It is the Go figure a binding's own call is measured against in the same
// process (bench/binding); the lengths are validated as vattn_step's are.
//
//export vattn_time_steps
func vattn_time_steps(h C.int64_t, seqLens *C.vattn_seq_len_t, n C.int64_t, iters C.int64_t, async C.int32_t, p50, p99 *C.int64_t) C.vattn_status {
	return with(h, func(c *cacheHandle) error {
		if iters <= 0 || iters > 1e7 || p50 == nil || p99 == nil {
			return errArg("time steps: iterations %d (want 1 to 10,000,000) and non-null outputs", int64(iters))
		}
		lens, err := c.lens(seqLens, n)
		if err != nil {
			return err
		}
		ds := make([]time.Duration, 0, int(iters))
		for range int(iters) {
			start := time.Now()
			if async != 0 {
				err = c.cache.StepAsync(lens)
			} else {
				err = c.cache.Step(lens)
			}
			ds = append(ds, time.Since(start))
			if err != nil {
				return err
			}
			if async != 0 {
				if err := c.cache.Wait(); err != nil {
					return err
				}
			}
		}
		slices.Sort(ds)
		*p50 = C.int64_t(ds[len(ds)/2])
		*p99 = C.int64_t(ds[min(len(ds)-1, len(ds)*99/100)])
		return nil
	})
}
