/*
 * uvm_vattn_shim.h - the userspace environment for uvm_vattn.c: a small model of the
 * UVM va_space, GPUs, chunk allocator and GPU page tables, with fault injection, so
 * the module's logic runs under AddressSanitizer/UndefinedBehaviorSanitizer.
 * Only the environment is modelled here; the logic is ../../../kernel/nvidia-uvm-patch/uvm_vattn.c.
 *
 * SPDX-License-Identifier: MIT
 */

#ifndef _UVM_VATTN_SHIM_H
#define _UVM_VATTN_SHIM_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "uvm_vattn_ioctl.h"

typedef uint32_t NV_STATUS;
#define NV_OK                          UVM_VATTN_NV_OK
#define NV_ERR_ILLEGAL_ACTION          UVM_VATTN_NV_ERR_ILLEGAL_ACTION
#define NV_ERR_IN_USE                  UVM_VATTN_NV_ERR_IN_USE
#define NV_ERR_INSUFFICIENT_RESOURCES  UVM_VATTN_NV_ERR_INSUFFICIENT_RESOURCES
#define NV_ERR_INVALID_ADDRESS         UVM_VATTN_NV_ERR_INVALID_ADDRESS
#define NV_ERR_INVALID_ARGUMENT        UVM_VATTN_NV_ERR_INVALID_ARGUMENT
#define NV_ERR_INVALID_DEVICE          UVM_VATTN_NV_ERR_INVALID_DEVICE
#define NV_ERR_INVALID_LIMIT           UVM_VATTN_NV_ERR_INVALID_LIMIT
#define NV_ERR_INVALID_OFFSET          UVM_VATTN_NV_ERR_INVALID_OFFSET
#define NV_ERR_INVALID_STATE           UVM_VATTN_NV_ERR_INVALID_STATE
#define NV_ERR_NO_MEMORY               UVM_VATTN_NV_ERR_NO_MEMORY
#define NV_ERR_NOT_SUPPORTED           UVM_VATTN_NV_ERR_NOT_SUPPORTED
#define NV_ERR_OBJECT_NOT_FOUND        UVM_VATTN_NV_ERR_OBJECT_NOT_FOUND
#define NV_ERR_UVM_ADDRESS_IN_USE      UVM_VATTN_NV_ERR_UVM_ADDRESS_IN_USE
#define NV_ERR_GENERIC                 0x0000FFFFu

#define SHIM_MAX_GPUS    4
#define SHIM_MAX_RANGES  32
#define SHIM_MAX_PTES    8192

struct uvm_vattn_state;

typedef struct shim_gpu
{
    uint8_t uuid[16];
    uint64_t page_sizes;
    uint64_t mem_capacity;       /* bytes the fake allocator may hand out */
    uint64_t mem_used;
    int retains;
    int live_chunks;
} vattn_os_gpu_t;

typedef struct shim_chunk
{
    struct shim_gpu *gpu;
    uint64_t size;
    int mapped;                  /* PTEs pointing at it */
    uint8_t lost;                /* a forced unmap failed: may only be abandoned */
    uint8_t zeroed;
    uint8_t data;                /* what a "GPU write" left in it */
} vattn_os_chunk_t;

struct shim_pte
{
    struct shim_gpu *gpu;
    uint64_t address;
    uint64_t size;
    struct shim_chunk *chunk;
};

typedef struct shim_va_space
{
    struct shim_gpu *gpus[SHIM_MAX_GPUS];   /* registered GPUs (NULL: none) */
    int gvs_gone[SHIM_MAX_GPUS];            /* the GPU's GPU VA space was removed */
    /* managed ranges [start, end); blocks: UVM created a va_block in it */
    struct { uint64_t start, end; int blocks; } ranges[SHIM_MAX_RANGES];
    int nranges;
    struct uvm_vattn_state *vattn;
    int lock_depth;                         /* 0 unlocked, 1 read, 2 write */
    struct shim_pte ptes[SHIM_MAX_PTES];
    int nptes;
} vattn_os_va_space_t;

typedef struct { int held; } vattn_os_mutex_t;

/* A process, as the kernel's mm: files created while shim_current_process is N are
 * charged to owner N. */
#define SHIM_MAX_PROCESSES 4
typedef struct shim_owner
{
    int process;
    int refs;
    uint64_t charged;
} vattn_os_owner_t;
extern int shim_current_process;
extern struct shim_owner shim_owners[SHIM_MAX_PROCESSES];

#define UVM_VATTN_READ_ONCE(x) (x)
#define UVM_VATTN_CMPXCHG(slot, val) shim_cmpxchg((void **)(slot), (val))
bool shim_cmpxchg(void **slot, void *val);

/* Fault injection: an operation fails when its countdown reaches 0; -1 never. */
extern long shim_fail_kalloc, shim_fail_chunk, shim_fail_map, shim_fail_unmap;
extern long shim_fail_copy_from, shim_fail_copy_to, shim_fail_unmap_forced;
extern long shim_chunks_abandoned;
extern long shim_write_locks;     /* times the va_space lock was taken for write */
extern uint64_t shim_pinned_limit;
extern NV_STATUS shim_global_status;
extern long shim_kallocs_live;

/* The last trace event, and how many were emitted. */
struct shim_trace
{
    int kind;
    uint8_t uuid[16];
    uint64_t page_size;
    uint32_t count, done, status;
    uint64_t duration_ns;
};
extern struct shim_trace shim_last_trace;
extern long shim_trace_count;

/* User memory: copies succeed only inside registered buffers. */
void shim_user_register(const void *p, size_t n);
void shim_user_reset(void);

void shim_reset(void);
int shim_check_invariants(vattn_os_va_space_t *vs, const char **why);
struct shim_pte *shim_pte_at(vattn_os_va_space_t *vs, uint64_t address);

/* UVM's own paths, as the hooks in NVIDIA's files see them. */
/* A GPU/CPU fault, migrate or prefetch touching address: creates the va_block
 * (NV_OK) unless the block-creation hook refuses (NV_ERR_INVALID_ADDRESS, a fatal
 * fault), or there is no managed range there. */
NV_STATUS shim_uvm_touch(vattn_os_va_space_t *vs, uint64_t address);
/* munmap/cudaFree of range i (uvm_va_range_destroy): calls the range hook, then
 * aborts if any of our PTEs is left in it. */
void shim_uvm_range_destroy(vattn_os_va_space_t *vs, int i);
/* A partial munmap or policy call splitting range i at address (no hook). */
void shim_uvm_range_split(vattn_os_va_space_t *vs, int i, uint64_t at);
/* mmap of a new managed range. */
int shim_uvm_range_add(vattn_os_va_space_t *vs, uint64_t start, uint64_t end);
/* Unregistering GPU i's GPU VA space (remove_gpu_va_space): calls the hook, then
 * aborts if any of our PTEs is left on that GPU. Re-registering clears it. */
void shim_uvm_gpu_va_space_remove(vattn_os_va_space_t *vs, int i);
void shim_uvm_gpu_va_space_add(vattn_os_va_space_t *vs, int i);

#endif /* _UVM_VATTN_SHIM_H */
