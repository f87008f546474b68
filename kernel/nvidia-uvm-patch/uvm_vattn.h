/*
 * uvm_vattn.h - limits and pure helpers of uvm_vattn.c, shared with its userspace
 * tests. Include after the environment header and uvm_vattn_ioctl.h.
 *
 * SPDX-License-Identifier: MIT
 */

#ifndef _UVM_VATTN_H
#define _UVM_VATTN_H

/* Most handles one file may hold at once: 2^21 pages is 128 GiB of 64K pages. */
#define UVM_VATTN_MAX_HANDLES   (1u << 21)

/* GPUs one file can hold pages on at once (UVM registers at most 32 per va_space;
 * a re-registered GPU can briefly need a second slot). */
#define UVM_VATTN_STATE_GPUS    64

/* Owned extents (managed ranges MAP took over) one file may hold. */
#define UVM_VATTN_MAX_OWNED     4096

/* Handle layout (see uvm_vattn_handle_make). */
#define UVM_VATTN_SLOT_MASK     ((1ull << 22) - 1)
#define UVM_VATTN_GEN_MASK      ((1u << 20) - 1)
#define UVM_VATTN_TAG_MASK      ((1u << 22) - 1)

bool uvm_vattn_page_size_valid(uint64_t size);
NV_STATUS uvm_vattn_check_address(uint64_t address, uint64_t size);
bool uvm_vattn_mul_ok(uint64_t a, uint64_t b, uint64_t *product);
uint64_t uvm_vattn_handle_make(uint32_t tag, uint32_t slot, uint32_t gen);
bool uvm_vattn_handle_split(uint64_t handle, uint32_t tag, uint32_t *slot, uint32_t *gen);

#endif /* _UVM_VATTN_H */
