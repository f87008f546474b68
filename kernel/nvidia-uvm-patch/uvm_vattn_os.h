/*
 * uvm_vattn_os.h - the operations uvm_vattn.c needs from its environment.
 *
 * uvm_vattn.c holds vattn's logic (argument checks, the batch's phases, the undo
 * of a failed batch) and reaches UVM and the kernel only through these calls.
 * Two environments implement them:
 *   - uvm_vattn_kernel.c + uvm_vattn_kernel.h: the real nvidia-uvm module, on
 *     UVM's external ranges, ext_gpu_map trees, page tree and pushes;
 *   - tests/kernel/shim: a userspace model of those (with fault injection and
 *     lock-order assertions) used to run uvm_vattn.c under ASan/UBSan.
 * The environment header (uvm_vattn_kernel.h or uvm_vattn_shim.h) must be included
 * first: it provides NV_STATUS and its codes, fixed-width types, bool, errno values,
 * memset/memcpy, UINT32_MAX/UINT64_MAX, the sparse annotations __must_hold,
 * __acquires and __releases (empty outside sparse), and the types
 * vattn_os_va_space_t, vattn_os_gpu_t, vattn_os_range_t, vattn_os_mem_t,
 * vattn_os_map_t and vattn_os_writer_t.
 *
 * Locks, as sparse sees them (uvm_vattn.c's lock order): the va_space lock is
 * the context "va_space"; vattn_os_lock takes it the way stock
 * UVM_MAP_EXTERNAL_ALLOCATION does (read mode after the serialize-writers mutex,
 * so RM may be called), for both commands. Every call below marked "locked"
 * must be made between a lock and its unlock; none is made with user memory
 * access pending. Range-tree mutexes are taken and dropped inside single calls,
 * never held across two.
 *
 * SPDX-License-Identifier: MIT
 */

#ifndef _UVM_VATTN_OS_H
#define _UVM_VATTN_OS_H

#include "uvm_vattn_ioctl.h"

/* Kernel memory for our arrays; may sleep. Returns NULL on failure. */
void *vattn_os_alloc(size_t bytes);
void vattn_os_free(void *ptr);

/* User copies; return 0 on success, nonzero when the user range is not accessible.
 * Never called with any lock held (a copy may fault into UVM's own fault path,
 * which takes the va_space lock). */
int vattn_os_copy_from_user(void *dst, uint64_t user_src, size_t bytes);
int vattn_os_copy_to_user(uint64_t user_dst, const void *src, size_t bytes);

uint64_t vattn_os_now_ns(void);

/* UVM's global state (NV_OK unless the module is in a fatal error state). */
NV_STATUS vattn_os_global_status(void);

void vattn_os_lock(vattn_os_va_space_t *va_space) __acquires(va_space);
void vattn_os_unlock(vattn_os_va_space_t *va_space) __releases(va_space);

/* Locked. A GPU registered in this va_space with a GPU VA space, by UUID, that
 * the batched path can write PTEs for; NV_ERR_INVALID_DEVICE when there is none,
 * NV_ERR_NOT_SUPPORTED when its page tables are written by the CPU. */
NV_STATUS vattn_os_gpu_find(vattn_os_va_space_t *va_space, const uint8_t uuid[16],
                            vattn_os_gpu_t **gpu) __must_hold(va_space);

/* Locked. The external range holding all of [base, base + length) (checked for
 * alignment and overflow), else NV_ERR_INVALID_ADDRESS. */
NV_STATUS vattn_os_range_find(vattn_os_va_space_t *va_space, uint64_t base, uint64_t length,
                              vattn_os_range_t **range) __must_hold(va_space);

/* Locked. True when gpu maps anything in [base, base + length) of range. */
bool vattn_os_range_mapped(vattn_os_va_space_t *va_space, vattn_os_range_t *range, vattn_os_gpu_t *gpu,
                           uint64_t base, uint64_t length) __must_hold(va_space);

/* Locked. UVM's dup of the caller's RM memory hMemory (client hClient) on
 * gpu: checks the handle is the caller's video memory that gpu can map (RM's own
 * checks, as for the stock command), and holds it until vattn_os_mem_put. Its
 * size in bytes is *size. */
NV_STATUS vattn_os_mem_get(vattn_os_va_space_t *va_space, vattn_os_gpu_t *gpu, int32_t rm_ctrl_fd,
                           uint32_t h_client, uint32_t h_memory, vattn_os_mem_t **mem,
                           uint64_t *size) __must_hold(va_space);
void vattn_os_mem_put(vattn_os_va_space_t *va_space, vattn_os_mem_t *mem) __must_hold(va_space);

/*
 * Locked. Everything one mapping needs before its PTEs are written: its record
 * (a reference on mem, which the record names [offset, offset + length) of) and
 * the page tables under [base, base + length) on gpu. Writes nothing a GPU can
 * see. Undone by vattn_os_map_discard (nothing written yet, or cleared), or made
 * part of the range by vattn_os_map_commit (its PTEs written and invalidated).
 */
NV_STATUS vattn_os_map_prepare(vattn_os_va_space_t *va_space, vattn_os_range_t *range, vattn_os_gpu_t *gpu,
                               vattn_os_mem_t *mem, uint64_t base, uint64_t length, uint64_t offset,
                               vattn_os_map_t **map) __must_hold(va_space);
void vattn_os_map_discard(vattn_os_va_space_t *va_space, vattn_os_map_t *map) __must_hold(va_space);
/* Inserts a prepared, written mapping into its range's tree for its GPU. MAP_BATCH
 * checked under the same lock that nothing overlaps, and the lock excludes every
 * stock call that adds mappings but one: UVM_MAP_EXTERNAL_SPARSE takes the
 * va_space lock for read only. If the calling process raced one over the same
 * addresses, NV_ERR_UVM_ADDRESS_IN_USE, and nothing was inserted. */
NV_STATUS vattn_os_map_commit(vattn_os_va_space_t *va_space, vattn_os_map_t *map) __must_hold(va_space);
/* Keeps a mapping whose PTEs may still be valid after a failed push (UVM's
 * global fatal error): its page tables and memory reference are never freed. */
void vattn_os_map_abandon(vattn_os_va_space_t *va_space, vattn_os_map_t *map) __must_hold(va_space);

/*
 * Locked. Splits gpu's mappings in range that cross base or base + length so that
 * every mapping is either inside [base, base + length) or outside it (no
 * translation changes; a split is never undone). unmap_count says how many are
 * inside. unmap_detach takes up to cap of those out of the range's tree (under
 * its mutex, so no other call can free them any more) into maps and returns how
 * many it took; a mapping crossing the ends (mapped since the split by a sparse
 * map of the process's own) stays. A detached mapping's PTEs are then cleared by
 * a writer and it goes with unmap_destroy (page tables and memory reference
 * dropped; RM may be called), or, if they could not be cleared (a dead channel),
 * with unmap_abandon: kept forever, like a map's abandoned record.
 */
NV_STATUS vattn_os_unmap_split(vattn_os_va_space_t *va_space, vattn_os_range_t *range, vattn_os_gpu_t *gpu,
                               uint64_t base, uint64_t length) __must_hold(va_space);
uint32_t vattn_os_unmap_count(vattn_os_va_space_t *va_space, vattn_os_range_t *range, vattn_os_gpu_t *gpu,
                              uint64_t base, uint64_t length) __must_hold(va_space);
uint32_t vattn_os_unmap_detach(vattn_os_va_space_t *va_space, vattn_os_range_t *range, vattn_os_gpu_t *gpu,
                               uint64_t base, uint64_t length, vattn_os_map_t **maps, uint32_t cap)
    __must_hold(va_space);
void vattn_os_unmap_destroy(vattn_os_va_space_t *va_space, vattn_os_map_t *map) __must_hold(va_space);
void vattn_os_unmap_abandon(vattn_os_va_space_t *va_space, vattn_os_map_t *map) __must_hold(va_space);

/*
 * A writer: one GPU's PTE writes for one batch. writer_begin allocates (no push;
 * a mapping writer also its PTE buffer, of a fixed size whatever the
 * batch's size). writer_map reads a prepared mapping's PTE values from RM into
 * the buffer (ending the writer's push first: RM is never called with a push
 * open) and writes them once the buffer is full (a mapping larger than the buffer
 * is read and written a buffer at a time); writer_clear adds a mapping's PTE
 * clears to the current push. Pushes end and the next begins when one is full.
 * writer_finish writes what is still buffered, adds the batch's single TLB
 * invalidate to the last push (membar for a permission upgrade when mapping, for
 * a downgrade when clearing), ends it and waits for all of the writer's pushes.
 * A push fails only when UVM's channels are in a fatal error state; a PTE query
 * when RM refuses it. Until writer_finish returned NV_OK, any PTE of a mapping
 * given to writer_map may or may not be written. After writer_finish returned
 * NV_OK the writer takes the next round of mappings (with its own invalidate).
 * writer_end frees the writer (waiting for anything still in flight).
 */
NV_STATUS vattn_os_writer_begin(vattn_os_va_space_t *va_space, vattn_os_gpu_t *gpu, bool clearing,
                                vattn_os_writer_t **writer) __must_hold(va_space);
NV_STATUS vattn_os_writer_map(vattn_os_writer_t *writer, vattn_os_map_t *map);
NV_STATUS vattn_os_writer_clear(vattn_os_writer_t *writer, vattn_os_map_t *map);
NV_STATUS vattn_os_writer_finish(vattn_os_writer_t *writer);
void vattn_os_writer_end(vattn_os_writer_t *writer);

/* The tracepoints of the contract in uvm_vattn_ioctl.h. */
enum vattn_trace_kind
{
    VATTN_TRACE_MAP,
    VATTN_TRACE_UNMAP,
};
void vattn_os_trace(enum vattn_trace_kind kind, const uint8_t uuid[16], uint32_t count, uint32_t done,
                    NV_STATUS status, uint64_t duration_ns);

/* The entry point of uvm_vattn.c: runs one vattn command. va_space is NULL when
 * the file is not an initialized va_space file. Returns 0 or a negative errno
 * (-EFAULT, -EINVAL for an unknown command), as the ioctl returns. */
long uvm_vattn_dispatch(vattn_os_va_space_t *va_space, unsigned int cmd, uint64_t user_arg);

#endif /* _UVM_VATTN_OS_H */
