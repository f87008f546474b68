//go:build ignore

/* cuda.c: latency of the CUDA driver's virtual memory calls (cuMemCreate,
 * cuMemMap, ...) through uprobes on libcuda. One entry and one return program
 * serve every function; the attach cookie says which operation fired.
 */
#include "common.h"

char __license[] SEC("license") = "Dual MIT/GPL";

volatile const __u32 target_tgid; /* 0: every process */
volatile const __u64 unit_ns = 1000;

struct start {
	__u64 ts;
	__u64 op;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32); /* tid */
	__type(value, struct start);
} call_start SEC(".maps");

struct op_key {
	__u32 op;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct op_key);
	__type(value, struct hist);
} call_hists SEC(".maps");

SEC("uprobe")
int call_enter(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (target_tgid && (__u32)(id >> 32) != target_tgid)
		return 0;
	struct start s = {.ts = bpf_ktime_get_ns(), .op = bpf_get_attach_cookie(ctx)};
	__u32 tid = (__u32)id;
	bpf_map_update_elem(&call_start, &tid, &s, BPF_ANY);
	return 0;
}

SEC("uretprobe")
int call_return(struct pt_regs *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct start *s = bpf_map_lookup_elem(&call_start, &tid);
	if (!s)
		return 0;
	__u64 delta = bpf_ktime_get_ns() - s->ts;
	struct op_key key = {.op = (__u32)s->op};
	bpf_map_delete_elem(&call_start, &tid);
	/* CUresult is an int in rax; non-zero is a failed call. */
	__u32 rc = (__u32)BPF_CORE_READ(ctx, ax);
	hist_add(&call_hists, &key, delta, unit_ns, rc != 0);
	return 0;
}
