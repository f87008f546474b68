/*
 * vattn_test.c - tests of uvm_vattn.c (the module's logic, unchanged) against the
 * model in shim.c, under ASan/UBSan: directed tests of every rule of
 * uvm_vattn_ioctl.h, UVM's own teardown over the batch's records, isolation
 * between processes, a fault sweep (every fallible step of a batch fails once;
 * the model's invariants and all-or-nothing are checked after each), and a seeded
 * randomized run of hostile batches checked against a reference of what each GPU
 * must see.
 *
 *   vattn_test SEED N     (N randomized batches)
 *
 * SPDX-License-Identifier: MIT
 */

#include <stdio.h>
#include <stdlib.h>

#include "uvm_vattn_shim.h"
#include "uvm_vattn_os.h"

#define KB64 UVM_VATTN_PAGE_SIZE
#define MB2 (32 * KB64)

static int failures;

#define EXPECT(c) do { if (!(c)) { fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #c); \
                                   failures++; } } while (0)

static vattn_os_va_space_t vs, other;

static void expect_ok_state(vattn_os_va_space_t *v, int line)
{
    const char *why = NULL;

    if (!shim_check(v, &why)) {
        fprintf(stderr, "line %d: invariant broken: %s\n", line, why);
        failures++;
    }
}
#define STATE_OK(v) expect_ok_state((v), __LINE__)

static uint8_t uuids[SHIM_GPUS][16];

static void setup(void)
{
    int g;

    shim_reset();
    shim_va_space_init(&vs, 1);
    shim_va_space_init(&other, 2);
    for (g = 0; g < SHIM_GPUS; g++)
        memcpy(uuids[g], vs.gpus[g].uuid, 16);
    shim_user_register(uuids, sizeof(uuids));
}

/* A MAP_BATCH of n entries on the GPUs [g0, g0 + ng); returns rmStatus, or the
 * negative errno. */
static long map(vattn_os_va_space_t *v, UVM_VATTN_MAP_ENTRY *e, uint32_t n, int g0, uint32_t ng, uint32_t client,
                uint32_t *error_index)
{
    UVM_VATTN_MAP_BATCH_PARAMS p;
    long r;

    memset(&p, 0, sizeof(p));
    p.entries = (uint64_t)(uintptr_t)e;
    p.gpuUuids = (uint64_t)(uintptr_t)uuids[g0];
    p.count = n;
    p.gpuCount = ng;
    p.rmCtrlFd = 3;
    p.hClient = client;
    shim_user_register(e, sizeof(*e) * (n ? n : 1));
    shim_user_register(&p, sizeof(p));
    r = uvm_vattn_dispatch(v, UVM_VATTN_MAP_BATCH, (uint64_t)(uintptr_t)&p);
    shim_user_reset();
    shim_user_register(uuids, sizeof(uuids));
    if (r)
        return r;
    if (error_index)
        *error_index = p.errorIndex;
    return p.rmStatus;
}

static long unmap(vattn_os_va_space_t *v, UVM_VATTN_UNMAP_ENTRY *e, uint32_t n, int g0, uint32_t ng,
                  uint32_t *error_index)
{
    UVM_VATTN_UNMAP_BATCH_PARAMS p;
    long r;

    memset(&p, 0, sizeof(p));
    p.entries = (uint64_t)(uintptr_t)e;
    p.gpuUuids = (uint64_t)(uintptr_t)uuids[g0];
    p.count = n;
    p.gpuCount = ng;
    shim_user_register(e, sizeof(*e) * (n ? n : 1));
    shim_user_register(&p, sizeof(p));
    r = uvm_vattn_dispatch(v, UVM_VATTN_UNMAP_BATCH, (uint64_t)(uintptr_t)&p);
    shim_user_reset();
    shim_user_register(uuids, sizeof(uuids));
    if (r)
        return r;
    if (error_index)
        *error_index = p.errorIndex;
    return p.rmStatus;
}

static UVM_VATTN_MAP_ENTRY me(uint64_t base, uint64_t len, uint32_t h, uint64_t off)
{
    UVM_VATTN_MAP_ENTRY e = { base, len, off, h, 0 };

    return e;
}

static int pte_is(vattn_os_va_space_t *v, int g, uint64_t addr, int mem, uint64_t off)
{
    struct shim_pte *p = &v->pte[g][addr / KB64];

    return p->valid && p->mem == mem && p->offset == off;
}

static int unmapped(vattn_os_va_space_t *v, int g, uint64_t addr)
{
    return !v->pte[g][addr / KB64].valid && !v->tlb[g][addr / KB64].valid;
}

/* Two ranges [0, 4 MiB) and [8 MiB, 16 MiB), memory A (8 MiB, GPU 0) and B
 * (8 MiB, GPU 1) of process 1, client 0xc1; memory C of process 2. */
static int memA, memB, memC;

static void world(void)
{
    setup();
    EXPECT(shim_range_create(&vs, 0, 2 * MB2) == 0);
    EXPECT(shim_range_create(&vs, 4 * MB2, 4 * MB2) == 1);
    EXPECT(shim_range_create(&other, 0, 2 * MB2) == 0);
    memA = shim_mem_alloc(1, 0xc1, 0xa, 4 * MB2, 0);
    memB = shim_mem_alloc(1, 0xc1, 0xb, 4 * MB2, 1);
    memC = shim_mem_alloc(2, 0xc2, 0xa, 4 * MB2, 0);
}

static void test_info_and_retired(void)
{
    UVM_VATTN_GET_INFO_PARAMS info;
    unsigned int c;

    world();
    memset(&info, 0xff, sizeof(info));
    shim_user_register(&info, sizeof(info));
    EXPECT(uvm_vattn_dispatch(&vs, UVM_VATTN_GET_INFO, (uint64_t)(uintptr_t)&info) == 0);
    EXPECT(info.abiVersion == 2 && info.maxBatch == UVM_VATTN_MAX_BATCH && info.maxGpus == UVM_VATTN_MAX_GPUS &&
           info.rmStatus == NV_OK);
    EXPECT(uvm_vattn_dispatch(NULL, UVM_VATTN_GET_INFO, (uint64_t)(uintptr_t)&info) == 0);
    EXPECT(info.rmStatus == NV_ERR_ILLEGAL_ACTION);
    /* ABI 1's commands are gone */
    for (c = UVM_VATTN_IOCTL_BASE + 2; c <= UVM_VATTN_IOCTL_BASE + 6; c++)
        EXPECT(uvm_vattn_dispatch(&vs, c, (uint64_t)(uintptr_t)&info) == -EINVAL);
    EXPECT(uvm_vattn_dispatch(&vs, UVM_VATTN_IOCTL_LAST + 1, (uint64_t)(uintptr_t)&info) == -EINVAL);
    /* params not readable */
    EXPECT(uvm_vattn_dispatch(&vs, UVM_VATTN_MAP_BATCH, 8) == -EFAULT);
    STATE_OK(&vs);
}

static void test_arguments(void)
{
    UVM_VATTN_MAP_ENTRY e[4];
    UVM_VATTN_UNMAP_ENTRY u[2];
    UVM_VATTN_MAP_BATCH_PARAMS p;
    uint32_t bad;

    world();
    e[0] = me(0, KB64, 0xa, 0);
    EXPECT(map(&vs, e, 1, 0, 0, 0xc1, NULL) == NV_ERR_INVALID_ARGUMENT);                 /* no GPU */
    EXPECT(map(&vs, e, 1, 0, UVM_VATTN_MAX_GPUS + 1, 0xc1, NULL) == NV_ERR_INVALID_ARGUMENT);
    EXPECT(map(&vs, e, UVM_VATTN_MAX_BATCH + 1, 0, 1, 0xc1, NULL) == NV_ERR_INVALID_LIMIT);
    EXPECT(map(&vs, e, 0, 0, 1, 0xc1, NULL) == NV_OK);                                   /* no-op */
    /* the same GPU twice */
    memcpy(uuids[1], uuids[0], 16);
    EXPECT(map(&vs, e, 1, 0, 2, 0xc1, NULL) == NV_ERR_INVALID_ARGUMENT);
    memcpy(uuids[1], vs.gpus[1].uuid, 16);
    e[0] = me(KB64 / 2, KB64, 0xa, 0);
    EXPECT(map(&vs, e, 1, 0, 1, 0xc1, &bad) == NV_ERR_INVALID_ADDRESS && bad == 0);
    e[0] = me(0, 0, 0xa, 0);
    EXPECT(map(&vs, e, 1, 0, 1, 0xc1, NULL) == NV_ERR_INVALID_ADDRESS);
    e[0] = me(0, KB64, 0xa, 4096);
    EXPECT(map(&vs, e, 1, 0, 1, 0xc1, NULL) == NV_ERR_INVALID_OFFSET);
    e[0] = me(~0ull - KB64 + 1, KB64, 0xa, 0);
    EXPECT(map(&vs, e, 1, 0, 1, 0xc1, NULL) == NV_ERR_INVALID_ADDRESS);                   /* overflow */
    e[0] = me(0, KB64, 0xa, 0);
    e[0].reserved = 1;
    EXPECT(map(&vs, e, 1, 0, 1, 0xc1, NULL) == NV_ERR_INVALID_ARGUMENT);
    /* overlap inside the batch: the later entry is named */
    e[0] = me(0, 2 * KB64, 0xa, 0);
    e[1] = me(4 * KB64, KB64, 0xa, 0);
    e[2] = me(KB64, KB64, 0xa, 0);
    EXPECT(map(&vs, e, 3, 0, 1, 0xc1, &bad) == NV_ERR_INVALID_ARGUMENT && bad == 2);
    /* outside any external range, across a range's end */
    e[0] = me(2 * MB2, KB64, 0xa, 0);
    EXPECT(map(&vs, e, 1, 0, 1, 0xc1, NULL) == NV_ERR_INVALID_ADDRESS);
    e[0] = me(2 * MB2 - KB64, 2 * KB64, 0xa, 0);
    EXPECT(map(&vs, e, 1, 0, 1, 0xc1, NULL) == NV_ERR_INVALID_ADDRESS);
    /* GPUs: unregistered, no GPU VA space, page tables not CE-writable */
    e[0] = me(0, KB64, 0xa, 0);
    vs.gpus[0].registered = false;
    EXPECT(map(&vs, e, 1, 0, 1, 0xc1, NULL) == NV_ERR_INVALID_DEVICE);
    vs.gpus[0].registered = true;
    vs.gpus[0].no_phys_ce = true;
    EXPECT(map(&vs, e, 1, 0, 1, 0xc1, NULL) == NV_ERR_NOT_SUPPORTED);
    vs.gpus[0].no_phys_ce = false;
    /* memory: unknown handle, another GPU's, another process's, past its end */
    e[0] = me(0, KB64, 0x77, 0);
    EXPECT(map(&vs, e, 1, 0, 1, 0xc1, NULL) == NV_ERR_INVALID_OBJECT_HANDLE);
    e[0] = me(0, KB64, 0xb, 0);
    EXPECT(map(&vs, e, 1, 0, 1, 0xc1, NULL) == NV_ERR_INVALID_DEVICE);
    e[0] = me(0, KB64, 0xa, 0);
    EXPECT(map(&vs, e, 1, 0, 1, 0xc2, NULL) == NV_ERR_INVALID_OBJECT_HANDLE);
    e[0] = me(0, 2 * KB64, 0xa, 4 * MB2 - KB64);
    EXPECT(map(&vs, e, 1, 0, 1, 0xc1, NULL) == NV_ERR_INVALID_OFFSET);
    /* unreadable arrays: EFAULT, nothing changed */
    memset(&p, 0, sizeof(p));
    p.entries = 16;
    p.gpuUuids = (uint64_t)(uintptr_t)uuids[0];
    p.count = 1;
    p.gpuCount = 1;
    shim_user_register(&p, sizeof(p));
    EXPECT(uvm_vattn_dispatch(&vs, UVM_VATTN_MAP_BATCH, (uint64_t)(uintptr_t)&p) == -EFAULT);
    p.flags = 1;
    EXPECT(uvm_vattn_dispatch(&vs, UVM_VATTN_MAP_BATCH, (uint64_t)(uintptr_t)&p) == 0 &&
           p.rmStatus == NV_ERR_INVALID_ARGUMENT);
    /* unmap: misaligned, overlapping, outside */
    u[0].base = 0;
    u[0].length = KB64 + 1;
    EXPECT(unmap(&vs, u, 1, 0, 1, NULL) == NV_ERR_INVALID_ADDRESS);
    u[0].length = 2 * KB64;
    u[1].base = KB64;
    u[1].length = KB64;
    EXPECT(unmap(&vs, u, 2, 0, 1, &bad) == NV_ERR_INVALID_ARGUMENT && bad == 1);
    u[0].base = 2 * MB2;
    EXPECT(unmap(&vs, u, 1, 0, 1, NULL) == NV_ERR_INVALID_ADDRESS);
    STATE_OK(&vs);
    EXPECT(shim_maps_count == 0 && shim_dups_count == 0);
}

static void test_map_unmap(void)
{
    UVM_VATTN_MAP_ENTRY e[8];
    UVM_VATTN_UNMAP_ENTRY u[4];
    long inv0;
    int i;

    world();
    /* scattered pages of one memory: one dup, one invalidate */
    for (i = 0; i < 8; i++)
        e[i] = me((uint64_t)(7 - i) * 3 * KB64, KB64, 0xa, (uint64_t)i * KB64);
    inv0 = vs.invalidates[0];
    EXPECT(map(&vs, e, 8, 0, 1, 0xc1, NULL) == NV_OK);
    EXPECT(vs.invalidates[0] == inv0 + 1);
    EXPECT(shim_maps_count == 8 && shim_dups_count == 1);
    for (i = 0; i < 8; i++)
        EXPECT(pte_is(&vs, 0, e[i].base, memA, e[i].offset));
    EXPECT(shim_last_trace.kind == VATTN_TRACE_MAP && shim_last_trace.count == 8 && shim_last_trace.done == 8 &&
           memcmp(shim_last_trace.uuid, uuids[0], 16) == 0);
    STATE_OK(&vs);
    /* mapped already: nothing of a batch that touches it changes */
    e[0] = me(40 * KB64, 4 * KB64, 0xa, 0);
    e[1] = me(21 * KB64 - KB64 * 21 + 0, KB64, 0xa, 0);  /* address 0: mapped by the first batch */
    {
        uint32_t bad;

        long r = map(&vs, e, 2, 0, 1, 0xc1, &bad);

        if (r != NV_ERR_UVM_ADDRESS_IN_USE || bad != 1)
            fprintf(stderr, "in use: %lx %u\n", r, bad);
        EXPECT(r == NV_ERR_UVM_ADDRESS_IN_USE && bad == 1);
        EXPECT(unmapped(&vs, 0, 40 * KB64));
    }
    STATE_OK(&vs);
    /* a run, then an unmap of its middle: split, the rest stays */
    e[0] = me(4 * MB2, 8 * KB64, 0xa, MB2);
    EXPECT(map(&vs, e, 1, 0, 1, 0xc1, NULL) == NV_OK);
    u[0].base = 4 * MB2 + 2 * KB64;
    u[0].length = 3 * KB64;
    EXPECT(unmap(&vs, u, 1, 0, 1, NULL) == NV_OK);
    EXPECT(pte_is(&vs, 0, 4 * MB2 + KB64, memA, MB2 + KB64));
    EXPECT(unmapped(&vs, 0, 4 * MB2 + 3 * KB64));
    EXPECT(pte_is(&vs, 0, 4 * MB2 + 5 * KB64, memA, MB2 + 5 * KB64));
    STATE_OK(&vs);
    /* unmap everything in both ranges, one invalidate */
    u[0].base = 0;
    u[0].length = 2 * MB2;
    u[1].base = 4 * MB2;
    u[1].length = 4 * MB2;
    inv0 = vs.invalidates[0];
    EXPECT(unmap(&vs, u, 2, 0, 1, NULL) == NV_OK);
    EXPECT(vs.invalidates[0] == inv0 + 1);
    EXPECT(shim_maps_count == 0 && shim_dups_count == 0 && shim_mems[memA].dups == 0);
    /* unmapping nothing is fine and invalidates nothing */
    EXPECT(unmap(&vs, u, 2, 0, 1, NULL) == NV_OK && vs.invalidates[0] == inv0 + 1);
    STATE_OK(&vs);
}

/* Two GPUs, peer memory refused; UVM's own paths over our records. */
static void test_gpus_and_teardown(void)
{
    UVM_VATTN_MAP_ENTRY e[4];
    UVM_VATTN_UNMAP_ENTRY u;
    int a2;

    world();
    a2 = shim_mem_alloc(1, 0xc1, 0x2a, 4 * MB2, 0);
    (void)a2;
    e[0] = me(0, 4 * KB64, 0xa, 0);
    EXPECT(map(&vs, e, 1, 0, 2, 0xc1, NULL) == NV_ERR_INVALID_DEVICE);   /* GPU 1 has no peer mapping here */
    EXPECT(shim_maps_count == 0 && unmapped(&vs, 0, 0));
    /* mapping on GPU 1 of its own memory, GPU 0 of A */
    e[0] = me(0, 4 * KB64, 0xb, 0);
    EXPECT(map(&vs, e, 1, 1, 1, 0xc1, NULL) == NV_OK);
    e[0] = me(0, 4 * KB64, 0xa, 0);
    e[1] = me(4 * MB2, KB64, 0x2a, KB64);
    EXPECT(map(&vs, e, 2, 0, 1, 0xc1, NULL) == NV_OK);
    STATE_OK(&vs);
    /* stock UVM_UNMAP_EXTERNAL of part of a batch mapping */
    EXPECT(shim_stock_unmap(&vs, KB64, KB64, 0) == NV_OK);
    STATE_OK(&vs);
    /* a stock mapping unmapped by the batch */
    EXPECT(shim_stock_map(&vs, 4 * MB2 + MB2, 2 * KB64, 0, 0xc1, 0xa, MB2) == NV_OK);
    u.base = 4 * MB2 + MB2;
    u.length = 2 * KB64;
    EXPECT(unmap(&vs, &u, 1, 0, 1, NULL) == NV_OK && unmapped(&vs, 0, 4 * MB2 + MB2));
    STATE_OK(&vs);
    /* the client frees its memory: the dups keep it until the mappings go */
    shim_mem_free(memA);
    STATE_OK(&vs);
    /* GPU VA space removal, range free, process exit: UVM's teardown alone */
    shim_gpu_va_space_remove(&vs, 1);
    EXPECT(unmapped(&vs, 1, 0));
    shim_range_free(&vs, 1);
    EXPECT(unmapped(&vs, 0, 4 * MB2));
    shim_va_space_destroy(&vs);
    STATE_OK(&vs);
    EXPECT(shim_maps_count == 0 && shim_dups_count == 0);
    /* after removal, the GPU is refused */
    EXPECT(shim_range_create(&vs, 0, MB2) >= 0);
    e[0] = me(0, KB64, 0xb, 0);
    EXPECT(map(&vs, e, 1, 1, 1, 0xc1, NULL) == NV_ERR_INVALID_DEVICE);
}

/* Process 2 cannot name process 1's memory, and process 1's batches never touch
 * process 2's page tables. */
static void test_isolation(void)
{
    UVM_VATTN_MAP_ENTRY e;
    vattn_os_va_space_t before;

    world();
    e = me(0, KB64, 0xa, 0);
    EXPECT(map(&other, &e, 1, 0, 1, 0xc1, NULL) == NV_ERR_INVALID_OBJECT_HANDLE);
    EXPECT(map(&other, &e, 1, 0, 1, 0xc2, NULL) == NV_OK);
    before = other;
    EXPECT(map(&vs, &e, 1, 0, 1, 0xc1, NULL) == NV_OK);
    EXPECT(shim_same_view(&before, &other));
    EXPECT(pte_is(&other, 0, 0, memC, 0) && pte_is(&vs, 0, 0, memA, 0));
    STATE_OK(&vs);
    STATE_OK(&other);
}

/* A UVM_MAP_EXTERNAL_SPARSE of the process's own, landing between a batch's check
 * and its commit (it takes the va_space lock for read only): the batch stops at
 * the raced entry, the entries before it stay mapped, the rest go, nothing leaks. */
static void test_sparse_race(void)
{
    UVM_VATTN_MAP_ENTRY e[3];
    UVM_VATTN_UNMAP_ENTRY u;
    uint32_t bad = 99;

    world();
    e[0] = me(0, 2 * KB64, 0xa, 0);
    e[1] = me(4 * KB64, 2 * KB64, 0xa, 2 * KB64);
    e[2] = me(8 * KB64, 2 * KB64, 0xa, 4 * KB64);
    shim_sparse_race = 1;
    EXPECT(map(&vs, e, 3, 0, 1, 0xc1, &bad) == NV_ERR_UVM_ADDRESS_IN_USE && bad == 1);
    EXPECT(pte_is(&vs, 0, 0, memA, 0) && pte_is(&vs, 0, KB64, memA, KB64));
    EXPECT(unmapped(&vs, 0, 5 * KB64) && unmapped(&vs, 0, 8 * KB64) && unmapped(&vs, 0, 9 * KB64));
    STATE_OK(&vs);
    u.base = 0;
    u.length = MB2;
    EXPECT(unmap(&vs, &u, 1, 0, 1, NULL) == NV_OK);
    STATE_OK(&vs);
    EXPECT(shim_maps_count == 0 && shim_dups_count == 0);
}

/* The starting state of both sweeps: a run of 16 pages on GPUs 0 and 1, each
 * of its own memory. */
static void sweep_world(void)
{
    UVM_VATTN_MAP_ENTRY e;

    world();
    e = me(4 * MB2, 16 * KB64, 0xa, 0);
    EXPECT(map(&vs, &e, 1, 0, 1, 0xc1, NULL) == NV_OK);
    e = me(4 * MB2, 16 * KB64, 0xb, 0);
    EXPECT(map(&vs, &e, 1, 1, 1, 0xc1, NULL) == NV_OK);
}

/* The batch both sweeps run on GPUs [0, ngpu): six scattered map entries of
 * memory A (on two GPUs: peer memory, and an undo that must clear both), or
 * three unmap entries (the first splits the run at both ends), left in u. */
static long sweep_batch(bool do_unmap, uint32_t ngpu, UVM_VATTN_UNMAP_ENTRY u[3])
{
    UVM_VATTN_MAP_ENTRY e[6];
    int i;

    if (!do_unmap) {
        vs.peer = ngpu > 1;
        for (i = 0; i < 5; i++)
            e[i] = me((uint64_t)i * 5 * KB64, (uint64_t)(1 + i % 3) * KB64, 0xa, (uint64_t)(i % 2) * 8 * KB64);
        e[5] = me(4 * MB2 + MB2, 2 * KB64, 0xa, MB2);
        return map(&vs, e, 6, 0, ngpu, 0xc1, NULL);
    }
    u[0].base = 4 * MB2 + 3 * KB64;
    u[0].length = 4 * KB64;
    u[1].base = 4 * MB2 + 10 * KB64;
    u[1].length = 2 * KB64;
    u[2].base = 0;
    u[2].length = MB2;
    return unmap(&vs, u, 3, 0, ngpu, NULL);
}

/*
 * The fault sweep: a batch whose every fallible step is made to fail once, in
 * turn. A failed MAP_BATCH must leave what the GPUs see exactly as before; a
 * failed UNMAP_BATCH too (its splits change no translation); a failed push is
 * UVM's global fatal state, after which nothing a GPU can reach may be released.
 */
static int sweep_one(bool do_unmap, uint32_t ngpu, long k)
{
    UVM_VATTN_UNMAP_ENTRY u[3];
    static vattn_os_va_space_t before;
    long r;

    sweep_world();
    before = vs;
    shim_fallible_calls = 0;
    shim_fail_any = k;
    r = sweep_batch(do_unmap, ngpu, u);
    if (shim_fail_any >= 0) {
        /* the fault was never reached: the sweep is over */
        EXPECT(r == NV_OK);
        STATE_OK(&vs);
        return 0;
    }
    STATE_OK(&vs);
    if (r == NV_OK) {
        fprintf(stderr, "sweep %s step %ld: a failed step was not reported\n", do_unmap ? "unmap" : "map", k);
        failures++;
    }
    else if (shim_global_status == NV_OK) {
        if (!shim_same_view(&before, &vs)) {
            fprintf(stderr, "sweep %s step %ld: a failed batch changed what a GPU sees\n",
                    do_unmap ? "unmap" : "map", k);
            failures++;
        }
    }
    else {
        /* fatal: later commands answer UVM's global status */
        UVM_VATTN_MAP_ENTRY x = me(40 * KB64, KB64, 0xa, 0);

        EXPECT(map(&vs, &x, 1, 0, 1, 0xc1, NULL) == NV_ERR_RC_ERROR);
    }
    return 1;
}

static long sweep(bool do_unmap, uint32_t ngpu)
{
    long k;

    for (k = 0; k < 10000 && sweep_one(do_unmap, ngpu, k); k++)
        ;
    return k;
}

/*
 * The race sweep: another thread of the calling process makes a stock call that
 * needs the va_space lock for read only (UVM_UNMAP_EXTERNAL, or
 * UVM_MAP_EXTERNAL_SPARSE) before each locked step of a batch, in turn, over the
 * batch's own addresses. What the process's own addresses then map is up to the
 * interleaving; what must hold whatever it is: no lock misuse, nothing a GPU can
 * reach released, no reference or kernel memory lost (shim_check, relaxed), and
 * a final unmap of everything leaves nothing mapped, held or leaked.
 */
static void race_unmap_low(vattn_os_va_space_t *v)
{
    EXPECT(shim_stock_unmap(v, 0, MB2, 0) == NV_OK);
}

static void race_sparse_low(vattn_os_va_space_t *v)
{
    EXPECT(shim_stock_sparse(v, 4 * KB64, 3 * KB64, 0) == NV_OK);
}

static void race_sparse_across(vattn_os_va_space_t *v)
{
    EXPECT(shim_stock_sparse(v, 4 * MB2 + 2 * KB64, 4 * KB64, 1) == NV_OK);
}

static void race_unmap_high(vattn_os_va_space_t *v)
{
    EXPECT(shim_stock_unmap(v, 4 * MB2 + 8 * KB64, 8 * KB64, 0) == NV_OK);
}

/* splits the mapping inside the unmap's first entry in two, on both GPUs: more
 * mappings than the batch counted */
static void race_split_inside(vattn_os_va_space_t *v)
{
    EXPECT(shim_stock_unmap(v, 4 * MB2 + 4 * KB64, KB64, 0) == NV_OK);
    EXPECT(shim_stock_unmap(v, 4 * MB2 + 4 * KB64, KB64, 1) == NV_OK);
}

static void (*const race_ops[])(vattn_os_va_space_t *) = {
    race_unmap_low, race_sparse_low, race_sparse_across, race_unmap_high, race_split_inside,
};

/* After an UNMAP_BATCH answered NV_OK, whatever the race: no memory-backed
 * mapping (a race makes only sparse ones) of its GPUs left inside its entries. */
static void expect_unmapped(const UVM_VATTN_UNMAP_ENTRY *u, uint32_t n, uint32_t ngpu, long k)
{
    struct shim_map *m;
    uint32_t j;

    for (m = shim_maps_live; m; m = m->next) {
        if (m->vs != &vs || !m->in_tree || !m->dup || m->gpu >= (int)ngpu)
            continue;
        for (j = 0; j < n; j++) {
            if (m->base < u[j].base + u[j].length && u[j].base < m->base + m->length) {
                fprintf(stderr, "race step %ld: NV_OK unmap left GPU %d's [%llx, +%llx) inside entry %u\n", k, m->gpu,
                        (unsigned long long)m->base, (unsigned long long)m->length, j);
                failures++;
            }
        }
    }
}

static int race_one(bool do_unmap, uint32_t ngpu, int op, long k)
{
    UVM_VATTN_UNMAP_ENTRY u[3];
    long r;
    int g;
    uint64_t p;

    sweep_world();
    shim_relaxed = true;
    shim_race_fn = race_ops[op];
    shim_race_at = k;
    r = sweep_batch(do_unmap, ngpu, u);
    if (shim_race_at >= 0) {
        /* the race point was never reached: the sweep is over */
        EXPECT(r == NV_OK);
        STATE_OK(&vs);
        return 0;
    }
    /* the only failure a race may cause: a map raced by a sparse map */
    EXPECT(r == NV_OK || (!do_unmap && r == NV_ERR_UVM_ADDRESS_IN_USE));
    if (do_unmap && r == NV_OK)
        expect_unmapped(u, 3, ngpu, k);
    STATE_OK(&vs);
    shim_relaxed = false;
    u[0].base = 0;
    u[0].length = 2 * MB2;
    u[1].base = 4 * MB2;
    u[1].length = 4 * MB2;
    EXPECT(unmap(&vs, u, 2, 0, SHIM_GPUS, NULL) == NV_OK);
    STATE_OK(&vs);
    EXPECT(shim_maps_count == 0 && shim_dups_count == 0);
    for (g = 0; g < SHIM_GPUS; g++) {
        for (p = 0; p < SHIM_PAGES; p++)
            EXPECT(!vs.pte[g][p].valid && !vs.tlb[g][p].valid);
    }
    return 1;
}

static long race_sweep(bool do_unmap)
{
    long k, total = 0;
    uint32_t ngpu;
    int op;

    for (ngpu = 1; ngpu <= (do_unmap ? 2u : 1u); ngpu++) {
        for (op = 0; op < (int)(sizeof(race_ops) / sizeof(race_ops[0])); op++) {
            for (k = 0; k < 10000 && race_one(do_unmap, ngpu, op, k); k++)
                ;
            total += k;
        }
    }
    return total;
}

/* The randomized run: hostile batches against a reference of each GPU's view. */
static uint64_t rng;

static uint64_t rnd(uint64_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return n ? rng % n : 0;
}

static struct shim_pte want[SHIM_GPUS][SHIM_PAGES];
static long applied_maps, applied_unmaps;

static void randomized(long n)
{
    UVM_VATTN_MAP_ENTRY e[8];
    UVM_VATTN_UNMAP_ENTRY u[8];
    long i;
    int k, g, handles[2] = { 0xa, 0xb };

    world();
    memset(want, 0, sizeof(want));
    for (i = 0; i < n; i++) {
        uint32_t cnt = (uint32_t)rnd(5), gpu = (uint32_t)rnd(2);
        long r;
        uint32_t j;

        if (rnd(2)) {
            for (j = 0; j < cnt; j++) {
                uint64_t pages = 1 + rnd(4);

                e[j] = me(rnd(SHIM_PAGES + 4) * KB64 + (rnd(50) ? 0 : 4096), pages * KB64,
                          rnd(20) ? (uint32_t)handles[rnd(2)] : 0x99, rnd(130) * KB64);
                if (!rnd(100))
                    e[j].reserved = 1;
            }
            r = map(&vs, e, cnt, (int)gpu, 1, rnd(30) ? 0xc1 : 0xc2, NULL);
            if (r == NV_OK && cnt)
                applied_maps++;
            if (r == NV_OK) {
                for (j = 0; j < cnt; j++) {
                    for (k = 0; k < (int)(e[j].length / KB64); k++) {
                        struct shim_pte *w = &want[gpu][e[j].base / KB64 + k];

                        EXPECT(!w->valid);
                        w->valid = 1;
                        w->mem = e[j].hMemory == 0xa ? memA : memB;
                        w->offset = e[j].offset + (uint64_t)k * KB64;
                    }
                }
            }
        }
        else {
            for (j = 0; j < cnt; j++) {
                u[j].base = rnd(SHIM_PAGES + 4) * KB64;
                u[j].length = (1 + rnd(6)) * KB64;
            }
            r = unmap(&vs, u, cnt, (int)gpu, 1, NULL);
            if (r == NV_OK && cnt)
                applied_unmaps++;
            if (r == NV_OK) {
                for (j = 0; j < cnt; j++) {
                    for (k = 0; k < (int)(u[j].length / KB64); k++)
                        memset(&want[gpu][u[j].base / KB64 + k], 0, sizeof(want[0][0]));
                }
            }
        }
        for (g = 0; g < SHIM_GPUS; g++) {
            if (memcmp(want[g], vs.pte[g], sizeof(want[g])) || memcmp(want[g], vs.tlb[g], sizeof(want[g]))) {
                fprintf(stderr, "randomized step %ld: GPU %d's view differs from the reference (r=%lx cnt=%u gpu=%u)\n", i, g, r, cnt, gpu);
                for (j = 0; j < cnt; j++)
                    fprintf(stderr, "  e %llx %llx %llx %x\n", (unsigned long long)e[j].base, (unsigned long long)e[j].length, (unsigned long long)e[j].offset, e[j].hMemory);
                for (k = 0; k < SHIM_PAGES; k++)
                    if (memcmp(&want[g][k], &vs.pte[g][k], sizeof(want[g][k])))
                        fprintf(stderr, "  page %d want %d/%d/%llx got %d/%d/%llx\n", k, want[g][k].valid, want[g][k].mem, (unsigned long long)want[g][k].offset, vs.pte[g][k].valid, vs.pte[g][k].mem, (unsigned long long)vs.pte[g][k].offset);
                failures++;
                return;
            }
        }
        if (i % 64 == 0)
            STATE_OK(&vs);
    }
    STATE_OK(&vs);
}

int main(int argc, char **argv)
{
    long n = argc > 2 ? atol(argv[2]) : 20000, sm, sm2, su, rm, ru;

    rng = argc > 1 ? strtoull(argv[1], NULL, 10) | 1 : 1;
    test_info_and_retired();
    test_arguments();
    test_map_unmap();
    test_gpus_and_teardown();
    test_isolation();
    test_sparse_race();
    sm = sweep(false, 1);
    sm2 = sweep(false, 2);
    su = sweep(true, 2);
    rm = race_sweep(false);
    ru = race_sweep(true);
    randomized(n);
    shim_reset();
    if (failures) {
        printf("vattn_test: %d failures\n", failures);
        return 1;
    }
    printf("vattn_test: ok (fault sweep: %ld map steps on one GPU, %ld on two, %ld unmap steps on two; race sweep: "
           "%ld map and %ld unmap interleavings; %ld hostile argument sets, %ld map and %ld unmap batches applied)\n",
           sm, sm2, su, rm, ru, n, applied_maps, applied_unmaps);
    return 0;
}
