/*
 * uvm_vattn.c - vattn's batched map and unmap over UVM's external ranges: the logic.
 *
 * SPDX-License-Identifier: MIT
 *
 * This file holds everything that can be checked without a GPU: every argument
 * check, the phases of a batch and the undo of a failed one. It reaches UVM and
 * the kernel only through uvm_vattn_os.h, so the same file is compiled into
 * nvidia-uvm.ko (with uvm_vattn_kernel.h) and into a userspace test program (with
 * tests/kernel/shim/uvm_vattn_shim.h) that runs under ASan/UBSan against a model
 * of UVM's external ranges with fault injection.
 *
 * The module keeps no state between calls: every mapping a batch makes is UVM's
 * own record of an external mapping (an ext_gpu_map in the range's per-GPU tree,
 * holding a reference on UVM's dup of the RM memory), so UVM's own teardown
 * (UVM_FREE of the range, process exit, GPU and GPU VA space unregistration)
 * unmaps and releases it like a stock one. No hook in NVIDIA's files is needed
 * for that, and none exists: the patch only routes our command numbers here.
 *
 * Lock order (outermost first); a lock is only ever taken with the ones above held:
 *   1. g_uvm_global.pm.lock (read)    taken by UVM's ioctl entry
 *   2. va_space->serialize_writers_lock, then va_space->lock for read
 *                                     (vattn_os_lock, both commands): as stock
 *                                     UVM_MAP_EXTERNAL_ALLOCATION takes them, so
 *                                     RM may be called and every writer of the
 *                                     va_space (range create/free, GPU removal)
 *                                     and every stock mapper is excluded; GPU
 *                                     fault servicing (read) is not held up
 *   3. a range's per-GPU range-tree mutex, taken and dropped inside single
 *      vattn_os_* calls (never two at once)
 *   4. RM's locks (inside nvUvmInterface* calls), page-tree, PMM, channel and
 *      tracker locks, taken inside UVM calls.
 * No user memory is touched with any of them held: arrays are copied in before
 * and the params copied out after, because a user copy can fault into UVM's
 * fault handler, which takes the va_space lock itself. RM is never called with a
 * push open (the writer ends its push first), as in UVM's own external mapping.
 *
 * Two stock calls need only the va_space lock for read and so can run while a
 * batch holds it: UVM_UNMAP_EXTERNAL and UVM_MAP_EXTERNAL_SPARSE, both of the
 * calling process (another process has another va_space). Each takes a range's
 * tree mutex for its whole work; a batch works across many trees and takes each
 * mutex per step. So a batch never touches a record another call may free (a
 * committed record is UVM's; an unmap detaches what it will free under the tree
 * mutex first), and such a race can only change what the racing process's own
 * addresses map (docs/driver-abi.md: "Races within one process").
 *
 * MAP_BATCH, all or nothing (docs/driver-abi.md has the argument in full):
 *   check   arguments, then under the lock: GPUs, ranges, nothing mapped;
 *   reserve every memory dup, record and page table of the batch (fallible;
 *           undone by discarding, nothing was written);
 *   write   per GPU: PTE values read from RM into the writer's bounded buffer
 *           (no push open), then written from it in as few pushes as fit, and
 *           so on; then the GPU's one TLB invalidate, waited (fails when RM
 *           refuses a PTE query or in UVM's global fatal error state; undone
 *           by clearing what may have been written, and if even that fails, by
 *           keeping the page tables and memory references forever, as UVM
 *           does);
 *   commit  insert the records into UVM's trees (fails only when the process
 *           raced a UVM_MAP_EXTERNAL_SPARSE of its own over the same
 *           addresses: the records not committed are then cleared and
 *           discarded).
 * UNMAP_BATCH:
 *   check   as above;
 *   split   mappings crossing an entry's ends (fallible; a split changes no
 *           translation, so a failed batch leaves the mappings as they were);
 *   count   the mappings inside; allocate the list (at most VATTN_UNMAP_ROUND)
 *           and the writers (fallible);
 *   detach  per GPU, the mappings inside, from their trees (cannot fail);
 *   clear   their PTEs, one invalidate, waited (fails only on a dead channel:
 *           the detached mappings are then abandoned, never freed);
 *   free    their page tables and memory references; then the next round of
 *           detach, clear and free, until one finds fewer than the list holds.
 */

#if defined(UVM_VATTN_USERSPACE)
#include "uvm_vattn_shim.h"
#else
#include "uvm_vattn_kernel.h"
#endif
#include "uvm_vattn_ioctl.h"
#include "uvm_vattn_os.h"

#define VATTN_ALIGN_MASK        (UVM_VATTN_PAGE_SIZE - 1)
/* Most mappings an unmap detaches, clears and invalidates together on one GPU:
 * bounds its list (512 KiB) whatever the entries cover. */
#define VATTN_UNMAP_ROUND       65536u

/* A span [base, base + length) of a batch entry, for the overlap check. */
struct vattn_span
{
    uint64_t base;
    uint64_t length;
    uint32_t index;
    uint32_t pad;
};

/* One dup of RM memory on one GPU, shared by the batch's entries that name it. */
struct vattn_mem_slot
{
    uint32_t h_memory;
    uint32_t gpu;                /* index into the batch's GPU list; UINT32_MAX: empty */
    vattn_os_mem_t *mem;
    uint64_t size;
};

/* ------------------------------------------------------------------------- */
/* Argument checks (no lock, no environment)                                  */
/* ------------------------------------------------------------------------- */

/* base and length 64 KiB aligned, length nonzero, base + length no overflow. */
static NV_STATUS check_span(uint64_t base, uint64_t length)
{
    if (length == 0 || (base & VATTN_ALIGN_MASK) || (length & VATTN_ALIGN_MASK))
        return NV_ERR_INVALID_ADDRESS;
    if (base + length < base)
        return NV_ERR_INVALID_ADDRESS;
    return NV_OK;
}

static bool span_before(const struct vattn_span *a, const struct vattn_span *b)
{
    return a->base < b->base || (a->base == b->base && a->index < b->index);
}

/* Heapsort by base: no recursion, no allocation, O(n log n) for the largest batch. */
static void sift_down(struct vattn_span *s, uint32_t root, uint32_t n)
{
    for (;;) {
        uint32_t child = 2 * root + 1, big = root;
        struct vattn_span t;

        if (child < n && span_before(&s[big], &s[child]))
            big = child;
        if (child + 1 < n && span_before(&s[big], &s[child + 1]))
            big = child + 1;
        if (big == root)
            return;
        t = s[root];
        s[root] = s[big];
        s[big] = t;
        root = big;
    }
}

static void sort_spans(struct vattn_span *s, uint32_t n)
{
    uint32_t i;

    for (i = n / 2; i-- > 0;)
        sift_down(s, i, n);
    for (i = n; i-- > 1;) {
        struct vattn_span t = s[0];

        s[0] = s[i];
        s[i] = t;
        sift_down(s, 0, i);
    }
}

/* NV_OK when no two spans overlap; else *bad is the later of the first overlapping
 * pair found in address order. Sorts s. */
static NV_STATUS check_disjoint(struct vattn_span *s, uint32_t n, uint32_t *bad)
{
    uint32_t i;

    sort_spans(s, n);
    for (i = 1; i < n; i++) {
        if (s[i].base < s[i - 1].base + s[i - 1].length) {
            *bad = s[i].index > s[i - 1].index ? s[i].index : s[i - 1].index;
            return NV_ERR_INVALID_ARGUMENT;
        }
    }
    return NV_OK;
}

/* Copies a user array of count elements of size elem into a new kernel buffer. */
static NV_STATUS copy_in_array(uint64_t user, uint32_t count, size_t elem, void **out, int *err)
{
    void *buf;

    *out = NULL;
    if (count == 0)
        return NV_OK;
    buf = vattn_os_alloc(elem * count);
    if (!buf)
        return NV_ERR_NO_MEMORY;
    if (vattn_os_copy_from_user(buf, user, elem * count)) {
        vattn_os_free(buf);
        *err = -EFAULT;
        return NV_ERR_INVALID_ADDRESS;
    }
    *out = buf;
    return NV_OK;
}

/* The GPU list of a batch: 1..UVM_VATTN_MAX_GPUS UUIDs, none twice. */
static NV_STATUS gpus_in(uint64_t user, uint32_t n, uint8_t (**uuids)[16], int *err)
{
    NV_STATUS status;
    uint32_t i, j;

    *uuids = NULL;
    if (n == 0 || n > UVM_VATTN_MAX_GPUS)
        return NV_ERR_INVALID_ARGUMENT;
    status = copy_in_array(user, n, 16, (void **)uuids, err);
    if (status != NV_OK)
        return status;
    for (i = 0; i < n; i++) {
        for (j = 0; j < i; j++) {
            if (memcmp((*uuids)[i], (*uuids)[j], 16) == 0) {
                vattn_os_free(*uuids);
                *uuids = NULL;
                return NV_ERR_INVALID_ARGUMENT;
            }
        }
    }
    return NV_OK;
}

/* Resolves every listed GPU. */
static NV_STATUS gpus_find(vattn_os_va_space_t *va_space, uint8_t (*uuids)[16], uint32_t n,
                           vattn_os_gpu_t **gpus) __must_hold(va_space)
{
    NV_STATUS status;
    uint32_t g;

    for (g = 0; g < n; g++) {
        status = vattn_os_gpu_find(va_space, uuids[g], &gpus[g]);
        if (status != NV_OK)
            return status;
    }
    return NV_OK;
}

/* ------------------------------------------------------------------------- */
/* MAP_BATCH                                                                  */
/* ------------------------------------------------------------------------- */

static NV_STATUS map_check_entries(const UVM_VATTN_MAP_ENTRY *e, uint32_t count, struct vattn_span *spans,
                                   uint32_t *bad)
{
    NV_STATUS status;
    uint32_t i;

    for (i = 0; i < count; i++) {
        *bad = i;
        if (e[i].reserved)
            return NV_ERR_INVALID_ARGUMENT;
        status = check_span(e[i].base, e[i].length);
        if (status != NV_OK)
            return status;
        if ((e[i].offset & VATTN_ALIGN_MASK) || e[i].offset + e[i].length < e[i].offset)
            return NV_ERR_INVALID_OFFSET;
        spans[i].base = e[i].base;
        spans[i].length = e[i].length;
        spans[i].index = i;
        spans[i].pad = 0;
    }
    return check_disjoint(spans, count, bad);
}

/* The dup of (gpu g, h_memory), made on first use. Open addressing over a table
 * of 2 * count * ngpu slots: the batch names at most count handles per GPU. */
static NV_STATUS mem_lookup(vattn_os_va_space_t *va_space, struct vattn_mem_slot *table, uint32_t cap,
                            vattn_os_gpu_t *gpu, uint32_t g, int32_t fd, uint32_t h_client, uint32_t h_memory,
                            struct vattn_mem_slot **out) __must_hold(va_space)
{
    uint32_t i = (h_memory * 2654435761u + g * 40503u) % cap;
    NV_STATUS status;

    while (table[i].gpu != UINT32_MAX) {
        if (table[i].gpu == g && table[i].h_memory == h_memory) {
            *out = &table[i];
            return NV_OK;
        }
        i = (i + 1) % cap;
    }
    status = vattn_os_mem_get(va_space, gpu, fd, h_client, h_memory, &table[i].mem, &table[i].size);
    if (status != NV_OK)
        return status;
    table[i].gpu = g;
    table[i].h_memory = h_memory;
    *out = &table[i];
    return NV_OK;
}

/* Begins n writers, all or none: a batch allocates every writer it may need,
 * the undo's included, before it writes anything. */
static NV_STATUS writers_begin(vattn_os_va_space_t *va_space, vattn_os_gpu_t **gpus, uint32_t n, bool clearing,
                               vattn_os_writer_t **w) __must_hold(va_space)
{
    NV_STATUS status;
    uint32_t g;

    for (g = 0; g < n; g++) {
        status = vattn_os_writer_begin(va_space, gpus[g], clearing, &w[g]);
        if (status != NV_OK) {
            while (g-- > 0)
                vattn_os_writer_end(w[g]);
            return status;
        }
    }
    return NV_OK;
}

/*
 * Clears, with the undo writers, the PTEs of maps[i] for i in [from, to) (entry
 * i / ngpu on GPU i % ngpu), on the GPUs below gpus_written. False when a clear
 * failed (a dead channel): those records must then be abandoned, not discarded.
 */
static bool map_unwrite(vattn_os_map_t **maps, uint32_t ngpu, uint32_t from, uint32_t to, uint32_t gpus_written,
                        vattn_os_writer_t **un)
{
    NV_STATUS undo;
    bool ok = true;
    uint32_t g, i;

    for (g = 0; g < gpus_written; g++) {
        undo = NV_OK;
        for (i = from; i < to && undo == NV_OK; i++) {
            if (i % ngpu == g)
                undo = vattn_os_writer_clear(un[g], maps[i]);
        }
        if (undo == NV_OK)
            undo = vattn_os_writer_finish(un[g]);
        if (undo != NV_OK)
            ok = false;
    }
    return ok;
}

/*
 * The writes of a prepared batch: maps[i * ngpu + g] is entry i on GPU g, wr[g]
 * writes GPU g (and is ended here). On failure, clears what may have been
 * written with the undo writers un[]; when that fails too (a dead channel), *lost
 * says the records must be abandoned rather than discarded.
 */
static NV_STATUS map_write(uint32_t ngpu, vattn_os_map_t **maps, uint32_t count, vattn_os_writer_t **wr,
                           vattn_os_writer_t **un, bool *lost)
{
    NV_STATUS status = NV_OK;
    uint32_t g, i, written = 0;

    *lost = false;
    for (g = 0; g < ngpu && status == NV_OK; g++) {
        for (i = 0; i < count && status == NV_OK; i++)
            status = vattn_os_writer_map(wr[g], maps[i * ngpu + g]);
        if (status == NV_OK)
            status = vattn_os_writer_finish(wr[g]);
        /* GPU g may hold PTEs now, whether or not its writer finished. */
        written = g + 1;
    }
    for (g = 0; g < ngpu; g++)
        vattn_os_writer_end(wr[g]);
    if (status != NV_OK)
        *lost = !map_unwrite(maps, ngpu, 0, count * ngpu, written, un);
    return status;
}

static NV_STATUS map_locked(vattn_os_va_space_t *va_space, const UVM_VATTN_MAP_BATCH_PARAMS *p,
                            const UVM_VATTN_MAP_ENTRY *e, uint8_t (*uuids)[16], uint32_t *bad)
    __must_hold(va_space)
{
    const uint32_t count = p->count, ngpu = p->gpuCount;
    vattn_os_gpu_t *gpus[UVM_VATTN_MAX_GPUS];
    vattn_os_writer_t *wr[UVM_VATTN_MAX_GPUS], *un[UVM_VATTN_MAX_GPUS];
    vattn_os_range_t **ranges = NULL;
    vattn_os_map_t **maps = NULL;
    struct vattn_mem_slot *mems = NULL, *slot;
    uint32_t cap = 2 * count * ngpu, i, g, prepared = 0, committed = 0;
    NV_STATUS status;
    bool lost = false;

    *bad = count;
    status = gpus_find(va_space, uuids, ngpu, gpus);
    if (status != NV_OK)
        return status;

    ranges = vattn_os_alloc(sizeof(*ranges) * count);
    maps = vattn_os_alloc(sizeof(*maps) * count * ngpu);
    mems = vattn_os_alloc(sizeof(*mems) * cap);
    if (mems) {
        for (i = 0; i < cap; i++)
            mems[i].gpu = UINT32_MAX;
    }
    if (!ranges || !maps || !mems) {
        status = NV_ERR_NO_MEMORY;
        goto out;
    }

    /* check: every entry inside one external range, unmapped on every GPU. */
    for (i = 0; i < count; i++) {
        *bad = i;
        status = vattn_os_range_find(va_space, e[i].base, e[i].length, &ranges[i]);
        if (status != NV_OK)
            goto out;
        for (g = 0; g < ngpu; g++) {
            if (vattn_os_range_mapped(va_space, ranges[i], gpus[g], e[i].base, e[i].length)) {
                status = NV_ERR_UVM_ADDRESS_IN_USE;
                goto out;
            }
        }
    }

    /* reserve: memory, records, page tables, PTE values; nothing written. */
    for (i = 0; i < count; i++) {
        *bad = i;
        for (g = 0; g < ngpu; g++) {
            status = mem_lookup(va_space, mems, cap, gpus[g], g, p->rmCtrlFd, p->hClient, e[i].hMemory, &slot);
            if (status != NV_OK)
                goto out;
            if (e[i].offset > slot->size || e[i].length > slot->size - e[i].offset) {
                status = NV_ERR_INVALID_OFFSET;
                goto out;
            }
            status = vattn_os_map_prepare(va_space, ranges[i], gpus[g], slot->mem, e[i].base, e[i].length,
                                          e[i].offset, &maps[i * ngpu + g]);
            if (status != NV_OK)
                goto out;
            prepared++;
        }
    }

    /* write, then commit (or undo). */
    *bad = count;
    status = writers_begin(va_space, gpus, ngpu, false, wr);
    if (status != NV_OK)
        goto out;
    status = writers_begin(va_space, gpus, ngpu, true, un);
    if (status != NV_OK) {
        for (g = 0; g < ngpu; g++)
            vattn_os_writer_end(wr[g]);
        goto out;
    }
    status = map_write(ngpu, maps, count, wr, un, &lost);
    if (status == NV_OK) {
        for (committed = 0; committed < prepared; committed++) {
            status = vattn_os_map_commit(va_space, maps[committed]);
            if (status != NV_OK)
                break;
        }
        if (status != NV_OK) {
            /* A UVM_MAP_EXTERNAL_SPARSE of this process took entry
             * committed / ngpu's addresses meanwhile: the records not yet
             * committed go again (clearing their PTEs also clears the sparse
             * mapping's there: the process raced itself). The committed ones
             * stay: this is the one case a batch is not all or nothing. */
            *bad = committed / ngpu;
            lost = !map_unwrite(maps, ngpu, committed, prepared, ngpu, un);
        }
    }
    for (g = 0; g < ngpu; g++)
        vattn_os_writer_end(un[g]);

out:
    for (i = committed; i < prepared; i++) {
        if (lost)
            vattn_os_map_abandon(va_space, maps[i]);
        else
            vattn_os_map_discard(va_space, maps[i]);
    }
    if (mems) {
        for (i = 0; i < cap; i++) {
            if (mems[i].gpu != UINT32_MAX)
                vattn_os_mem_put(va_space, mems[i].mem);
        }
    }
    vattn_os_free(mems);
    vattn_os_free(maps);
    vattn_os_free(ranges);
    return status;
}

static NV_STATUS cmd_map_batch(vattn_os_va_space_t *va_space, UVM_VATTN_MAP_BATCH_PARAMS *p, uint8_t uuid0[16],
                               int *err)
{
    UVM_VATTN_MAP_ENTRY *e = NULL;
    struct vattn_span *spans = NULL;
    uint8_t (*uuids)[16] = NULL;
    NV_STATUS status;
    uint32_t bad = p->count;

    p->errorIndex = p->count;
    if (p->flags || p->reserved)
        return NV_ERR_INVALID_ARGUMENT;
    if (p->count > UVM_VATTN_MAX_BATCH)
        return NV_ERR_INVALID_LIMIT;
    status = gpus_in(p->gpuUuids, p->gpuCount, &uuids, err);
    if (status != NV_OK)
        return status;
    memcpy(uuid0, uuids[0], 16);
    if (p->count == 0)
        goto out;
    status = copy_in_array(p->entries, p->count, sizeof(*e), (void **)&e, err);
    if (status != NV_OK)
        goto out;
    spans = vattn_os_alloc(sizeof(*spans) * p->count);
    if (!spans) {
        status = NV_ERR_NO_MEMORY;
        goto out;
    }
    status = map_check_entries(e, p->count, spans, &bad);
    if (status == NV_OK) {
        vattn_os_lock(va_space);
        status = map_locked(va_space, p, e, uuids, &bad);
        vattn_os_unlock(va_space);
    }
    if (status != NV_OK)
        p->errorIndex = bad;

out:
    vattn_os_free(spans);
    vattn_os_free(e);
    vattn_os_free(uuids);
    return status;
}

/* ------------------------------------------------------------------------- */
/* UNMAP_BATCH                                                                */
/* ------------------------------------------------------------------------- */

/*
 * The unmap under the lock. Fallible steps (splits, the list, the writers) come
 * first; then, per GPU, in rounds of at most VATTN_UNMAP_ROUND, the mappings
 * inside the entries are detached from their trees (from there on they are the
 * batch's alone: a concurrent stock unmap can no longer find them), cleared,
 * invalidated once, and freed. Only a dead channel fails the batch after a
 * detach: those mappings are then abandoned.
 */
static NV_STATUS unmap_locked(vattn_os_va_space_t *va_space, const UVM_VATTN_UNMAP_BATCH_PARAMS *p,
                              const UVM_VATTN_UNMAP_ENTRY *e, uint8_t (*uuids)[16], uint32_t *bad)
    __must_hold(va_space)
{
    const uint32_t count = p->count, ngpu = p->gpuCount;
    vattn_os_gpu_t *gpus[UVM_VATTN_MAX_GPUS];
    vattn_os_writer_t *w[UVM_VATTN_MAX_GPUS];
    vattn_os_range_t **ranges = NULL;
    vattn_os_map_t **maps = NULL;
    bool writers = false;
    uint64_t total = 0;
    uint32_t i, g, k, n, cap;
    NV_STATUS status;

    *bad = count;
    status = gpus_find(va_space, uuids, ngpu, gpus);
    if (status != NV_OK)
        return status;
    ranges = vattn_os_alloc(sizeof(*ranges) * count);
    if (!ranges)
        return NV_ERR_NO_MEMORY;

    /* check */
    for (i = 0; i < count; i++) {
        *bad = i;
        status = vattn_os_range_find(va_space, e[i].base, e[i].length, &ranges[i]);
        if (status != NV_OK)
            goto out;
    }
    /* split (fallible, changes no translation) */
    for (i = 0; i < count; i++) {
        *bad = i;
        for (g = 0; g < ngpu; g++) {
            status = vattn_os_unmap_split(va_space, ranges[i], gpus[g], e[i].base, e[i].length);
            if (status != NV_OK)
                goto out;
        }
    }
    /* count what is inside, then allocate everything the rest needs */
    for (i = 0; i < count; i++) {
        for (g = 0; g < ngpu; g++)
            total += vattn_os_unmap_count(va_space, ranges[i], gpus[g], e[i].base, e[i].length);
    }
    *bad = count;
    if (total == 0)
        goto out;
    cap = total < VATTN_UNMAP_ROUND ? (uint32_t)total : VATTN_UNMAP_ROUND;
    maps = vattn_os_alloc(sizeof(*maps) * cap);
    if (!maps) {
        status = NV_ERR_NO_MEMORY;
        goto out;
    }
    status = writers_begin(va_space, gpus, ngpu, true, w);
    if (status != NV_OK)
        goto out;
    writers = true;

    /*
     * detach, clear, free; per GPU, a round at a time, until a round takes fewer
     * than cap. A stock unmap or sparse map of the process's own (they need only
     * the lock for read) may have split a counted mapping into more since the
     * count: the next round takes the rest. A mapping crossing an entry's end
     * can only be a sparse map made since the split: it came after this batch,
     * and stays.
     */
    for (g = 0; g < ngpu && status == NV_OK; g++) {
        do {
            for (i = 0, n = 0; i < count && n < cap; i++)
                n += vattn_os_unmap_detach(va_space, ranges[i], gpus[g], e[i].base, e[i].length, maps + n, cap - n);
            for (k = 0; k < n && status == NV_OK; k++)
                status = vattn_os_writer_clear(w[g], maps[k]);
            if (status == NV_OK)
                status = vattn_os_writer_finish(w[g]);
            for (k = 0; k < n; k++) {
                if (status == NV_OK)
                    vattn_os_unmap_destroy(va_space, maps[k]);
                else
                    vattn_os_unmap_abandon(va_space, maps[k]);
            }
        } while (status == NV_OK && n == cap);
    }

out:
    if (writers) {
        for (g = 0; g < ngpu; g++)
            vattn_os_writer_end(w[g]);
    }
    vattn_os_free(maps);
    vattn_os_free(ranges);
    return status;
}

static NV_STATUS cmd_unmap_batch(vattn_os_va_space_t *va_space, UVM_VATTN_UNMAP_BATCH_PARAMS *p,
                                 uint8_t uuid0[16], int *err)
{
    UVM_VATTN_UNMAP_ENTRY *e = NULL;
    struct vattn_span *spans = NULL;
    uint8_t (*uuids)[16] = NULL;
    NV_STATUS status = NV_OK;
    uint32_t bad = p->count, i;

    p->errorIndex = p->count;
    if (p->flags || p->reserved)
        return NV_ERR_INVALID_ARGUMENT;
    if (p->count > UVM_VATTN_MAX_BATCH)
        return NV_ERR_INVALID_LIMIT;
    status = gpus_in(p->gpuUuids, p->gpuCount, &uuids, err);
    if (status != NV_OK)
        return status;
    memcpy(uuid0, uuids[0], 16);
    if (p->count == 0)
        goto out;
    status = copy_in_array(p->entries, p->count, sizeof(*e), (void **)&e, err);
    if (status != NV_OK)
        goto out;
    spans = vattn_os_alloc(sizeof(*spans) * p->count);
    if (!spans) {
        status = NV_ERR_NO_MEMORY;
        goto out;
    }
    for (i = 0; i < p->count && status == NV_OK; i++) {
        bad = i;
        status = check_span(e[i].base, e[i].length);
        spans[i].base = e[i].base;
        spans[i].length = e[i].length;
        spans[i].index = i;
        spans[i].pad = 0;
    }
    if (status == NV_OK)
        status = check_disjoint(spans, p->count, &bad);
    if (status == NV_OK) {
        vattn_os_lock(va_space);
        status = unmap_locked(va_space, p, e, uuids, &bad);
        vattn_os_unlock(va_space);
    }
    if (status != NV_OK)
        p->errorIndex = bad;

out:
    vattn_os_free(spans);
    vattn_os_free(e);
    vattn_os_free(uuids);
    return status;
}

/* ------------------------------------------------------------------------- */
/* Dispatch                                                                   */
/* ------------------------------------------------------------------------- */

union vattn_params
{
    UVM_VATTN_GET_INFO_PARAMS info;
    UVM_VATTN_MAP_BATCH_PARAMS map;
    UVM_VATTN_UNMAP_BATCH_PARAMS unmap;
};

static size_t params_size(unsigned int cmd)
{
    switch (cmd) {
        case UVM_VATTN_GET_INFO:    return sizeof(UVM_VATTN_GET_INFO_PARAMS);
        case UVM_VATTN_MAP_BATCH:   return sizeof(UVM_VATTN_MAP_BATCH_PARAMS);
        case UVM_VATTN_UNMAP_BATCH: return sizeof(UVM_VATTN_UNMAP_BATCH_PARAMS);
    }
    return 0;
}

long uvm_vattn_dispatch(vattn_os_va_space_t *va_space, unsigned int cmd, uint64_t user_arg)
{
    union vattn_params u;
    size_t size = params_size(cmd);
    uint64_t start = vattn_os_now_ns();
    uint8_t uuid[16];
    NV_STATUS status;
    int err = 0;

    if (size == 0)
        return -EINVAL;
    if (vattn_os_copy_from_user(&u, user_arg, size))
        return -EFAULT;
    memset(uuid, 0, sizeof(uuid));

    status = vattn_os_global_status();
    if (status == NV_OK && !va_space)
        status = NV_ERR_ILLEGAL_ACTION;
    switch (cmd) {
        case UVM_VATTN_GET_INFO:
            u.info.abiVersion = UVM_VATTN_ABI_VERSION;
            u.info.maxBatch = UVM_VATTN_MAX_BATCH;
            u.info.maxGpus = UVM_VATTN_MAX_GPUS;
            u.info.rmStatus = status;
            break;
        case UVM_VATTN_MAP_BATCH:
            if (status == NV_OK)
                status = cmd_map_batch(va_space, &u.map, uuid, &err);
            else
                u.map.errorIndex = u.map.count;
            u.map.rmStatus = status;
            vattn_os_trace(VATTN_TRACE_MAP, uuid, u.map.count, status == NV_OK ? u.map.count : 0, status,
                           vattn_os_now_ns() - start);
            break;
        case UVM_VATTN_UNMAP_BATCH:
            if (status == NV_OK)
                status = cmd_unmap_batch(va_space, &u.unmap, uuid, &err);
            else
                u.unmap.errorIndex = u.unmap.count;
            u.unmap.rmStatus = status;
            vattn_os_trace(VATTN_TRACE_UNMAP, uuid, u.unmap.count, status == NV_OK ? u.unmap.count : 0, status,
                           vattn_os_now_ns() - start);
            break;
    }

    if (err)
        return err;
    if (vattn_os_copy_to_user(user_arg, &u, size))
        return -EFAULT;
    return 0;
}
