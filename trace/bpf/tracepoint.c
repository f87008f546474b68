//go:build ignore

/* tracepoint.c: copies each record of the attached tracepoints to a ring
 * buffer, raw. User space decodes the fields by the offsets the event's tracefs
 * format file lists, so no layout is compiled in here.
 */
#include "common.h"

char __license[] SEC("license") = "Dual MIT/GPL";

#define MAX_RECORD 256

volatile const __u32 target_tgid; /* 0: every process */

struct event {
	__u64 ts;
	__u32 tgid;
	__u32 tid;
	__u32 size;
	__u32 event_id; /* tracefs ID of the event, from the attach cookie */
	__u8 data[MAX_RECORD];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} records SEC(".maps");

/* Record size of each attached event, keyed by the event's tracefs ID, which
 * the loader passes as the attach cookie. The record's own common_type cannot
 * say: the kernel overwrites the first 8 bytes (the common fields) with a
 * pt_regs pointer before it runs BPF programs on a tracepoint. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} record_sizes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

SEC("tracepoint")
int copy_record(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (target_tgid && (__u32)(id >> 32) != target_tgid)
		return 0;
	__u32 key = (__u32)bpf_get_attach_cookie(ctx);
	__u32 *size = bpf_map_lookup_elem(&record_sizes, &key);
	if (!size)
		return 0;
	struct event *e = bpf_ringbuf_reserve(&records, sizeof(*e), 0);
	if (!e) {
		__u32 zero = 0;
		__u64 *n = bpf_map_lookup_elem(&lost, &zero);
		if (n)
			__sync_fetch_and_add(n, 1);
		return 0;
	}
	__u32 sz = *size;
	if (sz > MAX_RECORD)
		sz = MAX_RECORD;
	e->ts = bpf_ktime_get_ns();
	e->tgid = id >> 32;
	e->tid = (__u32)id;
	e->size = sz;
	e->event_id = key;
	if (bpf_probe_read_kernel(e->data, sz, ctx)) {
		bpf_ringbuf_discard(e, 0);
		return 0;
	}
	bpf_ringbuf_submit(e, 0);
	return 0;
}
