/*
 * uvm_vattn_ioctl.h - the ioctl ABI that vattn adds to /dev/nvidia-uvm.
 *
 * This header is the single source of truth for the ABI. The kernel module
 * (uvm_vattn.c), the Go package github.com/vattn/vattn/ioctl and the tracer all
 * follow it; tests/kernel/abi compiles a probe against it and compares every size,
 * offset and number with the Go side.
 *
 * SPDX-License-Identifier: MIT
 *
 * ---------------------------------------------------------------------------
 * Command numbers
 * ---------------------------------------------------------------------------
 * Like UVM's own commands, ours are plain integers (no _IOC direction or size
 * bits); the parameter size is fixed by the command. Stock UVM uses
 *   1..80            UVM_IOCTL_BASE(i)         (80 on 580/595, 75 on 535/550)
 *   2047             UVM_IS_8_SUPPORTED
 *   200..314         UVM_TEST_IOCTL_BASE(i) = 200 + i (114 on 595)
 *   0x30000001/2     UVM_INITIALIZE / UVM_DEINITIALIZE
 * (checked on tags 535.261.03, 550.163.01, 580.142 and 595.45.04). The generic
 * VFS layer intercepts a few numbers before any driver sees them (FIOCLEX 0x5451,
 * FIONCLEX, FIONBIO, FIOASYNC, FIOQSIZE, FIBMAP 1, FIGETBSZ 2, FIFREEZE...).
 * Ours are 0x5641'00xx ("VA"): far above every UVM range, including the test
 * range that the original vAttention patch shadowed (200..203), and equal to no
 * VFS command. An unpatched module answers them with -EINVAL (<= 550) or -ENOSYS
 * (>= 580), which is how user space detects it.
 *
 * ---------------------------------------------------------------------------
 * Calling convention
 * ---------------------------------------------------------------------------
 * - The file must be a UVM va_space file (UVM_INITIALIZE done on it), the one
 *   whose va_space CUDA uses; otherwise rmStatus = NV_ERR_ILLEGAL_ACTION.
 * - ioctl() returns 0 whenever the command ran and its parameters were copied
 *   back; the result is then rmStatus. It returns -1 with errno only for transport
 *   failures, where the parameters were NOT written back:
 *     EFAULT  the params block or an array it points to is not readable/writable
 *             (any work the command did is undone first);
 *     EAGAIN  the driver is suspending (UVM's power-management lock);
 *     EINVAL / ENOSYS  unknown command: the module is not patched.
 *   So check errno first, then rmStatus.
 * - Arrays are passed as a user pointer (u64) plus a count. count may be 0 (a
 *   no-op returning NV_OK); count > UVM_VATTN_MAX_BATCH gives NV_ERR_INVALID_LIMIT.
 * - Every reserved/flags field must be zero (NV_ERR_INVALID_ARGUMENT), so that
 *   later ABI versions can give them meaning.
 * - Batches: MAP, UNMAP and FREE check the whole batch (every handle, address,
 *   size, duplicate within the batch) before changing anything; a batch that
 *   fails those checks changes nothing, done = 0 and errorIndex names the first
 *   bad entry. If a later step fails (out of memory for page tables), entries
 *   [0, done) stay applied, the others are untouched, errorIndex = done. ALLOC is
 *   all-or-nothing: on failure no page is left allocated and done = 0.
 *
 * ---------------------------------------------------------------------------
 * Handles
 * ---------------------------------------------------------------------------
 * A handle names one physical page allocated by ALLOC through this file. It is an
 * opaque per-file ID (a tag of the file, a slot and a generation), never a physical
 * address: a handle of another file, a freed handle, or a made-up value is
 * NV_ERR_OBJECT_NOT_FOUND.
 * 0 is never a valid handle. Double free is NV_ERR_OBJECT_NOT_FOUND; freeing a
 * mapped page is NV_ERR_IN_USE.
 *
 * ---------------------------------------------------------------------------
 * Fences (what "done" means when the ioctl returns)
 * ---------------------------------------------------------------------------
 * - ALLOC returns after the new pages have been zeroed on the GPU (the memset is
 *   waited for), so no previous owner's data is ever readable through them.
 * - MAP returns after its page-table writes and the TLB invalidate have completed
 *   (the push is waited for): GPU work launched after the ioctl returns sees the
 *   pages. No extra fence is needed.
 * - UNMAP returns after the PTEs are cleared and the TLB invalidated (waited).
 *   The CALLER must have waited for all GPU work that reads or writes the pages
 *   before calling UNMAP (for example a CUDA event/stream sync); otherwise that
 *   work faults (fatally: see Ownership). The driver cannot see CUDA streams, so
 *   it cannot wait for them.
 * - FREE requires the page to be unmapped (NV_ERR_IN_USE otherwise), which by
 *   the rule above implies the GPU no longer uses it; the page returns to UVM's
 *   allocator immediately.
 * - RELEASE_RANGE is UNMAP (and, with UVM_VATTN_RELEASE_FREE, FREE) for every
 *   page of this file mapped inside [base, base + length), with the same rules.
 *
 * ---------------------------------------------------------------------------
 * Opt-in and isolation from UVM's own paths
 * ---------------------------------------------------------------------------
 * Nothing changes for a process that never issues these commands: no global
 * chunk-size change, no change to the 2 MiB fast path. Pages come from UVM's
 * allocator as pinned user chunks (never on the eviction lists), are owned by the
 * file's vattn state (not by a va_block's gpu_state), and are unmapped and freed
 * when the file is released, before UVM tears down the va_space (see
 * docs/driver-abi.md for the reasoning and the parts not yet implemented).
 * A virtual address holds at most one vattn page of a file, whatever its GPU.
 *
 * Ownership (the fence between vattn's PTEs and UVM's own paths): the first MAP
 * into a managed range takes the whole range over for this file. MAP refuses a
 * range in which UVM already manages pages (the process touched it through
 * cudaMallocManaged's normal paths: CPU or GPU access, prefetch, migrate) with
 * NV_ERR_INVALID_STATE. From then on, until the range is destroyed or the file is
 * closed, UVM manages nothing in it: any CPU or GPU access to an address of the
 * range that no vattn page maps is fatal (SIGBUS on the CPU, a fatal GPU fault
 * that ends the CUDA context), and UvmMigrate/prefetch over it fail with
 * NV_ERR_INVALID_ADDRESS; read duplication, preferred location and accessed-by
 * have nothing to act on. A page is mapped on its own GPU only: another GPU
 * touching it faults fatally too. A MAP that fails gives back the ranges it took
 * over for pages it did not map. Use a range reserved for vattn pages only.
 * UVM events that end mappings behind the caller's back (handles stay valid,
 * their pages unmapped, and can be mapped again or freed; nothing leaks):
 *   - the range is destroyed (munmap, cudaFree of the managed allocation): every
 *     page of this file in it is unmapped first;
 *   - a GPU VA space is unregistered (or the GPU unregistered from the va_space):
 *     every page of this file mapped on that GPU is unmapped first; MAP on that
 *     GPU answers NV_ERR_INVALID_DEVICE until it is registered again; its pages
 *     can still be freed.
 * If the GPU push that clears such a mapping fails (UVM's global error state),
 * the page's memory is never returned to UVM's allocator (leaked, not reused).
 * Every process has a limit on the bytes it holds through these commands, over all
 * its UVM files and GPUs (module parameter uvm_vattn_max_pinned_mb, 0 = none, the
 * default; GET_INFO reports it). Pages are charged to the process that first used
 * vattn on the file; past the limit ALLOC fails with NV_ERR_INSUFFICIENT_RESOURCES.
 *
 * ---------------------------------------------------------------------------
 * Tracepoints (TRACE_SYSTEM "vattn"), part of this contract
 * ---------------------------------------------------------------------------
 * Four events, each emitted once per batched ioctl when the command finishes
 * (success or failure):
 *   vattn:vattn_alloc   vattn:vattn_map   vattn:vattn_unmap   vattn:vattn_free
 * Fields, in this order, identical for all four:
 *   __u8  gpu_uuid[16];  the GPU's UUID as UVM stores it (NvProcessorUuid bytes);
 *                        ALLOC: as the caller passed it; others: all zero when
 *                        the first entry names no page of this file
 *   __u64 page_size;     bytes: 65536, 131072, 262144 or 2097152; 0 if unknown
 *   __u32 count;         entries in the batch as the caller passed them
 *   __u32 done;          entries applied before the command returned
 *   __u32 status;        NV_STATUS returned in the params (0 = NV_OK)
 *   __u32 pad;           keeps duration_ns 8-byte aligned
 *   __u64 duration_ns;   ktime from entry to the end of the command, waits included
 * MAP/UNMAP/FREE batches may span GPUs and sizes: the event then carries the
 * first entry's GPU and size. RELEASE_RANGE emits vattn_unmap (and vattn_free
 * with UVM_VATTN_RELEASE_FREE) with count = done = pages released. Consumers read field offsets from tracefs
 * (events/vattn/<event>/format), never from this comment.
 */

#ifndef _UVM_VATTN_IOCTL_H
#define _UVM_VATTN_IOCTL_H

#if defined(__KERNEL__)
#include <linux/types.h>
#else
#include <stdint.h>
#endif

#define UVM_VATTN_ABI_VERSION           1u

#define UVM_VATTN_IOCTL_BASE            0x56410000u
#define UVM_VATTN_GET_INFO              (UVM_VATTN_IOCTL_BASE + 0x01u)
#define UVM_VATTN_ALLOC                 (UVM_VATTN_IOCTL_BASE + 0x02u)
#define UVM_VATTN_MAP                   (UVM_VATTN_IOCTL_BASE + 0x03u)
#define UVM_VATTN_UNMAP                 (UVM_VATTN_IOCTL_BASE + 0x04u)
#define UVM_VATTN_FREE                  (UVM_VATTN_IOCTL_BASE + 0x05u)
#define UVM_VATTN_RELEASE_RANGE         (UVM_VATTN_IOCTL_BASE + 0x06u)
#define UVM_VATTN_IOCTL_FIRST           UVM_VATTN_GET_INFO
#define UVM_VATTN_IOCTL_LAST            UVM_VATTN_RELEASE_RANGE

/* Most entries one batched command takes (arrays are copied into the kernel). */
#define UVM_VATTN_MAX_BATCH             16384u
/* Most GPUs GET_INFO reports (UVM's own limit on registered GPUs is lower). */
#define UVM_VATTN_MAX_GPUS              64u

/* Page sizes, in bytes; pageSizes fields are a bitwise OR of them. */
#define UVM_VATTN_PAGE_SIZE_64K         0x00010000ull
#define UVM_VATTN_PAGE_SIZE_128K        0x00020000ull
#define UVM_VATTN_PAGE_SIZE_256K        0x00040000ull
#define UVM_VATTN_PAGE_SIZE_2M          0x00200000ull
#define UVM_VATTN_PAGE_SIZES_ALL        (UVM_VATTN_PAGE_SIZE_64K | UVM_VATTN_PAGE_SIZE_128K | \
                                         UVM_VATTN_PAGE_SIZE_256K | UVM_VATTN_PAGE_SIZE_2M)

/* RELEASE_RANGE flags. */
#define UVM_VATTN_RELEASE_FREE          0x1u

/*
 * NV_STATUS values the vattn commands return (NVIDIA's numbers, from
 * common/inc/nvstatuscodes.h; the kernel build asserts they match). Other values
 * from UVM's internals (for example NV_ERR_NO_MEMORY variants, or the module's
 * global error state) pass through unchanged.
 */
#define UVM_VATTN_NV_OK                         0x00000000u
#define UVM_VATTN_NV_ERR_ILLEGAL_ACTION         0x00000016u /* file is not a UVM va_space file */
#define UVM_VATTN_NV_ERR_IN_USE                 0x00000017u /* FREE of a mapped page */
#define UVM_VATTN_NV_ERR_INSUFFICIENT_RESOURCES 0x0000001Au /* process pinned-memory limit or handle table full */
#define UVM_VATTN_NV_ERR_INVALID_ADDRESS        0x0000001Eu /* not inside one managed range of this va_space */
#define UVM_VATTN_NV_ERR_INVALID_ARGUMENT       0x0000001Fu /* bad page size, nonzero flags or reserved field */
#define UVM_VATTN_NV_ERR_INVALID_DEVICE         0x00000026u /* UUID not registered (with a GPU VA space) here */
#define UVM_VATTN_NV_ERR_INVALID_LIMIT          0x0000002Eu /* count above UVM_VATTN_MAX_BATCH */
#define UVM_VATTN_NV_ERR_INVALID_OFFSET         0x00000037u /* address not aligned to the page size */
#define UVM_VATTN_NV_ERR_INVALID_STATE          0x00000040u /* MAP: UVM already manages pages in that range (see Ownership) */
#define UVM_VATTN_NV_ERR_NO_MEMORY              0x00000051u /* out of GPU or kernel memory */
#define UVM_VATTN_NV_ERR_NOT_SUPPORTED          0x00000056u /* size not supported by this GPU or build */
#define UVM_VATTN_NV_ERR_OBJECT_NOT_FOUND       0x00000057u /* unknown/stale/foreign handle; UNMAP: nothing mapped */
#define UVM_VATTN_NV_ERR_UVM_ADDRESS_IN_USE     0x00000068u /* MAP: address or handle already mapped */

/* One GPU in GET_INFO: 32 bytes. */
typedef struct
{
    uint8_t  gpuUuid[16];        /* OUT: NvProcessorUuid bytes                        */
    uint64_t pageSizes;          /* OUT: UVM_VATTN_PAGE_SIZE_* this GPU supports here */
    uint64_t pinnedBytes;        /* OUT: bytes this file holds on this GPU            */
} UVM_VATTN_GPU_INFO;

/* UVM_VATTN_GET_INFO: 48 bytes. */
typedef struct
{
    uint32_t abiVersion;         /* OUT: UVM_VATTN_ABI_VERSION                         */
    uint32_t maxBatch;           /* OUT: UVM_VATTN_MAX_BATCH                           */
    uint64_t gpuInfo;            /* IN:  user pointer to UVM_VATTN_GPU_INFO[gpuCapacity] (may be 0 if gpuCapacity is 0) */
    uint32_t gpuCapacity;        /* IN:  entries gpuInfo has room for (<= UVM_VATTN_MAX_GPUS) */
    uint32_t gpuCount;           /* OUT: GPUs registered in this va_space (entries written = min(count, capacity)) */
    uint64_t pinnedLimitBytes;   /* OUT: the per-process pinned-memory limit (0: none)  */
    uint64_t pinnedBytes;        /* OUT: bytes this file holds, all GPUs               */
    uint32_t reserved0;          /* IN:  must be 0                                     */
    uint32_t rmStatus;           /* OUT: NV_STATUS                                     */
} UVM_VATTN_GET_INFO_PARAMS;

/* UVM_VATTN_ALLOC: allocate count pages of pageSize bytes on one GPU. 48 bytes. */
typedef struct
{
    uint8_t  gpuUuid[16];        /* IN:  a GPU registered in this va_space              */
    uint64_t pageSize;           /* IN:  one UVM_VATTN_PAGE_SIZE_* value                */
    uint64_t handles;            /* IN:  user pointer to uint64_t[count]; OUT there: the new handles */
    uint32_t count;              /* IN                                                  */
    uint32_t done;               /* OUT: count on success, 0 on failure (all-or-nothing) */
    uint32_t flags;              /* IN:  must be 0                                      */
    uint32_t rmStatus;           /* OUT: NV_STATUS                                      */
} UVM_VATTN_ALLOC_PARAMS;

/* One MAP entry: 16 bytes. address must be aligned to the page's size. */
typedef struct
{
    uint64_t address;            /* IN: GPU virtual address inside a managed range      */
    uint64_t handle;             /* IN: from ALLOC on this file                          */
} UVM_VATTN_MAP_ENTRY;

/* UVM_VATTN_MAP: 24 bytes. Each entry's page must be unmapped and of this file,
 * its address aligned to its size, inside one managed range that this file owns or
 * that UVM manages no pages in (NV_ERR_INVALID_STATE), and free of this file's
 * pages. The first GPU without a GPU VA space stops the batch
 * (NV_ERR_INVALID_DEVICE, entries before it stay mapped). */
typedef struct
{
    uint64_t entries;            /* IN:  user pointer to UVM_VATTN_MAP_ENTRY[count]      */
    uint32_t count;              /* IN                                                  */
    uint32_t done;               /* OUT: entries mapped                                 */
    uint32_t errorIndex;         /* OUT: first entry not applied when rmStatus != NV_OK  */
    uint32_t rmStatus;           /* OUT: NV_STATUS                                      */
} UVM_VATTN_MAP_PARAMS;

/* UVM_VATTN_UNMAP: unmap the pages of this file mapped at these addresses. 24 bytes. */
typedef struct
{
    uint64_t addresses;          /* IN:  user pointer to uint64_t[count]                */
    uint32_t count;              /* IN                                                  */
    uint32_t done;               /* OUT: entries unmapped                               */
    uint32_t errorIndex;         /* OUT: first entry not applied when rmStatus != NV_OK  */
    uint32_t rmStatus;           /* OUT: NV_STATUS                                      */
} UVM_VATTN_UNMAP_PARAMS;

/* UVM_VATTN_FREE: free unmapped pages. 24 bytes. */
typedef struct
{
    uint64_t handles;            /* IN:  user pointer to uint64_t[count]                */
    uint32_t count;              /* IN                                                  */
    uint32_t done;               /* OUT: pages freed                                    */
    uint32_t errorIndex;         /* OUT: first entry not applied when rmStatus != NV_OK  */
    uint32_t rmStatus;           /* OUT: NV_STATUS                                      */
} UVM_VATTN_FREE_PARAMS;

/* UVM_VATTN_RELEASE_RANGE: unmap (and optionally free) every page of this file
 * mapped inside [base, base + length). 32 bytes. */
typedef struct
{
    uint64_t base;               /* IN                                                  */
    uint64_t length;             /* IN:  base + length must not overflow                 */
    uint32_t flags;              /* IN:  0 or UVM_VATTN_RELEASE_FREE                     */
    uint32_t unmapped;           /* OUT: pages unmapped                                 */
    uint32_t freed;              /* OUT: pages freed                                    */
    uint32_t rmStatus;           /* OUT: NV_STATUS                                      */
} UVM_VATTN_RELEASE_RANGE_PARAMS;

#endif /* _UVM_VATTN_IOCTL_H */
