/*
 * uvm_vattn_kernel.c - the kernel side of uvm_vattn_os.h: the only file of vattn that
 * touches UVM internals. Kept small so it can be reviewed line by line; all logic and
 * every argument check live in uvm_vattn.c.
 *
 * SPDX-License-Identifier: MIT
 *
 * Status of this glue (see docs/driver-abi.md):
 *   - GPU lookup, managed-range check, locking, chunk allocation with a waited CE
 *     memset (zeroing), chunk free, GPU retain/release, tracepoints: implemented.
 *   - Page-table writes (vattn_os_map/vattn_os_unmap): not implemented in this build;
 *     they return NV_ERR_NOT_SUPPORTED, so MAP fails cleanly and nothing is mapped.
 *     The writes themselves would use UVM's page-tree API; what must come first is the
 *     fence that keeps UVM's fault/migration paths out of blocks we map (else a 2 MiB
 *     PTE installed by UVM over our 64 KiB table corrupts the page tree). See
 *     docs/driver-abi.md; it is the next step, not a hidden gap.
 *
 * Isolation from UVM's own paths: our chunks come from uvm_pmm_gpu_alloc_user() and
 * stay TEMP_PINNED for their whole life (they are never unpinned into a va_block),
 * so the eviction path never selects them and no va_block's gpu_state points at
 * them; UVM's migration, fault and teardown paths therefore never see or free them.
 * They are freed only by vattn (FREE, RELEASE_RANGE, or the release hook that runs
 * before uvm_va_space_destroy() tears anything down).
 */

#include "uvm_common.h"
#include "uvm_linux.h"
#include "uvm_global.h"
#include "uvm_gpu.h"
#include "uvm_hal.h"
#include "uvm_kvmalloc.h"
#include "uvm_pmm_gpu.h"
#include "uvm_push.h"
#include "uvm_tracker.h"
#include "uvm_va_range.h"
#include "uvm_va_space.h"

#include "uvm_vattn_kernel.h"
#include "uvm_vattn_ioctl.h"
#include "uvm_vattn_os.h"
#include "uvm_vattn_hooks.h"

#define CREATE_TRACE_POINTS
#include "uvm_vattn_trace.h"

#if !defined(UVM_VATTN_BRANCH)
#error "UVM_VATTN_BRANCH must be set by the Kbuild hunk of the patch series"
#endif

static unsigned long uvm_vattn_max_pinned_mb;
module_param(uvm_vattn_max_pinned_mb, ulong, 0644);
MODULE_PARM_DESC(uvm_vattn_max_pinned_mb,
                 "vattn: most MiB of GPU memory one process may hold through the vattn ioctls (0: no limit)");

/* The header restates NVIDIA's status numbers for user space; keep them honest. */
static_assert(UVM_VATTN_NV_OK == NV_OK, "NV_OK");
static_assert(UVM_VATTN_NV_ERR_ILLEGAL_ACTION == NV_ERR_ILLEGAL_ACTION, "NV_ERR_ILLEGAL_ACTION");
static_assert(UVM_VATTN_NV_ERR_IN_USE == NV_ERR_IN_USE, "NV_ERR_IN_USE");
static_assert(UVM_VATTN_NV_ERR_INSUFFICIENT_RESOURCES == NV_ERR_INSUFFICIENT_RESOURCES, "NV_ERR_INSUFFICIENT_RESOURCES");
static_assert(UVM_VATTN_NV_ERR_INVALID_ADDRESS == NV_ERR_INVALID_ADDRESS, "NV_ERR_INVALID_ADDRESS");
static_assert(UVM_VATTN_NV_ERR_INVALID_ARGUMENT == NV_ERR_INVALID_ARGUMENT, "NV_ERR_INVALID_ARGUMENT");
static_assert(UVM_VATTN_NV_ERR_INVALID_DEVICE == NV_ERR_INVALID_DEVICE, "NV_ERR_INVALID_DEVICE");
static_assert(UVM_VATTN_NV_ERR_INVALID_LIMIT == NV_ERR_INVALID_LIMIT, "NV_ERR_INVALID_LIMIT");
static_assert(UVM_VATTN_NV_ERR_INVALID_OFFSET == NV_ERR_INVALID_OFFSET, "NV_ERR_INVALID_OFFSET");
static_assert(UVM_VATTN_NV_ERR_NO_MEMORY == NV_ERR_NO_MEMORY, "NV_ERR_NO_MEMORY");
static_assert(UVM_VATTN_NV_ERR_NOT_SUPPORTED == NV_ERR_NOT_SUPPORTED, "NV_ERR_NOT_SUPPORTED");
static_assert(UVM_VATTN_NV_ERR_OBJECT_NOT_FOUND == NV_ERR_OBJECT_NOT_FOUND, "NV_ERR_OBJECT_NOT_FOUND");
static_assert(UVM_VATTN_NV_ERR_UVM_ADDRESS_IN_USE == NV_ERR_UVM_ADDRESS_IN_USE, "NV_ERR_UVM_ADDRESS_IN_USE");
static_assert(sizeof(NvProcessorUuid) == 16, "NvProcessorUuid");

static const NvProcessorUuid *vattn_gpu_uuid(uvm_gpu_t *gpu)
{
#if UVM_VATTN_BRANCH >= 550
    return &gpu->uuid;
#else
    return &gpu->parent->uuid;
#endif
}

/*
 * One vattn page: a single UVM chunk of the page's size when UVM's allocator has that
 * size, else a run of 64K chunks (128K = 2, 256K = 4). vattn never widens UVM's
 * chunk-size mask, which would change managed memory for every process. The GPU maps
 * 64K big pages either way, so a run needs no physical contiguity.
 */
#define VATTN_KCHUNK_MAX 4

struct vattn_kchunk
{
    uint32_t n;
    uint32_t pad;
    uvm_gpu_chunk_t *c[VATTN_KCHUNK_MAX];
};

static uvm_chunk_sizes_mask_t vattn_user_chunk_sizes(uvm_gpu_t *gpu)
{
    return gpu->pmm.chunk_sizes[UVM_PMM_GPU_MEMORY_TYPE_USER];
}

/* Sizes ALLOC can serve on this GPU (see struct vattn_kchunk). */
static uint64_t vattn_gpu_page_sizes(uvm_gpu_t *gpu)
{
    uint64_t sizes = (uint64_t)vattn_user_chunk_sizes(gpu) & UVM_VATTN_PAGE_SIZES_ALL;

    if (sizes & UVM_VATTN_PAGE_SIZE_64K)
        sizes |= UVM_VATTN_PAGE_SIZE_128K | UVM_VATTN_PAGE_SIZE_256K;
    return sizes;
}

void *vattn_os_alloc(size_t bytes)
{
    return uvm_kvmalloc(bytes);
}

void vattn_os_free(void *ptr)
{
    if (ptr)
        uvm_kvfree(ptr);
}

int vattn_os_copy_from_user(void *dst, uint64_t user_src, size_t bytes)
{
    return copy_from_user(dst, (const void __user *)(uintptr_t)user_src, bytes) != 0;
}

int vattn_os_copy_to_user(uint64_t user_dst, const void *src, size_t bytes)
{
    return copy_to_user((void __user *)(uintptr_t)user_dst, src, bytes) != 0;
}

uint64_t vattn_os_now_ns(void)
{
    return ktime_get_ns();
}

uint32_t vattn_os_next_tag(void)
{
    static atomic_t tag = ATOMIC_INIT(0);

    return (uint32_t)atomic_inc_return(&tag);
}

NV_STATUS vattn_os_global_status(void)
{
    return uvm_global_get_status();
}

uint64_t vattn_os_pinned_limit(void)
{
    unsigned long mb = READ_ONCE(uvm_vattn_max_pinned_mb);

    if ((uint64_t)mb > (UINT64_MAX >> 20))
        return UINT64_MAX;
    return (uint64_t)mb << 20;
}

/*
 * Per-process charging. A process is its mm, grabbed (mmgrab: the mm_struct stays
 * allocated, so its address is never reused as a key) while any of its files holds
 * a vattn state. A short global list under a spinlock: there is one entry per process
 * using vattn, and it is only walked when a file first uses vattn.
 */
struct vattn_owner
{
    struct list_head node;
    struct mm_struct *mm;
    uint64_t charged;
    unsigned int refs;
};

static LIST_HEAD(vattn_owners);
static DEFINE_SPINLOCK(vattn_owners_lock);

/* Plain mmgrab/mmdrop: UVM's wrappers are no-ops in builds without MMU notifiers. */
static void vattn_mmgrab(struct mm_struct *mm)
{
#if defined(NV_MMGRAB_PRESENT)
    mmgrab(mm);
#else
    atomic_inc(&mm->mm_count);
#endif
}

vattn_os_owner_t *vattn_os_owner_get(void)
{
    struct mm_struct *mm = current->mm;
    struct vattn_owner *o, *fresh;

    if (!mm)
        return NULL;
    fresh = uvm_kvmalloc(sizeof(*fresh));
    if (!fresh)
        return NULL;

    spin_lock(&vattn_owners_lock);
    list_for_each_entry(o, &vattn_owners, node) {
        if (o->mm == mm) {
            o->refs++;
            spin_unlock(&vattn_owners_lock);
            uvm_kvfree(fresh);
            return o;
        }
    }
    fresh->mm = mm;
    fresh->charged = 0;
    fresh->refs = 1;
    vattn_mmgrab(mm);
    list_add(&fresh->node, &vattn_owners);
    spin_unlock(&vattn_owners_lock);
    return fresh;
}

void vattn_os_owner_put(vattn_os_owner_t *o)
{
    bool last;

    spin_lock(&vattn_owners_lock);
    last = --o->refs == 0;
    if (last)
        list_del(&o->node);
    spin_unlock(&vattn_owners_lock);
    if (last) {
        mmdrop(o->mm);
        uvm_kvfree(o);
    }
}

bool vattn_os_owner_charge(vattn_os_owner_t *o, uint64_t bytes, uint64_t limit)
{
    bool ok;

    spin_lock(&vattn_owners_lock);
    ok = !limit || (o->charged <= limit && bytes <= limit - o->charged);
    if (ok)
        o->charged += bytes;
    spin_unlock(&vattn_owners_lock);
    return ok;
}

void vattn_os_owner_uncharge(vattn_os_owner_t *o, uint64_t bytes)
{
    spin_lock(&vattn_owners_lock);
    o->charged -= bytes;
    spin_unlock(&vattn_owners_lock);
}

struct uvm_vattn_state **vattn_os_state_slot(vattn_os_va_space_t *va_space)
{
    return &va_space->vattn;
}

void vattn_os_mutex_init(vattn_os_mutex_t *m)
{
    mutex_init(m);
}

void vattn_os_mutex_lock(vattn_os_mutex_t *m)
{
    mutex_lock(m);
}

void vattn_os_mutex_unlock(vattn_os_mutex_t *m)
{
    mutex_unlock(m);
}

void vattn_os_va_space_lock(vattn_os_va_space_t *va_space)
{
    uvm_va_space_down_read(va_space);
}

void vattn_os_va_space_unlock(vattn_os_va_space_t *va_space)
{
    uvm_va_space_up_read(va_space);
}

NV_STATUS vattn_os_gpu_find(vattn_os_va_space_t *va_space, const uint8_t uuid[16],
                            vattn_os_gpu_t **gpu_out, uint64_t *page_sizes)
{
    uvm_gpu_t *gpu;

    uvm_assert_rwsem_locked(&va_space->lock);
    gpu = uvm_va_space_get_gpu_by_uuid_with_gpu_va_space(va_space, (const NvProcessorUuid *)uuid);
    if (!gpu)
        return NV_ERR_INVALID_DEVICE;
    *gpu_out = gpu;
    *page_sizes = vattn_gpu_page_sizes(gpu);
    return NV_OK;
}

uint32_t vattn_os_gpu_list(vattn_os_va_space_t *va_space, UVM_VATTN_GPU_INFO *info, uint32_t capacity)
{
    uvm_gpu_t *gpu;
    uint32_t n = 0;

    uvm_assert_rwsem_locked(&va_space->lock);
    for_each_va_space_gpu(gpu, va_space) {
        if (!uvm_gpu_va_space_get(va_space, gpu))
            continue;
        if (n < capacity) {
            memcpy(info[n].gpuUuid, vattn_gpu_uuid(gpu)->uuid, 16);
            info[n].pageSizes = vattn_gpu_page_sizes(gpu);
        }
        n++;
    }
    return n;
}

void vattn_os_gpu_retain(vattn_os_gpu_t *gpu)
{
    /* The va_space's registration holds a reference while we hold its lock. */
    uvm_gpu_retain(gpu);
}

void vattn_os_gpu_release(vattn_os_gpu_t *gpu)
{
    uvm_gpu_release(gpu);
}

NV_STATUS vattn_os_range_check(vattn_os_va_space_t *va_space, uint64_t address, uint64_t size)
{
    uvm_va_range_t *va_range;
    uint64_t last = address + size - 1;

    uvm_assert_rwsem_locked(&va_space->lock);
    va_range = uvm_va_space_iter_first(va_space, address, last);
    if (!va_range || va_range->type != UVM_VA_RANGE_TYPE_MANAGED ||
        address < va_range->node.start || last > va_range->node.end)
        return NV_ERR_INVALID_ADDRESS;
    return NV_OK;
}

NV_STATUS vattn_os_chunk_alloc(vattn_os_gpu_t *gpu, uint64_t size, vattn_os_chunk_t **out)
{
    uvm_tracker_t tracker = UVM_TRACKER_INIT();
    struct vattn_kchunk *k;
    uvm_chunk_size_t piece;
    uvm_push_t push;
    NV_STATUS status, wait_status;
    uint32_t i;

    /* uvm_vattn.c passed a size from vattn_gpu_page_sizes(); recheck, it is cheap. */
    if (!(vattn_gpu_page_sizes(gpu) & size))
        return NV_ERR_NOT_SUPPORTED;
    piece = (vattn_user_chunk_sizes(gpu) & size) ? (uvm_chunk_size_t)size : UVM_CHUNK_SIZE_64K;

    k = uvm_kvmalloc(sizeof(*k));
    if (!k)
        return NV_ERR_NO_MEMORY;
    memset(k, 0, sizeof(*k));
    k->n = (uint32_t)(size / piece);

    /* All pieces or none (the allocator clears the array on failure). */
    status = uvm_pmm_gpu_alloc_user(&gpu->pmm, k->n, piece, UVM_PMM_ALLOC_FLAGS_EVICT, k->c, &tracker);
    if (status != NV_OK) {
        uvm_tracker_deinit(&tracker);
        uvm_kvfree(k);
        return status;
    }

    /* Zero before anyone can map it: the previous user may have been another process.
     * One push after the allocator's pending work, waited, as UVM zeroes new chunks. */
    status = uvm_push_begin_acquire(gpu->channel_manager, UVM_CHANNEL_TYPE_GPU_INTERNAL, &tracker, &push,
                                    "vattn: zero %u x %u KiB", k->n, (unsigned)(piece >> 10));
    if (status == NV_OK) {
        for (i = 0; i < k->n; i++) {
            uvm_gpu_address_t dst = uvm_gpu_address_copy(gpu, uvm_gpu_phys_address(UVM_APERTURE_VID,
                                                                                  k->c[i]->address));

            gpu->parent->ce_hal->memset_8(&push, dst, 0, piece);
        }
        status = uvm_push_end_and_wait(&push);
    }
    wait_status = uvm_tracker_wait_deinit(&tracker);
    if (status == NV_OK)
        status = wait_status;
    if (status != NV_OK) {
        for (i = 0; i < k->n; i++)
            uvm_pmm_gpu_free(&gpu->pmm, k->c[i], NULL);
        uvm_kvfree(k);
        return status;
    }
    *out = k;
    return NV_OK;
}

void vattn_os_chunk_free(vattn_os_gpu_t *gpu, vattn_os_chunk_t *k)
{
    uint32_t i;

    /* Unmapped and never written by a push we did not wait for: no tracker. */
    for (i = 0; i < k->n; i++)
        uvm_pmm_gpu_free(&gpu->pmm, k->c[i], NULL);
    uvm_kvfree(k);
}

NV_STATUS vattn_os_map(vattn_os_va_space_t *va_space, vattn_os_gpu_t *gpu, uint64_t address,
                       uint64_t size, vattn_os_chunk_t *chunk)
{
    /* Not implemented in this build (see the top of this file). */
    return NV_ERR_NOT_SUPPORTED;
}

NV_STATUS vattn_os_unmap(vattn_os_va_space_t *va_space, vattn_os_gpu_t *gpu, uint64_t address,
                         uint64_t size, vattn_os_chunk_t *chunk)
{
    /* Nothing can have been mapped by vattn_os_map() above. */
    return NV_ERR_NOT_SUPPORTED;
}

void vattn_os_trace(enum vattn_trace_kind kind, const uint8_t uuid[16], uint64_t page_size,
                    uint32_t count, uint32_t done, NV_STATUS status, uint64_t duration_ns)
{
    switch (kind) {
        case VATTN_TRACE_ALLOC:
            trace_vattn_alloc(uuid, page_size, count, done, status, duration_ns);
            break;
        case VATTN_TRACE_MAP:
            trace_vattn_map(uuid, page_size, count, done, status, duration_ns);
            break;
        case VATTN_TRACE_UNMAP:
            trace_vattn_unmap(uuid, page_size, count, done, status, duration_ns);
            break;
        case VATTN_TRACE_FREE:
            trace_vattn_free(uuid, page_size, count, done, status, duration_ns);
            break;
    }
}

long uvm_vattn_ioctl(struct file *filp, unsigned int cmd, unsigned long arg)
{
    return uvm_vattn_dispatch(uvm_fd_va_space(filp), cmd, (uint64_t)arg);
}
