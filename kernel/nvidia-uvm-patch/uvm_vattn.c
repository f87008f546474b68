/*
 * uvm_vattn.c - vattn's small-page commands for nvidia-uvm: the logic.
 *
 * SPDX-License-Identifier: MIT
 *
 * This file holds everything that can be checked without a GPU: the per-file handle
 * table, every argument check, batching, rollback and accounting. It reaches UVM and
 * the kernel only through uvm_vattn_os.h, so the same file is compiled into
 * nvidia-uvm.ko (with uvm_vattn_kernel.h) and into a userspace test program (with
 * tests/kernel/shim/uvm_vattn_shim.h) that runs under ASan/UBSan.
 *
 * Lock order (outermost first); a lock is only ever taken with the ones above held:
 *   1. g_uvm_global.pm.lock (read)   taken by UVM's ioctl entry and release path
 *   2. va_space->lock                read: vattn_os_va_space_lock(), as UVM's map
 *                                    ioctls; write: a MAP that claims a range, the
 *                                    release hook, and UVM's own callers of the
 *                                    range-destroy and GPU-VA-space hooks
 *   3. state->lock                   our mutex: the handle table, accounting, and
 *                                    (with 2 held for write) the owned set
 *   4. va_block->lock, GPU PMM, page-tree and push/tracker locks, taken inside UVM
 *      calls made by vattn_os_chunk_alloc/free and vattn_os_map/unmap.
 * The block-creation hook (uvm_vattn_owned) runs in UVM's fault and migration
 * paths with 2 held for read and takes no lock: the owned set only changes with 2
 * held for write.
 * GPU references are dropped (vattn_os_gpu_release, which takes UVM's global lock,
 * ordered before the va_space lock) only after 3 and 2 are released: account_sub()
 * queues them and unlock_state() drops them. The range-destroy and GPU-VA-space
 * hooks run inside UVM's own write-locked sections, so they only unmap: they never
 * free a chunk or drop a GPU reference.
 * No user memory is touched with 2 or 3 held: arrays are copied in before and results
 * copied out after, because a user copy can fault into UVM's fault handler, which
 * takes the va_space lock itself. Handles made by ALLOC stay PENDING_ALLOC (unusable)
 * until their copy-out has succeeded, so a failed copy can undo them safely.
 *
 * The release hook runs from uvm_va_space_destroy() before UVM tears anything down.
 * No ioctl can run on the file then (the file's last reference is gone).
 *
 * Ownership (the fence that keeps UVM's own paths off the PTEs we write): the
 * first MAP into a managed range claims that range's extent for this file, with
 * the va_space lock held for write, after vattn_os_range_claim() checked that UVM
 * has no va_block in it. From then on UVM creates no va_block overlapping an owned
 * extent (uvm_vattn_owned, called by uvm_va_range_block_create): GPU and CPU faults
 * there are fatal, and migrate, prefetch, read duplication, preferred location and
 * eviction find no block to act on. So UVM never writes a PTE where we do, and our
 * PTEs are removed before UVM frees the page tables under them: range destroy
 * (uvm_vattn_range_destroyed) and GPU VA space removal
 * (uvm_vattn_gpu_va_space_removed) unmap our pages first, and release on close
 * unmaps everything. An extent stays owned until its range is destroyed or the
 * file is released; a MAP that fails gives back the extents it claimed for pages
 * it did not map. Every page we map lies inside an owned extent.
 */

#if defined(UVM_VATTN_USERSPACE)
#include "uvm_vattn_shim.h"
#else
#include "uvm_vattn_kernel.h"
#endif
#include "uvm_vattn_ioctl.h"
#include "uvm_vattn_os.h"
#include "uvm_vattn.h"

/* Entry states. PENDING_* exist only while one command holds state->lock (or,
 * for PENDING_ALLOC, between the two halves of ALLOC). */
enum
{
    VATTN_SLOT_FREE = 0,
    VATTN_SLOT_PENDING_ALLOC,
    VATTN_SLOT_ALLOCATED,
    VATTN_SLOT_PENDING_MAP,
    VATTN_SLOT_MAPPED,
    VATTN_SLOT_PENDING_UNMAP,
    VATTN_SLOT_PENDING_FREE,
    VATTN_SLOT_RETIRED,       /* generation exhausted: never reused */
};

#define VATTN_NONE              0xffffffffu
#define VATTN_MIN_CAPACITY      64u

struct uvm_vattn_entry
{
    vattn_os_chunk_t *chunk;
    uint64_t size;
    uint64_t address;            /* valid in PENDING_MAP, MAPPED, PENDING_UNMAP */
    uint32_t gen;                /* handle generation, never 0 */
    uint32_t next;               /* free list (FREE) or hash chain (mapped states) */
    uint16_t gpu_slot;
    uint8_t state;
    uint8_t lost;                /* a forced unmap failed: abandon, never free, the chunk */
    uint8_t pad[4];
};

/* An owned extent: a managed range's [start, end] (inclusive) when first mapped. */
struct uvm_vattn_owned
{
    uint64_t start;
    uint64_t end;
};

struct uvm_vattn_gpu_slot
{
    uint8_t uuid[16];
    vattn_os_gpu_t *gpu;         /* retained while chunks > 0 */
    uint64_t pinned_bytes;
    uint32_t chunks;
    uint32_t pad;
};

struct uvm_vattn_state
{
    vattn_os_mutex_t lock;
    struct uvm_vattn_entry *entries;
    uint32_t capacity;           /* entries allocated, a power of two */
    uint32_t high_water;         /* entries [0, high_water) have been used */
    uint32_t free_head;
    uint32_t free_count;         /* entries on the free list */
    uint32_t live;               /* entries neither FREE nor RETIRED */
    uint32_t *buckets;           /* capacity heads: address -> entry chain */
    uint32_t tag;                /* this file's handle tag, never 0 */
    uint32_t pad;
    vattn_os_owner_t *owner;     /* the process pages are charged to */
    uint64_t pinned_bytes;
    struct uvm_vattn_gpu_slot gpus[UVM_VATTN_STATE_GPUS];
    vattn_os_gpu_t *release[UVM_VATTN_STATE_GPUS]; /* GPUs to release after unlocking */
    uint32_t nrelease;
    uint32_t locked_write;       /* the va_space lock is held for write (by lock_state) */
    struct uvm_vattn_owned *owned;
    uint32_t nowned;
    uint32_t owned_cap;
};

/* ------------------------------------------------------------------------- */
/* Pure helpers (also unit-tested directly through uvm_vattn.h).              */
/* ------------------------------------------------------------------------- */

bool uvm_vattn_page_size_valid(uint64_t size)
{
    return size == UVM_VATTN_PAGE_SIZE_64K || size == UVM_VATTN_PAGE_SIZE_128K ||
           size == UVM_VATTN_PAGE_SIZE_256K || size == UVM_VATTN_PAGE_SIZE_2M;
}

NV_STATUS uvm_vattn_check_address(uint64_t address, uint64_t size)
{
    if (!uvm_vattn_page_size_valid(size))
        return NV_ERR_INVALID_ARGUMENT;
    if (address & (size - 1))
        return NV_ERR_INVALID_OFFSET;
    /* address + size must not wrap; 0 is never inside a managed range either. */
    if (address == 0 || address > UINT64_MAX - size)
        return NV_ERR_INVALID_ADDRESS;
    return NV_OK;
}

bool uvm_vattn_mul_ok(uint64_t a, uint64_t b, uint64_t *product)
{
    if (a != 0 && b > UINT64_MAX / a)
        return false;
    *product = a * b;
    return true;
}

/*
 * Handles: tag (22 bits) | generation (20 bits) | slot + 1 (22 bits). The tag is
 * the file's, so a handle of another file is "not found" rather than naming a page
 * of this one; the generation makes freed handles stale; slot + 1 keeps 0 invalid.
 * None of the parts is ever 0 in a valid handle.
 */
uint64_t uvm_vattn_handle_make(uint32_t tag, uint32_t slot, uint32_t gen)
{
    return ((uint64_t)(tag & UVM_VATTN_TAG_MASK) << 42) |
           ((uint64_t)(gen & UVM_VATTN_GEN_MASK) << 22) |
           (((uint64_t)slot + 1) & UVM_VATTN_SLOT_MASK);
}

bool uvm_vattn_handle_split(uint64_t handle, uint32_t tag, uint32_t *slot, uint32_t *gen)
{
    uint32_t low = (uint32_t)(handle & UVM_VATTN_SLOT_MASK);
    uint32_t g = (uint32_t)((handle >> 22) & UVM_VATTN_GEN_MASK);

    if ((uint32_t)(handle >> 42) != tag || low == 0 || g == 0)
        return false;
    *slot = low - 1;
    *gen = g;
    return true;
}

static uint32_t hash_address(const struct uvm_vattn_state *state, uint64_t address)
{
    /* Addresses are at least 64K-aligned: drop those bits, then Fibonacci-hash. */
    return (uint32_t)(((address >> 16) * 0x9E3779B97F4A7C15ull) >> 32) & (state->capacity - 1);
}

/* ------------------------------------------------------------------------- */
/* The table.                                                                 */
/* ------------------------------------------------------------------------- */

static bool state_in_hash(uint8_t s)
{
    return s == VATTN_SLOT_PENDING_MAP || s == VATTN_SLOT_MAPPED || s == VATTN_SLOT_PENDING_UNMAP;
}

static void hash_insert(struct uvm_vattn_state *state, uint32_t slot)
{
    uint32_t b = hash_address(state, state->entries[slot].address);

    state->entries[slot].next = state->buckets[b];
    state->buckets[b] = slot;
}

static void hash_remove(struct uvm_vattn_state *state, uint32_t slot)
{
    uint32_t *link = &state->buckets[hash_address(state, state->entries[slot].address)];

    while (*link != VATTN_NONE) {
        if (*link == slot) {
            *link = state->entries[slot].next;
            state->entries[slot].next = VATTN_NONE;
            return;
        }
        link = &state->entries[*link].next;
    }
}

/* The entry whose page starts exactly at address, or VATTN_NONE. */
static uint32_t hash_find(const struct uvm_vattn_state *state, uint64_t address)
{
    uint32_t i = state->buckets[hash_address(state, address)];

    while (i != VATTN_NONE) {
        if (state->entries[i].address == address)
            return i;
        i = state->entries[i].next;
    }
    return VATTN_NONE;
}

/*
 * Is any page of ours (mapped or about to be) overlapping [address, address + size)?
 * Pages are aligned to their own size, so for each size only a few starts can
 * overlap: the one containing address for sizes >= size, and every start inside
 * the new page for smaller sizes (at most 2M / 64K = 32).
 */
static bool overlaps_mapped(const struct uvm_vattn_state *state, uint64_t address, uint64_t size)
{
    static const uint64_t sizes[] = {
        UVM_VATTN_PAGE_SIZE_64K, UVM_VATTN_PAGE_SIZE_128K,
        UVM_VATTN_PAGE_SIZE_256K, UVM_VATTN_PAGE_SIZE_2M,
    };
    size_t k;

    for (k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        uint64_t s = sizes[k];
        uint64_t start = address & ~(s - 1);
        uint64_t end = s >= size ? start + 1 : address + size;
        uint64_t a;

        for (a = start; a < end; a += s) {
            uint32_t i = hash_find(state, a);

            if (i != VATTN_NONE && state->entries[i].size == s)
                return true;
        }
    }
    return false;
}

static NV_STATUS table_grow(struct uvm_vattn_state *state)
{
    uint32_t new_cap = state->capacity ? state->capacity * 2 : VATTN_MIN_CAPACITY;
    struct uvm_vattn_entry *entries;
    uint32_t *buckets;
    uint32_t i;

    if (state->capacity >= UVM_VATTN_MAX_HANDLES)
        return NV_ERR_INSUFFICIENT_RESOURCES;

    entries = vattn_os_alloc(sizeof(*entries) * (size_t)new_cap);
    buckets = vattn_os_alloc(sizeof(*buckets) * (size_t)new_cap);
    if (!entries || !buckets) {
        vattn_os_free(entries);
        vattn_os_free(buckets);
        return NV_ERR_NO_MEMORY;
    }
    memset(entries, 0, sizeof(*entries) * (size_t)new_cap);
    if (state->capacity)
        memcpy(entries, state->entries, sizeof(*entries) * (size_t)state->capacity);
    vattn_os_free(state->entries);
    vattn_os_free(state->buckets);
    state->entries = entries;
    state->buckets = buckets;
    state->capacity = new_cap;

    for (i = 0; i < new_cap; i++)
        buckets[i] = VATTN_NONE;
    for (i = 0; i < state->high_water; i++) {
        if (state_in_hash(entries[i].state))
            hash_insert(state, i);
    }
    return NV_OK;
}

static NV_STATUS table_reserve(struct uvm_vattn_state *state, uint32_t count)
{
    while (state->capacity - state->high_water + state->free_count < count) {
        NV_STATUS status = table_grow(state);

        if (status != NV_OK)
            return status;
    }
    return NV_OK;
}

/* Takes a free entry; table_reserve() made sure there is one. */
static uint32_t table_take(struct uvm_vattn_state *state)
{
    uint32_t slot;

    if (state->free_head != VATTN_NONE) {
        slot = state->free_head;
        state->free_head = state->entries[slot].next;
        state->free_count--;
    }
    else {
        slot = state->high_water++;
        state->entries[slot].gen = 1;
    }
    state->entries[slot].next = VATTN_NONE;
    state->live++;
    return slot;
}

/* Returns an entry to the free list with a new generation, so every handle that
 * named it becomes "not found". An exhausted generation retires the slot. */
static void table_put(struct uvm_vattn_state *state, uint32_t slot)
{
    struct uvm_vattn_entry *e = &state->entries[slot];

    e->chunk = NULL;
    e->size = 0;
    e->address = 0;
    e->lost = 0;
    state->live--;
    if (e->gen == UVM_VATTN_GEN_MASK) {
        e->state = VATTN_SLOT_RETIRED;
        e->next = VATTN_NONE;
        return;
    }
    e->gen++;
    e->state = VATTN_SLOT_FREE;
    e->next = state->free_head;
    state->free_head = slot;
    state->free_count++;
}

/* The entry a handle names, if it is live in this table with that generation. */
static struct uvm_vattn_entry *table_lookup(struct uvm_vattn_state *state, uint64_t handle, uint32_t *slot_out)
{
    uint32_t slot, gen;
    struct uvm_vattn_entry *e;

    if (!uvm_vattn_handle_split(handle, state->tag, &slot, &gen) || slot >= state->high_water)
        return NULL;
    e = &state->entries[slot];
    if (e->gen != gen || e->state == VATTN_SLOT_FREE || e->state == VATTN_SLOT_RETIRED)
        return NULL;
    *slot_out = slot;
    return e;
}

/* ------------------------------------------------------------------------- */
/* GPUs and accounting.                                                       */
/* ------------------------------------------------------------------------- */

/* The state's slot for gpu (found by UUID), creating it. -1 if all are taken, -2
 * if the UUID's GPU was unregistered and registered again while we still hold chunks
 * of the old one (those stay with the old, retained GPU object). */
static int gpu_slot_get(struct uvm_vattn_state *state, const uint8_t uuid[16], vattn_os_gpu_t *gpu)
{
    int i, free_slot = -1;

    for (i = 0; i < UVM_VATTN_STATE_GPUS; i++) {
        struct uvm_vattn_gpu_slot *g = &state->gpus[i];

        if (g->chunks && memcmp(g->uuid, uuid, 16) == 0) {
            /* Same UUID but another gpu object: the GPU was unregistered and
             * registered again. Our chunks belong to the old (retained) one. */
            return g->gpu == gpu ? i : -2;
        }
        if (!g->chunks && free_slot < 0)
            free_slot = i;
    }
    if (free_slot >= 0) {
        memcpy(state->gpus[free_slot].uuid, uuid, 16);
        state->gpus[free_slot].gpu = gpu;
    }
    return free_slot;
}

static void account_add(struct uvm_vattn_state *state, int gslot, uint64_t size)
{
    struct uvm_vattn_gpu_slot *g = &state->gpus[gslot];

    if (g->chunks++ == 0)
        vattn_os_gpu_retain(g->gpu);
    g->pinned_bytes += size;
    state->pinned_bytes += size;
}

static void account_sub(struct uvm_vattn_state *state, int gslot, uint64_t size)
{
    struct uvm_vattn_gpu_slot *g = &state->gpus[gslot];

    g->pinned_bytes -= size;
    state->pinned_bytes -= size;
    vattn_os_owner_uncharge(state->owner, size);
    if (--g->chunks == 0) {
        /* Queued, not released here (see the lock order). One lock hold empties
         * a slot at most once (ALLOC fills one slot and may roll it back; FREE,
         * RELEASE_RANGE and release only remove), so the queue has room. */
        state->release[state->nrelease++] = g->gpu;
        g->gpu = NULL;
        memset(g->uuid, 0, sizeof(g->uuid));
    }
}

/* Frees an entry's chunk and the entry. The entry must not be mapped. */
static void entry_free(struct uvm_vattn_state *state, uint32_t slot)
{
    struct uvm_vattn_entry *e = &state->entries[slot];
    struct uvm_vattn_gpu_slot *g = &state->gpus[e->gpu_slot];

    if (e->lost)
        vattn_os_chunk_abandon(g->gpu, e->chunk);
    else
        vattn_os_chunk_free(g->gpu, e->chunk);
    account_sub(state, e->gpu_slot, e->size);
    table_put(state, slot);
}

/* Unmaps a MAPPED entry on a teardown path (UVM is about to free the page tables
 * under it): the entry ends ALLOCATED either way; if clearing failed, its chunk is
 * marked lost so that it is abandoned, not freed. */
static void entry_unmap_forced(vattn_os_va_space_t *va_space, struct uvm_vattn_state *state, uint32_t slot)
{
    struct uvm_vattn_entry *e = &state->entries[slot];

    if (vattn_os_unmap(va_space, state->gpus[e->gpu_slot].gpu, e->address, e->size, e->chunk, true) != NV_OK)
        e->lost = 1;
    hash_remove(state, slot);
    e->state = VATTN_SLOT_ALLOCATED;
    e->address = 0;
}

/* ------------------------------------------------------------------------- */
/* Owned extents (see "Ownership" at the top).                                */
/* ------------------------------------------------------------------------- */

/* The owned extent holding all of [address, address + size), or VATTN_NONE. */
static uint32_t owned_find(const struct uvm_vattn_state *state, uint64_t address, uint64_t size)
{
    uint32_t i;

    for (i = 0; i < state->nowned; i++) {
        if (address >= state->owned[i].start && address + size - 1 <= state->owned[i].end)
            return i;
    }
    return VATTN_NONE;
}

static bool owned_overlaps(const struct uvm_vattn_state *state, uint64_t start, uint64_t end)
{
    uint32_t i;

    for (i = 0; i < state->nowned; i++) {
        if (start <= state->owned[i].end && state->owned[i].start <= end)
            return true;
    }
    return false;
}

static NV_STATUS owned_add(struct uvm_vattn_state *state, uint64_t start, uint64_t end)
{
    if (state->nowned == state->owned_cap) {
        uint32_t cap = state->owned_cap ? state->owned_cap * 2 : 8;
        struct uvm_vattn_owned *o;

        if (state->owned_cap >= UVM_VATTN_MAX_OWNED)
            return NV_ERR_INSUFFICIENT_RESOURCES;
        o = vattn_os_alloc(sizeof(*o) * cap);
        if (!o)
            return NV_ERR_NO_MEMORY;
        if (state->nowned)
            memcpy(o, state->owned, sizeof(*o) * state->nowned);
        vattn_os_free(state->owned);
        state->owned = o;
        state->owned_cap = cap;
    }
    state->owned[state->nowned].start = start;
    state->owned[state->nowned].end = end;
    state->nowned++;
    return NV_OK;
}

static void owned_remove(struct uvm_vattn_state *state, uint32_t i)
{
    state->owned[i] = state->owned[--state->nowned];
}

/* Gives back the extents claimed since index from that hold none of the first
 * done entries of slots (the pages this MAP did map). */
static void owned_rollback(struct uvm_vattn_state *state, uint32_t from, const uint32_t *slots, uint32_t done)
{
    uint32_t j = state->nowned;

    while (j-- > from) {
        uint32_t k;

        for (k = 0; k < done; k++) {
            const struct uvm_vattn_entry *e = &state->entries[slots[k]];

            if (e->address >= state->owned[j].start && e->address <= state->owned[j].end)
                break;
        }
        if (k == done)
            owned_remove(state, j);
    }
}

/* Removes [start, end] from every owned extent. Cutting an extent in two needs a
 * new entry; if that allocation fails the extent is kept whole, which only keeps
 * UVM out of a range that no longer exists (and of one later created there). */
static void owned_trim(struct uvm_vattn_state *state, uint64_t start, uint64_t end)
{
    uint32_t i = 0;

    while (i < state->nowned) {
        struct uvm_vattn_owned *o = &state->owned[i];

        if (end < o->start || o->end < start) {
            i++;
            continue;
        }
        if (o->start < start && o->end > end) {
            uint64_t hi_start = end + 1, hi_end = o->end;

            if (owned_add(state, hi_start, hi_end) == NV_OK)
                state->owned[i].end = start - 1;   /* owned_add may have moved the array */
            i++;
        }
        else if (o->start < start) {
            o->end = start - 1;
            i++;
        }
        else if (o->end > end) {
            o->start = end + 1;
            i++;
        }
        else {
            owned_remove(state, i);
        }
    }
}

/* ------------------------------------------------------------------------- */
/* State lifetime.                                                            */
/* ------------------------------------------------------------------------- */

static struct uvm_vattn_state *state_get(vattn_os_va_space_t *va_space)
{
    struct uvm_vattn_state **slot = vattn_os_state_slot(va_space);
    struct uvm_vattn_state *state;

    /* Created under the va_space lock in read mode by possibly concurrent callers:
     * publish with a compare-and-swap, the loser frees its copy. */
    state = UVM_VATTN_READ_ONCE(*slot);
    if (state)
        return state;
    state = vattn_os_alloc(sizeof(*state));
    if (!state)
        return NULL;
    memset(state, 0, sizeof(*state));
    vattn_os_mutex_init(&state->lock);
    state->free_head = VATTN_NONE;
    state->tag = vattn_os_next_tag() % UVM_VATTN_TAG_MASK + 1;
    state->owner = vattn_os_owner_get();
    if (!state->owner || table_grow(state) != NV_OK) {
        if (state->owner)
            vattn_os_owner_put(state->owner);
        vattn_os_free(state);
        return NULL;
    }
    if (!UVM_VATTN_CMPXCHG(slot, state)) {
        vattn_os_owner_put(state->owner);
        vattn_os_free(state->owned);
        vattn_os_free(state->entries);
        vattn_os_free(state->buckets);
        vattn_os_free(state);
        state = UVM_VATTN_READ_ONCE(*slot);
    }
    return state;
}

static void va_space_lock(vattn_os_va_space_t *va_space, bool write)
{
    if (write)
        vattn_os_va_space_lock_write(va_space);
    else
        vattn_os_va_space_lock(va_space);
}

static void va_space_unlock(vattn_os_va_space_t *va_space, bool write)
{
    if (write)
        vattn_os_va_space_unlock_write(va_space);
    else
        vattn_os_va_space_unlock(va_space);
}

/* Locks the va_space (for write if asked) and the state, creating the state if
 * needed. */
static struct uvm_vattn_state *lock_state(vattn_os_va_space_t *va_space, bool write)
{
    struct uvm_vattn_state *state;

    va_space_lock(va_space, write);
    state = state_get(va_space);
    if (!state) {
        va_space_unlock(va_space, write);
        return NULL;
    }
    vattn_os_mutex_lock(&state->lock);
    state->locked_write = write;
    return state;
}

/* Unlocks both, then drops the GPU references account_sub() queued. */
static void unlock_state(vattn_os_va_space_t *va_space, struct uvm_vattn_state *state)
{
    vattn_os_gpu_t *release[UVM_VATTN_STATE_GPUS];
    uint32_t i, n = state->nrelease;
    bool write = state->locked_write;

    memcpy(release, state->release, sizeof(release[0]) * n);
    state->nrelease = 0;
    state->locked_write = 0;
    vattn_os_mutex_unlock(&state->lock);
    va_space_unlock(va_space, write);
    for (i = 0; i < n; i++)
        vattn_os_gpu_release(release[i]);
}

void uvm_vattn_va_space_destroy(vattn_os_va_space_t *va_space)
{
    struct uvm_vattn_state **slot = vattn_os_state_slot(va_space);
    struct uvm_vattn_state *state = *slot;
    uint32_t i;

    if (!state)
        return;

    /* For write: UVM's fault path may still be reading the owned set (under the
     * lock in read mode) until the state is unpublished below. */
    vattn_os_va_space_lock_write(va_space);
    vattn_os_mutex_lock(&state->lock);
    state->locked_write = 1;
    for (i = 0; i < state->high_water; i++) {
        struct uvm_vattn_entry *e = &state->entries[i];

        if (e->state == VATTN_SLOT_FREE || e->state == VATTN_SLOT_RETIRED)
            continue;
        /* A failed unmap leaves the chunk lost: abandoned, never reused. */
        if (state_in_hash(e->state))
            entry_unmap_forced(va_space, state, i);
        entry_free(state, i);
    }
    /* Every page is unmapped: UVM may use these ranges again from here on. */
    state->nowned = 0;
    *slot = NULL;
    unlock_state(va_space, state);

    vattn_os_owner_put(state->owner);
    vattn_os_free(state->owned);
    vattn_os_free(state->entries);
    vattn_os_free(state->buckets);
    vattn_os_free(state);
}

/* ------------------------------------------------------------------------- */
/* The fence's hooks, called from UVM's own paths (see "Ownership").           */
/* ------------------------------------------------------------------------- */

bool uvm_vattn_owned(vattn_os_va_space_t *va_space, uint64_t start, uint64_t end)
{
    struct uvm_vattn_state *state = UVM_VATTN_READ_ONCE(*vattn_os_state_slot(va_space));

    return state && owned_overlaps(state, start, end);
}

/* The hooks' common part: with the va_space lock held for write by UVM, unmaps
 * (forced) every page of ours overlapping [start, end] that is mapped on gpu (any
 * GPU if NULL), then, for a destroyed range (trim), ends ownership of it. */
static void hook_unmap(vattn_os_va_space_t *va_space, uint64_t start, uint64_t end, vattn_os_gpu_t *gpu, bool trim)
{
    struct uvm_vattn_state *state = *vattn_os_state_slot(va_space);
    uint32_t i;

    if (!state)
        return;
    vattn_os_mutex_lock(&state->lock);
    for (i = 0; i < state->high_water; i++) {
        struct uvm_vattn_entry *e = &state->entries[i];

        if (e->state == VATTN_SLOT_MAPPED && e->address <= end && e->address + e->size - 1 >= start &&
            (!gpu || state->gpus[e->gpu_slot].gpu == gpu))
            entry_unmap_forced(va_space, state, i);
    }
    if (trim)
        owned_trim(state, start, end);
    vattn_os_mutex_unlock(&state->lock);
}

void uvm_vattn_range_destroyed(vattn_os_va_space_t *va_space, uint64_t start, uint64_t end)
{
    hook_unmap(va_space, start, end, NULL, true);
}

void uvm_vattn_gpu_va_space_removed(vattn_os_va_space_t *va_space, vattn_os_gpu_t *gpu)
{
    hook_unmap(va_space, 0, UINT64_MAX, gpu, false);
}

/* ------------------------------------------------------------------------- */
/* Commands. Each runs with no lock held and takes va_space lock -> state lock. */
/* ------------------------------------------------------------------------- */

static NV_STATUS cmd_get_info(vattn_os_va_space_t *va_space, UVM_VATTN_GET_INFO_PARAMS *p, int *err)
{
    struct uvm_vattn_state *state;
    UVM_VATTN_GPU_INFO *info = NULL;
    uint32_t n = 0, cap = p->gpuCapacity;
    int i;

    p->abiVersion = UVM_VATTN_ABI_VERSION;
    p->maxBatch = UVM_VATTN_MAX_BATCH;
    p->pinnedLimitBytes = vattn_os_pinned_limit();
    p->gpuCount = 0;
    p->pinnedBytes = 0;
    if (p->reserved0 != 0)
        return NV_ERR_INVALID_ARGUMENT;
    if (cap > UVM_VATTN_MAX_GPUS)
        return NV_ERR_INVALID_LIMIT;
    if (cap) {
        info = vattn_os_alloc(sizeof(*info) * cap);
        if (!info)
            return NV_ERR_NO_MEMORY;
        memset(info, 0, sizeof(*info) * cap);
    }

    state = lock_state(va_space, false);
    if (!state) {
        vattn_os_free(info);
        return NV_ERR_NO_MEMORY;
    }
    p->pinnedBytes = state->pinned_bytes;
    n = vattn_os_gpu_list(va_space, info, cap);
    for (i = 0; i < UVM_VATTN_STATE_GPUS; i++) {
        uint32_t k;

        for (k = 0; k < cap && k < n; k++) {
            if (state->gpus[i].chunks && memcmp(state->gpus[i].uuid, info[k].gpuUuid, 16) == 0)
                info[k].pinnedBytes = state->gpus[i].pinned_bytes;
        }
    }
    unlock_state(va_space, state);

    p->gpuCount = n;
    if (cap && n && vattn_os_copy_to_user(p->gpuInfo, info, sizeof(*info) * (n < cap ? n : cap)))
        *err = -EFAULT;
    vattn_os_free(info);
    return NV_OK;
}

static NV_STATUS cmd_alloc(vattn_os_va_space_t *va_space, UVM_VATTN_ALLOC_PARAMS *p, int *err)
{
    struct uvm_vattn_state *state;
    vattn_os_gpu_t *gpu;
    uint64_t sizes, need, limit, *handles = NULL;
    uint32_t *slots = NULL;
    uint32_t i, made = 0;
    NV_STATUS status;
    int gslot;

    p->done = 0;
    if (p->flags != 0)
        return NV_ERR_INVALID_ARGUMENT;
    if (p->count > UVM_VATTN_MAX_BATCH)
        return NV_ERR_INVALID_LIMIT;
    if (!uvm_vattn_page_size_valid(p->pageSize))
        return NV_ERR_INVALID_ARGUMENT;
    if (p->count == 0)
        return NV_OK;

    handles = vattn_os_alloc(sizeof(*handles) * p->count);
    slots = vattn_os_alloc(sizeof(*slots) * p->count);
    if (!handles || !slots) {
        status = NV_ERR_NO_MEMORY;
        goto out_free;
    }

    state = lock_state(va_space, false);
    if (!state) {
        status = NV_ERR_NO_MEMORY;
        goto out_free;
    }
    status = vattn_os_gpu_find(va_space, p->gpuUuid, &gpu, &sizes);
    if (status != NV_OK)
        goto out_unlock;
    if (!(sizes & p->pageSize)) {
        status = NV_ERR_NOT_SUPPORTED;
        goto out_unlock;
    }

    gslot = gpu_slot_get(state, p->gpuUuid, gpu);
    if (gslot < 0) {
        status = gslot == -2 ? NV_ERR_INVALID_DEVICE : NV_ERR_INSUFFICIENT_RESOURCES;
        goto out_unlock;
    }
    status = table_reserve(state, p->count);
    if (status != NV_OK)
        goto out_unlock;
    /* Charge the whole batch to the process up front (count <= 2^14 and size <= 2^21
     * cannot overflow, but check like any input); each page's share is returned by
     * account_sub() when it is freed, the unmade rest below. */
    limit = vattn_os_pinned_limit();
    if (!uvm_vattn_mul_ok(p->count, p->pageSize, &need) ||
        !vattn_os_owner_charge(state->owner, need, limit)) {
        status = NV_ERR_INSUFFICIENT_RESOURCES;
        goto out_unlock;
    }

    for (made = 0; made < p->count; made++) {
        vattn_os_chunk_t *chunk;
        struct uvm_vattn_entry *e;
        uint32_t slot;

        status = vattn_os_chunk_alloc(gpu, p->pageSize, &chunk);
        if (status != NV_OK)
            break;
        slot = table_take(state);
        e = &state->entries[slot];
        e->chunk = chunk;
        e->size = p->pageSize;
        e->gpu_slot = (uint16_t)gslot;
        e->state = VATTN_SLOT_PENDING_ALLOC;
        account_add(state, gslot, p->pageSize);
        slots[made] = slot;
        handles[made] = uvm_vattn_handle_make(state->tag, slot, e->gen);
    }
    if (status != NV_OK) {
        vattn_os_owner_uncharge(state->owner, (uint64_t)(p->count - made) * p->pageSize);
        for (i = 0; i < made; i++)
            entry_free(state, slots[i]);
        made = 0;
    }
    unlock_state(va_space, state);
    if (status != NV_OK)
        goto out_free;

    /* Copy out with no lock held; the entries stay PENDING_ALLOC meanwhile. */
    if (vattn_os_copy_to_user(p->handles, handles, sizeof(*handles) * p->count)) {
        *err = -EFAULT;
        status = NV_ERR_INVALID_ADDRESS;
    }

    /* The state outlives this call: only release, which no ioctl can race, frees it. */
    vattn_os_va_space_lock(va_space);
    vattn_os_mutex_lock(&state->lock);
    for (i = 0; i < made; i++) {
        if (*err)
            entry_free(state, slots[i]);
        else
            state->entries[slots[i]].state = VATTN_SLOT_ALLOCATED;
    }
    unlock_state(va_space, state);
    p->done = *err ? 0 : made;
    goto out_free;

out_unlock:
    unlock_state(va_space, state);
out_free:
    vattn_os_free(handles);
    vattn_os_free(slots);
    return status;
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

/* The common start of MAP, UNMAP and FREE: bounds the count, copies the user array
 * of count elements in and allocates the per-entry slot array. count == 0 is a
 * no-op (NV_OK, nothing allocated). */
static NV_STATUS batch_in(uint32_t count, uint64_t user, size_t elem, void **arr, uint32_t **slots, int *err)
{
    NV_STATUS status;

    *arr = NULL;
    *slots = NULL;
    if (count > UVM_VATTN_MAX_BATCH)
        return NV_ERR_INVALID_LIMIT;
    if (count == 0)
        return NV_OK;
    status = copy_in_array(user, count, elem, arr, err);
    if (status != NV_OK)
        return status;
    *slots = vattn_os_alloc(sizeof(**slots) * count);
    if (!*slots) {
        vattn_os_free(*arr);
        *arr = NULL;
        return NV_ERR_NO_MEMORY;
    }
    return NV_OK;
}


/* Fills the trace identity (GPU UUID and size) from the batch's first entry. */
static void trace_identity(struct uvm_vattn_state *state, uint32_t slot, uint8_t uuid[16], uint64_t *size)
{
    struct uvm_vattn_entry *e = &state->entries[slot];

    memcpy(uuid, state->gpus[e->gpu_slot].uuid, 16);
    *size = e->size;
}

static NV_STATUS cmd_map(vattn_os_va_space_t *va_space, UVM_VATTN_MAP_PARAMS *p, int *err,
                         uint8_t uuid[16], uint64_t *trace_size)
{
    struct uvm_vattn_state *state;
    UVM_VATTN_MAP_ENTRY *ent = NULL;
    uint32_t *slots = NULL;
    uint32_t i, checked = 0, claimed_from;
    bool write = false, retry = false;
    NV_STATUS status;

    p->done = 0;
    p->errorIndex = 0;
    status = batch_in(p->count, p->entries, sizeof(*ent), (void **)&ent, &slots, err);
    if (status != NV_OK || p->count == 0)
        return status;

    /* Mapping into ranges this file owns needs the va_space lock only for read,
     * like UVM's own map ioctls. A batch that must claim a range starts over with
     * it held for write (see "Ownership" at the top). */
again:
    state = lock_state(va_space, write);
    if (!state) {
        status = NV_ERR_NO_MEMORY;
        goto out;
    }
    claimed_from = state->nowned;

    /* Check every entry, reserving it (PENDING_MAP, in the address hash) so later
     * entries of the same batch see it; nothing reaches the page tables yet. */
    for (checked = 0; checked < p->count; checked++) {
        struct uvm_vattn_entry *e = table_lookup(state, ent[checked].handle, &slots[checked]);
        uint64_t range_start, range_end;

        if (!e || e->state == VATTN_SLOT_PENDING_ALLOC || e->state == VATTN_SLOT_PENDING_FREE) {
            status = NV_ERR_OBJECT_NOT_FOUND;
            break;
        }
        if (checked == 0)
            trace_identity(state, slots[0], uuid, trace_size);
        if (e->state != VATTN_SLOT_ALLOCATED) {
            status = NV_ERR_UVM_ADDRESS_IN_USE;
            break;
        }
        status = uvm_vattn_check_address(ent[checked].address, e->size);
        if (status != NV_OK)
            break;
        status = vattn_os_range_check(va_space, ent[checked].address, e->size, &range_start, &range_end);
        if (status != NV_OK)
            break;
        if (owned_find(state, ent[checked].address, e->size) == VATTN_NONE) {
            if (!write) {
                retry = true;
                break;
            }
            status = vattn_os_range_claim(va_space, ent[checked].address);
            if (status == NV_OK)
                status = owned_add(state, range_start, range_end);
            if (status != NV_OK)
                break;
        }
        if (overlaps_mapped(state, ent[checked].address, e->size)) {
            status = NV_ERR_UVM_ADDRESS_IN_USE;
            break;
        }
        e->address = ent[checked].address;
        e->state = VATTN_SLOT_PENDING_MAP;
        hash_insert(state, slots[checked]);
    }
    if (status != NV_OK || retry) {
        p->errorIndex = checked;
        for (i = 0; i < checked; i++) {
            hash_remove(state, slots[i]);
            state->entries[slots[i]].state = VATTN_SLOT_ALLOCATED;
            state->entries[slots[i]].address = 0;
        }
        owned_rollback(state, claimed_from, slots, 0);
        if (retry) {
            p->errorIndex = 0;
            unlock_state(va_space, state);
            write = true;
            retry = false;
            goto again;
        }
        goto out_unlock;
    }

    for (i = 0; i < p->count; i++) {
        struct uvm_vattn_entry *e = &state->entries[slots[i]];

        status = vattn_os_map(va_space, state->gpus[e->gpu_slot].gpu, e->address, e->size, e->chunk);
        if (status != NV_OK)
            break;
        e->state = VATTN_SLOT_MAPPED;
    }
    p->done = i;
    if (status != NV_OK) {
        p->errorIndex = i;
        for (; i < p->count; i++) {
            hash_remove(state, slots[i]);
            state->entries[slots[i]].state = VATTN_SLOT_ALLOCATED;
            state->entries[slots[i]].address = 0;
        }
        owned_rollback(state, claimed_from, slots, p->done);
    }

out_unlock:
    unlock_state(va_space, state);
out:
    vattn_os_free(ent);
    vattn_os_free(slots);
    return status;
}

static NV_STATUS cmd_unmap(vattn_os_va_space_t *va_space, UVM_VATTN_UNMAP_PARAMS *p, int *err,
                           uint8_t uuid[16], uint64_t *trace_size)
{
    struct uvm_vattn_state *state;
    uint64_t *addr = NULL;
    uint32_t *slots = NULL;
    uint32_t i, checked = 0;
    NV_STATUS status;

    p->done = 0;
    p->errorIndex = 0;
    status = batch_in(p->count, p->addresses, sizeof(*addr), (void **)&addr, &slots, err);
    if (status != NV_OK || p->count == 0)
        return status;

    state = lock_state(va_space, false);
    if (!state) {
        status = NV_ERR_NO_MEMORY;
        goto out;
    }

    for (checked = 0; checked < p->count; checked++) {
        uint32_t slot = hash_find(state, addr[checked]);

        /* Only a page that starts exactly there counts; an address inside a page
         * or a second entry for the same page (PENDING_UNMAP) is not mapped. */
        if (slot == VATTN_NONE || state->entries[slot].state != VATTN_SLOT_MAPPED) {
            status = NV_ERR_OBJECT_NOT_FOUND;
            break;
        }
        if (checked == 0)
            trace_identity(state, slot, uuid, trace_size);
        state->entries[slot].state = VATTN_SLOT_PENDING_UNMAP;
        slots[checked] = slot;
    }
    if (status != NV_OK) {
        p->errorIndex = checked;
        for (i = 0; i < checked; i++)
            state->entries[slots[i]].state = VATTN_SLOT_MAPPED;
        goto out_unlock;
    }

    for (i = 0; i < p->count; i++) {
        struct uvm_vattn_entry *e = &state->entries[slots[i]];

        status = vattn_os_unmap(va_space, state->gpus[e->gpu_slot].gpu, e->address, e->size, e->chunk, false);
        if (status != NV_OK)
            break;
        hash_remove(state, slots[i]);
        e->state = VATTN_SLOT_ALLOCATED;
        e->address = 0;
    }
    p->done = i;
    if (status != NV_OK) {
        p->errorIndex = i;
        for (; i < p->count; i++)
            state->entries[slots[i]].state = VATTN_SLOT_MAPPED;
    }

out_unlock:
    unlock_state(va_space, state);
out:
    vattn_os_free(addr);
    vattn_os_free(slots);
    return status;
}

static NV_STATUS cmd_free(vattn_os_va_space_t *va_space, UVM_VATTN_FREE_PARAMS *p, int *err,
                          uint8_t uuid[16], uint64_t *trace_size)
{
    struct uvm_vattn_state *state;
    uint64_t *handles = NULL;
    uint32_t *slots = NULL;
    uint32_t i, checked = 0;
    NV_STATUS status;

    p->done = 0;
    p->errorIndex = 0;
    status = batch_in(p->count, p->handles, sizeof(*handles), (void **)&handles, &slots, err);
    if (status != NV_OK || p->count == 0)
        return status;

    state = lock_state(va_space, false);
    if (!state) {
        status = NV_ERR_NO_MEMORY;
        goto out;
    }

    for (checked = 0; checked < p->count; checked++) {
        struct uvm_vattn_entry *e = table_lookup(state, handles[checked], &slots[checked]);

        /* A handle twice in one batch is a double free: the second sees PENDING_FREE. */
        if (!e || e->state == VATTN_SLOT_PENDING_ALLOC || e->state == VATTN_SLOT_PENDING_FREE) {
            status = NV_ERR_OBJECT_NOT_FOUND;
            break;
        }
        if (checked == 0)
            trace_identity(state, slots[0], uuid, trace_size);
        if (e->state != VATTN_SLOT_ALLOCATED) {
            status = NV_ERR_IN_USE;
            break;
        }
        e->state = VATTN_SLOT_PENDING_FREE;
    }
    if (status != NV_OK) {
        p->errorIndex = checked;
        for (i = 0; i < checked; i++)
            state->entries[slots[i]].state = VATTN_SLOT_ALLOCATED;
        goto out_unlock;
    }
    for (i = 0; i < p->count; i++)
        entry_free(state, slots[i]);
    p->done = p->count;

out_unlock:
    unlock_state(va_space, state);
out:
    vattn_os_free(handles);
    vattn_os_free(slots);
    return status;
}

static NV_STATUS cmd_release_range(vattn_os_va_space_t *va_space, UVM_VATTN_RELEASE_RANGE_PARAMS *p,
                                   uint8_t uuid[16], uint64_t *trace_size)
{
    struct uvm_vattn_state *state;
    NV_STATUS status = NV_OK;
    uint64_t end;
    uint32_t i;

    p->unmapped = 0;
    p->freed = 0;
    if (p->flags & ~UVM_VATTN_RELEASE_FREE)
        return NV_ERR_INVALID_ARGUMENT;
    if (p->length == 0)
        return NV_OK;
    if (p->base > UINT64_MAX - p->length)
        return NV_ERR_INVALID_ADDRESS;
    end = p->base + p->length;

    state = lock_state(va_space, false);
    if (!state)
        return NV_ERR_NO_MEMORY;
    for (i = 0; i < state->high_water; i++) {
        struct uvm_vattn_entry *e = &state->entries[i];

        if (e->state != VATTN_SLOT_MAPPED || e->address >= end || e->address + e->size <= p->base)
            continue;
        if (p->unmapped == 0)
            trace_identity(state, i, uuid, trace_size);
        status = vattn_os_unmap(va_space, state->gpus[e->gpu_slot].gpu, e->address, e->size, e->chunk, false);
        if (status != NV_OK)
            break;
        hash_remove(state, i);
        e->state = VATTN_SLOT_ALLOCATED;
        e->address = 0;
        p->unmapped++;
        if (p->flags & UVM_VATTN_RELEASE_FREE) {
            entry_free(state, i);
            p->freed++;
        }
    }
    unlock_state(va_space, state);
    return status;
}

/* ------------------------------------------------------------------------- */
/* Dispatch.                                                                  */
/* ------------------------------------------------------------------------- */

union vattn_params
{
    UVM_VATTN_GET_INFO_PARAMS info;
    UVM_VATTN_ALLOC_PARAMS alloc;
    UVM_VATTN_MAP_PARAMS map;
    UVM_VATTN_UNMAP_PARAMS unmap;
    UVM_VATTN_FREE_PARAMS free;
    UVM_VATTN_RELEASE_RANGE_PARAMS release;
};

static size_t params_size(unsigned int cmd)
{
    switch (cmd) {
        case UVM_VATTN_GET_INFO:      return sizeof(UVM_VATTN_GET_INFO_PARAMS);
        case UVM_VATTN_ALLOC:         return sizeof(UVM_VATTN_ALLOC_PARAMS);
        case UVM_VATTN_MAP:           return sizeof(UVM_VATTN_MAP_PARAMS);
        case UVM_VATTN_UNMAP:         return sizeof(UVM_VATTN_UNMAP_PARAMS);
        case UVM_VATTN_FREE:          return sizeof(UVM_VATTN_FREE_PARAMS);
        case UVM_VATTN_RELEASE_RANGE: return sizeof(UVM_VATTN_RELEASE_RANGE_PARAMS);
    }
    return 0;
}

static NV_STATUS *params_status(union vattn_params *u, unsigned int cmd)
{
    switch (cmd) {
        case UVM_VATTN_GET_INFO:      return &u->info.rmStatus;
        case UVM_VATTN_ALLOC:         return &u->alloc.rmStatus;
        case UVM_VATTN_MAP:           return &u->map.rmStatus;
        case UVM_VATTN_UNMAP:         return &u->unmap.rmStatus;
        case UVM_VATTN_FREE:          return &u->free.rmStatus;
        default:                      return &u->release.rmStatus;
    }
}

long uvm_vattn_dispatch(vattn_os_va_space_t *va_space, unsigned int cmd, uint64_t user_arg)
{
    union vattn_params u;
    size_t size = params_size(cmd);
    uint64_t start = vattn_os_now_ns();
    uint8_t uuid[16];
    uint64_t trace_size = 0;
    uint32_t trace_count = 0, trace_done = 0;
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
    if (status == NV_OK) {
        switch (cmd) {
            case UVM_VATTN_GET_INFO:
                status = cmd_get_info(va_space, &u.info, &err);
                break;
            case UVM_VATTN_ALLOC:
                memcpy(uuid, u.alloc.gpuUuid, sizeof(uuid));
                trace_size = uvm_vattn_page_size_valid(u.alloc.pageSize) ? u.alloc.pageSize : 0;
                trace_count = u.alloc.count;
                status = cmd_alloc(va_space, &u.alloc, &err);
                trace_done = u.alloc.done;
                break;
            case UVM_VATTN_MAP:
                trace_count = u.map.count;
                status = cmd_map(va_space, &u.map, &err, uuid, &trace_size);
                trace_done = u.map.done;
                break;
            case UVM_VATTN_UNMAP:
                trace_count = u.unmap.count;
                status = cmd_unmap(va_space, &u.unmap, &err, uuid, &trace_size);
                trace_done = u.unmap.done;
                break;
            case UVM_VATTN_FREE:
                trace_count = u.free.count;
                status = cmd_free(va_space, &u.free, &err, uuid, &trace_size);
                trace_done = u.free.done;
                break;
            case UVM_VATTN_RELEASE_RANGE:
                status = cmd_release_range(va_space, &u.release, uuid, &trace_size);
                break;
        }
    }
    *params_status(&u, cmd) = status;

    switch (cmd) {
        case UVM_VATTN_ALLOC:
            vattn_os_trace(VATTN_TRACE_ALLOC, uuid, trace_size, trace_count, trace_done, status,
                           vattn_os_now_ns() - start);
            break;
        case UVM_VATTN_MAP:
            vattn_os_trace(VATTN_TRACE_MAP, uuid, trace_size, trace_count, trace_done, status,
                           vattn_os_now_ns() - start);
            break;
        case UVM_VATTN_UNMAP:
            vattn_os_trace(VATTN_TRACE_UNMAP, uuid, trace_size, trace_count, trace_done, status,
                           vattn_os_now_ns() - start);
            break;
        case UVM_VATTN_FREE:
            vattn_os_trace(VATTN_TRACE_FREE, uuid, trace_size, trace_count, trace_done, status,
                           vattn_os_now_ns() - start);
            break;
        case UVM_VATTN_RELEASE_RANGE:
            vattn_os_trace(VATTN_TRACE_UNMAP, uuid, trace_size, u.release.unmapped, u.release.unmapped,
                           status, vattn_os_now_ns() - start);
            if (u.release.flags == UVM_VATTN_RELEASE_FREE)
                vattn_os_trace(VATTN_TRACE_FREE, uuid, trace_size, u.release.freed, u.release.freed,
                               status, vattn_os_now_ns() - start);
            break;
    }

    if (err)
        return err;
    if (vattn_os_copy_to_user(user_arg, &u, size))
        return -EFAULT;
    return 0;
}
