/*
 * uvm_vattn_os.h - the few operations uvm_vattn.c needs from its environment.
 *
 * uvm_vattn.c holds all of vattn's logic (handle table, argument checks, batching,
 * accounting) and reaches UVM and the kernel only through these calls. Two
 * environments implement them:
 *   - uvm_vattn_kernel.c + uvm_vattn_kernel.h: the real nvidia-uvm module;
 *   - tests/kernel/shim: a userspace model of UVM used to run uvm_vattn.c under
 *     AddressSanitizer/UndefinedBehaviorSanitizer.
 * The environment header (uvm_vattn_kernel.h or uvm_vattn_shim.h) must be included
 * first: it provides NV_STATUS and its codes, fixed-width types, bool, errno values,
 * memset/memcpy/memcmp, UINT32_MAX/UINT64_MAX, UVM_VATTN_READ_ONCE(p) and
 * UVM_VATTN_CMPXCHG(slot, new) (true when *slot was NULL and now holds new), and the types vattn_os_va_space_t, vattn_os_gpu_t, vattn_os_chunk_t
 * and vattn_os_mutex_t.
 *
 * SPDX-License-Identifier: MIT
 */

#ifndef _UVM_VATTN_OS_H
#define _UVM_VATTN_OS_H

#include "uvm_vattn_ioctl.h"

struct uvm_vattn_state;

/* Kernel memory for our tables; may sleep. Returns NULL on failure. */
void *vattn_os_alloc(size_t bytes);
void vattn_os_free(void *ptr);

/* User copies; return 0 on success, nonzero when the user range is not accessible.
 * Never called with any lock held (a copy may fault into UVM's own fault path). */
int vattn_os_copy_from_user(void *dst, uint64_t user_src, size_t bytes);
int vattn_os_copy_to_user(uint64_t user_dst, const void *src, size_t bytes);

uint64_t vattn_os_now_ns(void);

/* A new value from a global counter (atomic in the kernel): each file's handle tag. */
uint32_t vattn_os_next_tag(void);

/* UVM's global state (NV_OK unless the module is in a fatal error state). */
NV_STATUS vattn_os_global_status(void);

/* The pinned-memory limit per process in bytes, 0 for none (module parameter). */
uint64_t vattn_os_pinned_limit(void);

/*
 * The process a file's pages are charged to: the calling process when the file's
 * vattn state is created (its mm in the kernel). Every file of one process shares one
 * owner, so opening more UVM files does not multiply the limit. owner_get returns
 * NULL when out of memory; it may sleep and is called with the va_space lock held.
 */
vattn_os_owner_t *vattn_os_owner_get(void);
void vattn_os_owner_put(vattn_os_owner_t *owner);
/* Adds bytes to the owner's pinned total unless that would pass limit (0: none);
 * atomic across all files of the owner. */
bool vattn_os_owner_charge(vattn_os_owner_t *owner, uint64_t bytes, uint64_t limit);
void vattn_os_owner_uncharge(vattn_os_owner_t *owner, uint64_t bytes);

/* Our per-va_space state lives in the va_space; this returns its slot. */
struct uvm_vattn_state **vattn_os_state_slot(vattn_os_va_space_t *va_space);

void vattn_os_mutex_init(vattn_os_mutex_t *mutex);
void vattn_os_mutex_lock(vattn_os_mutex_t *mutex);
void vattn_os_mutex_unlock(vattn_os_mutex_t *mutex);

/* The va_space lock, in read mode: the mode UVM's own map/migrate ioctls use. */
void vattn_os_va_space_lock(vattn_os_va_space_t *va_space);
void vattn_os_va_space_unlock(vattn_os_va_space_t *va_space);
/* The same lock in write mode: taken by a MAP that claims a range (it must exclude
 * UVM's fault and migration paths, which hold it for read while creating va_blocks)
 * and by the release hook. */
void vattn_os_va_space_lock_write(vattn_os_va_space_t *va_space);
void vattn_os_va_space_unlock_write(vattn_os_va_space_t *va_space);

/*
 * Finds a GPU registered in this va_space, with a GPU VA space, by UUID. On NV_OK,
 * *page_sizes is the UVM_VATTN_PAGE_SIZE_* mask this GPU supports for our pages.
 * Otherwise NV_ERR_INVALID_DEVICE. Caller holds the va_space lock. The gpu pointer
 * is valid only under that lock unless retained.
 */
NV_STATUS vattn_os_gpu_find(vattn_os_va_space_t *va_space, const uint8_t uuid[16],
                            vattn_os_gpu_t **gpu, uint64_t *page_sizes);
/*
 * Lists the GPUs registered in this va_space: fills up to capacity entries (UUID and
 * page-size mask; pinnedBytes is left to the caller) and returns how many there are.
 * Caller holds the va_space lock.
 */
uint32_t vattn_os_gpu_list(vattn_os_va_space_t *va_space, UVM_VATTN_GPU_INFO *info, uint32_t capacity);
/* Keeps the GPU (and its memory manager) alive while we hold chunks from it. */
void vattn_os_gpu_retain(vattn_os_gpu_t *gpu);
void vattn_os_gpu_release(vattn_os_gpu_t *gpu);

/*
 * NV_OK when [address, address + size) lies inside one managed range of this
 * va_space (caller already checked alignment and overflow), NV_ERR_INVALID_ADDRESS
 * otherwise. On NV_OK, [*range_start, *range_end] (inclusive) is that range.
 * Caller holds the va_space lock.
 */
NV_STATUS vattn_os_range_check(vattn_os_va_space_t *va_space, uint64_t address, uint64_t size,
                               uint64_t *range_start, uint64_t *range_end);

/*
 * Before vattn takes a managed range over (see "Ownership" in uvm_vattn.c): NV_OK
 * when UVM has no va_block in the managed range containing address (the process
 * never touched it through UVM's own paths), NV_ERR_INVALID_STATE when it has one,
 * NV_ERR_INVALID_ADDRESS when there is no managed range there. Caller holds the
 * va_space lock for write, so no va_block can appear between this check and the
 * claim being recorded.
 */
NV_STATUS vattn_os_range_claim(vattn_os_va_space_t *va_space, uint64_t address);

/* One pinned, zeroed physical chunk of size bytes on gpu (the zeroing is complete on
 * return). Caller holds the va_space lock and our state lock. */
NV_STATUS vattn_os_chunk_alloc(vattn_os_gpu_t *gpu, uint64_t size, vattn_os_chunk_t **chunk);
/* Returns an unmapped chunk to UVM's allocator. */
void vattn_os_chunk_free(vattn_os_gpu_t *gpu, vattn_os_chunk_t *chunk);
/* Drops our record of a chunk whose forced unmap failed (a stale PTE may still
 * name it): its memory stays pinned and is never returned to the allocator, so it
 * can never be handed to anyone else. A deliberate leak, on a path that only a
 * failed GPU push (UVM's global error state) reaches. */
void vattn_os_chunk_abandon(vattn_os_gpu_t *gpu, vattn_os_chunk_t *chunk);

/* Maps chunk at address in gpu's page tables of this va_space (the chunk's GPU);
 * complete on return (PTE writes and TLB invalidate waited for). Fails with
 * NV_ERR_INVALID_DEVICE when the GPU has no GPU VA space here any more. On failure
 * nothing is mapped. Caller holds the va_space lock and our state lock, checked the
 * address, and owns the range (no va_block can exist there). */
NV_STATUS vattn_os_map(vattn_os_va_space_t *va_space, vattn_os_gpu_t *gpu, uint64_t address,
                       uint64_t size, vattn_os_chunk_t *chunk);
/* Clears that mapping and drops its page-table references; complete (TLB
 * invalidated, waited) on return. On failure without force the mapping is left as
 * it was (the caller may retry). With force (teardown: the page tables are about
 * to be freed) the references are dropped even when clearing failed; the failure
 * is still returned and the chunk must then be abandoned, never freed. */
NV_STATUS vattn_os_unmap(vattn_os_va_space_t *va_space, vattn_os_gpu_t *gpu, uint64_t address,
                         uint64_t size, vattn_os_chunk_t *chunk, bool force);

/* The tracepoints of the contract in uvm_vattn_ioctl.h. */
enum vattn_trace_kind
{
    VATTN_TRACE_ALLOC,
    VATTN_TRACE_MAP,
    VATTN_TRACE_UNMAP,
    VATTN_TRACE_FREE,
};
void vattn_os_trace(enum vattn_trace_kind kind, const uint8_t uuid[16], uint64_t page_size,
                    uint32_t count, uint32_t done, NV_STATUS status, uint64_t duration_ns);

/* Entry points of uvm_vattn.c. */

/* Runs one vattn command. va_space is NULL when the file is not an initialized
 * va_space file. Returns 0 or a negative errno (-EFAULT), as the ioctl returns. */
long uvm_vattn_dispatch(vattn_os_va_space_t *va_space, unsigned int cmd, uint64_t user_arg);

/* Unmaps and frees everything the va_space's vattn state holds and frees the state.
 * Called once, when the file is released, before UVM tears the va_space down. */
void uvm_vattn_va_space_destroy(vattn_os_va_space_t *va_space);

/* The fence (reached from NVIDIA's files through uvm_vattn_kernel.c): */

/* True when [start, end] (inclusive) overlaps an extent vattn owns: UVM must not
 * create a va_block there. Caller holds the va_space lock (either mode); takes no
 * lock. */
bool uvm_vattn_owned(vattn_os_va_space_t *va_space, uint64_t start, uint64_t end);

/* A managed range [start, end] (inclusive) is being destroyed: unmaps every page
 * of ours in it (handles stay valid, their pages unmapped) and ends ownership of
 * that extent. Caller holds the va_space lock for write. */
void uvm_vattn_range_destroyed(vattn_os_va_space_t *va_space, uint64_t start, uint64_t end);

/* gpu's GPU VA space is being removed from the va_space (its page tables are
 * about to be freed): unmaps every page of ours mapped on gpu (handles stay valid).
 * Caller holds the va_space lock for write. */
void uvm_vattn_gpu_va_space_removed(vattn_os_va_space_t *va_space, vattn_os_gpu_t *gpu);

#endif /* _UVM_VATTN_OS_H */
