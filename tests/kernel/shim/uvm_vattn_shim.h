/*
 * uvm_vattn_shim.h - the userspace environment for uvm_vattn.c: a small model of
 * UVM's va_space, GPUs, external ranges with their per-GPU mapping trees, RM memory
 * and its dups, page tables, PTEs and TLBs, and pushes, with fault injection and
 * lock-order assertions, so the module's logic runs under
 * AddressSanitizer/UndefinedBehaviorSanitizer. Only the environment is modelled
 * here; the logic is ../../../kernel/nvidia-uvm-patch/uvm_vattn.c, unchanged.
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
#define NV_ERR_INVALID_ADDRESS         UVM_VATTN_NV_ERR_INVALID_ADDRESS
#define NV_ERR_INVALID_ARGUMENT        UVM_VATTN_NV_ERR_INVALID_ARGUMENT
#define NV_ERR_INVALID_DEVICE          UVM_VATTN_NV_ERR_INVALID_DEVICE
#define NV_ERR_INVALID_LIMIT           UVM_VATTN_NV_ERR_INVALID_LIMIT
#define NV_ERR_INVALID_OFFSET          UVM_VATTN_NV_ERR_INVALID_OFFSET
#define NV_ERR_NO_MEMORY               UVM_VATTN_NV_ERR_NO_MEMORY
#define NV_ERR_NOT_SUPPORTED           UVM_VATTN_NV_ERR_NOT_SUPPORTED
#define NV_ERR_UVM_ADDRESS_IN_USE      UVM_VATTN_NV_ERR_UVM_ADDRESS_IN_USE
#define NV_ERR_INVALID_OBJECT_HANDLE   0x00000033u  /* what RM answers for a handle not the caller's */
#define NV_ERR_RC_ERROR                0x00000060u  /* a channel error: UVM's global fatal state */

/* Sparse's context annotations: nothing to userspace gcc (kernel-check runs sparse). */
#define __must_hold(x)
#define __acquires(x)
#define __releases(x)

#define SHIM_GPUS        3
#define SHIM_PAGES       256                     /* VA pages of 64 KiB each GPU can map: [0, 16 MiB) */
#define SHIM_PAGE        UVM_VATTN_PAGE_SIZE
#define SHIM_VA_END      ((uint64_t)SHIM_PAGES * SHIM_PAGE)
#define SHIM_RANGES      8
#define SHIM_MEMS        8
#define SHIM_MAPS        2048

struct shim_va_space;

typedef struct shim_gpu
{
    int index;
    uint8_t uuid[16];
    bool registered;
    bool gvs;                    /* has a GPU VA space in the va_space */
    bool no_phys_ce;             /* page tables not writable by physical CE */
} vattn_os_gpu_t;

/* RM memory of one process (client). */
struct shim_memory
{
    bool live;                   /* the client still holds it (RM keeps it while duped) */
    int process;
    uint32_t client, handle;
    uint64_t size;
    int owner_gpu;
    bool sysmem;
    int dups;                    /* dups alive (UVM's references) */
};

/* UVM's dup of RM memory on one GPU (uvm_ext_gpu_mem_handle): refcounted. */
typedef struct shim_dup
{
    int mem;
    int gpu;
    int refs;
    struct shim_dup *next_live;
} vattn_os_mem_t;

/* uvm_ext_gpu_map_t: one mapping of one GPU. */
typedef struct shim_map
{
    struct shim_va_space *vs;
    int range;
    int gpu;
    uint64_t base, length, offset;
    struct shim_dup *dup;        /* NULL: a sparse mapping (no memory) */
    bool pt;                     /* page tables reserved for [base, base+length) */
    bool in_tree;
    bool abandoned;
    bool prepared;               /* made by vattn_os_map_prepare, not yet committed */
    bool raced;                  /* a sparse mapping a batch's commit raced: its PTEs may be cleared */
    bool detached;               /* taken out of its tree by an unmap, not yet destroyed */
    struct shim_map *next;       /* all maps alive */
} vattn_os_map_t;

typedef struct shim_range
{
    bool live;
    uint64_t start, end;         /* [start, end] inclusive */
} vattn_os_range_t;

/* PTE values a mapping writer's buffer holds (the module's holds 192 KiB). */
#define SHIM_WBUF        6

typedef struct shim_writer
{
    struct shim_va_space *vs;
    int gpu;
    bool clearing;
    bool any;
    bool open;
    int pushes;
    struct shim_map *pend[SHIM_WBUF];   /* read from RM, not yet written */
    int npend, used;
} vattn_os_writer_t;

/* A PTE or TLB entry: the memory and the offset in it a VA page names. */
struct shim_pte
{
    int valid;
    int mem;
    uint64_t offset;
};

typedef struct shim_va_space
{
    int process;
    struct shim_gpu gpus[SHIM_GPUS];
    struct shim_range ranges[SHIM_RANGES];
    struct shim_pte pte[SHIM_GPUS][SHIM_PAGES];
    struct shim_pte tlb[SHIM_GPUS][SHIM_PAGES];
    int pt_refs[SHIM_GPUS][SHIM_PAGES];      /* page-table references per VA page */
    bool peer;                   /* peer access enabled between every pair of GPUs */
    long invalidates[SHIM_GPUS];
    long pushes[SHIM_GPUS];
    /* locks */
    int lock_mode;               /* 0 none, 1 read with serialize-writers (RM calls allowed) */
    int tree_lock;               /* a range-tree mutex is held */
    int open_pushes;             /* pushes begun, not ended (UVM orders them after RM and tree mutexes) */
} vattn_os_va_space_t;

extern struct shim_memory shim_mems[SHIM_MEMS];
extern struct shim_map *shim_maps_live;
extern long shim_maps_count, shim_dups_count, shim_kallocs_live;

/* Fault injection: the next fallible call of a class fails when its countdown
 * reaches 0 (-1: never). shim_fail_any counts every fallible call. */
extern long shim_fail_any;
/* The commit that finds a UVM_MAP_EXTERNAL_SPARSE of the process raced in over
 * its addresses (countdown over commits; -1 never). */
extern long shim_sparse_race;
extern long shim_fallible_calls;
extern NV_STATUS shim_global_status;
/* Races within one process: before the k-th locked step of a command
 * (countdown; -1 never), shim_race_fn runs, as another thread of the calling
 * process making a stock call that needs the va_space lock for read only
 * (UVM_UNMAP_EXTERNAL, UVM_MAP_EXTERNAL_SPARSE). Such a race may change what the
 * process's own addresses map: with shim_relaxed set, shim_check checks safety
 * only (nothing reachable released, references and leaks), not that every
 * record's PTEs are right. */
extern long shim_race_at;
extern void (*shim_race_fn)(vattn_os_va_space_t *vs);
extern bool shim_relaxed;

/* The last trace event, and how many were emitted. */
struct shim_trace
{
    int kind;
    uint8_t uuid[16];
    uint32_t count, done, status;
};
extern struct shim_trace shim_last_trace;
extern long shim_trace_count;

/* User memory: copies succeed only inside registered buffers. */
void shim_user_register(const void *p, size_t n);
void shim_user_reset(void);

void shim_reset(void);
void shim_va_space_init(vattn_os_va_space_t *vs, int process);
int shim_range_create(vattn_os_va_space_t *vs, uint64_t start, uint64_t length);
int shim_mem_alloc(int process, uint32_t client, uint32_t handle, uint64_t size, int owner_gpu);

/* UVM's own paths over the same records (as stock UVM runs them). */
NV_STATUS shim_stock_map(vattn_os_va_space_t *vs, uint64_t base, uint64_t length, int gpu, uint32_t client,
                         uint32_t handle, uint64_t offset);
NV_STATUS shim_stock_unmap(vattn_os_va_space_t *vs, uint64_t base, uint64_t length, int gpu);
NV_STATUS shim_stock_sparse(vattn_os_va_space_t *vs, uint64_t base, uint64_t length, int gpu);
void shim_range_free(vattn_os_va_space_t *vs, int range);          /* UVM_FREE */
void shim_gpu_va_space_remove(vattn_os_va_space_t *vs, int gpu);   /* unregister GPU VA space */
void shim_va_space_destroy(vattn_os_va_space_t *vs);               /* process exit */
void shim_mem_free(int mem);                                       /* the client frees its memory */

/* Checks every invariant of the model; returns 0 and sets *why on failure. */
int shim_check(vattn_os_va_space_t *vs, const char **why);
/* The translations a GPU of vs sees (what the PTEs say), for before/after compares. */
int shim_same_view(const vattn_os_va_space_t *a, const vattn_os_va_space_t *b);

#endif /* _UVM_VATTN_SHIM_H */
