/*
 * uvm_vattn_trace.h - the tracepoints of the contract in uvm_vattn_ioctl.h:
 * vattn:vattn_map and vattn:vattn_unmap, one event per batched command, both with the
 * same fields in the same order.
 *
 * SPDX-License-Identifier: MIT
 */

#undef TRACE_SYSTEM
#define TRACE_SYSTEM vattn

#if !defined(_UVM_VATTN_TRACE_H) || defined(TRACE_HEADER_MULTI_READ)
#define _UVM_VATTN_TRACE_H

#include <linux/tracepoint.h>

DECLARE_EVENT_CLASS(vattn_batch,
    TP_PROTO(const u8 *gpu_uuid, u64 page_size, u32 count, u32 done, u32 status, u64 duration_ns),
    TP_ARGS(gpu_uuid, page_size, count, done, status, duration_ns),
    TP_STRUCT__entry(
        __array(__u8, gpu_uuid, 16)
        __field(__u64, page_size)
        __field(__u32, count)
        __field(__u32, done)
        __field(__u32, status)
        __field(__u32, pad)
        __field(__u64, duration_ns)
    ),
    TP_fast_assign(
        memcpy(__entry->gpu_uuid, gpu_uuid, 16);
        __entry->page_size = page_size;
        __entry->count = count;
        __entry->done = done;
        __entry->status = status;
        __entry->pad = 0;
        __entry->duration_ns = duration_ns;
    ),
    TP_printk("gpu=%16phN page_size=%llu count=%u done=%u status=0x%x duration_ns=%llu",
              __entry->gpu_uuid, __entry->page_size, __entry->count, __entry->done,
              __entry->status, __entry->duration_ns)
);

#define VATTN_DEFINE_BATCH_EVENT(name)                                                          \
    DEFINE_EVENT(vattn_batch, name,                                                             \
        TP_PROTO(const u8 *gpu_uuid, u64 page_size, u32 count, u32 done, u32 status, u64 duration_ns), \
        TP_ARGS(gpu_uuid, page_size, count, done, status, duration_ns))

VATTN_DEFINE_BATCH_EVENT(vattn_map);
VATTN_DEFINE_BATCH_EVENT(vattn_unmap);

#endif /* _UVM_VATTN_TRACE_H */

/* Outside the guard, as define_trace.h requires. nvidia-uvm's Kbuild already puts
 * $(src)/nvidia-uvm on the include path. */
#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE uvm_vattn_trace
#include <trace/define_trace.h>
