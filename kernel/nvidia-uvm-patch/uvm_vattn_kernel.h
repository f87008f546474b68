/*
 * uvm_vattn_kernel.h - the kernel environment of uvm_vattn.c (see uvm_vattn_os.h).
 * Only types and a few primitives; the operations are in uvm_vattn_kernel.c.
 *
 * SPDX-License-Identifier: MIT
 */

#ifndef _UVM_VATTN_KERNEL_H
#define _UVM_VATTN_KERNEL_H

#include <linux/types.h>
#include <linux/errno.h>
#include <linux/string.h>
#include <linux/limits.h>
#include <linux/compiler.h>
#include <linux/atomic.h>
#include <linux/mutex.h>

#include "nvstatus.h"

#ifndef UINT32_MAX
#define UINT32_MAX U32_MAX
#endif
#ifndef UINT64_MAX
#define UINT64_MAX U64_MAX
#endif

typedef struct uvm_va_space_struct vattn_os_va_space_t;
typedef struct uvm_gpu_struct vattn_os_gpu_t;
typedef struct vattn_kchunk vattn_os_chunk_t;   /* uvm_vattn_kernel.c */
typedef struct mutex vattn_os_mutex_t;
typedef struct vattn_owner vattn_os_owner_t;      /* uvm_vattn_kernel.c */

#define UVM_VATTN_READ_ONCE(x)          READ_ONCE(x)
#define UVM_VATTN_CMPXCHG(slot, val)    (cmpxchg((slot), NULL, (val)) == NULL)

#endif /* _UVM_VATTN_KERNEL_H */
