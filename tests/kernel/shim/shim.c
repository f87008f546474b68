/*
 * shim.c - the model behind uvm_vattn_shim.h. Every UVM-facing call of
 * uvm_vattn_os.h checks the locks it needs (aborting on a violation: these are the
 * lock-order assertions lockdep would make in a loaded kernel) and can be made to
 * fail by the fault injector. The PTE/TLB arrays let the tests check what a GPU
 * would see, and the reference counts that no GPU can reach memory or page tables
 * that have been released.
 *
 * SPDX-License-Identifier: MIT
 */

#include <stdio.h>
#include <stdlib.h>

#include "uvm_vattn_shim.h"
#include "uvm_vattn_os.h"

struct shim_memory shim_mems[SHIM_MEMS];
struct shim_map *shim_maps_live;
long shim_maps_count, shim_dups_count, shim_kallocs_live;
long shim_fail_any = -1;
long shim_sparse_race = -1;
long shim_race_at = -1;
void (*shim_race_fn)(vattn_os_va_space_t *vs);
bool shim_relaxed;
long shim_fallible_calls;
NV_STATUS shim_global_status;
struct shim_trace shim_last_trace;
long shim_trace_count;

#define SHIM_USER_BUFS 16
static struct { uintptr_t p; size_t n; } user_bufs[SHIM_USER_BUFS];
static int nuser;

#define ASSERT(c) do { if (!(c)) { fprintf(stderr, "shim: %s:%d: assertion failed: %s\n", \
                                           __FILE__, __LINE__, #c); abort(); } } while (0)

static bool fire(void)
{
    shim_fallible_calls++;
    if (shim_fail_any < 0)
        return false;
    return shim_fail_any-- == 0;
}

void shim_user_register(const void *p, size_t n)
{
    ASSERT(nuser < SHIM_USER_BUFS);
    user_bufs[nuser].p = (uintptr_t)p;
    user_bufs[nuser].n = n;
    nuser++;
}

void shim_user_reset(void)
{
    nuser = 0;
}

static bool user_ok(uint64_t a, size_t n)
{
    int i;

    for (i = 0; i < nuser; i++) {
        if (a >= user_bufs[i].p && n <= user_bufs[i].n && a - user_bufs[i].p <= user_bufs[i].n - n)
            return true;
    }
    return false;
}

/* The va_space a user copy would fault into: none of its locks may be held. */
static vattn_os_va_space_t *current_vs;

void *vattn_os_alloc(size_t bytes)
{
    void *p;

    if (fire())
        return NULL;
    p = malloc(bytes ? bytes : 1);
    if (p)
        shim_kallocs_live++;
    return p;
}

void vattn_os_free(void *ptr)
{
    if (ptr) {
        shim_kallocs_live--;
        free(ptr);
    }
}

int vattn_os_copy_from_user(void *dst, uint64_t src, size_t bytes)
{
    ASSERT(!current_vs || (current_vs->lock_mode == 0 && current_vs->tree_lock == 0));
    if (!user_ok(src, bytes))
        return 1;
    memcpy(dst, (const void *)(uintptr_t)src, bytes);
    return 0;
}

int vattn_os_copy_to_user(uint64_t dst, const void *src, size_t bytes)
{
    ASSERT(!current_vs || (current_vs->lock_mode == 0 && current_vs->tree_lock == 0));
    if (!user_ok(dst, bytes))
        return 1;
    memcpy((void *)(uintptr_t)dst, src, bytes);
    return 0;
}

uint64_t vattn_os_now_ns(void)
{
    static uint64_t t;

    return t += 1000;
}

NV_STATUS vattn_os_global_status(void)
{
    return shim_global_status;
}

/* Locks: the va_space lock is never taken twice (UVM's rwsem is not recursive),
 * never with a range-tree mutex held (that mutex orders after it). */
void vattn_os_lock(vattn_os_va_space_t *vs)
{
    ASSERT(vs->lock_mode == 0 && vs->tree_lock == 0);
    vs->lock_mode = 1;
    current_vs = vs;
}

void vattn_os_unlock(vattn_os_va_space_t *vs)
{
    ASSERT(vs->lock_mode == 1 && vs->tree_lock == 0);
    vs->lock_mode = 0;
}

/* A point between two locked steps of a command, where another thread of the
 * process holding the va_space lock for read may run (shim_race_at). */
static void race_point(vattn_os_va_space_t *vs)
{
    if (shim_race_at >= 0 && shim_race_at-- == 0 && shim_race_fn)
        shim_race_fn(vs);
}

#define NEED_LOCK(vs)       do { ASSERT((vs)->lock_mode != 0 && (vs)->tree_lock == 0); race_point(vs); } while (0)
/* UVM's rule: RM is called only with the serialize-writers mutex and the
 * va_space lock for read, or with no va_space lock; never in write mode, never
 * with a push open (UVM's lock order puts pushes after RM). */
#define NEED_RM_OK(vs)      ASSERT((vs)->lock_mode == 1 && (vs)->tree_lock == 0 && (vs)->open_pushes == 0)

/* A range-tree mutex orders before pushes: never taken with one open. */
static void tree_lock(vattn_os_va_space_t *vs)
{
    ASSERT(vs->lock_mode != 0 && vs->tree_lock == 0 && vs->open_pushes == 0);
    vs->tree_lock = 1;
}

static void tree_unlock(vattn_os_va_space_t *vs)
{
    ASSERT(vs->tree_lock == 1);
    vs->tree_lock = 0;
}

NV_STATUS vattn_os_gpu_find(vattn_os_va_space_t *vs, const uint8_t uuid[16], vattn_os_gpu_t **gpu)
{
    int g;

    NEED_LOCK(vs);
    for (g = 0; g < SHIM_GPUS; g++) {
        if (vs->gpus[g].registered && vs->gpus[g].gvs && memcmp(vs->gpus[g].uuid, uuid, 16) == 0) {
            if (vs->gpus[g].no_phys_ce)
                return NV_ERR_NOT_SUPPORTED;
            *gpu = &vs->gpus[g];
            return NV_OK;
        }
    }
    return NV_ERR_INVALID_DEVICE;
}

NV_STATUS vattn_os_range_find(vattn_os_va_space_t *vs, uint64_t base, uint64_t length, vattn_os_range_t **range)
{
    int r;

    NEED_LOCK(vs);
    for (r = 0; r < SHIM_RANGES; r++) {
        struct shim_range *x = &vs->ranges[r];

        if (x->live && base >= x->start && base <= x->end && base + length - 1 <= x->end) {
            *range = x;
            return NV_OK;
        }
    }
    return NV_ERR_INVALID_ADDRESS;
}

static int range_index(vattn_os_va_space_t *vs, vattn_os_range_t *range)
{
    ASSERT(range >= vs->ranges && range < vs->ranges + SHIM_RANGES);
    return (int)(range - vs->ranges);
}

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

bool vattn_os_range_mapped(vattn_os_va_space_t *vs, vattn_os_range_t *range, vattn_os_gpu_t *gpu,
                           uint64_t base, uint64_t length)
{
    int r = range_index(vs, range);
    struct shim_map *m;
    bool hit = false;

    NEED_LOCK(vs);
    tree_lock(vs);
    for (m = shim_maps_live; m; m = m->next) {
        if (m->vs == vs && m->in_tree && m->range == r && m->gpu == gpu->index && overlaps(m->base, m->length, base, length))
            hit = true;
    }
    tree_unlock(vs);
    return hit;
}

static void dup_put(struct shim_dup *d)
{
    ASSERT(d->refs > 0);
    if (--d->refs == 0) {
        shim_mems[d->mem].dups--;
        shim_dups_count--;
        free(d);
    }
}

NV_STATUS vattn_os_mem_get(vattn_os_va_space_t *vs, vattn_os_gpu_t *gpu, int32_t fd, uint32_t client,
                           uint32_t handle, vattn_os_mem_t **out, uint64_t *size)
{
    struct shim_dup *d;
    int i;

    (void)fd;
    NEED_RM_OK(vs);
    if (fire())
        return NV_ERR_NO_MEMORY;
    for (i = 0; i < SHIM_MEMS; i++) {
        struct shim_memory *m = &shim_mems[i];

        if (!m->live || m->client != client || m->handle != handle)
            continue;
        /* RM's dup: only the caller's own client. */
        if (m->process != vs->process)
            return NV_ERR_INVALID_OBJECT_HANDLE;
        if (m->sysmem)
            return NV_ERR_NOT_SUPPORTED;
        if (m->owner_gpu != gpu->index && !vs->peer)
            return NV_ERR_INVALID_DEVICE;
        d = calloc(1, sizeof(*d));
        ASSERT(d);
        d->mem = i;
        d->gpu = gpu->index;
        d->refs = 1;
        m->dups++;
        shim_dups_count++;
        *out = d;
        *size = m->size;
        return NV_OK;
    }
    return NV_ERR_INVALID_OBJECT_HANDLE;
}

void vattn_os_mem_put(vattn_os_va_space_t *vs, vattn_os_mem_t *d)
{
    NEED_RM_OK(vs);     /* the last reference frees UVM's dup through RM */
    dup_put(d);
}

static void pt_get(vattn_os_va_space_t *vs, int gpu, uint64_t base, uint64_t length, int delta)
{
    uint64_t p;

    for (p = base / SHIM_PAGE; p < (base + length) / SHIM_PAGE; p++) {
        vs->pt_refs[gpu][p] += delta;
        ASSERT(vs->pt_refs[gpu][p] >= 0);
    }
}

static struct shim_map *map_new(vattn_os_va_space_t *vs, int range, int gpu, uint64_t base, uint64_t length, uint64_t offset,
                                struct shim_dup *dup)
{
    struct shim_map *m = calloc(1, sizeof(*m));

    ASSERT(m);
    m->vs = vs;
    m->range = range;
    m->gpu = gpu;
    m->base = base;
    m->length = length;
    m->offset = offset;
    m->dup = dup;
    if (dup)
        dup->refs++;
    m->next = shim_maps_live;
    shim_maps_live = m;
    shim_maps_count++;
    return m;
}

static void map_unlink_free(struct shim_map *m)
{
    struct shim_map **pp;

    for (pp = &shim_maps_live; *pp != m; pp = &(*pp)->next)
        ASSERT(*pp);
    *pp = m->next;
    if (m->dup)
        dup_put(m->dup);
    shim_maps_count--;
    free(m);
}

NV_STATUS vattn_os_map_prepare(vattn_os_va_space_t *vs, vattn_os_range_t *range, vattn_os_gpu_t *gpu,
                               vattn_os_mem_t *mem, uint64_t base, uint64_t length, uint64_t offset,
                               vattn_os_map_t **out)
{
    struct shim_map *m;

    NEED_LOCK(vs);
    if (base + length > SHIM_VA_END)
        return NV_ERR_INVALID_ADDRESS;          /* uvm_gpu_can_address */
    if (fire())                                  /* record */
        return NV_ERR_NO_MEMORY;
    if (fire())                                  /* page tables */
        return NV_ERR_NO_MEMORY;
    m = map_new(vs, range_index(vs, range), gpu->index, base, length, offset, mem);
    m->pt = true;
    m->prepared = true;
    pt_get(vs, gpu->index, base, length, 1);
    *out = m;
    return NV_OK;
}

/* Another live record of m's GPU covering page p: a race of the process's own
 * (a sparse map) may have mapped m's addresses again, with its own page tables. */
static bool covered_by_other(struct shim_map *m, uint64_t p)
{
    struct shim_map *o;

    for (o = shim_maps_live; o; o = o->next) {
        if (o != m && o->vs == m->vs && o->gpu == m->gpu && o->pt && o->base <= p * SHIM_PAGE &&
            p * SHIM_PAGE < o->base + o->length)
            return true;
    }
    return false;
}

/* What a GPU may see at m's pages when m is released: never a translation of
 * m's (only another record's, which holds its own page tables and memory). */
static void assert_unreachable(vattn_os_va_space_t *vs, struct shim_map *m)
{
    uint64_t p;

    for (p = m->base / SHIM_PAGE; p < (m->base + m->length) / SHIM_PAGE; p++) {
        if (covered_by_other(m, p))
            continue;
        ASSERT(!vs->pte[m->gpu][p].valid);
        ASSERT(!vs->tlb[m->gpu][p].valid);
    }
}

void vattn_os_map_discard(vattn_os_va_space_t *vs, vattn_os_map_t *m)
{
    NEED_RM_OK(vs);
    ASSERT(m->prepared && !m->in_tree && !m->abandoned);
    assert_unreachable(vs, m);
    pt_get(vs, m->gpu, m->base, m->length, -1);
    map_unlink_free(m);
}

/* UVM_MAP_EXTERNAL_SPARSE by another thread of the process, over m's first
 * page: it runs under the va_space lock for read, so it can land between a
 * batch's check and its commit. */
static void sparse_race(vattn_os_va_space_t *vs, struct shim_map *m)
{
    struct shim_map *x = map_new(vs, m->range, m->gpu, m->base, SHIM_PAGE, 0, NULL);
    uint64_t p = m->base / SHIM_PAGE;

    x->pt = true;
    x->in_tree = true;
    x->raced = true;
    pt_get(vs, m->gpu, m->base, SHIM_PAGE, 1);
    vs->pte[m->gpu][p].valid = 1;
    vs->pte[m->gpu][p].mem = -1;
    vs->pte[m->gpu][p].offset = 0;
    memcpy(vs->tlb[m->gpu], vs->pte[m->gpu], sizeof(vs->tlb[m->gpu]));
}

NV_STATUS vattn_os_map_commit(vattn_os_va_space_t *vs, vattn_os_map_t *m)
{
    struct shim_map *o;

    NEED_LOCK(vs);
    ASSERT(m->prepared && !m->in_tree);
    if (shim_sparse_race >= 0 && shim_sparse_race-- == 0)
        sparse_race(vs, m);
    tree_lock(vs);
    for (o = shim_maps_live; o; o = o->next) {
        if (o->vs == vs && o->in_tree && o->range == m->range && o->gpu == m->gpu &&
            overlaps(o->base, o->length, m->base, m->length)) {
            ASSERT(o->raced);   /* nothing else can have added a mapping */
            tree_unlock(vs);
            return NV_ERR_UVM_ADDRESS_IN_USE;
        }
    }
    m->in_tree = true;
    m->prepared = false;
    tree_unlock(vs);
    return NV_OK;
}

void vattn_os_map_abandon(vattn_os_va_space_t *vs, vattn_os_map_t *m)
{
    NEED_LOCK(vs);
    ASSERT(m->prepared && !m->in_tree);
    m->abandoned = true;
    m->prepared = false;
}

static NV_STATUS split_at(vattn_os_va_space_t *vs, int r, int gpu, uint64_t at)
{
    struct shim_map *m, *upper;

    for (m = shim_maps_live; m; m = m->next) {
        if (m->vs == vs && m->in_tree && m->range == r && m->gpu == gpu && m->base < at && at < m->base + m->length)
            break;
    }
    if (!m)
        return NV_OK;
    if (fire())
        return NV_ERR_NO_MEMORY;
    upper = map_new(vs, r, gpu, at, m->base + m->length - at, m->offset + (at - m->base), m->dup);
    upper->pt = true;
    upper->in_tree = true;
    m->length = at - m->base;
    return NV_OK;
}

NV_STATUS vattn_os_unmap_split(vattn_os_va_space_t *vs, vattn_os_range_t *range, vattn_os_gpu_t *gpu,
                               uint64_t base, uint64_t length)
{
    int r = range_index(vs, range);
    NV_STATUS status;

    NEED_LOCK(vs);
    tree_lock(vs);
    status = split_at(vs, r, gpu->index, base);
    if (status == NV_OK)
        status = split_at(vs, r, gpu->index, base + length);
    tree_unlock(vs);
    return status;
}

static bool in_tree_of(struct shim_map *m, vattn_os_va_space_t *vs, int r, int gpu, uint64_t base, uint64_t length)
{
    return m->vs == vs && m->in_tree && m->range == r && m->gpu == gpu && overlaps(m->base, m->length, base, length);
}

uint32_t vattn_os_unmap_count(vattn_os_va_space_t *vs, vattn_os_range_t *range, vattn_os_gpu_t *gpu,
                              uint64_t base, uint64_t length)
{
    int r = range_index(vs, range);
    struct shim_map *m;
    uint32_t n = 0;

    NEED_LOCK(vs);
    tree_lock(vs);
    for (m = shim_maps_live; m; m = m->next)
        n += in_tree_of(m, vs, r, gpu->index, base, length);
    tree_unlock(vs);
    return n;
}

uint32_t vattn_os_unmap_detach(vattn_os_va_space_t *vs, vattn_os_range_t *range, vattn_os_gpu_t *gpu,
                               uint64_t base, uint64_t length, vattn_os_map_t **maps, uint32_t cap)
{
    int r = range_index(vs, range);
    struct shim_map *m, *next;
    uint32_t n = 0;

    NEED_LOCK(vs);
    tree_lock(vs);
    /* crossing an end: mapped since the split by a race (a new sparse map); it stays */
    for (m = shim_maps_live; m; m = m->next) {
        if (in_tree_of(m, vs, r, gpu->index, base, length) && (m->base < base || m->base + m->length > base + length))
            ASSERT(m->raced);
    }
    /* the rest in address order, as the kernel walks its tree, up to cap */
    while (n < cap) {
        next = NULL;
        for (m = shim_maps_live; m; m = m->next) {
            if (in_tree_of(m, vs, r, gpu->index, base, length) && m->base >= base &&
                m->base + m->length <= base + length && (!next || m->base < next->base))
                next = m;
        }
        if (!next)
            break;
        next->in_tree = false;
        next->detached = true;
        maps[n++] = next;
    }
    tree_unlock(vs);
    return n;
}

void vattn_os_unmap_destroy(vattn_os_va_space_t *vs, vattn_os_map_t *m)
{
    NEED_LOCK(vs);
    NEED_RM_OK(vs);     /* the last reference frees UVM's dup through RM */
    ASSERT(m->detached && !m->in_tree);
    /* never release what a GPU can still reach */
    assert_unreachable(vs, m);
    pt_get(vs, m->gpu, m->base, m->length, -1);
    map_unlink_free(m);
}

void vattn_os_unmap_abandon(vattn_os_va_space_t *vs, vattn_os_map_t *m)
{
    NEED_LOCK(vs);
    ASSERT(m->detached && !m->in_tree);
    m->detached = false;
    m->abandoned = true;
}

NV_STATUS vattn_os_writer_begin(vattn_os_va_space_t *vs, vattn_os_gpu_t *gpu, bool clearing, vattn_os_writer_t **out)
{
    struct shim_writer *w;

    NEED_LOCK(vs);
    w = vattn_os_alloc(sizeof(*w));
    if (!w)
        return NV_ERR_NO_MEMORY;
    memset(w, 0, sizeof(*w));
    w->vs = vs;
    w->gpu = gpu->index;
    w->clearing = clearing;
    *out = w;
    return NV_OK;
}

/* A push that fails is a channel error: UVM's global fatal state, for good. */
static NV_STATUS push(struct shim_writer *w)
{
    if (shim_global_status != NV_OK)
        return shim_global_status;
    if (fire()) {
        shim_global_status = NV_ERR_RC_ERROR;
        return shim_global_status;
    }
    if (!w->open) {
        w->open = true;
        w->vs->pushes[w->gpu]++;
        w->vs->open_pushes++;
    }
    return NV_OK;
}

static void push_end(struct shim_writer *w)
{
    if (w->open) {
        w->open = false;
        w->vs->open_pushes--;
    }
}

/* Writes (set) or clears pages [from, from + n) of m. */
static NV_STATUS write_ptes(struct shim_writer *w, struct shim_map *m, uint64_t from, uint64_t n, bool set)
{
    vattn_os_va_space_t *vs = w->vs;
    uint64_t p, first = m->base / SHIM_PAGE, i;
    NV_STATUS status;

    ASSERT(m->gpu == w->gpu && m->pt && from + n <= m->length / SHIM_PAGE);
    for (i = from; i < from + n; i++) {
        /* a push holds this many PTE writes; then the next one begins */
        if ((i - from) % 64 == 0) {
            if (i > from)
                push_end(w);
            status = push(w);
            if (status != NV_OK)
                return status;      /* the PTEs before i stay written */
        }
        p = first + i;
        ASSERT(vs->pt_refs[w->gpu][p] > 0);
        vs->pte[w->gpu][p].valid = set;
        vs->pte[w->gpu][p].mem = set ? (m->dup ? m->dup->mem : -1) : 0;
        vs->pte[w->gpu][p].offset = set ? m->offset + i * SHIM_PAGE : 0;
    }
    w->any = true;
    return NV_OK;
}

/* RM's PTE values for a mapping writer's buffer: the push ends first. */
static NV_STATUS rm_read(struct shim_writer *w)
{
    push_end(w);
    NEED_RM_OK(w->vs);
    if (fire())
        return NV_ERR_INVALID_OBJECT_HANDLE;
    return NV_OK;
}

static NV_STATUS flush(struct shim_writer *w)
{
    NV_STATUS status = NV_OK;
    int i;

    for (i = 0; i < w->npend && status == NV_OK; i++)
        status = write_ptes(w, w->pend[i], 0, w->pend[i]->length / SHIM_PAGE, true);
    w->npend = 0;
    w->used = 0;
    return status;
}

NV_STATUS vattn_os_writer_map(vattn_os_writer_t *w, vattn_os_map_t *m)
{
    uint64_t n = m->length / SHIM_PAGE, done, chunk;
    NV_STATUS status;

    NEED_LOCK(w->vs);
    ASSERT(!w->clearing && m->prepared);
    if (n > (uint64_t)(SHIM_WBUF - w->used)) {
        status = flush(w);
        if (status != NV_OK)
            return status;
    }
    if (n <= SHIM_WBUF) {
        status = rm_read(w);
        if (status != NV_OK)
            return status;
        w->pend[w->npend++] = m;
        w->used += (int)n;
        return NV_OK;
    }
    for (done = 0; done < n; done += chunk) {
        chunk = n - done < SHIM_WBUF ? n - done : SHIM_WBUF;
        status = rm_read(w);
        if (status == NV_OK)
            status = write_ptes(w, m, done, chunk, true);
        if (status != NV_OK)
            return status;
    }
    return NV_OK;
}

NV_STATUS vattn_os_writer_clear(vattn_os_writer_t *w, vattn_os_map_t *m)
{
    NEED_LOCK(w->vs);
    ASSERT(w->clearing);
    return write_ptes(w, m, 0, m->length / SHIM_PAGE, false);
}

NV_STATUS vattn_os_writer_finish(vattn_os_writer_t *w)
{
    NV_STATUS status = NV_OK;

    NEED_LOCK(w->vs);
    if (!w->clearing)
        status = flush(w);
    if (status != NV_OK || !w->any)
        return status;
    status = push(w);
    if (status != NV_OK)
        return status;
    /* the one invalidate of the batch on this GPU, then the wait */
    memcpy(w->vs->tlb[w->gpu], w->vs->pte[w->gpu], sizeof(w->vs->tlb[w->gpu]));
    w->vs->invalidates[w->gpu]++;
    push_end(w);
    w->any = false;     /* ready for the next round */
    return NV_OK;
}

void vattn_os_writer_end(vattn_os_writer_t *w)
{
    push_end(w);
    vattn_os_free(w);
}

void vattn_os_trace(enum vattn_trace_kind kind, const uint8_t uuid[16], uint32_t count, uint32_t done,
                    NV_STATUS status, uint64_t duration_ns)
{
    (void)duration_ns;
    shim_last_trace.kind = (int)kind;
    memcpy(shim_last_trace.uuid, uuid, 16);
    shim_last_trace.count = count;
    shim_last_trace.done = done;
    shim_last_trace.status = status;
    shim_trace_count++;
}

/* ------------------------------------------------------------------------- */
/* Setup and UVM's own paths                                                  */
/* ------------------------------------------------------------------------- */

void shim_reset(void)
{
    while (shim_maps_live) {
        struct shim_map *m = shim_maps_live;

        shim_maps_live = m->next;
        if (m->dup && --m->dup->refs == 0)
            free(m->dup);
        free(m);
    }
    memset(shim_mems, 0, sizeof(shim_mems));
    shim_maps_count = shim_dups_count = 0;
    shim_fail_any = -1;
    shim_sparse_race = -1;
    shim_race_at = -1;
    shim_race_fn = NULL;
    shim_relaxed = false;
    shim_fallible_calls = 0;
    shim_global_status = NV_OK;
    shim_trace_count = 0;
    current_vs = NULL;
    shim_user_reset();
}

void shim_va_space_init(vattn_os_va_space_t *vs, int process)
{
    int g;

    memset(vs, 0, sizeof(*vs));
    vs->process = process;
    for (g = 0; g < SHIM_GPUS; g++) {
        vs->gpus[g].index = g;
        memset(vs->gpus[g].uuid, 0xa0 + g, 16);
        vs->gpus[g].registered = true;
        vs->gpus[g].gvs = true;
    }
}

int shim_range_create(vattn_os_va_space_t *vs, uint64_t start, uint64_t length)
{
    int r;

    for (r = 0; r < SHIM_RANGES; r++) {
        if (!vs->ranges[r].live) {
            vs->ranges[r].live = true;
            vs->ranges[r].start = start;
            vs->ranges[r].end = start + length - 1;
            return r;
        }
    }
    return -1;
}

int shim_mem_alloc(int process, uint32_t client, uint32_t handle, uint64_t size, int owner_gpu)
{
    int i;

    for (i = 0; i < SHIM_MEMS; i++) {
        if (!shim_mems[i].live && shim_mems[i].dups == 0) {
            memset(&shim_mems[i], 0, sizeof(shim_mems[i]));
            shim_mems[i].live = true;
            shim_mems[i].process = process;
            shim_mems[i].client = client;
            shim_mems[i].handle = handle;
            shim_mems[i].size = size;
            shim_mems[i].owner_gpu = owner_gpu;
            return i;
        }
    }
    return -1;
}

void shim_mem_free(int mem)
{
    shim_mems[mem].live = false;
}

/* uvm_ext_gpu_map_destroy as UVM runs it: clear, invalidate, release. */
static void stock_destroy(vattn_os_va_space_t *vs, struct shim_map *m)
{
    uint64_t p;

    ASSERT(m->in_tree);
    for (p = m->base / SHIM_PAGE; p < (m->base + m->length) / SHIM_PAGE; p++)
        memset(&vs->pte[m->gpu][p], 0, sizeof(vs->pte[m->gpu][p]));
    memcpy(vs->tlb[m->gpu], vs->pte[m->gpu], sizeof(vs->tlb[m->gpu]));
    m->in_tree = false;
    pt_get(vs, m->gpu, m->base, m->length, -1);
    map_unlink_free(m);
}

static void stock_unmap_in(vattn_os_va_space_t *vs, int r, int gpu, uint64_t base, uint64_t length)
{
    struct shim_map *m, *next;

    ASSERT(split_at(vs, r, gpu, base) == NV_OK && split_at(vs, r, gpu, base + length) == NV_OK);
    for (m = shim_maps_live; m; m = next) {
        next = m->next;
        if (m->vs == vs && m->in_tree && m->range == r && m->gpu == gpu && overlaps(m->base, m->length, base, length))
            stock_destroy(vs, m);
    }
}

static int range_of(vattn_os_va_space_t *vs, uint64_t base, uint64_t length)
{
    int r;

    for (r = 0; r < SHIM_RANGES; r++) {
        if (vs->ranges[r].live && base >= vs->ranges[r].start && base + length - 1 <= vs->ranges[r].end)
            return r;
    }
    return -1;
}

NV_STATUS shim_stock_map(vattn_os_va_space_t *vs, uint64_t base, uint64_t length, int gpu, uint32_t client,
                         uint32_t handle, uint64_t offset)
{
    int r = range_of(vs, base, length), i;
    struct shim_dup *d = NULL;
    struct shim_map *m;
    uint64_t p;

    if (r < 0)
        return NV_ERR_INVALID_ADDRESS;
    for (i = 0; i < SHIM_MEMS; i++) {
        if (shim_mems[i].live && shim_mems[i].client == client && shim_mems[i].handle == handle &&
            shim_mems[i].process == vs->process && offset + length <= shim_mems[i].size)
            break;
    }
    if (i == SHIM_MEMS)
        return NV_ERR_INVALID_OBJECT_HANDLE;
    stock_unmap_in(vs, r, gpu, base, length);
    d = calloc(1, sizeof(*d));
    ASSERT(d);
    d->mem = i;
    d->gpu = gpu;
    shim_mems[i].dups++;
    shim_dups_count++;
    m = map_new(vs, r, gpu, base, length, offset, d);
    m->pt = true;
    m->in_tree = true;
    pt_get(vs, gpu, base, length, 1);
    for (p = 0; p < length / SHIM_PAGE; p++) {
        vs->pte[gpu][base / SHIM_PAGE + p].valid = 1;
        vs->pte[gpu][base / SHIM_PAGE + p].mem = i;
        vs->pte[gpu][base / SHIM_PAGE + p].offset = offset + p * SHIM_PAGE;
    }
    memcpy(vs->tlb[gpu], vs->pte[gpu], sizeof(vs->tlb[gpu]));
    return NV_OK;
}

NV_STATUS shim_stock_unmap(vattn_os_va_space_t *vs, uint64_t base, uint64_t length, int gpu)
{
    int r = range_of(vs, base, length);

    if (r < 0)
        return NV_ERR_INVALID_ADDRESS;
    stock_unmap_in(vs, r, gpu, base, length);
    return NV_OK;
}

/* UVM_MAP_EXTERNAL_SPARSE: whatever is mapped there goes, then sparse PTEs (no
 * memory), all under the range's tree mutex. */
NV_STATUS shim_stock_sparse(vattn_os_va_space_t *vs, uint64_t base, uint64_t length, int gpu)
{
    int r = range_of(vs, base, length);
    struct shim_map *m;
    uint64_t p;

    if (r < 0)
        return NV_ERR_INVALID_ADDRESS;
    stock_unmap_in(vs, r, gpu, base, length);
    m = map_new(vs, r, gpu, base, length, 0, NULL);
    m->pt = true;
    m->in_tree = true;
    m->raced = true;
    pt_get(vs, gpu, base, length, 1);
    for (p = base / SHIM_PAGE; p < (base + length) / SHIM_PAGE; p++) {
        vs->pte[gpu][p].valid = 1;
        vs->pte[gpu][p].mem = -1;
        vs->pte[gpu][p].offset = 0;
    }
    memcpy(vs->tlb[gpu], vs->pte[gpu], sizeof(vs->tlb[gpu]));
    return NV_OK;
}

void shim_range_free(vattn_os_va_space_t *vs, int r)
{
    struct shim_map *m, *next;

    for (m = shim_maps_live; m; m = next) {
        next = m->next;
        if (m->vs == vs && m->in_tree && m->range == r)
            stock_destroy(vs, m);
    }
    vs->ranges[r].live = false;
}

void shim_gpu_va_space_remove(vattn_os_va_space_t *vs, int gpu)
{
    struct shim_map *m, *next;

    for (m = shim_maps_live; m; m = next) {
        next = m->next;
        if (m->vs == vs && m->in_tree && m->gpu == gpu)
            stock_destroy(vs, m);
    }
    vs->gpus[gpu].gvs = false;
}

void shim_va_space_destroy(vattn_os_va_space_t *vs)
{
    int r;

    for (r = 0; r < SHIM_RANGES; r++) {
        if (vs->ranges[r].live)
            shim_range_free(vs, r);
    }
}

/* ------------------------------------------------------------------------- */
/* Invariants                                                                 */
/* ------------------------------------------------------------------------- */

#define CHECK(c, msg) do { if (!(c)) { *why = (msg); return 0; } } while (0)

int shim_check(vattn_os_va_space_t *vs, const char **why)
{
    static int refs[SHIM_GPUS][SHIM_PAGES];
    struct shim_map *m, *o;
    uint64_t p;
    int g, i, dups[SHIM_MEMS];

    CHECK(vs->lock_mode == 0 && vs->tree_lock == 0, "a lock is still held");
    CHECK(vs->open_pushes == 0, "a push was never ended");
    CHECK(shim_kallocs_live == 0, "the module leaked kernel memory");
    memset(refs, 0, sizeof(refs));
    memset(dups, 0, sizeof(dups));
    for (m = shim_maps_live; m; m = m->next) {
        CHECK(!m->prepared, "a prepared mapping outlived its batch");
        CHECK(!m->detached, "a detached mapping outlived its batch");
        if (m->vs != vs)
            continue;
        CHECK(m->in_tree || m->abandoned, "a mapping in no tree");
        CHECK(m->pt, "a mapping without page tables");
        for (p = m->base / SHIM_PAGE; p < (m->base + m->length) / SHIM_PAGE; p++) {
            refs[m->gpu][p]++;
            if (m->in_tree && !m->raced && !shim_relaxed) {
                struct shim_pte want = { 1, m->dup ? m->dup->mem : -1, m->offset + (p * SHIM_PAGE - m->base) };
                /* After a dead channel a failed unmap may have cleared part of a
                 * mapping it keeps (UVM's teardown clears it again). */
                bool dead = shim_global_status != NV_OK;

                CHECK(memcmp(&vs->pte[m->gpu][p], &want, sizeof(want)) == 0 || (dead && !vs->pte[m->gpu][p].valid),
                      "a mapping's PTE is wrong");
                CHECK(memcmp(&vs->tlb[m->gpu][p], &want, sizeof(want)) == 0 || (dead && !vs->tlb[m->gpu][p].valid) ||
                      (dead && memcmp(&vs->pte[m->gpu][p], &want, sizeof(want)) == 0),
                      "a mapping's TLB entry is stale");
            }
        }
        if (m->in_tree) {
            for (o = m->next; o; o = o->next)
                CHECK(!(o->vs == vs && o->in_tree && o->gpu == m->gpu && overlaps(o->base, o->length, m->base, m->length)),
                      "two mappings overlap");
        }
    }
    for (g = 0; g < SHIM_GPUS; g++) {
        for (p = 0; p < SHIM_PAGES; p++) {
            CHECK(refs[g][p] == vs->pt_refs[g][p], "page-table references do not match the mappings");
            /* What a GPU can reach is held: page tables and the memory's dup. */
            if (vs->pte[g][p].valid || vs->tlb[g][p].valid) {
                CHECK(vs->pt_refs[g][p] > 0, "a valid PTE or TLB entry over released page tables");
                if (vs->pte[g][p].valid && vs->pte[g][p].mem >= 0)
                    CHECK(shim_mems[vs->pte[g][p].mem].dups > 0, "a PTE names memory no dup holds");
                if (vs->tlb[g][p].valid && vs->tlb[g][p].mem >= 0)
                    CHECK(shim_mems[vs->tlb[g][p].mem].dups > 0, "a TLB entry names memory no dup holds");
            }
        }
    }
    /* dup references: one per mapping that holds it */
    {
        long ndups = 0;

        for (m = shim_maps_live; m; m = m->next) {
            if (!m->dup)
                continue;
            for (o = shim_maps_live; o != m; o = o->next) {
                if (o->dup == m->dup)
                    break;
            }
            if (o != m)
                continue;       /* counted at its first holder */
            {
                int holders = 0;

                for (o = shim_maps_live; o; o = o->next)
                    holders += o->dup == m->dup;
                CHECK(holders == m->dup->refs, "a dup's references do not match its holders");
            }
            dups[m->dup->mem]++;
            ndups++;
        }
        CHECK(ndups == shim_dups_count, "a dup is held by no mapping");
        for (i = 0; i < SHIM_MEMS; i++)
            CHECK(dups[i] == shim_mems[i].dups, "a memory's dup count is wrong");
    }
    return 1;
}

int shim_same_view(const vattn_os_va_space_t *a, const vattn_os_va_space_t *b)
{
    return memcmp(a->pte, b->pte, sizeof(a->pte)) == 0 && memcmp(a->tlb, b->tlb, sizeof(a->tlb)) == 0;
}
