/*
 * uvm_vattn_hooks.h - the two calls NVIDIA's files make into vattn (added by the
 * per-branch patch series): ioctl routing in uvm.c and the release hook at the start
 * of uvm_va_space_destroy().
 *
 * SPDX-License-Identifier: MIT
 */

#ifndef _UVM_VATTN_HOOKS_H
#define _UVM_VATTN_HOOKS_H

#include "uvm_vattn_ioctl.h"

struct file;
struct uvm_va_space_struct;
struct uvm_vattn_state;

#define UVM_VATTN_IS_CMD(cmd) ((cmd) >= UVM_VATTN_IOCTL_FIRST && (cmd) <= UVM_VATTN_IOCTL_LAST)

/* Runs a vattn command on a /dev/nvidia-uvm file; called with UVM's pm lock held
 * for read, as every UVM ioctl. */
long uvm_vattn_ioctl(struct file *filp, unsigned int cmd, unsigned long arg);

/* Unmaps and frees everything vattn holds for the va_space; a no-op for processes
 * that never used vattn. Called first thing in uvm_va_space_destroy(). */
void uvm_vattn_va_space_destroy(struct uvm_va_space_struct *va_space);

#endif /* _UVM_VATTN_HOOKS_H */
