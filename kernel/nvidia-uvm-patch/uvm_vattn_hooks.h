/*
 * uvm_vattn_hooks.h - the calls NVIDIA's files make into vattn (added by the
 * per-branch patch series): ioctl routing in uvm.c, the release hook at the start
 * of uvm_va_space_destroy(), and the three hooks of the fence (block creation,
 * range destroy, GPU VA space removal).
 *
 * SPDX-License-Identifier: MIT
 */

#ifndef _UVM_VATTN_HOOKS_H
#define _UVM_VATTN_HOOKS_H

#include "uvm_vattn_ioctl.h"

struct file;
struct uvm_va_space_struct;
struct uvm_va_range_struct;
struct uvm_gpu_va_space_struct;
struct uvm_vattn_state;

#define UVM_VATTN_IS_CMD(cmd) ((cmd) >= UVM_VATTN_IOCTL_FIRST && (cmd) <= UVM_VATTN_IOCTL_LAST)

/* Runs a vattn command on a /dev/nvidia-uvm file; called with UVM's pm lock held
 * for read, as every UVM ioctl. */
long uvm_vattn_ioctl(struct file *filp, unsigned int cmd, unsigned long arg);

/* Unmaps and frees everything vattn holds for the va_space; a no-op for processes
 * that never used vattn. Called first thing in uvm_va_space_destroy(). */
void uvm_vattn_va_space_destroy(struct uvm_va_space_struct *va_space);

/*
 * The fence (docs/driver-abi.md): each is a no-op, one pointer test, for a
 * va_space that never used vattn.
 *
 * uvm_va_range_block_create(), before creating a block: true when the block
 * [start, end] would overlap a managed range whose GPU PTEs vattn owns; the caller
 * then fails with NV_ERR_INVALID_ADDRESS, as for an address outside any range.
 * Called with the va_space lock held (read or write); takes no lock.
 */
bool uvm_vattn_block_create_denied(struct uvm_va_space_struct *va_space, __u64 start, __u64 end);

/* uvm_va_range_destroy(), first: unmaps vattn's pages in a managed range that is
 * in the va_space's range tree, before UVM frees anything under it. Called with the
 * va_space lock held for write. */
void uvm_vattn_va_range_destroy(struct uvm_va_range_struct *va_range);

/* remove_gpu_va_space() in uvm_va_space.c, before UVM unmaps and frees that GPU's
 * page tables: unmaps vattn's pages on that GPU. Called with the va_space lock
 * held for write. */
void uvm_vattn_gpu_va_space_remove(struct uvm_gpu_va_space_struct *gpu_va_space);

#endif /* _UVM_VATTN_HOOKS_H */
