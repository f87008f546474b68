/*
 * vattn_test.c - runs the module's own uvm_vattn.c in userspace, against the UVM model
 * in shim.c, under -fsanitize=address,undefined (see tests/kernel/shim_test.go).
 *
 *   vattn_test [seed [ops]]
 *
 * Directed tests cover each rule of uvm_vattn_ioctl.h; then a seeded randomized test
 * issues hostile argument sets (default 200000) and after each one compares the
 * outcome with a simple reference model written here (linear scans, no hashing)
 * and checks the model of UVM for leaks, double maps and unbalanced GPU retains.
 *
 * SPDX-License-Identifier: MIT
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "uvm_vattn_shim.h"
#include "uvm_vattn_os.h"
#include "uvm_vattn.h"

static int failures;
static const char *current = "";
static int lenient; /* fault sweep: errno results are expected, not failures */

#define CHECK(cond) do { if (!(cond)) { \
    fprintf(stderr, "FAIL %s: %s:%d: %s\n", current, __FILE__, __LINE__, #cond); \
    failures++; } } while (0)
#define CHECK_EQ(a, b) do { uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b); if (a_ != b_) { \
    fprintf(stderr, "FAIL %s: %s:%d: %s == %#" PRIx64 ", want %s == %#" PRIx64 "\n", \
            current, __FILE__, __LINE__, #a, a_, #b, b_); failures++; } } while (0)

#define K64  UVM_VATTN_PAGE_SIZE_64K
#define K128 UVM_VATTN_PAGE_SIZE_128K
#define K256 UVM_VATTN_PAGE_SIZE_256K
#define M2   UVM_VATTN_PAGE_SIZE_2M

#define RANGE0   0x100000000ull        /* 64 MiB managed range */
#define RANGE0_N (64ull << 20)
#define RANGE1   0x400000000ull        /* 8 MiB managed range */
#define RANGE1_N (8ull << 20)

static struct shim_gpu gpu_a, gpu_b;
static vattn_os_va_space_t *vs, *vs2;

static void setup(const char *name)
{
    current = name;
    shim_reset();
    memset(&gpu_a, 0, sizeof(gpu_a));
    memset(&gpu_b, 0, sizeof(gpu_b));
    memset(gpu_a.uuid, 0xA1, 16);
    memset(gpu_b.uuid, 0xB2, 16);
    gpu_a.page_sizes = UVM_VATTN_PAGE_SIZES_ALL;
    gpu_b.page_sizes = K64 | M2;
    gpu_a.mem_capacity = 256ull << 20;
    gpu_b.mem_capacity = 64ull << 20;
    vs = calloc(1, sizeof(*vs));
    vs2 = calloc(1, sizeof(*vs2));
    if (!vs || !vs2)
        abort();
    vs->gpus[0] = &gpu_a;
    vs->gpus[1] = &gpu_b;
    vs->ranges[0].start = RANGE0;
    vs->ranges[0].end = RANGE0 + RANGE0_N;
    vs->ranges[1].start = RANGE1;
    vs->ranges[1].end = RANGE1 + RANGE1_N;
    vs->nranges = 2;
    *vs2 = *vs;
}

static void teardown(void)
{
    const char *why = "";

    CHECK(shim_check_invariants(vs, &why));
    uvm_vattn_va_space_destroy(vs);
    uvm_vattn_va_space_destroy(vs2);
    CHECK_EQ(vs->nptes, 0);
    CHECK_EQ(vs2->nptes, 0);
    CHECK_EQ(gpu_a.live_chunks, 0);
    CHECK_EQ(gpu_b.live_chunks, 0);
    CHECK_EQ(gpu_a.mem_used, 0);
    CHECK_EQ(gpu_a.retains, 0);
    CHECK_EQ(gpu_b.retains, 0);
    CHECK_EQ(shim_kallocs_live, 0);
    for (int i = 0; i < SHIM_MAX_PROCESSES; i++) {
        CHECK_EQ(shim_owners[i].refs, 0);
        CHECK_EQ(shim_owners[i].charged, 0);
    }
    free(vs);
    free(vs2);
}

/* Command helpers: register the params block (and arrays) as user memory. */
static long run(vattn_os_va_space_t *v, unsigned int cmd, void *params, size_t n)
{
    shim_user_register(params, n);
    return uvm_vattn_dispatch(v, cmd, (uint64_t)(uintptr_t)params);
}

static NV_STATUS do_alloc(vattn_os_va_space_t *v, struct shim_gpu *g, uint64_t size, uint64_t *h, uint32_t n)
{
    UVM_VATTN_ALLOC_PARAMS p;

    memset(&p, 0, sizeof(p));
    memcpy(p.gpuUuid, g->uuid, 16);
    p.pageSize = size;
    p.handles = (uint64_t)(uintptr_t)h;
    p.count = n;
    shim_user_register(h, sizeof(*h) * n);
    if (run(v, UVM_VATTN_ALLOC, &p, sizeof(p)) != 0) {
        CHECK(lenient);
        return NV_ERR_GENERIC;
    }
    CHECK_EQ(p.done, p.rmStatus == NV_OK ? n : 0);
    return p.rmStatus;
}

static NV_STATUS do_map(vattn_os_va_space_t *v, UVM_VATTN_MAP_ENTRY *e, uint32_t n, uint32_t *done, uint32_t *erridx)
{
    UVM_VATTN_MAP_PARAMS p;

    memset(&p, 0, sizeof(p));
    p.entries = (uint64_t)(uintptr_t)e;
    p.count = n;
    shim_user_register(e, sizeof(*e) * n);
    if (run(v, UVM_VATTN_MAP, &p, sizeof(p)) != 0) {
        CHECK(lenient);
        return NV_ERR_GENERIC;
    }
    if (done)
        *done = p.done;
    if (erridx)
        *erridx = p.errorIndex;
    return p.rmStatus;
}

static NV_STATUS do_map1(vattn_os_va_space_t *v, uint64_t address, uint64_t handle)
{
    UVM_VATTN_MAP_ENTRY e = { address, handle };

    return do_map(v, &e, 1, NULL, NULL);
}

static NV_STATUS do_unmap(vattn_os_va_space_t *v, uint64_t *a, uint32_t n, uint32_t *done, uint32_t *erridx)
{
    UVM_VATTN_UNMAP_PARAMS p;

    memset(&p, 0, sizeof(p));
    p.addresses = (uint64_t)(uintptr_t)a;
    p.count = n;
    shim_user_register(a, sizeof(*a) * n);
    if (run(v, UVM_VATTN_UNMAP, &p, sizeof(p)) != 0) {
        CHECK(lenient);
        return NV_ERR_GENERIC;
    }
    if (done)
        *done = p.done;
    if (erridx)
        *erridx = p.errorIndex;
    return p.rmStatus;
}

static NV_STATUS do_free(vattn_os_va_space_t *v, uint64_t *h, uint32_t n, uint32_t *done, uint32_t *erridx)
{
    UVM_VATTN_FREE_PARAMS p;

    memset(&p, 0, sizeof(p));
    p.handles = (uint64_t)(uintptr_t)h;
    p.count = n;
    shim_user_register(h, sizeof(*h) * n);
    if (run(v, UVM_VATTN_FREE, &p, sizeof(p)) != 0) {
        CHECK(lenient);
        return NV_ERR_GENERIC;
    }
    if (done)
        *done = p.done;
    if (erridx)
        *erridx = p.errorIndex;
    return p.rmStatus;
}

static NV_STATUS do_release(vattn_os_va_space_t *v, uint64_t base, uint64_t len, uint32_t flags, uint32_t *unmapped, uint32_t *freed)
{
    UVM_VATTN_RELEASE_RANGE_PARAMS p;

    memset(&p, 0, sizeof(p));
    p.base = base;
    p.length = len;
    p.flags = flags;
    if (run(v, UVM_VATTN_RELEASE_RANGE, &p, sizeof(p)) != 0) {
        CHECK(lenient);
        return NV_ERR_GENERIC;
    }
    if (unmapped)
        *unmapped = p.unmapped;
    if (freed)
        *freed = p.freed;
    return p.rmStatus;
}

/* ------------------------------------------------------------------------- */

static void test_helpers(void)
{
    uint32_t slot, gen;
    uint64_t prod, h;

    current = "helpers";
    CHECK(uvm_vattn_page_size_valid(K64) && uvm_vattn_page_size_valid(M2));
    CHECK(!uvm_vattn_page_size_valid(0) && !uvm_vattn_page_size_valid(4096) &&
          !uvm_vattn_page_size_valid(K64 + 1) && !uvm_vattn_page_size_valid(4ull << 20) &&
          !uvm_vattn_page_size_valid(UINT64_MAX));
    CHECK_EQ(uvm_vattn_check_address(RANGE0, K64), NV_OK);
    CHECK_EQ(uvm_vattn_check_address(RANGE0 + K64, K128), NV_ERR_INVALID_OFFSET);
    CHECK_EQ(uvm_vattn_check_address(RANGE0 + 4096, K64), NV_ERR_INVALID_OFFSET);
    CHECK_EQ(uvm_vattn_check_address(0, K64), NV_ERR_INVALID_ADDRESS);
    CHECK_EQ(uvm_vattn_check_address(UINT64_MAX - K64 + 1, K64), NV_ERR_INVALID_ADDRESS);
    CHECK_EQ(uvm_vattn_check_address(UINT64_MAX - M2 + 1, M2), NV_ERR_INVALID_ADDRESS);
    CHECK_EQ(uvm_vattn_check_address(UINT64_MAX - M2 * 2 + 1, M2), NV_OK);
    CHECK_EQ(uvm_vattn_check_address(RANGE0, 3), NV_ERR_INVALID_ARGUMENT);
    CHECK(uvm_vattn_mul_ok(1ull << 32, 1ull << 31, &prod) && prod == 1ull << 63);
    CHECK(!uvm_vattn_mul_ok(1ull << 32, 1ull << 32, &prod));
    CHECK(uvm_vattn_mul_ok(0, UINT64_MAX, &prod) && prod == 0);
    h = uvm_vattn_handle_make(5, 7, 9);
    CHECK(uvm_vattn_handle_split(h, 5, &slot, &gen) && slot == 7 && gen == 9);
    CHECK(!uvm_vattn_handle_split(h, 6, &slot, &gen));
    CHECK(!uvm_vattn_handle_split(0, 0, &slot, &gen));
    CHECK(!uvm_vattn_handle_split(uvm_vattn_handle_make(5, 7, 0), 5, &slot, &gen));
    CHECK(!uvm_vattn_handle_split(h & ~UVM_VATTN_SLOT_MASK, 5, &slot, &gen));
    h = uvm_vattn_handle_make(UVM_VATTN_TAG_MASK, UVM_VATTN_MAX_HANDLES - 1, UVM_VATTN_GEN_MASK);
    CHECK(uvm_vattn_handle_split(h, UVM_VATTN_TAG_MASK, &slot, &gen) && slot == UVM_VATTN_MAX_HANDLES - 1 &&
          gen == UVM_VATTN_GEN_MASK);
}

static void test_dispatch(void)
{
    UVM_VATTN_GET_INFO_PARAMS info;
    UVM_VATTN_GPU_INFO gpus[4];
    uint64_t h[2];

    setup("dispatch");
    memset(&info, 0, sizeof(info));
    /* params not readable */
    CHECK_EQ(uvm_vattn_dispatch(vs, UVM_VATTN_GET_INFO, 0), -EFAULT);
    CHECK_EQ(uvm_vattn_dispatch(vs, UVM_VATTN_GET_INFO, 0xdead0000), -EFAULT);
    /* not a UVM command of ours */
    CHECK_EQ(run(vs, UVM_VATTN_IOCTL_LAST + 1, &info, sizeof(info)), -EINVAL);
    /* file not initialized */
    CHECK_EQ(run(NULL, UVM_VATTN_GET_INFO, &info, sizeof(info)), 0);
    CHECK_EQ(info.rmStatus, NV_ERR_ILLEGAL_ACTION);
    /* global fatal error passes through */
    shim_global_status = NV_ERR_GENERIC;
    CHECK_EQ(run(vs, UVM_VATTN_GET_INFO, &info, sizeof(info)), 0);
    CHECK_EQ(info.rmStatus, NV_ERR_GENERIC);
    shim_global_status = NV_OK;

    memset(&info, 0, sizeof(info));
    info.gpuInfo = (uint64_t)(uintptr_t)gpus;
    info.gpuCapacity = 1;
    shim_user_register(gpus, sizeof(gpus));
    CHECK_EQ(run(vs, UVM_VATTN_GET_INFO, &info, sizeof(info)), 0);
    CHECK_EQ(info.rmStatus, NV_OK);
    CHECK_EQ(info.abiVersion, UVM_VATTN_ABI_VERSION);
    CHECK_EQ(info.maxBatch, UVM_VATTN_MAX_BATCH);
    CHECK_EQ(info.gpuCount, 2);
    CHECK(memcmp(gpus[0].gpuUuid, gpu_a.uuid, 16) == 0);
    CHECK_EQ(gpus[0].pageSizes, UVM_VATTN_PAGE_SIZES_ALL);

    CHECK_EQ(do_alloc(vs, &gpu_b, M2, h, 2), NV_OK);
    shim_pinned_limit = 1ull << 30;
    info.gpuCapacity = 4;
    CHECK_EQ(run(vs, UVM_VATTN_GET_INFO, &info, sizeof(info)), 0);
    CHECK_EQ(info.pinnedBytes, 2 * M2);
    CHECK_EQ(info.pinnedLimitBytes, 1ull << 30);
    CHECK_EQ(gpus[1].pinnedBytes, 2 * M2);
    CHECK_EQ(gpus[1].pageSizes, K64 | M2);
    CHECK_EQ(gpus[0].pinnedBytes, 0);

    info.gpuCapacity = UVM_VATTN_MAX_GPUS + 1;
    CHECK_EQ(run(vs, UVM_VATTN_GET_INFO, &info, sizeof(info)), 0);
    CHECK_EQ(info.rmStatus, NV_ERR_INVALID_LIMIT);
    info.gpuCapacity = 1;
    info.reserved0 = 1;
    CHECK_EQ(run(vs, UVM_VATTN_GET_INFO, &info, sizeof(info)), 0);
    CHECK_EQ(info.rmStatus, NV_ERR_INVALID_ARGUMENT);
    info.reserved0 = 0;
    info.gpuInfo = 0x1000; /* not user memory */
    CHECK_EQ(run(vs, UVM_VATTN_GET_INFO, &info, sizeof(info)), -EFAULT);
    teardown();
}

static void test_alloc(void)
{
    uint64_t h[8], h2[8];
    UVM_VATTN_ALLOC_PARAMS p;
    int i, j;

    setup("alloc");
    CHECK_EQ(do_alloc(vs, &gpu_a, K64, h, 8), NV_OK);
    for (i = 0; i < 8; i++) {
        CHECK(h[i] != 0);
        for (j = 0; j < i; j++)
            CHECK(h[i] != h[j]);
    }
    CHECK_EQ(gpu_a.live_chunks, 8);
    CHECK_EQ(gpu_a.retains, 1);
    CHECK_EQ(shim_last_trace.kind, VATTN_TRACE_ALLOC);
    CHECK_EQ(shim_last_trace.page_size, K64);
    CHECK_EQ(shim_last_trace.count, 8);
    CHECK_EQ(shim_last_trace.done, 8);
    CHECK(memcmp(shim_last_trace.uuid, gpu_a.uuid, 16) == 0);

    CHECK_EQ(do_alloc(vs, &gpu_a, 0, h2, 1), NV_ERR_INVALID_ARGUMENT);
    CHECK_EQ(shim_last_trace.page_size, 0);
    CHECK_EQ(do_alloc(vs, &gpu_a, 4096, h2, 1), NV_ERR_INVALID_ARGUMENT);
    CHECK_EQ(do_alloc(vs, &gpu_a, K64 * 3, h2, 1), NV_ERR_INVALID_ARGUMENT);
    CHECK_EQ(do_alloc(vs, &gpu_b, K128, h2, 1), NV_ERR_NOT_SUPPORTED);
    CHECK_EQ(do_alloc(vs, &gpu_a, K64, h2, 0), NV_OK);

    memset(&p, 0, sizeof(p));
    memset(p.gpuUuid, 0xEE, 16);
    p.pageSize = K64;
    p.count = 1;
    p.handles = (uint64_t)(uintptr_t)h2;
    CHECK_EQ(run(vs, UVM_VATTN_ALLOC, &p, sizeof(p)), 0);
    CHECK_EQ(p.rmStatus, NV_ERR_INVALID_DEVICE);
    memcpy(p.gpuUuid, gpu_a.uuid, 16);
    p.flags = 2;
    CHECK_EQ(run(vs, UVM_VATTN_ALLOC, &p, sizeof(p)), 0);
    CHECK_EQ(p.rmStatus, NV_ERR_INVALID_ARGUMENT);
    p.flags = 0;
    p.count = UVM_VATTN_MAX_BATCH + 1;
    CHECK_EQ(run(vs, UVM_VATTN_ALLOC, &p, sizeof(p)), 0);
    CHECK_EQ(p.rmStatus, NV_ERR_INVALID_LIMIT);
    p.count = 0xFFFFFFFFu;
    CHECK_EQ(run(vs, UVM_VATTN_ALLOC, &p, sizeof(p)), 0);
    CHECK_EQ(p.rmStatus, NV_ERR_INVALID_LIMIT);

    /* All-or-nothing: GPU B has 64 MiB; 40 x 2M fails after 32 and keeps none. */
    {
        uint64_t big[40];

        CHECK_EQ(do_alloc(vs, &gpu_b, M2, big, 40), NV_ERR_NO_MEMORY);
        CHECK_EQ(gpu_b.live_chunks, 0);
        CHECK_EQ(gpu_b.retains, 0);
        CHECK_EQ(gpu_b.mem_used, 0);
        /* injected chunk failure in the middle */
        shim_fail_chunk = 3;
        CHECK_EQ(do_alloc(vs, &gpu_b, M2, big, 5), NV_ERR_NO_MEMORY);
        CHECK_EQ(gpu_b.live_chunks, 0);
    }

    /* pinned limit: 8 x 64K held; limit 1 MiB allows 8 more, not 9 */
    shim_pinned_limit = 1ull << 20;
    CHECK_EQ(do_alloc(vs, &gpu_a, K64, h2, 8), NV_OK);
    CHECK_EQ(do_alloc(vs, &gpu_a, K64, h2, 1), NV_ERR_INSUFFICIENT_RESOURCES);
    CHECK_EQ(do_free(vs, h2, 8, NULL, NULL), NV_OK);
    /* a limit lowered below what is held */
    shim_pinned_limit = K64;
    CHECK_EQ(do_alloc(vs, &gpu_a, K64, h2, 1), NV_ERR_INSUFFICIENT_RESOURCES);
    shim_pinned_limit = 0;

    /* handles array not writable: EFAULT, nothing kept */
    p.count = 2;
    p.handles = 0x1000;
    CHECK_EQ(run(vs, UVM_VATTN_ALLOC, &p, sizeof(p)), -EFAULT);
    CHECK_EQ(gpu_a.live_chunks, 8);
    /* copy-out fails after allocation: undone */
    shim_fail_copy_to = 0;
    p.handles = (uint64_t)(uintptr_t)h2;
    CHECK_EQ(run(vs, UVM_VATTN_ALLOC, &p, sizeof(p)), -EFAULT);
    CHECK_EQ(gpu_a.live_chunks, 8);
    /* kernel allocation failures at each point */
    for (i = 0; i < 6; i++) {
        shim_fail_kalloc = i;
        do_alloc(vs, &gpu_a, K64, h2, 2);
        shim_fail_kalloc = -1;
    }
    teardown();
}

static void test_map_unmap(void)
{
    uint64_t h[8], hb[2], a[8];
    UVM_VATTN_MAP_ENTRY e[8];
    uint32_t done, erridx;
    struct shim_pte *pte;
    int i;

    setup("map");
    CHECK_EQ(do_alloc(vs, &gpu_a, K64, h, 8), NV_OK);
    CHECK_EQ(do_alloc(vs, &gpu_a, M2, hb, 2), NV_OK);
    for (i = 0; i < 4; i++) {
        e[i].address = RANGE0 + (uint64_t)i * K64;
        e[i].handle = h[i];
    }
    CHECK_EQ(do_map(vs, e, 4, &done, NULL), NV_OK);
    CHECK_EQ(done, 4);
    CHECK_EQ(vs->nptes, 4);
    pte = shim_pte_at(vs, RANGE0 + K64);
    CHECK(pte && pte->size == K64 && pte->gpu == &gpu_a);
    CHECK_EQ(shim_last_trace.kind, VATTN_TRACE_MAP);
    CHECK_EQ(shim_last_trace.done, 4);

    CHECK_EQ(do_map1(vs, RANGE0 + 8 * K64, h[0]), NV_ERR_UVM_ADDRESS_IN_USE);   /* handle mapped */
    CHECK_EQ(do_map1(vs, RANGE0, h[4]), NV_ERR_UVM_ADDRESS_IN_USE);             /* address taken */
    CHECK_EQ(do_map1(vs, RANGE0, hb[0]), NV_ERR_UVM_ADDRESS_IN_USE);            /* 2M over 64Ks */
    CHECK_EQ(do_map1(vs, RANGE0 + 4096, h[4]), NV_ERR_INVALID_OFFSET);
    CHECK_EQ(do_map1(vs, RANGE0 + M2 + K64, hb[0]), NV_ERR_INVALID_OFFSET);
    CHECK_EQ(do_map1(vs, RANGE0 - K64, h[4]), NV_ERR_INVALID_ADDRESS);
    CHECK_EQ(do_map1(vs, RANGE0 + RANGE0_N, h[4]), NV_ERR_INVALID_ADDRESS);
    CHECK_EQ(do_map1(vs, RANGE0 + RANGE0_N - K64, h[4]), NV_OK);               /* last page */
    CHECK_EQ(do_map1(vs, 0, h[5]), NV_ERR_INVALID_ADDRESS);
    CHECK_EQ(do_map1(vs, UINT64_MAX - K64 + 1, h[5]), NV_ERR_INVALID_ADDRESS);
    CHECK_EQ(do_map1(vs, RANGE0 + M2, 0), NV_ERR_OBJECT_NOT_FOUND);
    CHECK_EQ(do_map1(vs, RANGE0 + M2, h[5] ^ (1ull << 22)), NV_ERR_OBJECT_NOT_FOUND); /* other gen */
    CHECK_EQ(do_map1(vs, RANGE0 + M2, h[5] + 1000), NV_ERR_OBJECT_NOT_FOUND);         /* other slot */
    CHECK_EQ(do_map1(vs2, RANGE0 + M2, h[5]), NV_ERR_OBJECT_NOT_FOUND);                /* other file */
    CHECK_EQ(do_map1(vs, RANGE0 + M2, hb[0]), NV_OK);
    CHECK_EQ(do_map1(vs, RANGE0 + M2 + K64 * 3, h[5]), NV_ERR_UVM_ADDRESS_IN_USE);    /* 64K inside 2M */
    CHECK_EQ(vs->nptes, 6);

    /* duplicate within a batch: nothing applied, errorIndex names the second */
    e[0].address = RANGE1;
    e[0].handle = h[5];
    e[1].address = RANGE1 + K64;
    e[1].handle = h[5];
    CHECK_EQ(do_map(vs, e, 2, &done, &erridx), NV_ERR_UVM_ADDRESS_IN_USE);
    CHECK_EQ(done, 0);
    CHECK_EQ(erridx, 1);
    e[1].address = RANGE1;
    e[1].handle = h[6];
    CHECK_EQ(do_map(vs, e, 2, &done, &erridx), NV_ERR_UVM_ADDRESS_IN_USE);
    CHECK_EQ(erridx, 1);
    CHECK_EQ(vs->nptes, 6);

    /* failure while writing page tables: the first k stay mapped */
    e[0].address = RANGE1;
    e[0].handle = h[5];
    e[1].address = RANGE1 + K64;
    e[1].handle = h[6];
    e[2].address = RANGE1 + 2 * K64;
    e[2].handle = h[7];
    shim_fail_map = 1;
    CHECK_EQ(do_map(vs, e, 3, &done, &erridx), NV_ERR_NO_MEMORY);
    CHECK_EQ(done, 1);
    CHECK_EQ(erridx, 1);
    CHECK(shim_pte_at(vs, RANGE1) != NULL && shim_pte_at(vs, RANGE1 + K64) == NULL);
    CHECK_EQ(do_map(vs, e + 1, 2, &done, NULL), NV_OK);

    /* entries array not readable */
    {
        UVM_VATTN_MAP_PARAMS p;

        memset(&p, 0, sizeof(p));
        p.entries = 0x2000;
        p.count = 3;
        CHECK_EQ(run(vs, UVM_VATTN_MAP, &p, sizeof(p)), -EFAULT);
        p.count = UVM_VATTN_MAX_BATCH + 1;
        CHECK_EQ(run(vs, UVM_VATTN_MAP, &p, sizeof(p)), 0);
        CHECK_EQ(p.rmStatus, NV_ERR_INVALID_LIMIT);
    }

    /* unmap */
    a[0] = RANGE0;
    a[1] = RANGE0 + K64;
    CHECK_EQ(do_unmap(vs, a, 2, &done, NULL), NV_OK);
    CHECK_EQ(done, 2);
    CHECK(shim_pte_at(vs, RANGE0) == NULL);
    CHECK_EQ(do_unmap(vs, a, 1, &done, &erridx), NV_ERR_OBJECT_NOT_FOUND);         /* not mapped */
    a[0] = RANGE0 + M2 + K64;                                                     /* inside a 2M page */
    CHECK_EQ(do_unmap(vs, a, 1, NULL, NULL), NV_ERR_OBJECT_NOT_FOUND);
    a[0] = RANGE0 + 2 * K64;
    a[1] = RANGE0 + 2 * K64;
    CHECK_EQ(do_unmap(vs, a, 2, &done, &erridx), NV_ERR_OBJECT_NOT_FOUND);       /* duplicate */
    CHECK_EQ(done, 0);
    CHECK_EQ(erridx, 1);
    CHECK(shim_pte_at(vs, RANGE0 + 2 * K64) != NULL);
    a[1] = RANGE0 + 3 * K64;
    a[2] = RANGE0 + M2;
    shim_fail_unmap = 1;
    CHECK_EQ(do_unmap(vs, a, 3, &done, &erridx), NV_ERR_GENERIC);
    CHECK_EQ(done, 1);
    CHECK_EQ(erridx, 1);
    CHECK(shim_pte_at(vs, RANGE0 + 3 * K64) != NULL);
    CHECK_EQ(do_unmap(vs, a + 1, 2, &done, NULL), NV_OK);

    /* a page can be mapped again after unmap, at another address */
    CHECK_EQ(do_map1(vs, RANGE0 + 4 * M2, hb[0]), NV_OK);
    teardown();
}

static void test_free(void)
{
    uint64_t h[4], h2[4];
    uint32_t done, erridx;

    setup("free");
    CHECK_EQ(do_alloc(vs, &gpu_a, K256, h, 4), NV_OK);
    CHECK_EQ(do_map1(vs, RANGE0, h[0]), NV_OK);
    CHECK_EQ(do_free(vs, h, 2, &done, &erridx), NV_ERR_IN_USE);
    CHECK_EQ(done, 0);
    CHECK_EQ(erridx, 0);
    h2[0] = h[1];
    h2[1] = h[1];
    CHECK_EQ(do_free(vs, h2, 2, &done, &erridx), NV_ERR_OBJECT_NOT_FOUND);  /* double in batch */
    CHECK_EQ(erridx, 1);
    CHECK_EQ(gpu_a.live_chunks, 4);
    CHECK_EQ(do_free(vs, h + 1, 3, &done, NULL), NV_OK);
    CHECK_EQ(done, 3);
    CHECK_EQ(shim_last_trace.kind, VATTN_TRACE_FREE);
    CHECK_EQ(shim_last_trace.page_size, K256);
    CHECK_EQ(do_free(vs, h + 1, 1, NULL, NULL), NV_ERR_OBJECT_NOT_FOUND);   /* double free */
    /* the slot is reused with a new generation: the old handle stays dead */
    CHECK_EQ(do_alloc(vs, &gpu_a, K256, h2, 1), NV_OK);
    CHECK(h2[0] != h[1] && h2[0] != h[2] && h2[0] != h[3]);
    CHECK_EQ(do_free(vs, h + 3, 1, NULL, NULL), NV_ERR_OBJECT_NOT_FOUND);
    CHECK_EQ(do_map1(vs, RANGE0 + M2, h[2]), NV_ERR_OBJECT_NOT_FOUND);
    CHECK_EQ(do_free(vs2, h2, 1, NULL, NULL), NV_ERR_OBJECT_NOT_FOUND);     /* other file */
    teardown();
}

static void test_release_range(void)
{
    uint64_t h[6];
    uint32_t un, fr;
    int i;

    setup("release_range");
    CHECK_EQ(do_alloc(vs, &gpu_a, K128, h, 6), NV_OK);
    for (i = 0; i < 4; i++)
        CHECK_EQ(do_map1(vs, RANGE0 + (uint64_t)i * M2, h[i]), NV_OK);
    CHECK_EQ(do_map1(vs, RANGE1, h[4]), NV_OK);
    CHECK_EQ(do_release(vs, RANGE0 + M2, M2 * 2, 0, &un, &fr), NV_OK);
    CHECK_EQ(un, 2);
    CHECK_EQ(fr, 0);
    CHECK(shim_pte_at(vs, RANGE0) && !shim_pte_at(vs, RANGE0 + M2) && shim_pte_at(vs, RANGE0 + 3 * M2));
    /* overlap counts: a range ending inside a page releases it */
    CHECK_EQ(do_release(vs, RANGE0 - K64, K64 + 1, UVM_VATTN_RELEASE_FREE, &un, &fr), NV_OK);
    CHECK_EQ(un, 1);
    CHECK_EQ(fr, 1);
    CHECK_EQ(do_free(vs, h, 1, NULL, NULL), NV_ERR_OBJECT_NOT_FOUND);
    CHECK_EQ(do_release(vs, UINT64_MAX - 10, 20, 0, NULL, NULL), NV_ERR_INVALID_ADDRESS);
    CHECK_EQ(do_release(vs, RANGE0, RANGE0_N, 4, NULL, NULL), NV_ERR_INVALID_ARGUMENT);
    CHECK_EQ(do_release(vs, RANGE0, 0, 0, &un, NULL), NV_OK);
    CHECK_EQ(un, 0);
    CHECK_EQ(do_release(vs, 0, UINT64_MAX, UVM_VATTN_RELEASE_FREE, &un, &fr), NV_OK);
    CHECK_EQ(un, 2);
    CHECK_EQ(fr, 2);
    CHECK_EQ(vs->nptes, 0);
    CHECK_EQ(gpu_a.live_chunks, 3);
    teardown();
}

/* Release on close: a "crashed" process leaves pages allocated and mapped on two
 * GPUs in two files; destroying the va_spaces must leave nothing behind. */
static void test_release_on_close(void)
{
    uint64_t h[64], hb[8];
    int i;

    setup("release_on_close");
    CHECK_EQ(do_alloc(vs, &gpu_a, K64, h, 64), NV_OK);
    CHECK_EQ(do_alloc(vs, &gpu_b, M2, hb, 8), NV_OK);
    for (i = 0; i < 32; i++)
        CHECK_EQ(do_map1(vs, RANGE0 + (uint64_t)i * K64, h[i]), NV_OK);
    for (i = 0; i < 4; i++)
        CHECK_EQ(do_map1(vs, RANGE0 + (uint64_t)(i + 1) * M2, hb[i]), NV_OK);
    CHECK_EQ(do_alloc(vs2, &gpu_a, K64, h, 4), NV_OK);
    CHECK_EQ(do_map1(vs2, RANGE0, h[0]), NV_OK);
    CHECK_EQ(gpu_a.retains, 2);
    CHECK_EQ(gpu_b.retains, 1);
    uvm_vattn_va_space_destroy(vs);
    CHECK_EQ(vs->nptes, 0);
    CHECK_EQ(gpu_b.live_chunks, 0);
    CHECK_EQ(gpu_b.retains, 0);
    CHECK_EQ(gpu_a.live_chunks, 4);
    CHECK_EQ(gpu_a.retains, 1);
    CHECK(vs->vattn == NULL);
    teardown();
}

/* A GPU unregistered and registered again (a new gpu object, same UUID) while the
 * file still holds chunks of the old one: those stay with the old, retained object;
 * allocating on the new one is refused until they are freed. */
static void test_gpu_reregistered(void)
{
    static struct shim_gpu again;
    uint64_t h[2], h2[1];
    UVM_VATTN_GET_INFO_PARAMS info;
    UVM_VATTN_GPU_INFO gpus[2];

    setup("gpu_reregistered");
    CHECK_EQ(do_alloc(vs, &gpu_b, K64, h, 2), NV_OK);
    again = gpu_b;
    again.retains = 0;
    again.live_chunks = 0;
    again.mem_used = 0;
    vs->gpus[1] = &again;
    CHECK_EQ(do_alloc(vs, &again, K64, h2, 1), NV_ERR_INVALID_DEVICE);
    CHECK_EQ(again.retains, 0);
    memset(&info, 0, sizeof(info));
    info.gpuInfo = (uint64_t)(uintptr_t)gpus;
    info.gpuCapacity = 2;
    shim_user_register(gpus, sizeof(gpus));
    CHECK_EQ(run(vs, UVM_VATTN_GET_INFO, &info, sizeof(info)), 0);
    CHECK_EQ(info.pinnedBytes, 2 * K64);
    CHECK_EQ(do_free(vs, h, 2, NULL, NULL), NV_OK);
    CHECK_EQ(gpu_b.retains, 0);
    CHECK_EQ(gpu_b.live_chunks, 0);
    CHECK_EQ(do_alloc(vs, &again, K64, h2, 1), NV_OK);
    CHECK_EQ(again.retains, 1);
    CHECK_EQ(do_free(vs, h2, 1, NULL, NULL), NV_OK);
    vs->gpus[1] = &gpu_b;
    teardown();
}

/* The pinned limit is per process: every GPU and every UVM file of the process
 * count together; another process has its own budget. */
static void test_pinned_limit_per_process(void)
{
    uint64_t h[6];
    vattn_os_va_space_t *other;

    setup("pinned_limit_per_process");
    shim_pinned_limit = 3 * M2;
    CHECK_EQ(do_alloc(vs, &gpu_a, M2, h, 2), NV_OK);
    CHECK_EQ(do_alloc(vs, &gpu_b, M2, h + 2, 2), NV_ERR_INSUFFICIENT_RESOURCES);
    CHECK_EQ(gpu_b.live_chunks, 0);
    CHECK_EQ(shim_owners[0].charged, 2 * M2);
    /* a second file of the same process shares the budget */
    CHECK_EQ(do_alloc(vs2, &gpu_a, M2, h + 2, 2), NV_ERR_INSUFFICIENT_RESOURCES);
    CHECK_EQ(do_alloc(vs2, &gpu_b, M2, h + 2, 1), NV_OK);
    CHECK_EQ(do_alloc(vs, &gpu_a, K64, h + 3, 1), NV_ERR_INSUFFICIENT_RESOURCES);
    /* another process has its own */
    other = calloc(1, sizeof(*other));
    if (!other)
        abort();
    *other = *vs;
    other->vattn = NULL;
    other->nptes = 0;
    shim_current_process = 1;
    CHECK_EQ(do_alloc(other, &gpu_a, M2, h + 3, 3), NV_OK);
    CHECK_EQ(shim_owners[1].charged, 3 * M2);
    shim_current_process = 0;
    /* freeing returns budget to the process, whichever file frees */
    CHECK_EQ(do_free(vs, h, 1, NULL, NULL), NV_OK);
    CHECK_EQ(do_alloc(vs2, &gpu_a, K64, h + 4, 1), NV_OK);
    CHECK_EQ(shim_owners[0].charged, 2 * M2 + K64);
    /* failed allocations charge nothing */
    shim_pinned_limit = 0;
    shim_fail_chunk = 1;
    CHECK_EQ(do_alloc(vs, &gpu_a, K64, h + 5, 3), NV_ERR_NO_MEMORY);
    CHECK_EQ(shim_owners[0].charged, 2 * M2 + K64);
    uvm_vattn_va_space_destroy(other);
    CHECK_EQ(shim_owners[1].charged, 0);
    CHECK_EQ(shim_owners[1].refs, 0);
    free(other);
    teardown();
}

/* Growth of the table past several doublings, and generations across reuse. */
static void test_table_growth(void)
{
    static uint64_t h[3000];
    uint32_t done;
    int round;

    setup("table_growth");
    for (round = 0; round < 3; round++) {
        CHECK_EQ(do_alloc(vs, &gpu_a, K64, h, 1000), NV_OK);
        CHECK_EQ(do_alloc(vs, &gpu_a, K64, h + 1000, 1000), NV_OK);
        CHECK_EQ(do_free(vs, h, 2000, &done, NULL), NV_OK);
        CHECK_EQ(done, 2000);
    }
    CHECK_EQ(gpu_a.live_chunks, 0);
    CHECK_EQ(gpu_a.retains, 0);
    teardown();
}

/* ------------------------------------------------------------------------- */
/* Randomized hostile arguments against a reference model.                    */
/* ------------------------------------------------------------------------- */

#define MODEL_MAX 512

struct model_page
{
    uint64_t handle;
    struct shim_gpu *gpu;
    uint64_t size;
    uint64_t address;   /* 0: not mapped */
    int pending;        /* touched by the current batch */
};

static struct model_page model[MODEL_MAX];
static int nmodel;
static uint64_t dead_handles[256];
static int ndead;
static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* splitmix64 */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);

    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t pick_size(void)
{
    static const uint64_t s[] = { K64, K128, K256, M2, 0, 4096, K64 + 1, 4ull << 20, UINT64_MAX, 1ull << 63 };

    return (rnd() % 8) ? s[rnd() % 4] : s[4 + rnd() % 6];
}

static uint64_t pick_handle(void)
{
    switch (rnd() % 10) {
        case 0: return rnd();
        case 1: return ndead ? dead_handles[rnd() % ndead] : 0;
        case 2: return 0;
        default: return nmodel ? model[rnd() % nmodel].handle : rnd();
    }
}

static uint64_t pick_address(uint64_t size)
{
    uint64_t s = uvm_vattn_page_size_valid(size) ? size : K64;

    switch (rnd() % 12) {
        case 0: return rnd();
        case 1: return 0;
        case 2: return UINT64_MAX - (rnd() % (4ull << 20));
        case 3: return RANGE0 - s * (1 + rnd() % 4);
        case 4: return RANGE0 + RANGE0_N - s * (rnd() % 2);
        case 5: return RANGE0 + (rnd() % (RANGE0_N / 4096)) * 4096;
        case 6: return RANGE1 + (rnd() % (RANGE1_N / s)) * s;
        default: return RANGE0 + (rnd() % 64) * s;   /* dense: many collisions */
    }
}

static struct model_page *model_find(uint64_t handle)
{
    int i;

    for (i = 0; i < nmodel; i++) {
        if (model[i].handle == handle)
            return &model[i];
    }
    return NULL;
}

/* The managed range holding all of [a, a + s), or -1 (the caller excludes wrap). */
static int in_range(uint64_t a, uint64_t s)
{
    int r;

    for (r = 0; r < vs->nranges; r++) {
        if (a >= vs->ranges[r].start && a + s <= vs->ranges[r].end)
            return r;
    }
    return -1;
}

/* Which of vs's ranges this file owns (kept beside vs->ranges, per range rather
 * than per extent: a different representation from uvm_vattn.c's). */
static int mowned[SHIM_MAX_RANGES];

static int gpu_gone(struct shim_gpu *g)
{
    return vs->gvs_gone[g == &gpu_a ? 0 : 1];
}

/* Model pages overlapping [start, end) become unmapped (a hook ran). */
static void model_unmap_range(uint64_t start, uint64_t end)
{
    int i;

    for (i = 0; i < nmodel; i++) {
        if (model[i].address && model[i].address < end && start < model[i].address + model[i].size)
            model[i].address = 0;
    }
}

static long uvm_events, uvm_refused;

/* One of UVM's own paths, as the hooks see it, with the model's prediction. */
static void random_uvm_op(void)
{
    int r, i;

    uvm_events++;
    switch (rnd() % 8) {
        case 0: { /* a fault/migrate touching an address */
            uint64_t a = pick_address(K64);
            NV_STATUS want = NV_OK;

            r = -1;
            for (i = 0; i < vs->nranges; i++) {
                if (a >= vs->ranges[i].start && a < vs->ranges[i].end)
                    r = i;
            }
            if (r < 0 || (mowned[r] && !vs->ranges[r].blocks))
                want = NV_ERR_INVALID_ADDRESS;
            uvm_refused += r >= 0 && want != NV_OK;
            CHECK_EQ(shim_uvm_touch(vs, a), want);
            break;
        }
        case 1: /* munmap/cudaFree of a range */
            if (vs->nranges == 0)
                break;
            r = (int)(rnd() % (uint64_t)vs->nranges);
            model_unmap_range(vs->ranges[r].start, vs->ranges[r].end);
            shim_uvm_range_destroy(vs, r);
            for (i = r; i + 1 < SHIM_MAX_RANGES; i++)
                mowned[i] = mowned[i + 1];
            break;
        case 2: { /* split at a 2 MiB or a 4 KiB boundary */
            uint64_t len, at;

            if (vs->nranges == 0 || vs->nranges == SHIM_MAX_RANGES)
                break;
            r = (int)(rnd() % (uint64_t)vs->nranges);
            len = vs->ranges[r].end - vs->ranges[r].start;
            at = vs->ranges[r].start + ((rnd() % 2) ? (rnd() % (len / M2 + 1)) * M2 : (rnd() % (len / 4096)) * 4096);
            if (at <= vs->ranges[r].start || at >= vs->ranges[r].end)
                break;
            shim_uvm_range_split(vs, r, at);
            mowned[vs->nranges - 1] = mowned[r];
            break;
        }
        case 3:
        case 6:
        case 7: { /* mmap of a new range filling the hole around a random address */
            uint64_t base = (rnd() % 2) ? RANGE0 : RANGE1, len = base == RANGE0 ? RANGE0_N : RANGE1_N;
            uint64_t a = base + (rnd() % (len / 4096)) * 4096, lo = base, hi = base + len;

            for (i = 0; i < vs->nranges; i++) {
                if (a >= vs->ranges[i].start && a < vs->ranges[i].end)
                    break;
                if (vs->ranges[i].end <= a && vs->ranges[i].end > lo)
                    lo = vs->ranges[i].end;
                if (vs->ranges[i].start > a && vs->ranges[i].start < hi)
                    hi = vs->ranges[i].start;
            }
            if (i < vs->nranges)
                break;
            r = shim_uvm_range_add(vs, lo, hi);
            if (r >= 0)
                mowned[r] = 0;
            break;
        }
        case 4: { /* unregistering a GPU VA space */
            int g = (int)(rnd() % 2);

            if (!vs->gvs_gone[g]) {
                for (i = 0; i < nmodel; i++) {
                    if (model[i].address && model[i].gpu == vs->gpus[g])
                        model[i].address = 0;
                }
            }
            shim_uvm_gpu_va_space_remove(vs, g);
            break;
        }
        case 5:
            shim_uvm_gpu_va_space_add(vs, (int)(rnd() % 2));
            break;
    }
}

static int model_overlaps(uint64_t a, uint64_t s)
{
    int i;

    for (i = 0; i < nmodel; i++) {
        if (model[i].address && a < model[i].address + model[i].size && model[i].address < a + s)
            return 1;
    }
    return 0;
}

static void model_remove(int i)
{
    if (ndead < 256)
        dead_handles[ndead++] = model[i].handle;
    else
        dead_handles[rnd() % 256] = model[i].handle;
    model[i] = model[--nmodel];
}

static void model_clear_pending(void)
{
    int i;

    for (i = 0; i < nmodel; i++)
        model[i].pending = 0;
}

/* Checks the shim's page tables equal the model's mappings. */
static void model_compare(uint64_t op)
{
    int i, mapped = 0;
    const char *why = "";

    for (i = 0; i < nmodel; i++) {
        if (model[i].address) {
            struct shim_pte *p = shim_pte_at(vs, model[i].address);

            mapped++;
            if (!p || p->size != model[i].size || p->gpu != model[i].gpu) {
                fprintf(stderr, "FAIL random op %" PRIu64 ": model page at %#" PRIx64 " not in page tables\n",
                        op, model[i].address);
                failures++;
                return;
            }
        }
    }
    if (mapped != vs->nptes) {
        fprintf(stderr, "FAIL random op %" PRIu64 ": %d mapped in model, %d PTEs\n", op, mapped, vs->nptes);
        failures++;
    }
    if (!shim_check_invariants(vs, &why)) {
        fprintf(stderr, "FAIL random op %" PRIu64 ": %s\n", op, why);
        failures++;
    }
}

static void random_test(uint64_t seed, uint64_t ops)
{
    static uint64_t arr[64];
    static UVM_VATTN_MAP_ENTRY ent[64];
    uint64_t op;
    int fail_before = failures;
    long ok_by_kind[4] = { 0, 0, 0, 0 }, traces_seen = 0;

    setup("random");
    rng_state = seed;
    nmodel = 0;
    ndead = 0;
    memset(mowned, 0, sizeof(mowned));
    uvm_events = uvm_refused = 0;
    gpu_a.mem_capacity = 64ull << 20;
    {
        /* a page of the second file: its handle must never work here */
        uint64_t other;

        if (do_alloc(vs2, &gpu_a, K64, &other, 1) == NV_OK && ndead < 256)
            dead_handles[ndead++] = other;
    }

    for (op = 0; op < ops && failures - fail_before < 20; op++) {
        uint32_t n = (uint32_t)(rnd() % 9);
        int hostile_ptr = rnd() % 16 == 0;
        int i, j;

        shim_user_reset();
        if (rnd() % 128 == 0)
            random_uvm_op();
        if (rnd() % 64 == 0)
            n = (rnd() % 2) ? UVM_VATTN_MAX_BATCH + 1 + (uint32_t)(rnd() % 100) : (uint32_t)rnd();
        switch (rnd() % 5) {
        case 0: { /* ALLOC */
            UVM_VATTN_ALLOC_PARAMS p;
            struct shim_gpu *g = (rnd() % 2) ? &gpu_a : &gpu_b;
            NV_STATUS want;
            uint64_t need;

            memset(&p, 0, sizeof(p));
            memcpy(p.gpuUuid, rnd() % 20 ? g->uuid : (const uint8_t *)"not-a-registered", 16);
            p.pageSize = pick_size();
            p.count = n;
            p.flags = rnd() % 20 ? 0 : (uint32_t)rnd() | 1;
            p.handles = hostile_ptr ? rnd() : (uint64_t)(uintptr_t)arr;
            if (nmodel + (n < 64 ? n : 0) > MODEL_MAX)
                p.count = n = 0;
            shim_user_register(arr, sizeof(arr[0]) * (n < 64 ? n : 64));
            /* predict */
            need = uvm_vattn_page_size_valid(p.pageSize) && n <= UVM_VATTN_MAX_BATCH ? p.pageSize * n : 0;
            if (p.flags)
                want = NV_ERR_INVALID_ARGUMENT;
            else if (n > UVM_VATTN_MAX_BATCH)
                want = NV_ERR_INVALID_LIMIT;
            else if (!uvm_vattn_page_size_valid(p.pageSize))
                want = NV_ERR_INVALID_ARGUMENT;
            else if (n == 0)
                want = NV_OK;
            else if (memcmp(p.gpuUuid, g->uuid, 16) != 0 || gpu_gone(g))
                want = NV_ERR_INVALID_DEVICE;
            else if (!(g->page_sizes & p.pageSize))
                want = NV_ERR_NOT_SUPPORTED;
            else if (g->mem_used + need > g->mem_capacity)
                want = NV_ERR_NO_MEMORY;
            else
                want = NV_OK;
            {
                long r = run(vs, UVM_VATTN_ALLOC, &p, sizeof(p));

                if (want == NV_OK && n > 0 && (hostile_ptr || n > 64)) {
                    CHECK_EQ(r, -EFAULT);
                    break;
                }
                CHECK_EQ(r, 0);
                CHECK_EQ(p.rmStatus, want);
                if (r == 0 && p.rmStatus == NV_OK) {
                    CHECK_EQ(p.done, n);
                    for (i = 0; i < (int)n; i++) {
                        CHECK(model_find(arr[i]) == NULL); /* handles are never handed out twice */
                        model[nmodel].handle = arr[i];
                        model[nmodel].gpu = g;
                        model[nmodel].size = p.pageSize;
                        model[nmodel].address = 0;
                        model[nmodel].pending = 0;
                        nmodel++;
                    }
                }
            }
            break;
        }
        case 1: { /* MAP */
            UVM_VATTN_MAP_PARAMS p;
            NV_STATUS want = NV_OK;
            uint32_t bad = 0, want_done = 0;
            int claimed[SHIM_MAX_RANGES], r;

            memset(claimed, 0, sizeof(claimed));

            memset(&p, 0, sizeof(p));
            for (i = 0; i < (int)n && i < 64; i++) {
                ent[i].handle = pick_handle();
                {
                    struct model_page *m = model_find(ent[i].handle);

                    ent[i].address = pick_address(m ? m->size : pick_size());
                }
            }
            p.entries = hostile_ptr ? rnd() : (uint64_t)(uintptr_t)ent;
            p.count = n;
            shim_user_register(ent, sizeof(ent[0]) * (n < 64 ? n : 64));
            if (n > UVM_VATTN_MAX_BATCH)
                want = NV_ERR_INVALID_LIMIT;
            else {
                for (i = 0; i < (int)n && i < 64 && want == NV_OK; i++) {
                    struct model_page *m = model_find(ent[i].handle);

                    bad = (uint32_t)i;
                    if (!m)
                        want = NV_ERR_OBJECT_NOT_FOUND;
                    else if (m->address)
                        want = NV_ERR_UVM_ADDRESS_IN_USE;
                    else if (ent[i].address & (m->size - 1))
                        want = NV_ERR_INVALID_OFFSET;
                    else if (ent[i].address == 0 || ent[i].address > UINT64_MAX - m->size ||
                             (r = in_range(ent[i].address, m->size)) < 0)
                        want = NV_ERR_INVALID_ADDRESS;
                    else if (!mowned[r] && !claimed[r] && vs->ranges[r].blocks)
                        want = NV_ERR_INVALID_STATE;
                    else if (model_overlaps(ent[i].address, m->size))
                        want = NV_ERR_UVM_ADDRESS_IN_USE;
                    else {
                        claimed[r] = !mowned[r];
                        m->address = ent[i].address;
                        m->pending = 1;
                    }
                }
            }
            /* Checked: the page-table step fails at the first page whose GPU lost
             * its GPU VA space; the pages before it stay mapped. */
            want_done = want == NV_OK ? n : 0;
            if (want == NV_OK && n <= 64) {
                for (i = 0; i < (int)n; i++) {
                    if (gpu_gone(model_find(ent[i].handle)->gpu))
                        break;
                }
                if (i < (int)n) {
                    want = NV_ERR_INVALID_DEVICE;
                    want_done = bad = (uint32_t)i;
                    for (; i < (int)n; i++)
                        model_find(ent[i].handle)->address = 0;
                }
            }
            {
                long r = run(vs, UVM_VATTN_MAP, &p, sizeof(p));

                if (n > 0 && n <= UVM_VATTN_MAX_BATCH && (hostile_ptr || n > 64)) {
                    CHECK_EQ(r, -EFAULT);
                    want = NV_ERR_GENERIC; /* roll the model back */
                    want_done = 0;
                }
                else {
                    CHECK_EQ(r, 0);
                    CHECK_EQ(p.rmStatus, want);
                    CHECK_EQ(p.done, want_done);
                    if (want != NV_OK && n <= UVM_VATTN_MAX_BATCH)
                        CHECK_EQ(p.errorIndex, bad);
                    if (p.rmStatus != want && getenv("VATTN_DEBUG")) {
                        fprintf(stderr, "  errorIndex %u done %u\n", p.errorIndex, p.done);
                        for (i = 0; i < (int)n && i < 64; i++) {
                            struct model_page *m = model_find(ent[i].handle);
                            fprintf(stderr, "  entry %d: addr %#" PRIx64 " handle %#" PRIx64 " model %s size %#" PRIx64 " mapped %#" PRIx64 "\n",
                                    i, ent[i].address, ent[i].handle, m ? "yes" : "no", m ? m->size : 0, m ? m->address : 0);
                        }
                    }
                }
                if (want != NV_OK && want_done == 0) {
                    for (j = 0; j < nmodel; j++) {
                        if (model[j].pending)
                            model[j].address = 0;
                    }
                }
                /* A claimed range stays owned if a page of this batch is mapped in it. */
                for (j = 0; j < nmodel; j++) {
                    if (model[j].pending && model[j].address) {
                        for (r = 0; r < vs->nranges; r++) {
                            if (claimed[r] && model[j].address >= vs->ranges[r].start &&
                                model[j].address < vs->ranges[r].end)
                                mowned[r] = 1;
                        }
                    }
                }
                model_clear_pending();
            }
            break;
        }
        case 2: { /* UNMAP */
            UVM_VATTN_UNMAP_PARAMS p;
            NV_STATUS want = NV_OK;
            uint32_t bad = 0;
            int k;

            memset(&p, 0, sizeof(p));
            for (i = 0; i < (int)n && i < 64; i++) {
                if (nmodel && rnd() % 4) {
                    struct model_page *m = &model[rnd() % nmodel];

                    arr[i] = m->address ? m->address + (rnd() % 8 == 0 ? K64 : 0) : pick_address(m->size);
                }
                else
                    arr[i] = pick_address(pick_size());
            }
            p.addresses = hostile_ptr ? rnd() : (uint64_t)(uintptr_t)arr;
            p.count = n;
            shim_user_register(arr, sizeof(arr[0]) * (n < 64 ? n : 64));
            if (n > UVM_VATTN_MAX_BATCH)
                want = NV_ERR_INVALID_LIMIT;
            for (i = 0; want == NV_OK && i < (int)n && i < 64; i++) {
                bad = (uint32_t)i;
                for (k = 0; k < nmodel; k++) {
                    if (model[k].address == arr[i] && !model[k].pending)
                        break;
                }
                if (k == nmodel || arr[i] == 0)
                    want = NV_ERR_OBJECT_NOT_FOUND;
                else
                    model[k].pending = 1;
            }
            {
                long r = run(vs, UVM_VATTN_UNMAP, &p, sizeof(p));

                if (n > 0 && n <= UVM_VATTN_MAX_BATCH && (hostile_ptr || n > 64)) {
                    CHECK_EQ(r, -EFAULT);
                    want = NV_ERR_GENERIC;
                }
                else {
                    CHECK_EQ(r, 0);
                    CHECK_EQ(p.rmStatus, want);
                    CHECK_EQ(p.done, want == NV_OK ? n : 0);
                    if (want != NV_OK && n <= UVM_VATTN_MAX_BATCH)
                        CHECK_EQ(p.errorIndex, bad);
                }
                if (want == NV_OK) {
                    for (j = 0; j < nmodel; j++) {
                        if (model[j].pending)
                            model[j].address = 0;
                    }
                }
                model_clear_pending();
            }
            break;
        }
        case 3: { /* FREE */
            UVM_VATTN_FREE_PARAMS p;
            NV_STATUS want = NV_OK;
            uint32_t bad = 0;

            memset(&p, 0, sizeof(p));
            for (i = 0; i < (int)n && i < 64; i++)
                arr[i] = pick_handle();
            p.handles = hostile_ptr ? rnd() : (uint64_t)(uintptr_t)arr;
            p.count = n;
            shim_user_register(arr, sizeof(arr[0]) * (n < 64 ? n : 64));
            if (n > UVM_VATTN_MAX_BATCH)
                want = NV_ERR_INVALID_LIMIT;
            for (i = 0; want == NV_OK && i < (int)n && i < 64; i++) {
                struct model_page *m = model_find(arr[i]);

                bad = (uint32_t)i;
                if (!m || m->pending)
                    want = NV_ERR_OBJECT_NOT_FOUND;
                else if (m->address)
                    want = NV_ERR_IN_USE;
                else
                    m->pending = 1;
            }
            {
                long r = run(vs, UVM_VATTN_FREE, &p, sizeof(p));

                if (n > 0 && n <= UVM_VATTN_MAX_BATCH && (hostile_ptr || n > 64)) {
                    CHECK_EQ(r, -EFAULT);
                    want = NV_ERR_GENERIC;
                }
                else {
                    CHECK_EQ(r, 0);
                    CHECK_EQ(p.rmStatus, want);
                    CHECK_EQ(p.done, want == NV_OK ? n : 0);
                    if (want != NV_OK && n <= UVM_VATTN_MAX_BATCH)
                        CHECK_EQ(p.errorIndex, bad);
                }
                if (want == NV_OK) {
                    for (j = nmodel - 1; j >= 0; j--) {
                        if (model[j].pending)
                            model_remove(j);
                    }
                }
                model_clear_pending();
            }
            break;
        }
        default: { /* RELEASE_RANGE */
            uint64_t base = pick_address(pick_size());
            uint64_t len = (rnd() % 4) ? (rnd() % 8) * K64 * (1 + rnd() % 32) : rnd();
            uint32_t flags = rnd() % 16 ? (uint32_t)(rnd() % 2) : (uint32_t)rnd();
            uint32_t un = 0, fr = 0, want_un = 0;
            NV_STATUS want = NV_OK;

            if (flags & ~UVM_VATTN_RELEASE_FREE)
                want = NV_ERR_INVALID_ARGUMENT;
            else if (len && base > UINT64_MAX - len)
                want = NV_ERR_INVALID_ADDRESS;
            CHECK_EQ(do_release(vs, base, len, flags, &un, &fr), want);
            if (want == NV_OK && len) {
                for (j = nmodel - 1; j >= 0; j--) {
                    if (model[j].address && model[j].address < base + len && base < model[j].address + model[j].size) {
                        want_un++;
                        model[j].address = 0;
                        if (flags)
                            model_remove(j);
                    }
                }
            }
            CHECK_EQ(un, want_un);
            CHECK_EQ(fr, flags == UVM_VATTN_RELEASE_FREE ? want_un : 0);
            break;
        }
        }
        if (shim_trace_count != traces_seen && shim_last_trace.status == NV_OK && shim_last_trace.done)
            ok_by_kind[shim_last_trace.kind & 3]++;
        traces_seen = shim_trace_count;
        model_compare(op);
    }
    printf("random: seed %" PRIu64 ", %" PRIu64 " hostile argument sets, %d pages live at the end; "
           "successful alloc %ld map %ld unmap %ld free %ld; UVM events %ld (block creation refused %ld)\n",
           seed, op, nmodel, ok_by_kind[0], ok_by_kind[1], ok_by_kind[2], ok_by_kind[3], uvm_events, uvm_refused);
    teardown();
}


/* ------------------------------------------------------------------------- */
/* The fence: ownership, and the hooks UVM's own paths call.                  */
/* ------------------------------------------------------------------------- */

/* The first MAP into a managed range claims it (with the va_space lock held for
 * write); UVM then creates no va_block there; a range UVM already has blocks in is
 * refused, and a batch that fails gives back what it claimed. */
static void test_fence_ownership(void)
{
    uint64_t h[8];
    UVM_VATTN_MAP_ENTRY e[3];
    uint32_t done, erridx;
    long w;

    setup("fence_ownership");
    CHECK_EQ(do_alloc(vs, &gpu_a, K64, h, 8), NV_OK);

    /* Untouched by us: UVM may create blocks anywhere. */
    CHECK_EQ(shim_uvm_touch(vs, RANGE1 + 4096), NV_OK);
    CHECK_EQ(vs->ranges[1].blocks, 1);

    w = shim_write_locks;
    CHECK_EQ(do_map1(vs, RANGE0 + 3 * M2, h[0]), NV_OK);
    CHECK_EQ(shim_write_locks, w + 1);            /* the claim took the lock for write */
    CHECK_EQ(do_map1(vs, RANGE0 + 5 * M2, h[1]), NV_OK);
    CHECK_EQ(shim_write_locks, w + 1);            /* already owned: read mode only */

    /* No va_block anywhere in the owned range, mapped pages or not. */
    CHECK_EQ(shim_uvm_touch(vs, RANGE0 + 3 * M2), NV_ERR_INVALID_ADDRESS);
    CHECK_EQ(shim_uvm_touch(vs, RANGE0 + 40 * M2 + 4096), NV_ERR_INVALID_ADDRESS);
    CHECK_EQ(vs->ranges[0].blocks, 0);

    /* A range UVM manages pages in is refused, whole batch, nothing changed. */
    e[0].address = RANGE0 + 6 * M2;
    e[0].handle = h[2];
    e[1].address = RANGE1;
    e[1].handle = h[3];
    CHECK_EQ(do_map(vs, e, 2, &done, &erridx), NV_ERR_INVALID_STATE);
    CHECK_EQ(done, 0);
    CHECK_EQ(erridx, 1);
    CHECK_EQ(vs->nptes, 2);

    /* The other file's va_space is not affected by this file's ownership. */
    CHECK_EQ(shim_uvm_touch(vs2, RANGE0), NV_OK);
    CHECK_EQ(do_alloc(vs2, &gpu_a, K64, &h[7], 1), NV_OK);
    CHECK_EQ(do_map1(vs2, RANGE0 + K64, h[7]), NV_ERR_INVALID_STATE);
    teardown();

    /* A batch that fails validation gives back the range it claimed. */
    setup("fence_ownership_rollback");
    CHECK_EQ(do_alloc(vs, &gpu_a, K64, h, 8), NV_OK);
    e[0].address = RANGE0;
    e[0].handle = h[0];
    e[1].address = RANGE0 + 4096;                 /* misaligned */
    e[1].handle = h[1];
    CHECK_EQ(do_map(vs, e, 2, &done, &erridx), NV_ERR_INVALID_OFFSET);
    CHECK_EQ(erridx, 1);
    CHECK_EQ(shim_uvm_touch(vs, RANGE0 + M2), NV_OK);   /* not owned: UVM may use it */
    CHECK_EQ(do_map1(vs, RANGE0, h[0]), NV_ERR_INVALID_STATE);
    teardown();

    /* A batch that fails while mapping keeps the ranges of the pages it mapped and
     * gives back the others. */
    setup("fence_ownership_partial");
    CHECK_EQ(do_alloc(vs, &gpu_a, K64, h, 8), NV_OK);
    e[0].address = RANGE0;
    e[0].handle = h[0];
    e[1].address = RANGE1;
    e[1].handle = h[1];
    shim_fail_map = 1;
    CHECK_EQ(do_map(vs, e, 2, &done, &erridx), NV_ERR_NO_MEMORY);
    CHECK_EQ(done, 1);
    CHECK_EQ(erridx, 1);
    CHECK_EQ(shim_uvm_touch(vs, RANGE0 + M2), NV_ERR_INVALID_ADDRESS);  /* still owned */
    CHECK_EQ(shim_uvm_touch(vs, RANGE1), NV_OK);                        /* given back */
    teardown();

    /* Out of memory growing the owned set: refused, nothing claimed; many ranges
     * (past the first allocation of the set) are fine otherwise. */
    setup("fence_ownership_many");
    {
        int i, r;

        CHECK_EQ(do_alloc(vs, &gpu_a, K64, h, 8), NV_OK);
        for (i = 0; i < 20; i++) {
            r = shim_uvm_range_add(vs, 0x800000000ull + (uint64_t)i * M2, 0x800000000ull + (uint64_t)(i + 1) * M2);
            CHECK(r >= 0);
        }
        shim_fail_kalloc = 2;                     /* params copy, slots, then the set */
        CHECK_EQ(do_map1(vs, 0x800000000ull, h[0]), NV_ERR_NO_MEMORY);
        CHECK_EQ(shim_uvm_touch(vs, 0x800000000ull), NV_OK);
        shim_fail_kalloc = -1;
        for (i = 1; i < 20; i++) {
            uint64_t hh;

            CHECK_EQ(do_alloc(vs, &gpu_a, K64, &hh, 1), NV_OK);
            CHECK_EQ(do_map1(vs, 0x800000000ull + (uint64_t)i * M2, hh), NV_OK);
        }
        for (i = 1; i < 20; i++)
            CHECK_EQ(shim_uvm_touch(vs, 0x800000000ull + (uint64_t)i * M2 + K64), NV_ERR_INVALID_ADDRESS);
    }
    teardown();
}

/* Range destroy (munmap, cudaFree) unmaps our pages in it first; their handles
 * stay valid (unmapped) and can be mapped elsewhere or freed; ownership of that
 * extent ends, including when the range was split first. */
static void test_fence_range_destroy(void)
{
    uint64_t h[8], a;
    int r;

    setup("fence_range_destroy");
    CHECK_EQ(do_alloc(vs, &gpu_a, K64, h, 8), NV_OK);
    CHECK_EQ(do_map1(vs, RANGE0, h[0]), NV_OK);
    CHECK_EQ(do_map1(vs, RANGE0 + 10 * M2, h[1]), NV_OK);
    CHECK_EQ(do_map1(vs, RANGE1, h[2]), NV_OK);
    shim_uvm_range_destroy(vs, 0);                /* aborts if a PTE of ours is left */
    CHECK_EQ(vs->nptes, 1);
    a = RANGE0;
    CHECK_EQ(do_unmap(vs, &a, 1, NULL, NULL), NV_ERR_OBJECT_NOT_FOUND);
    CHECK_EQ(do_map1(vs, RANGE1 + K64, h[0]), NV_OK);   /* the handle lives on */
    CHECK_EQ(do_free(vs, &h[1], 1, NULL, NULL), NV_OK);
    /* A new range where the old one was is not owned... */
    r = shim_uvm_range_add(vs, RANGE0, RANGE0 + RANGE0_N);
    CHECK(r >= 0);
    CHECK_EQ(shim_uvm_touch(vs, RANGE0 + M2), NV_OK);
    /* ...and once UVM has blocks in it, not claimable. */
    CHECK_EQ(do_map1(vs, RANGE0, h[3]), NV_ERR_INVALID_STATE);
    CHECK_EQ(shim_uvm_touch(vs, RANGE1 + M2), NV_ERR_INVALID_ADDRESS);  /* range1 still owned */
    teardown();

    /* Split an owned range in three, destroy the middle: the outer parts stay
     * owned and mapped, a range created in the hole is not owned. */
    setup("fence_range_split");
    CHECK_EQ(do_alloc(vs, &gpu_a, K64, h, 8), NV_OK);
    CHECK_EQ(do_map1(vs, RANGE0, h[0]), NV_OK);
    CHECK_EQ(do_map1(vs, RANGE0 + 8 * M2, h[1]), NV_OK);
    CHECK_EQ(do_map1(vs, RANGE0 + 14 * M2, h[2]), NV_OK);
    shim_uvm_range_split(vs, 0, RANGE0 + 12 * M2);
    shim_uvm_range_split(vs, 0, RANGE0 + 4 * M2 + 4096);    /* any page boundary */
    CHECK_EQ(vs->nranges, 4);
    CHECK_EQ(shim_uvm_touch(vs, RANGE0 + 13 * M2), NV_ERR_INVALID_ADDRESS);
    CHECK_EQ(do_map1(vs, RANGE0 + 20 * M2, h[3]), NV_OK);    /* still owned: no claim */
    for (r = 0; r < vs->nranges; r++) {
        if (vs->ranges[r].start == RANGE0 + 4 * M2 + 4096)
            break;
    }
    CHECK(r < vs->nranges);
    shim_uvm_range_destroy(vs, r);
    CHECK_EQ(vs->nptes, 3);
    CHECK(shim_pte_at(vs, RANGE0 + 8 * M2) == NULL);
    CHECK_EQ(shim_uvm_touch(vs, RANGE0 + M2), NV_ERR_INVALID_ADDRESS);
    CHECK_EQ(shim_uvm_touch(vs, RANGE0 + 4 * M2), NV_ERR_INVALID_ADDRESS);  /* the lower part's last block */
    CHECK_EQ(shim_uvm_touch(vs, RANGE0 + 13 * M2), NV_ERR_INVALID_ADDRESS);
    r = shim_uvm_range_add(vs, RANGE0 + 6 * M2, RANGE0 + 8 * M2);
    CHECK(r >= 0);
    CHECK_EQ(shim_uvm_touch(vs, RANGE0 + 6 * M2), NV_OK);
    /* A new range flush against the owned upper part is not owned. */
    r = shim_uvm_range_add(vs, RANGE0 + 10 * M2, RANGE0 + 12 * M2);
    CHECK(r >= 0);
    CHECK_EQ(shim_uvm_touch(vs, RANGE0 + 12 * M2 - 4096), NV_OK);
    teardown();
}

/* GPU VA space removal (unregistering the GPU VA space or the GPU) unmaps our
 * pages on that GPU only; handles stay valid and freeable; MAP on that GPU fails
 * until it is registered again. */
static void test_fence_gpu_va_space(void)
{
    uint64_t ha[2], hb[2], a;

    setup("fence_gpu_va_space");
    CHECK_EQ(do_alloc(vs, &gpu_a, K64, ha, 2), NV_OK);
    CHECK_EQ(do_alloc(vs, &gpu_b, M2, hb, 2), NV_OK);
    CHECK_EQ(do_map1(vs, RANGE0, ha[0]), NV_OK);
    CHECK_EQ(do_map1(vs, RANGE0 + M2, hb[0]), NV_OK);
    shim_uvm_gpu_va_space_remove(vs, 0);          /* aborts if a PTE on gpu_a is left */
    CHECK_EQ(vs->nptes, 1);
    CHECK(shim_pte_at(vs, RANGE0 + M2) != NULL);
    a = RANGE0;
    CHECK_EQ(do_unmap(vs, &a, 1, NULL, NULL), NV_ERR_OBJECT_NOT_FOUND);
    CHECK_EQ(do_map1(vs, RANGE0 + 4 * M2, ha[1]), NV_ERR_INVALID_DEVICE);
    CHECK_EQ(do_alloc(vs, &gpu_a, K64, &ha[1], 1), NV_ERR_INVALID_DEVICE);
    CHECK_EQ(gpu_a.retains, 1);                   /* our chunks keep the GPU */
    CHECK_EQ(do_free(vs, ha, 1, NULL, NULL), NV_OK);
    shim_uvm_gpu_va_space_add(vs, 0);
    CHECK_EQ(do_map1(vs, RANGE0 + 4 * M2, ha[1]), NV_OK);
    teardown();
}

/* A failed forced unmap (the GPU push failed: UVM's global error state) must not
 * return the chunk to the allocator: it is abandoned, and everything else still
 * balances. Also on close. */
static void test_fence_lost_chunk(void)
{
    uint64_t h[2];

    setup("fence_lost_chunk");
    CHECK_EQ(do_alloc(vs, &gpu_a, K64, h, 2), NV_OK);
    CHECK_EQ(do_map1(vs, RANGE0, h[0]), NV_OK);
    CHECK_EQ(do_map1(vs, RANGE1, h[1]), NV_OK);
    shim_fail_unmap_forced = 0;
    shim_uvm_range_destroy(vs, 0);
    CHECK_EQ(vs->nptes, 1);
    CHECK_EQ(do_free(vs, h, 1, NULL, NULL), NV_OK);   /* abandons, never frees */
    CHECK_EQ(shim_chunks_abandoned, 1);
    shim_fail_unmap_forced = 0;
    uvm_vattn_va_space_destroy(vs);                   /* close: the same */
    CHECK_EQ(shim_chunks_abandoned, 2);
    teardown();
}

/* Fault injection everywhere: every failure point must leave nothing behind. */
static void test_fault_sweep(void)
{
    uint64_t h[4], a[4];
    UVM_VATTN_MAP_ENTRY e[4];
    long k;
    int i, which;

    for (which = 0; which < 7; which++) {
        for (k = 0; k < 12; k++) {
            setup("fault_sweep");
            lenient = 1;
            memset(h, 0, sizeof(h));
            switch (which) {
                case 0: shim_fail_kalloc = k; break;
                case 1: shim_fail_chunk = k; break;
                case 2: shim_fail_map = k; break;
                case 3: shim_fail_unmap = k; break;
                case 4: shim_fail_copy_from = k; break;
                case 5: shim_fail_copy_to = k; break;
                case 6: shim_fail_unmap_forced = k; break;
            }
            if (do_alloc(vs, &gpu_a, K64, h, 4) == NV_OK) {
                /* Two ranges (two claims), then both hooks, then the commands. */
                for (i = 0; i < 4; i++) {
                    e[i].address = (i < 2 ? RANGE0 : RANGE1) + (uint64_t)i * K64;
                    e[i].handle = h[i];
                    a[i] = e[i].address;
                }
                do_map(vs, e, 4, NULL, NULL);
                do_unmap(vs, a, 1, NULL, NULL);
                shim_uvm_range_split(vs, 1, RANGE1 + M2);
                shim_uvm_range_destroy(vs, 1);
                shim_uvm_gpu_va_space_remove(vs, 0);
                shim_uvm_gpu_va_space_add(vs, 0);
                do_map(vs, e, 1, NULL, NULL);
                do_free(vs, h + 1, 3, NULL, NULL);
                do_release(vs, RANGE0, RANGE0_N, UVM_VATTN_RELEASE_FREE, NULL, NULL);
            }
            shim_reset();
            lenient = 0;
            teardown();
        }
    }
}

int main(int argc, char **argv)
{
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : 20261125;
    uint64_t ops = argc > 2 ? strtoull(argv[2], NULL, 0) : 200000;

    test_helpers();
    test_dispatch();
    test_alloc();
    test_map_unmap();
    test_free();
    test_release_range();
    test_release_on_close();
    test_table_growth();
    test_gpu_reregistered();
    test_pinned_limit_per_process();
    test_fence_ownership();
    test_fence_range_destroy();
    test_fence_gpu_va_space();
    test_fence_lost_chunk();
    test_fault_sweep();
    random_test(seed, ops);

    if (failures) {
        printf("vattn_test: %d failures\n", failures);
        return 1;
    }
    printf("vattn_test: ok\n");
    return 0;
}
