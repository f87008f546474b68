/*
 * uvm_vattn_kernel.c - the kernel side of uvm_vattn_os.h: the only file of vattn that
 * touches UVM internals. Kept small so it can be reviewed line by line; every
 * argument check and the phases of a batch live in uvm_vattn.c.
 *
 * SPDX-License-Identifier: MIT
 *
 * Mappings are UVM's own external-mapping records (uvm_ext_gpu_map_t), filled the
 * way stock UVM_MAP_EXTERNAL_ALLOCATION fills them for local or peer video memory
 * with default attributes: a reference on a dup of the caller's RM memory
 * (uvm_ext_gpu_mem_handle, shared by every mapping of the batch that names the
 * same memory on the same GPU, as split mappings share theirs), the owning GPU,
 * and a page-table range vector holding the PTEs. Once committed to the range's
 * per-GPU tree they are indistinguishable from stock ones, so UVM's teardown
 * (uvm_ext_gpu_map_destroy from range destroy, GPU VA space removal, process
 * exit) and stock UVM_UNMAP_EXTERNAL handle them.
 *
 * What differs from the stock path is only how PTEs are written: a writer per
 * GPU reads the PTE values of as many mappings as fit into its bounded buffer
 * from RM (no push open, as stock reads between its pushes), then puts their
 * writes into as few pushes as UVM_MAX_PUSH_SIZE allows (uvm_pte_batch), and so
 * on; it collects their ranges in one uvm_tlb_batch and ends the last push with
 * that one invalidate. Kernel memory per batch is bounded by the batch's entry
 * and GPU limits, never by the length it maps.
 *
 * The docs/driver-abi.md section "The batched module" lists the UVM internals used
 * here, per branch, with the safety argument. None of this has run on a GPU (the
 * GPU machine we can reach enforces module signatures): it is compiled and
 * sparse-checked for 535.261.03 and 550.163.01, and uvm_vattn.c's phases are
 * tested in userspace against tests/kernel/shim.
 */

#include "uvm_common.h"
#include "uvm_linux.h"
#include "uvm_global.h"
#include "uvm_gpu.h"
#include "uvm_hal.h"
#include "uvm_kvmalloc.h"
#include "uvm_map_external.h"
#include "uvm_mmu.h"
#include "uvm_pte_batch.h"
#include "uvm_push.h"
#include "uvm_range_tree.h"
#include "uvm_tlb_batch.h"
#include "uvm_tracker.h"
#include "uvm_va_range.h"
#include "uvm_va_space.h"
#include "nv_uvm_interface.h"

#include "uvm_vattn_kernel.h"
#include "uvm_vattn_ioctl.h"
#include "uvm_vattn_os.h"
#include "uvm_vattn_hooks.h"

#define CREATE_TRACE_POINTS
#include "uvm_vattn_trace.h"

#if !defined(UVM_VATTN_BRANCH)
#error "UVM_VATTN_BRANCH must be set by the Kbuild hunk of the patch series"
#endif

/* The header restates NVIDIA's status numbers for user space; keep them honest. */
static_assert(UVM_VATTN_NV_OK == NV_OK, "NV_OK");
static_assert(UVM_VATTN_NV_ERR_ILLEGAL_ACTION == NV_ERR_ILLEGAL_ACTION, "NV_ERR_ILLEGAL_ACTION");
static_assert(UVM_VATTN_NV_ERR_INVALID_ADDRESS == NV_ERR_INVALID_ADDRESS, "NV_ERR_INVALID_ADDRESS");
static_assert(UVM_VATTN_NV_ERR_INVALID_ARGUMENT == NV_ERR_INVALID_ARGUMENT, "NV_ERR_INVALID_ARGUMENT");
static_assert(UVM_VATTN_NV_ERR_INVALID_DEVICE == NV_ERR_INVALID_DEVICE, "NV_ERR_INVALID_DEVICE");
static_assert(UVM_VATTN_NV_ERR_INVALID_LIMIT == NV_ERR_INVALID_LIMIT, "NV_ERR_INVALID_LIMIT");
static_assert(UVM_VATTN_NV_ERR_INVALID_OFFSET == NV_ERR_INVALID_OFFSET, "NV_ERR_INVALID_OFFSET");
static_assert(UVM_VATTN_NV_ERR_NO_MEMORY == NV_ERR_NO_MEMORY, "NV_ERR_NO_MEMORY");
static_assert(UVM_VATTN_NV_ERR_NOT_SUPPORTED == NV_ERR_NOT_SUPPORTED, "NV_ERR_NOT_SUPPORTED");
static_assert(UVM_VATTN_NV_ERR_UVM_ADDRESS_IN_USE == NV_ERR_UVM_ADDRESS_IN_USE, "NV_ERR_UVM_ADDRESS_IN_USE");
static_assert(sizeof(NvProcessorUuid) == 16, "NvProcessorUuid");

/* PTEs one pte_batch call writes at most: bounds the push space one step asks for. */
#define VATTN_PTES_PER_STEP     4096u
/* Push space kept free for the methods around the PTE data, the pte batch's
 * own membar, the TLB invalidate and the push's end. */
#define VATTN_PUSH_SLACK        2048u
/* PTE bytes one RM call returns at most (stock UVM asks for 96 KiB a call). */
#define VATTN_RM_PTE_BYTES      (96u * 1024u)
/* A mapping writer's PTE buffer: the most PTE values of a batch held at once on
 * one GPU, whatever the batch maps. */
#define VATTN_PTE_BUF_BYTES     (2u * VATTN_RM_PTE_BYTES)

/* A dup of RM memory on one GPU for one batch (uvm_vattn.c shares it per handle). */
struct vattn_kmem
{
    uvm_ext_gpu_mem_handle *handle;  /* UVM's refcounted dup; each mapping holds a reference */
    uvm_gpu_t *owning_gpu;
    NvU64 page_size;                 /* RM's page size of the memory */
};

/*
 * A mapping made by MAP_BATCH: UVM's record first (UVM frees it with uvm_kvfree of
 * its address, which is ours), then what only the batch needs: the range, where
 * in the memory it maps, and its place in its writer's buffer until written.
 */
struct vattn_kmap
{
    uvm_ext_gpu_map_t ext;
    uvm_va_range_t *range;
    NvU64 offset;                    /* bytes into the memory */
    NvU32 buf_off;                   /* its PTE values in the writer's buffer */
    struct vattn_kmap *next;         /* the writer's pending list */
};

struct vattn_kwriter
{
    uvm_gpu_t *gpu;
    uvm_gpu_va_space_t *gpu_va_space;
    uvm_page_tree_t *tree;
    uvm_tracker_t tracker;           /* the writer's last push, and what it must wait for */
    uvm_push_t push;
    uvm_pte_batch_t pte_batch;
    uvm_tlb_batch_t tlb_batch;
    uvm_membar_t membar;             /* for the invalidate: NONE when mapping (upgrade) */
    NvU64 *buf;                      /* mapping writers: PTE values read from RM */
    NvU32 buf_used;                  /* bytes of buf the pending mappings' values take */
    struct vattn_kmap *pending;      /* read, not yet written, in order */
    struct vattn_kmap **pending_tail;
    bool clearing;
    bool open;                       /* push begun, not ended */
    bool any;                        /* something written: the invalidate is due */
    bool l2_peer;                    /* a cleared mapping wants the peer L2 invalidated */
    bool l2_sys;                     /* ... the sysmem L2 */
};

/*
 * Branch differences, two features that arrived in different branches:
 * - VATTN_EXTERNAL_RANGE_TYPE (570 and later): an external range is a
 *   uvm_va_range_external_t around the uvm_va_range_t (its per-GPU trees and
 *   mapped_gpus live there); 535 and 550 keep them in va_range->external.
 * - VATTN_L2_INVALIDATE_AT_UNMAP (580 and later): a mapping may need an L2
 *   invalidate when it goes (peer and sysmem mappings RM marks so); 570 and 575
 *   have neither RM's flag nor UVM's record field.
 */
#define VATTN_EXTERNAL_RANGE_TYPE       (UVM_VATTN_BRANCH >= 570)
#define VATTN_L2_INVALIDATE_AT_UNMAP    (UVM_VATTN_BRANCH >= 580)

#if VATTN_EXTERNAL_RANGE_TYPE
typedef uvm_va_range_external_t vattn_ext_range_t;

static vattn_ext_range_t *ext_range(uvm_va_range_t *va_range)
{
    return uvm_va_range_to_external(va_range);
}
#else
typedef uvm_va_range_t vattn_ext_range_t;

static vattn_ext_range_t *ext_range(uvm_va_range_t *va_range)
{
    return va_range;
}
#endif

static uvm_processor_mask_t *mapped_gpus(uvm_va_range_t *va_range)
{
#if VATTN_EXTERNAL_RANGE_TYPE
    return &ext_range(va_range)->mapped_gpus;
#else
    return &va_range->external.mapped_gpus;
#endif
}

static uvm_ext_gpu_range_tree_t *gpu_tree(uvm_va_range_t *va_range, uvm_gpu_t *gpu)
{
    return uvm_ext_gpu_range_tree(ext_range(va_range), gpu);
}

/* The type vattn_os_map_t names is uvm_ext_gpu_map_t for listed mappings; only
 * those made by vattn_os_map_prepare are vattn_kmaps. */
static struct vattn_kmap *kmap_of(vattn_os_map_t *map)
{
    return (struct vattn_kmap *)map;
}

static uvm_ext_gpu_map_t *ext_of(vattn_os_map_t *map)
{
    return &kmap_of(map)->ext;
}

/* The batch's own arrays and buffers, charged to the caller's memory cgroup
 * where the kernel has kvmalloc (4.12; UVM's records are uvm_kvmalloc'd: UVM
 * frees them). */
void *vattn_os_alloc(size_t bytes)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(4, 12, 0)
    return kvmalloc(bytes, GFP_KERNEL_ACCOUNT | __GFP_NOWARN);
#else
    return uvm_kvmalloc(bytes);
#endif
}

void vattn_os_free(void *ptr)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(4, 12, 0)
    kvfree(ptr);
#else
    if (ptr)
        uvm_kvfree(ptr);
#endif
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

NV_STATUS vattn_os_global_status(void)
{
    return uvm_global_get_status();
}

void vattn_os_lock(vattn_os_va_space_t *va_space) __acquires(va_space)
{
    uvm_va_space_down_read_rm(va_space);
    __acquire(va_space);
}

void vattn_os_unlock(vattn_os_va_space_t *va_space) __releases(va_space)
{
    __release(va_space);
    uvm_va_space_up_read_rm(va_space);
}

NV_STATUS vattn_os_gpu_find(vattn_os_va_space_t *va_space, const uint8_t uuid[16],
                            vattn_os_gpu_t **gpu_out) __must_hold(va_space)
{
    uvm_gpu_va_space_t *gpu_va_space;
    uvm_gpu_t *gpu;

    uvm_assert_rwsem_locked(&va_space->lock);
    gpu = uvm_va_space_get_gpu_by_uuid_with_gpu_va_space(va_space, (const NvProcessorUuid *)uuid);
    if (!gpu)
        return NV_ERR_INVALID_DEVICE;
    gpu_va_space = uvm_gpu_va_space_get(va_space, gpu);
    if (!gpu_va_space)
        return NV_ERR_INVALID_DEVICE;
#if UVM_VATTN_BRANCH >= 550
    /* Where the copy engine cannot write video memory by physical address
     * (Confidential Computing), UVM writes page tables another way; the writer
     * only knows the physical one. */
    if (!gpu->parent->ce_phys_vidmem_write_supported)
        return NV_ERR_NOT_SUPPORTED;
#endif
    *gpu_out = gpu;
    return NV_OK;
}

NV_STATUS vattn_os_range_find(vattn_os_va_space_t *va_space, uint64_t base, uint64_t length,
                              vattn_os_range_t **range) __must_hold(va_space)
{
    uvm_va_range_t *va_range;

    uvm_assert_rwsem_locked(&va_space->lock);
    va_range = uvm_va_range_find(va_space, base);
    if (!va_range || va_range->type != UVM_VA_RANGE_TYPE_EXTERNAL || base + length - 1 > va_range->node.end)
        return NV_ERR_INVALID_ADDRESS;
    *range = va_range;
    return NV_OK;
}

bool vattn_os_range_mapped(vattn_os_va_space_t *va_space, vattn_os_range_t *range, vattn_os_gpu_t *gpu,
                           uint64_t base, uint64_t length) __must_hold(va_space)
{
    uvm_ext_gpu_range_tree_t *tree = gpu_tree(range, gpu);
    bool mapped;

    uvm_assert_rwsem_locked(&va_space->lock);
    uvm_mutex_lock(&tree->lock);
    mapped = uvm_range_tree_iter_first(&tree->tree, base, base + length - 1) != NULL;
    uvm_mutex_unlock(&tree->lock);
    return mapped;
}

/* The release of a dup, as UVM releases the ones it makes. */
static void vattn_release_handle(struct nv_kref *ref)
{
    uvm_ext_gpu_mem_handle *handle = container_of(ref, uvm_ext_gpu_mem_handle, ref_count);

    if (handle->rm_handle)
        (void)uvm_rm_locked_call(nvUvmInterfaceFreeDupedHandle(uvm_gpu_device_handle(handle->gpu),
                                                               handle->rm_handle));
    uvm_kvfree(handle);
}

NV_STATUS vattn_os_mem_get(vattn_os_va_space_t *va_space, vattn_os_gpu_t *gpu, int32_t rm_ctrl_fd,
                           uint32_t h_client, uint32_t h_memory, vattn_os_mem_t **out,
                           uint64_t *size) __must_hold(va_space)
{
    struct vattn_kmem *m;
    UvmGpuMemoryInfo info;
    uvm_gpu_t *owning;
    NV_STATUS status;

    /* rm_ctrl_fd: taken for parity with UVM_MAP_EXTERNAL_ALLOCATION, which does
     * not use it on these branches either (RM checks the client in the dup). */
    (void)rm_ctrl_fd;
    uvm_assert_mutex_locked(&va_space->serialize_writers_lock);
    m = uvm_kvmalloc_zero(sizeof(*m));
    if (!m)
        return NV_ERR_NO_MEMORY;
    m->handle = uvm_kvmalloc_zero(sizeof(*m->handle));
    if (!m->handle) {
        uvm_kvfree(m);
        return NV_ERR_NO_MEMORY;
    }
    m->handle->gpu = gpu;
    nv_kref_init(&m->handle->ref_count);
    memset(&info, 0, sizeof(info));

    /* RM checks that the client and handle are the caller's, takes a reference
     * on the memory, and says what it is. */
    status = uvm_rm_locked_call(nvUvmInterfaceDupMemory(uvm_gpu_device_handle(gpu), h_client, h_memory,
                                                        &m->handle->rm_handle, &info));
    if (status != NV_OK)
        goto fail;

    /* Video memory of a GPU registered here only: sysmem, EGM and fabric memory
     * need barriers and lifetimes the batched path does not handle. */
    if (info.sysmem || !info.deviceDescendant) {
        status = NV_ERR_NOT_SUPPORTED;
        goto fail;
    }
    owning = uvm_va_space_get_gpu_by_uuid(va_space, &info.uuid);
    if (!owning) {
        status = NV_ERR_INVALID_DEVICE;
        goto fail;
    }
    if (owning != gpu && !uvm_va_space_peer_enabled(va_space, gpu, owning)) {
        status = NV_ERR_INVALID_DEVICE;
        goto fail;
    }
    if (!info.pageSize || !IS_ALIGNED(info.size, info.pageSize)) {
        status = NV_ERR_NOT_SUPPORTED;
        goto fail;
    }
    m->owning_gpu = owning;
    m->page_size = info.pageSize;
    *size = info.size;
    *out = m;
    return NV_OK;

fail:
    nv_kref_put(&m->handle->ref_count, vattn_release_handle);
    uvm_kvfree(m);
    return status;
}

void vattn_os_mem_put(vattn_os_va_space_t *va_space, vattn_os_mem_t *m) __must_hold(va_space)
{
    uvm_assert_mutex_locked(&va_space->serialize_writers_lock);
    nv_kref_put(&m->handle->ref_count, vattn_release_handle);
    uvm_kvfree(m);
}

/* The page size UVM's stock path would map with: the biggest the GPU has up to
 * the smallest alignment of memory page, address, length and offset. */
static NvU32 vattn_mapping_page_size(uvm_page_tree_t *tree, uvm_gpu_t *gpu, struct vattn_kmem *m,
                                     NvU64 base, NvU64 length, NvU64 offset)
{
    NvU64 bits = m->page_size | base | length | offset;
    NvU64 smallest = bits & ~(bits - 1);
    NvU32 page_size;

    page_size = uvm_mmu_biggest_page_size_up_to(tree, (NvU32)min_t(NvU64, smallest, 1ull << 31));
#if UVM_VATTN_BRANCH >= 550
    if (m->owning_gpu == gpu && page_size > gpu->mem_info.max_vidmem_page_size)
        page_size = (NvU32)gpu->mem_info.max_vidmem_page_size;
#endif
    return page_size;
}

/* Reads the PTE values of [offset, offset + length) of the memory from RM, and
 * whether RM wants the L2 invalidated when they go. */
static NV_STATUS vattn_read_ptes(uvm_gpu_va_space_t *gpu_va_space, uvm_ext_gpu_mem_handle *handle, NvU64 offset,
                                 NvU64 length, NvU32 page_size, NvU32 pte_size, NvU64 *ptes, bool *l2)
{
    NvU64 n = length / page_size, done = 0;
    UvmGpuExternalMappingInfo info;
    NV_STATUS status;

    while (done < n) {
        /* At most VATTN_RM_PTE_BYTES of PTEs a call, as stock UVM asks RM:
         * RM's locks are held for the whole call. */
        NvU64 chunk = min(n - done, (NvU64)(VATTN_RM_PTE_BYTES / pte_size));

        memset(&info, 0, sizeof(info)); /* default mapping, caching, format and compression */
        info.mappingPageSize = page_size;
        info.pteBuffer = (NvU64 *)((char *)ptes + done * pte_size);
        info.pteBufferSize = chunk * pte_size;
        status = uvm_rm_locked_call(nvUvmInterfaceGetExternalAllocPtes(gpu_va_space->duped_gpu_va_space,
                                                                       handle->rm_handle,
                                                                       offset + done * page_size,
                                                                       chunk * page_size, &info));
        if (status != NV_OK)
            return status;
        if (info.numWrittenPtes == 0 || info.numWrittenPtes > chunk)
            return NV_ERR_INVALID_STATE;
#if VATTN_L2_INVALIDATE_AT_UNMAP
        *l2 = *l2 || info.bNeedL2InvalidateAtUnmap;
#endif
        done += info.numWrittenPtes;
    }
    return NV_OK;
}

NV_STATUS vattn_os_map_prepare(vattn_os_va_space_t *va_space, vattn_os_range_t *range, vattn_os_gpu_t *gpu,
                               vattn_os_mem_t *m, uint64_t base, uint64_t length, uint64_t offset,
                               vattn_os_map_t **out) __must_hold(va_space)
{
    uvm_gpu_va_space_t *gpu_va_space = uvm_gpu_va_space_get(va_space, gpu);
    uvm_page_tree_t *tree = &gpu_va_space->page_tables;
    struct vattn_kmap *k;
    NvU32 page_size;
    NV_STATUS status;

    uvm_assert_rwsem_locked(&va_space->lock);
    if (!uvm_gpu_can_address(gpu, base, length))
        return NV_ERR_INVALID_ADDRESS;
    page_size = vattn_mapping_page_size(tree, gpu, m, base, length, offset);
    if (!page_size)
        return NV_ERR_INVALID_ADDRESS;

    k = uvm_kvmalloc_zero(sizeof(*k));
    if (!k)
        return NV_ERR_NO_MEMORY;
    RB_CLEAR_NODE(&k->ext.node.rb_node);
    k->ext.node.start = base;
    k->ext.node.end = base + length - 1;
    uvm_tracker_init(&k->ext.tracker);
    k->ext.gpu = gpu;
    k->ext.owning_gpu = m->owning_gpu;
    k->ext.is_sysmem = false;
    k->range = range;
    k->offset = offset;

    status = uvm_page_table_range_vec_init(tree, base, length, page_size, UVM_PMM_ALLOC_FLAGS_EVICT,
                                           &k->ext.pt_range_vec);
    if (status != NV_OK) {
        uvm_kvfree(k);
        return status;
    }
    nv_kref_get(&m->handle->ref_count);
    k->ext.mem_handle = m->handle;
    *out = (vattn_os_map_t *)k;
    return NV_OK;
}

void vattn_os_map_discard(vattn_os_va_space_t *va_space, vattn_os_map_t *map) __must_hold(va_space)
{
    struct vattn_kmap *k = kmap_of(map);

    uvm_assert_mutex_locked(&va_space->serialize_writers_lock);
    uvm_page_table_range_vec_deinit(&k->ext.pt_range_vec);
    nv_kref_put(&k->ext.mem_handle->ref_count, vattn_release_handle);
    uvm_tracker_deinit(&k->ext.tracker);
    uvm_kvfree(k);
}

NV_STATUS vattn_os_map_commit(vattn_os_va_space_t *va_space, vattn_os_map_t *map) __must_hold(va_space)
{
    struct vattn_kmap *k = kmap_of(map);
    uvm_ext_gpu_range_tree_t *tree = gpu_tree(k->range, k->ext.gpu);
    NV_STATUS status;

    uvm_assert_rwsem_locked(&va_space->lock);
    /* Once k is in the tree it is UVM's: stock unmappers hold the va_space
     * lock for read only, as MAP_BATCH does, and may free it as soon as the
     * tree lock is dropped, so nothing here touches k after that. */
    uvm_mutex_lock(&tree->lock);
    status = uvm_range_tree_add(&tree->tree, &k->ext.node);
    if (status == NV_OK)
        uvm_processor_mask_set_atomic(mapped_gpus(k->range), k->ext.gpu->id);
    uvm_mutex_unlock(&tree->lock);
    if (status != NV_OK)
        return NV_ERR_UVM_ADDRESS_IN_USE;
    return NV_OK;
}

void vattn_os_map_abandon(vattn_os_va_space_t *va_space, vattn_os_map_t *map) __must_hold(va_space)
{
    /* Page tables and the memory reference stay held forever: a PTE that could
     * not be cleared must never name freed page tables or reused memory. */
    uvm_assert_rwsem_locked(&va_space->lock);
    (void)map;
}

/* Splits the mapping of tree that crosses at (start < at <= end) into two. */
static NV_STATUS vattn_split_at(uvm_ext_gpu_range_tree_t *tree, NvU64 at)
{
    uvm_range_tree_node_t *node = uvm_range_tree_find(&tree->tree, at);
    uvm_ext_gpu_map_t *old, *upper;
    NV_STATUS status;

    if (!node || node->start == at)
        return NV_OK;
    old = uvm_ext_gpu_map_container(node);
    if (!IS_ALIGNED(at, old->pt_range_vec.page_size))
        return NV_ERR_INVALID_ADDRESS;
    upper = uvm_kvmalloc_zero(sizeof(*upper));
    if (!upper)
        return NV_ERR_NO_MEMORY;
    RB_CLEAR_NODE(&upper->node.rb_node);
    upper->mem_handle = old->mem_handle;
    upper->gpu = old->gpu;
    upper->owning_gpu = old->owning_gpu;
    upper->is_sysmem = old->is_sysmem;
#if UVM_VATTN_BRANCH >= 550
    upper->is_egm = old->is_egm;
#endif
#if VATTN_L2_INVALIDATE_AT_UNMAP
    upper->need_l2_invalidate_at_unmap = old->need_l2_invalidate_at_unmap;
#endif
    status = uvm_tracker_init_from(&upper->tracker, &old->tracker);
    if (status != NV_OK) {
        uvm_kvfree(upper);
        return status;
    }
    status = uvm_page_table_range_vec_split_upper(&old->pt_range_vec, at - 1, &upper->pt_range_vec);
    if (status != NV_OK) {
        uvm_tracker_deinit(&upper->tracker);
        uvm_kvfree(upper);
        return status;
    }
    upper->node.start = at;
    if (upper->mem_handle)
        nv_kref_get(&upper->mem_handle->ref_count);
    uvm_range_tree_split(&tree->tree, &old->node, &upper->node);
    return NV_OK;
}

NV_STATUS vattn_os_unmap_split(vattn_os_va_space_t *va_space, vattn_os_range_t *range, vattn_os_gpu_t *gpu,
                               uint64_t base, uint64_t length) __must_hold(va_space)
{
    uvm_ext_gpu_range_tree_t *tree = gpu_tree(range, gpu);
    NV_STATUS status;

    uvm_assert_rwsem_locked(&va_space->lock);
    uvm_mutex_lock(&tree->lock);
    status = vattn_split_at(tree, base);
    if (status == NV_OK && base + length - 1 < range->node.end)
        status = vattn_split_at(tree, base + length);
    uvm_mutex_unlock(&tree->lock);
    return status;
}

uint32_t vattn_os_unmap_count(vattn_os_va_space_t *va_space, vattn_os_range_t *range, vattn_os_gpu_t *gpu,
                              uint64_t base, uint64_t length) __must_hold(va_space)
{
    uvm_ext_gpu_range_tree_t *tree = gpu_tree(range, gpu);
    uvm_range_tree_node_t *node;
    uint32_t n = 0;

    uvm_assert_rwsem_locked(&va_space->lock);
    uvm_mutex_lock(&tree->lock);
    uvm_range_tree_for_each_in(node, &tree->tree, base, base + length - 1)
        n++;
    uvm_mutex_unlock(&tree->lock);
    return n;
}

uint32_t vattn_os_unmap_detach(vattn_os_va_space_t *va_space, vattn_os_range_t *range, vattn_os_gpu_t *gpu,
                               uint64_t base, uint64_t length, vattn_os_map_t **maps, uint32_t cap)
    __must_hold(va_space)
{
    uvm_ext_gpu_range_tree_t *tree = gpu_tree(range, gpu);
    uvm_range_tree_node_t *node, *next;
    NvU64 end = base + length - 1;
    uint32_t n = 0;

    uvm_assert_rwsem_locked(&va_space->lock);
    uvm_mutex_lock(&tree->lock);
    uvm_range_tree_for_each_in_safe(node, next, &tree->tree, base, end) {
        if (n == cap)
            break;
        if (node->start < base || node->end > end)
            continue;
        /* Out of the tree, the record is the batch's alone: UVM's other
         * paths find mappings only through the trees. */
        uvm_range_tree_remove(&tree->tree, node);
        maps[n++] = (vattn_os_map_t *)uvm_ext_gpu_map_container(node);
    }
    if (uvm_range_tree_empty(&tree->tree))
        uvm_processor_mask_clear_atomic(mapped_gpus(range), gpu->id);
    uvm_mutex_unlock(&tree->lock);
    return n;
}

void vattn_os_unmap_destroy(vattn_os_va_space_t *va_space, vattn_os_map_t *map) __must_hold(va_space)
{
    uvm_ext_gpu_map_t *ext = ext_of(map);

    /* PTEs cleared and invalidated by the writer (waited): the tables can go,
     * and the memory reference, whose last put frees UVM's dup through RM:
     * allowed here, under the serialize-writers mutex and the lock for read,
     * as on stock map's error path (uvm_ext_gpu_map_destroy with no deferred
     * list). No GPU can go meanwhile: that takes the lock for write. */
    uvm_assert_mutex_locked(&va_space->serialize_writers_lock);
    if (ext->pt_range_vec.ranges)
        uvm_page_table_range_vec_deinit(&ext->pt_range_vec);
    uvm_tracker_deinit(&ext->tracker);
    if (ext->mem_handle)
        nv_kref_put(&ext->mem_handle->ref_count, vattn_release_handle);
    uvm_kvfree(ext);
}

void vattn_os_unmap_abandon(vattn_os_va_space_t *va_space, vattn_os_map_t *map) __must_hold(va_space)
{
    /* Out of every tree with PTEs that may still be valid: its page tables
     * and memory reference are kept forever, as an abandoned map's. */
    uvm_assert_rwsem_locked(&va_space->lock);
    (void)map;
}

NV_STATUS vattn_os_writer_begin(vattn_os_va_space_t *va_space, vattn_os_gpu_t *gpu, bool clearing,
                                vattn_os_writer_t **out) __must_hold(va_space)
{
    uvm_gpu_va_space_t *gpu_va_space = uvm_gpu_va_space_get(va_space, gpu);
    struct vattn_kwriter *w;

    uvm_assert_rwsem_locked(&va_space->lock);
    w = vattn_os_alloc(sizeof(*w));
    if (!w)
        return NV_ERR_NO_MEMORY;
    memset(w, 0, sizeof(*w));
    if (!clearing) {
        w->buf = vattn_os_alloc(VATTN_PTE_BUF_BYTES);
        if (!w->buf) {
            vattn_os_free(w);
            return NV_ERR_NO_MEMORY;
        }
    }
    w->gpu = gpu;
    w->gpu_va_space = gpu_va_space;
    w->tree = &gpu_va_space->page_tables;
    w->clearing = clearing;
    w->membar = UVM_MEMBAR_NONE;
    w->pending_tail = &w->pending;
    uvm_tracker_init(&w->tracker);
    uvm_tlb_batch_begin(w->tree, &w->tlb_batch);
    *out = w;
    return NV_OK;
}

/* Ends the current push; the last one carries the batch's invalidate. */
static void writer_close(struct vattn_kwriter *w, bool last)
{
    uvm_pte_batch_end(&w->pte_batch);
    if (last)
        uvm_tlb_batch_end(&w->tlb_batch, &w->push, w->membar);
    else
        /* The pte batch's own membar orders these writes before the later
         * invalidate; no membar is needed at the end of this push. */
        uvm_push_set_flag(&w->push, UVM_PUSH_FLAG_NEXT_MEMBAR_NONE);
    /* A push past its reservation would overwrite other pushes in the
     * shared pushbuffer: stop rather than go on (UVM_ASSERT is compiled out
     * in release builds). */
    UVM_ASSERT_RELEASE(uvm_push_get_size(&w->push) <= UVM_MAX_PUSH_SIZE);
    uvm_push_end(&w->push);
    uvm_tracker_overwrite_with_push(&w->tracker, &w->push);
    w->open = false;
}

/* Makes room for bytes of PTE data in the current push, or begins the next. */
static NV_STATUS writer_room(struct vattn_kwriter *w, NvU32 bytes)
{
    NV_STATUS status;

    /* The pte batch keeps its last inline chunk pending (not yet in the
     * push's size): it is flushed with the next write, so it counts too. */
    NvU32 pending = 0;

    if (w->open && w->pte_batch.inlining)
        pending = (NvU32)uvm_push_inline_data_size(&w->pte_batch.inline_data);
    if (w->open && !uvm_push_has_space(&w->push, bytes + pending + VATTN_PUSH_SLACK))
        writer_close(w, false);
    if (w->open)
        return NV_OK;
    status = uvm_push_begin_acquire(w->gpu->channel_manager, UVM_CHANNEL_TYPE_MEMOPS, &w->tracker, &w->push,
                                    "vattn: %s PTEs", w->clearing ? "clear" : "write");
    if (status != NV_OK)
        return status;
    uvm_pte_batch_begin(&w->push, &w->pte_batch);
    w->open = true;
    return NV_OK;
}

static NvU64 ext_entries(uvm_ext_gpu_map_t *ext)
{
    return uvm_range_tree_node_size(&ext->node) / ext->pt_range_vec.page_size;
}

/*
 * Writes entries [first, first + count) of ext's PTEs (in address order, across
 * its page-table ranges) from ptes[0..count), or clears them (ptes NULL).
 */
static NV_STATUS writer_put(struct vattn_kwriter *w, uvm_ext_gpu_map_t *ext, const NvU64 *ptes, NvU64 first,
                            NvU64 count)
{
    uvm_page_table_range_vec_t *vec = &ext->pt_range_vec;
    NvU32 pte_size = uvm_mmu_pte_size(w->tree, vec->page_size);
    const char *src = (const char *)ptes;
    NvU64 index = 0, lo, hi;
    NV_STATUS status;
    size_t r;

    for (r = 0; r < vec->range_count; index += vec->ranges[r].entry_count, r++) {
        uvm_page_table_range_t *range = &vec->ranges[r];
        uvm_gpu_phys_address_t addr;
        NvU64 left;

        lo = max(first, index);
        hi = min(first + count, index + range->entry_count);
        if (lo >= hi)
            continue;
        addr = uvm_page_table_range_entry_address(w->tree, range, lo - index);
        for (left = hi - lo; left;) {
            NvU32 n = (NvU32)min(left, (NvU64)VATTN_PTES_PER_STEP);

            status = writer_room(w, ptes ? n * pte_size : 64);
            if (status != NV_OK)
                return status;
            if (ptes) {
                uvm_pte_batch_write_ptes(&w->pte_batch, addr, (NvU64 *)src, pte_size, n);
                src += (size_t)n * pte_size;
            }
            else {
                uvm_pte_batch_clear_ptes(&w->pte_batch, addr, 0, pte_size, n);
            }
            addr.address += (NvU64)n * pte_size;
            left -= n;
        }
    }
    w->any = true;
    return NV_OK;
}

/* Queues ext's range for the batch's one invalidate. */
static void writer_invalidate(struct vattn_kwriter *w, uvm_ext_gpu_map_t *ext)
{
    uvm_tlb_batch_invalidate(&w->tlb_batch, ext->node.start, uvm_range_tree_node_size(&ext->node),
                             ext->pt_range_vec.page_size, w->membar);
}

/* Reads entries [first, first + count) of k's PTE values from RM into dst. RM is
 * not called with a push open: the writer's push ends first, as UVM's own
 * external mapping reads between its pushes. */
static NV_STATUS writer_read(struct vattn_kwriter *w, struct vattn_kmap *k, NvU64 first, NvU64 count, NvU64 *dst)
{
    uvm_ext_gpu_map_t *ext = &k->ext;
    NvU32 page_size = (NvU32)ext->pt_range_vec.page_size;
    NV_STATUS status;
    bool l2 = false;

    if (w->open)
        writer_close(w, false);
    status = vattn_read_ptes(w->gpu_va_space, ext->mem_handle, k->offset + first * page_size, count * page_size,
                             page_size, uvm_mmu_pte_size(w->tree, page_size), dst, &l2);
#if VATTN_L2_INVALIDATE_AT_UNMAP
    /* The record is still the batch's (not committed): no lock needed. */
    if (l2)
        ext->need_l2_invalidate_at_unmap = true;
#else
    (void)l2;
#endif
    return status;
}

/* Writes every pending mapping from the buffer, which is then empty. */
static NV_STATUS writer_flush(struct vattn_kwriter *w)
{
    NV_STATUS status = NV_OK;
    struct vattn_kmap *k;

    for (k = w->pending; k && status == NV_OK; k = k->next) {
        status = writer_put(w, &k->ext, (NvU64 *)((char *)w->buf + k->buf_off), 0, ext_entries(&k->ext));
        if (status == NV_OK)
            writer_invalidate(w, &k->ext);
    }
    w->pending = NULL;
    w->pending_tail = &w->pending;
    w->buf_used = 0;
    return status;
}

NV_STATUS vattn_os_writer_map(vattn_os_writer_t *w, vattn_os_map_t *map)
{
    struct vattn_kmap *k = kmap_of(map);
    NvU32 pte_size = uvm_mmu_pte_size(w->tree, k->ext.pt_range_vec.page_size);
    NvU64 n = ext_entries(&k->ext), done, chunk;
    NV_STATUS status;

    UVM_ASSERT(!w->clearing);
    if (n * pte_size > VATTN_PTE_BUF_BYTES - w->buf_used) {
        status = writer_flush(w);
        if (status != NV_OK)
            return status;
    }
    if (n * pte_size <= VATTN_PTE_BUF_BYTES) {
        /* Read now, written with the mappings that share the buffer. */
        status = writer_read(w, k, 0, n, (NvU64 *)((char *)w->buf + w->buf_used));
        if (status != NV_OK)
            return status;
        k->buf_off = w->buf_used;
        w->buf_used += (NvU32)(n * pte_size);
        k->next = NULL;
        *w->pending_tail = k;
        w->pending_tail = &k->next;
        return NV_OK;
    }
    /* Larger than the buffer: read and written a buffer at a time. */
    for (done = 0; done < n; done += chunk) {
        chunk = min(n - done, (NvU64)(VATTN_PTE_BUF_BYTES / pte_size));
        status = writer_read(w, k, done, chunk, w->buf);
        if (status == NV_OK)
            status = writer_put(w, &k->ext, w->buf, done, chunk);
        if (status != NV_OK)
            return status;
    }
    writer_invalidate(w, &k->ext);
    return NV_OK;
}

NV_STATUS vattn_os_writer_clear(vattn_os_writer_t *w, vattn_os_map_t *map)
{
    uvm_ext_gpu_map_t *ext = ext_of(map);
    NV_STATUS status;

    UVM_ASSERT(w->clearing);
    if (!ext->pt_range_vec.ranges)
        return NV_OK;
    /* Work still in flight on this mapping (its map's pushes) goes first. */
    status = uvm_tracker_wait(&ext->tracker);
    if (status != NV_OK)
        return status;
    /* A downgrade: order earlier accesses before the invalidate, as UVM does for
     * this kind of memory (sparse mappings, with no memory, need the GPU's). */
    if (ext->mem_handle)
        w->membar = uvm_membar_max(w->membar,
                                   uvm_hal_downgrade_membar_type(w->gpu, !ext->is_sysmem &&
                                                                 ext->gpu == ext->owning_gpu));
    else
        w->membar = uvm_membar_max(w->membar, UVM_MEMBAR_GPU);
#if VATTN_L2_INVALIDATE_AT_UNMAP
    /* As uvm_ext_gpu_map_destroy: EGM and peer share the peer invalidate. */
    if (ext->need_l2_invalidate_at_unmap) {
        if (ext->is_sysmem && !ext->is_egm)
            w->l2_sys = true;
        else
            w->l2_peer = true;
    }
#endif
    status = writer_put(w, ext, NULL, 0, ext_entries(ext));
    if (status == NV_OK)
        writer_invalidate(w, ext);
    return status;
}

NV_STATUS vattn_os_writer_finish(vattn_os_writer_t *w)
{
    NV_STATUS status = NV_OK;

    if (!w->clearing)
        status = writer_flush(w);
    if (status != NV_OK || !w->any)
        return status;
    status = writer_room(w, 0);
    if (status != NV_OK)
        return status;
    writer_close(w, true);
    status = uvm_tracker_wait(&w->tracker);
#if VATTN_L2_INVALIDATE_AT_UNMAP
    /* Once no PTE can reach the memory any more, nothing can dirty those
     * lines again: invalidate the L2 the cleared mappings asked for, once. */
    if (status == NV_OK && w->l2_peer)
        status = uvm_mmu_l2_invalidate(w->gpu, UVM_APERTURE_PEER(0));
    if (status == NV_OK && w->l2_sys)
        status = uvm_mmu_l2_invalidate(w->gpu, UVM_APERTURE_SYS);
#endif
    if (status == NV_OK) {
        /* Ready for the next round: a new invalidate, nothing owed. */
        w->any = false;
        w->membar = UVM_MEMBAR_NONE;
        w->l2_peer = false;
        w->l2_sys = false;
        uvm_tlb_batch_begin(w->tree, &w->tlb_batch);
    }
    return status;
}

void vattn_os_writer_end(vattn_os_writer_t *w)
{
    /* An open push only exists if finish was never reached; end it (no
     * invalidate: the caller undoes or abandons) so the channel is released.
     * Mappings still pending were never written. */
    if (w->open)
        writer_close(w, false);
    (void)uvm_tracker_wait_deinit(&w->tracker);
    vattn_os_free(w->buf);
    vattn_os_free(w);
}

void vattn_os_trace(enum vattn_trace_kind kind, const uint8_t uuid[16], uint32_t count, uint32_t done,
                    NV_STATUS status, uint64_t duration_ns)
{
    switch (kind) {
        case VATTN_TRACE_MAP:
            trace_vattn_map(uuid, UVM_VATTN_PAGE_SIZE, count, done, status, duration_ns);
            break;
        case VATTN_TRACE_UNMAP:
            trace_vattn_unmap(uuid, UVM_VATTN_PAGE_SIZE, count, done, status, duration_ns);
            break;
    }
}

long uvm_vattn_ioctl(struct file *filp, unsigned int cmd, unsigned long arg)
{
    return uvm_vattn_dispatch(uvm_fd_va_space(filp), cmd, (uint64_t)arg);
}
