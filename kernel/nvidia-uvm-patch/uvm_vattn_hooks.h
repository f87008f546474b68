/*
 * uvm_vattn_hooks.h - the one call NVIDIA's files make into vattn (added by the
 * per-branch patch series): routing our command numbers in uvm.c. There is no
 * other hook: the mappings vattn makes are UVM's own external-mapping records,
 * which UVM's own teardown handles.
 *
 * SPDX-License-Identifier: MIT
 */

#ifndef _UVM_VATTN_HOOKS_H
#define _UVM_VATTN_HOOKS_H

#include "uvm_vattn_ioctl.h"

struct file;

#define UVM_VATTN_IS_CMD(cmd) ((cmd) >= UVM_VATTN_IOCTL_FIRST && (cmd) <= UVM_VATTN_IOCTL_LAST)

/* Runs a vattn command on a /dev/nvidia-uvm file; called with UVM's pm lock held
 * for read, as every UVM ioctl. */
long uvm_vattn_ioctl(struct file *filp, unsigned int cmd, unsigned long arg);

#endif /* _UVM_VATTN_HOOKS_H */
