/*
 * uvm_vattn_kernel.c - the kernel side of uvm_vattn_os.h: the only file of vattn that
 * touches UVM internals. Kept small so it can be reviewed line by line; all logic and
 * every argument check live in uvm_vattn.c.
 *
 * SPDX-License-Identifier: MIT
 *
 * What it does (see docs/driver-abi.md): GPU lookup, managed-range checks, locking,
 * chunk allocation with a waited CE memset (zeroing), chunk free, GPU
 * retain/release, tracepoints, the PTE writes, and the three hooks of the fence.
 *
 * Isolation from UVM's own paths: our chunks come from uvm_pmm_gpu_alloc_user() and
 * stay TEMP_PINNED for their whole life (they are never unpinned into a va_block),
 * so the eviction path never selects them and no va_block's gpu_state points at
 * them; UVM's migration, fault and teardown paths therefore never see or free them.
 * They are freed only by vattn (FREE, RELEASE_RANGE, or the release hook that runs
 * before uvm_va_space_destroy() tears anything down).
 *
 * PTEs: each mapped page has its own page-table range vector on the GPU VA space's
 * page tree (as UVM maps external allocations): 64 KiB PTEs (one per 64 KiB of the
 * page, each naming its own chunk, so a 128/256 KiB page needs no contiguity) or
 * one 2 MiB PTE; RW + atomics, vidmem aperture, cached (on Hopper the PCF UVM
 * itself uses for local vidmem). The range vector holds references on the page
 * tables it uses; unmapping clears the PTEs, invalidates and waits, then drops
 * them. UVM never writes these PTEs: uvm_vattn.c owns the range (no va_block can
 * exist in it), see "Ownership" there.
 *
 * Built only as part of nvidia-uvm.ko; none of this has run on a GPU (the GPU
 * machine we can reach enforces module signatures). It is compiled, sparse-checked,
 * and its logic is tested in userspace against tests/kernel/shim.
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
static_assert(UVM_VATTN_NV_ERR_INVALID_STATE == NV_ERR_INVALID_STATE, "NV_ERR_INVALID_STATE");
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
    uint64_t piece;                          /* bytes per chunk in c[] */
    uvm_gpu_chunk_t *c[VATTN_KCHUNK_MAX];
    /* While mapped: the page-table range vector holding our PTEs (and references
     * on the page tables under them) on the GPU VA space's page tree. */
    uvm_page_table_range_vec_t *range_vec;
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

void vattn_os_va_space_lock_write(vattn_os_va_space_t *va_space)
{
    uvm_va_space_down_write(va_space);
}

void vattn_os_va_space_unlock_write(vattn_os_va_space_t *va_space)
{
    uvm_va_space_up_write(va_space);
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

NV_STATUS vattn_os_range_check(vattn_os_va_space_t *va_space, uint64_t address, uint64_t size,
                               uint64_t *range_start, uint64_t *range_end)
{
    uvm_va_range_t *va_range;
    uint64_t last = address + size - 1;

    uvm_assert_rwsem_locked(&va_space->lock);
    va_range = uvm_va_space_iter_first(va_space, address, last);
    if (!va_range || va_range->type != UVM_VA_RANGE_TYPE_MANAGED ||
        address < va_range->node.start || last > va_range->node.end)
        return NV_ERR_INVALID_ADDRESS;
    *range_start = va_range->node.start;
    *range_end = va_range->node.end;
    return NV_OK;
}

NV_STATUS vattn_os_range_claim(vattn_os_va_space_t *va_space, uint64_t address)
{
    uvm_va_range_t *va_range;
    size_t i, n;

    uvm_assert_rwsem_locked_write(&va_space->lock);
    va_range = uvm_va_range_find(va_space, address);
    if (!va_range || va_range->type != UVM_VA_RANGE_TYPE_MANAGED)
        return NV_ERR_INVALID_ADDRESS;
    /* Blocks are only created (never destroyed) while the range lives, under the
     * lock in read mode; with it held for write none can appear meanwhile. */
#if UVM_VATTN_BRANCH >= 580
    n = uvm_va_range_num_blocks(uvm_va_range_to_managed(va_range));
    for (i = 0; i < n; i++) {
        if (uvm_va_range_block(uvm_va_range_to_managed(va_range), i))
            return NV_ERR_INVALID_STATE;
    }
#else
    n = uvm_va_range_num_blocks(va_range);
    for (i = 0; i < n; i++) {
        if (uvm_va_range_block(va_range, i))
            return NV_ERR_INVALID_STATE;
    }
#endif
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
    k->piece = piece;

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

    /* Unmapped (range_vec is NULL: uvm_vattn.c frees only unmapped pages) and
     * never written by a push we did not wait for: no tracker. */
    for (i = 0; i < k->n; i++)
        uvm_pmm_gpu_free(&gpu->pmm, k->c[i], NULL);
    uvm_kvfree(k);
}

void vattn_os_chunk_abandon(vattn_os_gpu_t *gpu, vattn_os_chunk_t *k)
{
    /* The chunks stay TEMP_PINNED in UVM's allocator, owned by no one: never
     * handed out again. Only our record goes. */
    uvm_kvfree(k);
}

/* The GPU VA space of gpu in this va_space, if it is still there and active. */
static uvm_gpu_va_space_t *vattn_gpu_va_space(uvm_va_space_t *va_space, uvm_gpu_t *gpu)
{
    uvm_gpu_va_space_t *gpu_va_space = uvm_gpu_va_space_get(va_space, gpu);

    if (!gpu_va_space || gpu_va_space->gpu != gpu ||
        uvm_gpu_va_space_state(gpu_va_space) != UVM_GPU_VA_SPACE_STATE_ACTIVE)
        return NULL;
    return gpu_va_space;
}

/* Downgrading PTEs that named local vidmem: the membar UVM uses for the same. */
static uvm_membar_t vattn_unmap_membar(uvm_gpu_t *gpu)
{
    return uvm_hal_downgrade_membar_type(gpu, true);
}

/* One PTE per PTE-sized step of the page: offset is from the page's start. */
static NvU64 vattn_pte_maker(uvm_page_table_range_vec_t *range_vec, NvU64 offset, void *caller_data)
{
    const struct vattn_kchunk *k = caller_data;
    NvU64 phys = k->c[offset / k->piece]->address + offset % k->piece;

    return range_vec->tree->hal->make_pte(UVM_APERTURE_VID, phys, UVM_PROT_READ_WRITE_ATOMIC,
                                          UVM_MMU_PTE_FLAGS_CACHED);
}

NV_STATUS vattn_os_map(vattn_os_va_space_t *va_space, vattn_os_gpu_t *gpu, uint64_t address,
                       uint64_t size, vattn_os_chunk_t *k)
{
    uvm_gpu_va_space_t *gpu_va_space;
    uvm_page_tree_t *tree;
    uvm_page_table_range_vec_t *range_vec;
    uint64_t pte_size = size == UVM_VATTN_PAGE_SIZE_2M ? UVM_PAGE_SIZE_2M : UVM_PAGE_SIZE_64K;
    NV_STATUS status;

    uvm_assert_rwsem_locked(&va_space->lock);
    gpu_va_space = vattn_gpu_va_space(va_space, gpu);
    if (!gpu_va_space)
        return NV_ERR_INVALID_DEVICE;
    tree = &gpu_va_space->page_tables;

    /* uvm_vattn.c maps only unmapped pages of this GPU at checked addresses;
     * recheck what the PTE layout relies on, it is cheap. */
    if (k->range_vec || (uint64_t)k->n * k->piece != size || k->piece < pte_size)
        return NV_ERR_INVALID_STATE;
    /* A 64 KiB PTE needs 64 KiB big pages (Pascal and later; not a 128 KiB big
     * page size), and the page must lie inside the GPU's VA. */
    if (!(tree->hal->page_sizes() & pte_size) ||
        (pte_size == UVM_PAGE_SIZE_64K && tree->big_page_size != UVM_PAGE_SIZE_64K))
        return NV_ERR_NOT_SUPPORTED;
    if (!uvm_gpu_can_address(gpu, address, size))
        return NV_ERR_INVALID_ADDRESS;

    status = uvm_page_table_range_vec_create(tree, address, size, pte_size, UVM_PMM_ALLOC_FLAGS_EVICT, &range_vec);
    if (status != NV_OK)
        return status;

    /* Valid PTEs over invalid ones need no membar before the invalidate; the
     * function waits for its pushes (and the TLB invalidate) before returning. */
    status = uvm_page_table_range_vec_write_ptes(range_vec, UVM_MEMBAR_NONE, vattn_pte_maker, k);
    if (status != NV_OK) {
        /* Some PTEs may have been written: clear them before the tables can be
         * freed and reused. */
        (void)uvm_page_table_range_vec_clear_ptes(range_vec, vattn_unmap_membar(gpu));
        uvm_page_table_range_vec_destroy(range_vec);
        return status;
    }
    k->range_vec = range_vec;
    return NV_OK;
}

NV_STATUS vattn_os_unmap(vattn_os_va_space_t *va_space, vattn_os_gpu_t *gpu, uint64_t address,
                         uint64_t size, vattn_os_chunk_t *k, bool force)
{
    NV_STATUS status;

    uvm_assert_rwsem_locked(&va_space->lock);
    if (!k->range_vec)
        return NV_ERR_INVALID_STATE;

    /* Clears, invalidates with the membar for local vidmem, and waits. */
    status = uvm_page_table_range_vec_clear_ptes(k->range_vec, vattn_unmap_membar(gpu));
    if (status != NV_OK && !force)
        return status;
    uvm_page_table_range_vec_destroy(k->range_vec);
    k->range_vec = NULL;
    return status;
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

/* The fence's hooks (uvm_vattn_hooks.h): translate UVM's objects for uvm_vattn.c. */

bool uvm_vattn_block_create_denied(struct uvm_va_space_struct *va_space, __u64 start, __u64 end)
{
    uvm_assert_rwsem_locked(&va_space->lock);
    return uvm_vattn_owned(va_space, start, end);
}

void uvm_vattn_va_range_destroy(struct uvm_va_range_struct *va_range)
{
    /* Only a managed range that is in the tree: a range that never got there (a
     * failed split's new half) covers addresses still owned by its original. */
    if (va_range->type != UVM_VA_RANGE_TYPE_MANAGED || RB_EMPTY_NODE(&va_range->node.rb_node))
        return;
    uvm_assert_rwsem_locked_write(&va_range->va_space->lock);
    uvm_vattn_range_destroyed(va_range->va_space, va_range->node.start, va_range->node.end);
}

void uvm_vattn_gpu_va_space_remove(struct uvm_gpu_va_space_struct *gpu_va_space)
{
    uvm_assert_rwsem_locked_write(&gpu_va_space->va_space->lock);
    uvm_vattn_gpu_va_space_removed(gpu_va_space->va_space, gpu_va_space->gpu);
}
