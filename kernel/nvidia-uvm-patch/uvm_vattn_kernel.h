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

#include "nvstatus.h"

#ifndef UINT32_MAX
#define UINT32_MAX U32_MAX
#endif
#ifndef UINT64_MAX
#define UINT64_MAX U64_MAX
#endif

typedef struct uvm_va_space_struct vattn_os_va_space_t;
typedef struct uvm_gpu_struct vattn_os_gpu_t;
typedef struct uvm_va_range_struct vattn_os_range_t;
typedef struct vattn_kmem vattn_os_mem_t;       /* uvm_vattn_kernel.c */
typedef struct vattn_kmap vattn_os_map_t;       /* uvm_vattn_kernel.c */
typedef struct vattn_kwriter vattn_os_writer_t; /* uvm_vattn_kernel.c */

#endif /* _UVM_VATTN_KERNEL_H */
