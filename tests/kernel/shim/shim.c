/*
 * shim.c - the userspace model of UVM behind uvm_vattn_os.h (see uvm_vattn_shim.h).
 *
 * SPDX-License-Identifier: MIT
 */

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "uvm_vattn_shim.h"
#include "uvm_vattn_os.h"

long shim_fail_kalloc = -1, shim_fail_chunk = -1, shim_fail_map = -1, shim_fail_unmap = -1;
long shim_fail_copy_from = -1, shim_fail_copy_to = -1, shim_fail_unmap_forced = -1;
long shim_chunks_abandoned;
uint64_t shim_pinned_limit;
NV_STATUS shim_global_status = NV_OK;
long shim_kallocs_live;
/* va_space locks held: no GPU may be released under one (UVM's global lock, taken by
 * the real release, is ordered before the va_space lock). */
static int shim_va_locks_held;
struct shim_trace shim_last_trace;
long shim_trace_count;

#define SHIM_MAX_USER 64
static struct { uintptr_t p; size_t n; } user_bufs[SHIM_MAX_USER];
static int nuser;

static int fire(long *countdown)
{
    if (*countdown < 0)
        return 0;
    if (*countdown == 0) {
        *countdown = -1;
        return 1;
    }
    (*countdown)--;
    return 0;
}

void shim_reset(void)
{
    shim_fail_kalloc = shim_fail_chunk = shim_fail_map = shim_fail_unmap = -1;
    shim_fail_copy_from = shim_fail_copy_to = shim_fail_unmap_forced = -1;
    shim_chunks_abandoned = 0;
    shim_pinned_limit = 0;
    shim_global_status = NV_OK;
    shim_current_process = 0;
    memset(&shim_last_trace, 0, sizeof(shim_last_trace));
    shim_trace_count = 0;
    shim_user_reset();
}

void shim_user_register(const void *p, size_t n)
{
    /* The most recent SHIM_MAX_USER buffers count as user memory. */
    user_bufs[nuser % SHIM_MAX_USER].p = (uintptr_t)p;
    user_bufs[nuser % SHIM_MAX_USER].n = n;
    nuser++;
}

void shim_user_reset(void) { nuser = 0; }

static int user_ok(uint64_t p, size_t n)
{
    int i;

    for (i = 0; i < nuser && i < SHIM_MAX_USER; i++) {
        if (p >= user_bufs[i].p && n <= user_bufs[i].n && p - user_bufs[i].p <= user_bufs[i].n - n)
            return 1;
    }
    return 0;
}

bool shim_cmpxchg(void **slot, void *val)
{
    if (*slot)
        return false;
    *slot = val;
    return true;
}

void *vattn_os_alloc(size_t bytes)
{
    void *p;

    if (fire(&shim_fail_kalloc))
        return NULL;
    p = malloc(bytes ? bytes : 1);
    if (p) {
        memset(p, 0xA5, bytes); /* like kmalloc: never assume zeroed memory */
        shim_kallocs_live++;
    }
    return p;
}

void vattn_os_free(void *ptr)
{
    if (ptr)
        shim_kallocs_live--;
    free(ptr);
}

int vattn_os_copy_from_user(void *dst, uint64_t user_src, size_t bytes)
{
    if (bytes == 0)
        return 0;
    if (fire(&shim_fail_copy_from) || !user_ok(user_src, bytes))
        return 1;
    memcpy(dst, (const void *)(uintptr_t)user_src, bytes);
    return 0;
}

int vattn_os_copy_to_user(uint64_t user_dst, const void *src, size_t bytes)
{
    if (bytes == 0)
        return 0;
    if (fire(&shim_fail_copy_to) || !user_ok(user_dst, bytes))
        return 1;
    memcpy((void *)(uintptr_t)user_dst, src, bytes);
    return 0;
}

int shim_current_process;
struct shim_owner shim_owners[SHIM_MAX_PROCESSES];

vattn_os_owner_t *vattn_os_owner_get(void)
{
    struct shim_owner *o = &shim_owners[shim_current_process];

    if (fire(&shim_fail_kalloc))
        return NULL;
    o->process = shim_current_process;
    o->refs++;
    return o;
}

void vattn_os_owner_put(vattn_os_owner_t *o)
{
    if (o->refs <= 0)
        abort();
    if (--o->refs == 0 && o->charged != 0)
        abort(); /* the last file of a process left pages charged */
}

bool vattn_os_owner_charge(vattn_os_owner_t *o, uint64_t bytes, uint64_t limit)
{
    if (o->refs <= 0)
        abort();
    if (limit && (o->charged > limit || bytes > limit - o->charged))
        return false;
    o->charged += bytes;
    return true;
}

void vattn_os_owner_uncharge(vattn_os_owner_t *o, uint64_t bytes)
{
    if (bytes > o->charged)
        abort(); /* uncharging more than was charged */
    o->charged -= bytes;
}

uint32_t vattn_os_next_tag(void)
{
    static uint32_t tag;

    return ++tag;
}

uint64_t vattn_os_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

NV_STATUS vattn_os_global_status(void) { return shim_global_status; }
uint64_t vattn_os_pinned_limit(void) { return shim_pinned_limit; }
struct uvm_vattn_state **vattn_os_state_slot(vattn_os_va_space_t *va_space) { return &va_space->vattn; }

void vattn_os_mutex_init(vattn_os_mutex_t *m) { m->held = 0; }
void vattn_os_mutex_lock(vattn_os_mutex_t *m)
{
    if (m->held)
        abort(); /* recursive locking: a deadlock in the kernel */
    m->held = 1;
}
void vattn_os_mutex_unlock(vattn_os_mutex_t *m)
{
    if (!m->held)
        abort();
    m->held = 0;
}

void vattn_os_va_space_lock(vattn_os_va_space_t *vs)
{
    if (vs->lock_depth)
        abort(); /* rwsem read recursion can deadlock behind a writer */
    vs->lock_depth = 1;
    shim_va_locks_held++;
}
void vattn_os_va_space_unlock(vattn_os_va_space_t *vs)
{
    if (vs->lock_depth != 1)
        abort();
    vs->lock_depth = 0;
    shim_va_locks_held--;
}
long shim_write_locks;

void vattn_os_va_space_lock_write(vattn_os_va_space_t *vs)
{
    if (vs->lock_depth)
        abort();
    vs->lock_depth = 2;
    shim_write_locks++;
    shim_va_locks_held++;
}
void vattn_os_va_space_unlock_write(vattn_os_va_space_t *vs)
{
    if (vs->lock_depth != 2)
        abort(); /* unlocking in the wrong mode */
    vs->lock_depth = 0;
    shim_va_locks_held--;
}

#define NEED_VA_LOCK(vs) do { if (!(vs)->lock_depth) abort(); } while (0)
#define NEED_VA_LOCK_WRITE(vs) do { if ((vs)->lock_depth != 2) abort(); } while (0)

NV_STATUS vattn_os_gpu_find(vattn_os_va_space_t *vs, const uint8_t uuid[16], vattn_os_gpu_t **gpu, uint64_t *page_sizes)
{
    int i;

    NEED_VA_LOCK(vs);
    for (i = 0; i < SHIM_MAX_GPUS; i++) {
        if (vs->gpus[i] && !vs->gvs_gone[i] && memcmp(vs->gpus[i]->uuid, uuid, 16) == 0) {
            *gpu = vs->gpus[i];
            *page_sizes = vs->gpus[i]->page_sizes;
            return NV_OK;
        }
    }
    return NV_ERR_INVALID_DEVICE;
}

uint32_t vattn_os_gpu_list(vattn_os_va_space_t *vs, UVM_VATTN_GPU_INFO *info, uint32_t capacity)
{
    uint32_t n = 0;
    int i;

    NEED_VA_LOCK(vs);
    for (i = 0; i < SHIM_MAX_GPUS; i++) {
        if (!vs->gpus[i] || vs->gvs_gone[i])
            continue;
        if (n < capacity) {
            memcpy(info[n].gpuUuid, vs->gpus[i]->uuid, 16);
            info[n].pageSizes = vs->gpus[i]->page_sizes;
        }
        n++;
    }
    return n;
}

void vattn_os_gpu_retain(vattn_os_gpu_t *gpu) { gpu->retains++; }
void vattn_os_gpu_release(vattn_os_gpu_t *gpu)
{
    if (gpu->retains <= 0 || shim_va_locks_held)
        abort();
    gpu->retains--;
}

static int range_index(vattn_os_va_space_t *vs, uint64_t address)
{
    int i;

    for (i = 0; i < vs->nranges; i++) {
        if (address >= vs->ranges[i].start && address < vs->ranges[i].end)
            return i;
    }
    return -1;
}

NV_STATUS vattn_os_range_check(vattn_os_va_space_t *vs, uint64_t address, uint64_t size,
                               uint64_t *range_start, uint64_t *range_end)
{
    int i;

    NEED_VA_LOCK(vs);
    if (address + size < address)
        abort(); /* the caller promised no overflow */
    i = range_index(vs, address);
    if (i < 0 || address + size > vs->ranges[i].end)
        return NV_ERR_INVALID_ADDRESS;
    *range_start = vs->ranges[i].start;
    *range_end = vs->ranges[i].end - 1;
    return NV_OK;
}

NV_STATUS vattn_os_range_claim(vattn_os_va_space_t *vs, uint64_t address)
{
    int i;

    NEED_VA_LOCK_WRITE(vs); /* else a fault could add a block after the check */
    i = range_index(vs, address);
    if (i < 0)
        return NV_ERR_INVALID_ADDRESS;
    return vs->ranges[i].blocks ? NV_ERR_INVALID_STATE : NV_OK;
}

NV_STATUS vattn_os_chunk_alloc(vattn_os_gpu_t *gpu, uint64_t size, vattn_os_chunk_t **chunk)
{
    struct shim_chunk *c;

    if (fire(&shim_fail_chunk) || gpu->mem_used + size > gpu->mem_capacity)
        return NV_ERR_NO_MEMORY;
    c = malloc(sizeof(*c));
    if (!c)
        return NV_ERR_NO_MEMORY;
    c->gpu = gpu;
    c->size = size;
    c->mapped = 0;
    c->lost = 0;
    c->zeroed = 1;
    c->data = 0;
    gpu->mem_used += size;
    gpu->live_chunks++;
    *chunk = c;
    return NV_OK;
}

void vattn_os_chunk_abandon(vattn_os_gpu_t *gpu, vattn_os_chunk_t *chunk)
{
    if (chunk->gpu != gpu || chunk->mapped || !chunk->lost || gpu->retains <= 0)
        abort(); /* only a lost chunk is abandoned */
    shim_chunks_abandoned++;
    gpu->mem_used -= chunk->size;
    gpu->live_chunks--;
    memset(chunk, 0x5A, sizeof(*chunk));
    free(chunk);
}

void vattn_os_chunk_free(vattn_os_gpu_t *gpu, vattn_os_chunk_t *chunk)
{
    if (chunk->gpu != gpu || chunk->mapped || chunk->lost || gpu->retains <= 0)
        abort(); /* wrong GPU, freed under a live (or possibly stale) mapping, or GPU not retained */
    gpu->mem_used -= chunk->size;
    gpu->live_chunks--;
    memset(chunk, 0x5A, sizeof(*chunk));
    free(chunk);
}

struct shim_pte *shim_pte_at(vattn_os_va_space_t *vs, uint64_t address)
{
    int i;

    for (i = 0; i < vs->nptes; i++) {
        if (vs->ptes[i].address == address)
            return &vs->ptes[i];
    }
    return NULL;
}

static int gpu_index(vattn_os_va_space_t *vs, vattn_os_gpu_t *gpu)
{
    int i;

    for (i = 0; i < SHIM_MAX_GPUS; i++) {
        if (vs->gpus[i] == gpu)
            return i;
    }
    return -1;
}

NV_STATUS vattn_os_map(vattn_os_va_space_t *vs, vattn_os_gpu_t *gpu, uint64_t address, uint64_t size, vattn_os_chunk_t *chunk)
{
    uint64_t rs, re;
    int i, g, r;

    NEED_VA_LOCK(vs);
    r = range_index(vs, address);
    if (chunk->gpu != gpu || chunk->size != size || (address & (size - 1)) || chunk->mapped ||
        vattn_os_range_check(vs, address, size, &rs, &re) != NV_OK)
        abort(); /* the logic must never ask for this */
    if (vs->ranges[r].blocks || !uvm_vattn_owned(vs, address, address + size - 1))
        abort(); /* PTEs where UVM manages (or may manage) the same page tables */
    g = gpu_index(vs, gpu);
    if (g < 0 || vs->gvs_gone[g])
        return NV_ERR_INVALID_DEVICE;
    for (i = 0; i < vs->nptes; i++) {
        struct shim_pte *p = &vs->ptes[i];

        if (p->gpu == gpu && address < p->address + p->size && p->address < address + size)
            abort(); /* overlapping mapping: would overwrite live PTEs */
    }
    if (fire(&shim_fail_map) || vs->nptes == SHIM_MAX_PTES)
        return NV_ERR_NO_MEMORY;
    vs->ptes[vs->nptes].gpu = gpu;
    vs->ptes[vs->nptes].address = address;
    vs->ptes[vs->nptes].size = size;
    vs->ptes[vs->nptes].chunk = chunk;
    vs->nptes++;
    chunk->mapped++;
    return NV_OK;
}

NV_STATUS vattn_os_unmap(vattn_os_va_space_t *vs, vattn_os_gpu_t *gpu, uint64_t address, uint64_t size,
                         vattn_os_chunk_t *chunk, bool force)
{
    struct shim_pte *p;
    NV_STATUS status = NV_OK;

    NEED_VA_LOCK(vs);
    p = shim_pte_at(vs, address);
    if (!p || p->gpu != gpu || p->size != size || p->chunk != chunk)
        abort(); /* unmapping something we did not map */
    if (!force && fire(&shim_fail_unmap))
        return NV_ERR_GENERIC;
    if (force && fire(&shim_fail_unmap_forced)) {
        /* The references are dropped anyway; a PTE may still name the chunk. */
        chunk->lost = 1;
        status = NV_ERR_GENERIC;
    }
    chunk->mapped--;
    *p = vs->ptes[--vs->nptes];
    return status;
}

NV_STATUS shim_uvm_touch(vattn_os_va_space_t *vs, uint64_t address)
{
    uint64_t bstart, bend;
    int i, r;
    NV_STATUS status = NV_OK;

    vattn_os_va_space_lock(vs);     /* UVM's fault and migrate paths: read mode */
    r = range_index(vs, address);
    if (r < 0) {
        status = NV_ERR_INVALID_ADDRESS;
        goto out;
    }
    /* The va_block: the range's part of the 2 MiB-aligned region. */
    bstart = address & ~((2ull << 20) - 1);
    bend = bstart + (2ull << 20) - 1;
    if (bstart < vs->ranges[r].start)
        bstart = vs->ranges[r].start;
    if (bend > vs->ranges[r].end - 1)
        bend = vs->ranges[r].end - 1;
    if (!vs->ranges[r].blocks && uvm_vattn_owned(vs, bstart, bend)) {
        status = NV_ERR_INVALID_ADDRESS;
        goto out;
    }
    for (i = 0; i < vs->nptes; i++) {
        if (vs->ptes[i].address <= bend && vs->ptes[i].address + vs->ptes[i].size - 1 >= bstart)
            abort(); /* UVM would now write PTEs over ours */
    }
    vs->ranges[r].blocks = 1;
out:
    vattn_os_va_space_unlock(vs);
    return status;
}

void shim_uvm_range_destroy(vattn_os_va_space_t *vs, int r)
{
    uint64_t start = vs->ranges[r].start, end = vs->ranges[r].end;
    int i;

    vattn_os_va_space_lock_write(vs);
    uvm_vattn_range_destroyed(vs, start, end - 1);
    for (i = 0; i < vs->nptes; i++) {
        if (vs->ptes[i].address < end && vs->ptes[i].address + vs->ptes[i].size > start)
            abort(); /* UVM frees the page tables under our PTEs */
    }
    for (i = r; i + 1 < vs->nranges; i++)
        vs->ranges[i] = vs->ranges[i + 1];
    vs->nranges--;
    vattn_os_va_space_unlock_write(vs);
}

void shim_uvm_range_split(vattn_os_va_space_t *vs, int r, uint64_t at)
{
    if (vs->nranges == SHIM_MAX_RANGES || at <= vs->ranges[r].start || at >= vs->ranges[r].end)
        abort();
    vs->ranges[vs->nranges] = vs->ranges[r];
    vs->ranges[vs->nranges].start = at;
    vs->ranges[r].end = at;
    vs->nranges++;
}

int shim_uvm_range_add(vattn_os_va_space_t *vs, uint64_t start, uint64_t end)
{
    int i;

    for (i = 0; i < vs->nranges; i++) {
        if (start < vs->ranges[i].end && vs->ranges[i].start < end)
            return -1;
    }
    if (vs->nranges == SHIM_MAX_RANGES)
        return -1;
    vs->ranges[vs->nranges].start = start;
    vs->ranges[vs->nranges].end = end;
    vs->ranges[vs->nranges].blocks = 0;
    return vs->nranges++;
}

void shim_uvm_gpu_va_space_remove(vattn_os_va_space_t *vs, int g)
{
    int i;

    if (vs->gvs_gone[g])
        return;
    vattn_os_va_space_lock_write(vs);
    uvm_vattn_gpu_va_space_removed(vs, vs->gpus[g]);
    for (i = 0; i < vs->nptes; i++) {
        if (vs->ptes[i].gpu == vs->gpus[g])
            abort(); /* UVM frees the page tree under our PTEs */
    }
    vs->gvs_gone[g] = 1;
    vattn_os_va_space_unlock_write(vs);
}

void shim_uvm_gpu_va_space_add(vattn_os_va_space_t *vs, int g)
{
    vs->gvs_gone[g] = 0;
}

void vattn_os_trace(enum vattn_trace_kind kind, const uint8_t uuid[16], uint64_t page_size,
                    uint32_t count, uint32_t done, NV_STATUS status, uint64_t duration_ns)
{
    shim_last_trace.kind = (int)kind;
    memcpy(shim_last_trace.uuid, uuid, 16);
    shim_last_trace.page_size = page_size;
    shim_last_trace.count = count;
    shim_last_trace.done = done;
    shim_last_trace.status = status;
    shim_last_trace.duration_ns = duration_ns;
    shim_trace_count++;
}

int shim_check_invariants(vattn_os_va_space_t *vs, const char **why)
{
    int i, j;

    if (vs->lock_depth) {
        *why = "va_space lock left held";
        return 0;
    }
    for (i = 0; i < vs->nptes; i++) {
        struct shim_pte *p = &vs->ptes[i];
        uint64_t covered = 0;
        int r, owned;

        if (p->chunk->mapped != 1) {
            *why = "chunk mapped more than once";
            return 0;
        }
        /* A split may leave a page across two ranges: all of it must be covered,
         * by ranges where UVM has no block. */
        for (r = 0; r < vs->nranges; r++) {
            uint64_t lo = p->address > vs->ranges[r].start ? p->address : vs->ranges[r].start;
            uint64_t hi = p->address + p->size < vs->ranges[r].end ? p->address + p->size : vs->ranges[r].end;

            if (lo >= hi)
                continue;
            if (vs->ranges[r].blocks) {
                *why = "PTE in a range where UVM has blocks";
                return 0;
            }
            covered += hi - lo;
        }
        if (covered != p->size) {
            *why = "PTE outside the managed ranges";
            return 0;
        }
        vs->lock_depth = 1;
        owned = uvm_vattn_owned(vs, p->address, p->address + p->size - 1);
        vs->lock_depth = 0;
        if (!owned) {
            *why = "PTE outside every owned extent";
            return 0;
        }
        for (j = i + 1; j < vs->nptes; j++) {
            if (vs->ptes[i].gpu == vs->ptes[j].gpu &&
                vs->ptes[i].address < vs->ptes[j].address + vs->ptes[j].size &&
                vs->ptes[j].address < vs->ptes[i].address + vs->ptes[i].size) {
                *why = "overlapping PTEs";
                return 0;
            }
        }
    }
    for (i = 0; i < SHIM_MAX_GPUS; i++) {
        struct shim_gpu *g = vs->gpus[i];

        if (g && (g->live_chunks > 0) != (g->retains > 0)) {
            *why = "GPU retained iff it has chunks";
            return 0;
        }
    }
    return 1;
}
