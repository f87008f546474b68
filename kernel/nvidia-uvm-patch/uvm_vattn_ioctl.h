/*
 * uvm_vattn_ioctl.h - the ioctl ABI that vattn adds to /dev/nvidia-uvm.
 *
 * This header is the single source of truth for the ABI. The kernel module
 * (uvm_vattn.c), the Go package github.com/vattn/vattn/ioctl and the tracer all
 * follow it; ioctl/testdata/abi_probe.c compiles against it and the Go test compares
 * every size, offset and number with the Go side.
 *
 * SPDX-License-Identifier: MIT
 *
 * ---------------------------------------------------------------------------
 * What the commands do (ABI version 2)
 * ---------------------------------------------------------------------------
 * Two batched commands over UVM's own external ranges: MAP_BATCH maps many
 * (virtual address, length, RM memory handle, offset) entries, UNMAP_BATCH
 * unmaps many (virtual address, length) entries, each on every GPU the call
 * lists. The ranges are the caller's, made with stock UVM_CREATE_EXTERNAL_RANGE
 * and freed with stock UVM_FREE; the memory is the caller's own RM video memory,
 * named by its RM client and handle exactly as stock UVM_MAP_EXTERNAL_ALLOCATION
 * names it. Each mapping is recorded the way UVM records the stock command's
 * (one uvm_ext_gpu_map_t per entry and GPU in the external range's per-GPU tree,
 * holding a reference on UVM's dup of the memory), so UVM's own teardown paths
 * (UVM_FREE of the range, process exit, GPU or GPU VA space unregistration)
 * unmap and release them as they do stock mappings, and stock
 * UVM_UNMAP_EXTERNAL unmaps them too. The module owns no memory and keeps no
 * state of its own between calls.
 *
 * What a batch adds over one stock call per entry: the page tables and PTE
 * values of every entry are gathered before anything is written, the PTE writes
 * of the whole batch go out in as few pushes per GPU as the push size allows,
 * and each GPU gets one TLB invalidate per batch.
 *
 * ABI version 1 (module-owned pages: ALLOC, MAP of handles, UNMAP, FREE,
 * RELEASE_RANGE, commands 0x02..0x06) is retired: those numbers are unknown
 * commands now and are never reused.
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
 * Ours are 0x5641'00xx ("VA"): far above every UVM range and equal to no VFS
 * command. An unpatched module answers them with -EINVAL (<= 550) or -ENOSYS
 * (>= 580), which is how user space detects it; GET_INFO's abiVersion tells
 * a patched module's version.
 *
 * ---------------------------------------------------------------------------
 * Calling convention
 * ---------------------------------------------------------------------------
 * - The file must be a UVM va_space file (UVM_INITIALIZE done on it), the one
 *   whose va_space CUDA uses; otherwise rmStatus = NV_ERR_ILLEGAL_ACTION.
 * - ioctl() returns 0 whenever the command ran and its parameters were copied
 *   back; the result is then rmStatus. It returns -1 with errno only for transport
 *   failures, where the parameters were NOT written back:
 *     EFAULT  the params block or an array it points to is not readable
 *             (nothing was changed);
 *     EAGAIN  the driver is suspending (UVM's power-management lock);
 *     EINVAL / ENOSYS  unknown command: the module is not patched, or a
 *             retired command.
 *   So check errno first, then rmStatus.
 * - Arrays are passed as a user pointer (u64) plus a count. count may be 0 (a
 *   no-op returning NV_OK); count > UVM_VATTN_MAX_BATCH gives NV_ERR_INVALID_LIMIT.
 *   gpuCount must be 1..UVM_VATTN_MAX_GPUS (NV_ERR_INVALID_ARGUMENT).
 * - Every reserved/flags field must be zero (NV_ERR_INVALID_ARGUMENT), so that
 *   later ABI versions can give them meaning.
 * - Addresses, lengths and offsets are multiples of 64 KiB, lengths nonzero, no
 *   sum overflows (NV_ERR_INVALID_ADDRESS; offsets: NV_ERR_INVALID_OFFSET); the
 *   entries of one batch do not overlap each other (NV_ERR_INVALID_ARGUMENT);
 *   each entry lies inside one external range of this va_space
 *   (NV_ERR_INVALID_ADDRESS); each GPU is registered here with a GPU VA space,
 *   and no UUID is listed twice (NV_ERR_INVALID_DEVICE / NV_ERR_INVALID_ARGUMENT).
 * - Batches are all or nothing: on any failure the batch changed nothing that
 *   a GPU can see, and errorIndex names the entry that failed, or count when
 *   the failure was not found in checking one entry (a GPU push, or RM
 *   refusing a PTE query while writing). Two exceptions: UVM's global fatal
 *   error state (a GPU channel error), where UVM itself stops: then the
 *   batch's page tables and memory references are kept, never freed, so that
 *   no stale PTE can name reused memory; and a batch raced by the calling
 *   process's own UVM_UNMAP_EXTERNAL or UVM_MAP_EXTERNAL_SPARSE over the same
 *   addresses (UVM runs both under the va_space lock for read, as the batched
 *   commands take it): what those addresses then map is up to the
 *   interleaving, as for two overlapping stock calls, and a MAP_BATCH may stop
 *   with NV_ERR_UVM_ADDRESS_IN_USE, the entries before errorIndex mapped.
 *   Such a race never reaches past the process's own page tables, and never
 *   leaves a GPU a way to released page tables or memory (docs/driver-abi.md,
 *   "Races within one process").
 *
 * ---------------------------------------------------------------------------
 * Fences (what "done" means when the ioctl returns)
 * ---------------------------------------------------------------------------
 * - MAP_BATCH returns after its PTE writes and the TLB invalidates have
 *   completed (the pushes are waited for): GPU work launched after the ioctl
 *   returns sees the mappings.
 * - UNMAP_BATCH returns after the PTEs are cleared and the TLBs invalidated
 *   (waited). The CALLER must have waited for all GPU work that uses the
 *   addresses before calling it (a CUDA event or stream sync), as for stock
 *   UVM_UNMAP_EXTERNAL; otherwise that work faults. UVM keeps its own reference
 *   on the memory until the PTEs are gone, so the memory is never reused while
 *   a GPU can still reach it through these mappings.
 *
 * ---------------------------------------------------------------------------
 * Tracepoints (TRACE_SYSTEM "vattn"), part of this contract
 * ---------------------------------------------------------------------------
 * Two events, each emitted once per batched ioctl when the command finishes
 * (success or failure):
 *   vattn:vattn_map   vattn:vattn_unmap
 * Fields, in this order, identical for both:
 *   __u8  gpu_uuid[16];  the first listed GPU's UUID (all zero if the call
 *                        failed before the GPUs were read)
 *   __u64 page_size;     65536 (the granularity of the ABI)
 *   __u32 count;         entries in the batch as the caller passed them
 *   __u32 done;          entries applied: count on success, 0 on failure
 *   __u32 status;        NV_STATUS returned in the params (0 = NV_OK)
 *   __u32 pad;           keeps duration_ns 8-byte aligned
 *   __u64 duration_ns;   ktime from entry to the end of the command, waits included
 * Consumers read field offsets from tracefs (events/vattn/<event>/format),
 * never from this comment.
 */

#ifndef _UVM_VATTN_IOCTL_H
#define _UVM_VATTN_IOCTL_H

#if defined(__KERNEL__)
#include <linux/types.h>
#else
#include <stdint.h>
#endif

#define UVM_VATTN_ABI_VERSION           2u

#define UVM_VATTN_IOCTL_BASE            0x56410000u
#define UVM_VATTN_GET_INFO              (UVM_VATTN_IOCTL_BASE + 0x01u)
/* 0x02..0x06: ABI version 1, retired (see above). */
#define UVM_VATTN_MAP_BATCH             (UVM_VATTN_IOCTL_BASE + 0x07u)
#define UVM_VATTN_UNMAP_BATCH           (UVM_VATTN_IOCTL_BASE + 0x08u)
#define UVM_VATTN_IOCTL_FIRST           UVM_VATTN_GET_INFO
#define UVM_VATTN_IOCTL_LAST            UVM_VATTN_UNMAP_BATCH

/* Most entries one batched command takes (arrays are copied into the kernel). */
#define UVM_VATTN_MAX_BATCH             16384u
/* Most GPUs one batch lists: a batch reserves memory per entry and GPU. */
#define UVM_VATTN_MAX_GPUS              8u
/* The granularity of every address, length and offset: RM's 64 KiB big page. */
#define UVM_VATTN_PAGE_SIZE             0x00010000ull

/*
 * NV_STATUS values the vattn commands return (NVIDIA's numbers, from
 * common/inc/nvstatuscodes.h; the kernel build asserts they match). Other values
 * from UVM's and RM's internals (for example NV_ERR_INVALID_OBJECT_HANDLE for a
 * bad RM handle, or the module's global error state) pass through unchanged.
 */
#define UVM_VATTN_NV_OK                         0x00000000u
#define UVM_VATTN_NV_ERR_ILLEGAL_ACTION         0x00000016u /* file is not a UVM va_space file */
#define UVM_VATTN_NV_ERR_INVALID_ADDRESS        0x0000001Eu /* misaligned, or not inside one external range */
#define UVM_VATTN_NV_ERR_INVALID_ARGUMENT       0x0000001Fu /* nonzero flags/reserved, overlapping entries, GPU listed twice */
#define UVM_VATTN_NV_ERR_INVALID_DEVICE         0x00000026u /* UUID not registered (with a GPU VA space) here */
#define UVM_VATTN_NV_ERR_INVALID_LIMIT          0x0000002Eu /* count above UVM_VATTN_MAX_BATCH */
#define UVM_VATTN_NV_ERR_INVALID_OFFSET         0x00000037u /* offset misaligned or past the memory's end */
#define UVM_VATTN_NV_ERR_NO_MEMORY              0x00000051u /* out of kernel memory or page-table memory */
#define UVM_VATTN_NV_ERR_NOT_SUPPORTED          0x00000056u /* memory or GPU that the batched path does not map */
#define UVM_VATTN_NV_ERR_UVM_ADDRESS_IN_USE     0x00000068u /* MAP_BATCH: a listed GPU already maps part of an entry */

/* UVM_VATTN_GET_INFO: 16 bytes. */
typedef struct
{
    uint32_t abiVersion;         /* OUT: UVM_VATTN_ABI_VERSION                         */
    uint32_t maxBatch;           /* OUT: UVM_VATTN_MAX_BATCH                           */
    uint32_t maxGpus;            /* OUT: UVM_VATTN_MAX_GPUS                            */
    uint32_t rmStatus;           /* OUT: NV_STATUS                                     */
} UVM_VATTN_GET_INFO_PARAMS;

/* One MAP_BATCH entry: 32 bytes. Maps bytes [offset, offset + length) of the
 * RM memory hMemory (of the call's hClient) at [base, base + length). */
typedef struct
{
    uint64_t base;               /* IN: GPU virtual address inside an external range    */
    uint64_t length;             /* IN: bytes                                          */
    uint64_t offset;             /* IN: bytes into the memory                          */
    uint32_t hMemory;            /* IN: RM handle of video memory, client hClient       */
    uint32_t reserved;           /* IN: must be 0                                      */
} UVM_VATTN_MAP_ENTRY;

/* One UNMAP_BATCH entry: 16 bytes. Unmaps every mapping on the listed GPUs
 * inside [base, base + length); mappings that cross its ends are split first. */
typedef struct
{
    uint64_t base;               /* IN                                                  */
    uint64_t length;             /* IN                                                  */
} UVM_VATTN_UNMAP_ENTRY;

/* UVM_VATTN_MAP_BATCH: 40 bytes. */
typedef struct
{
    uint64_t entries;            /* IN:  user pointer to UVM_VATTN_MAP_ENTRY[count]      */
    uint64_t gpuUuids;           /* IN:  user pointer to uint8_t[gpuCount][16]           */
    uint32_t count;              /* IN                                                  */
    uint32_t gpuCount;           /* IN:  1..UVM_VATTN_MAX_GPUS                          */
    int32_t  rmCtrlFd;           /* IN:  the caller's RM control fd, as stock UVM takes it */
    uint32_t hClient;            /* IN:  the caller's RM client owning every hMemory     */
    uint32_t flags;              /* IN:  must be 0                                      */
    uint32_t errorIndex;         /* OUT: the failed entry, or count (see above)          */
    uint32_t rmStatus;           /* OUT: NV_STATUS                                      */
    uint32_t reserved;           /* IN:  must be 0                                      */
} UVM_VATTN_MAP_BATCH_PARAMS;

/* UVM_VATTN_UNMAP_BATCH: 40 bytes. */
typedef struct
{
    uint64_t entries;            /* IN:  user pointer to UVM_VATTN_UNMAP_ENTRY[count]    */
    uint64_t gpuUuids;           /* IN:  user pointer to uint8_t[gpuCount][16]           */
    uint32_t count;              /* IN                                                  */
    uint32_t gpuCount;           /* IN:  1..UVM_VATTN_MAX_GPUS                          */
    uint32_t flags;              /* IN:  must be 0                                      */
    uint32_t errorIndex;         /* OUT: the failed entry, or count (see above)          */
    uint32_t rmStatus;           /* OUT: NV_STATUS                                      */
    uint32_t reserved;           /* IN:  must be 0                                      */
} UVM_VATTN_UNMAP_BATCH_PARAMS;

#endif /* _UVM_VATTN_IOCTL_H */
