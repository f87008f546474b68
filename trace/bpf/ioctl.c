//go:build ignore

/* ioctl.c: latency of ioctl(2) calls whose file descriptor refers to one
 * character device, split by ioctl command. The device is resolved in the
 * kernel at syscall entry from the calling task's file table, so a file
 * descriptor reused between a /proc snapshot and the call cannot mislead it.
 */
#include "common.h"

char __license[] SEC("license") = "Dual MIT/GPL";

#define NR_IOCTL_X86_64 16
#define S_IFMT 00170000
#define S_IFCHR 0020000

/* Set by the loader before the programs are loaded. */
volatile const __u32 target_dev;  /* kernel dev_t encoding: major<<20 | minor */
volatile const __u32 target_tgid; /* 0: every process */
volatile const __u64 unit_ns = 1000;

struct start {
	__u64 ts;
	__u32 cmd;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32); /* tid */
	__type(value, struct start);
} ioctl_start SEC(".maps");

struct ioctl_key {
	__u32 cmd;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct ioctl_key);
	__type(value, struct hist);
} ioctl_hists SEC(".maps");

static __always_inline int fd_is_target(int fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd < 0)
		return 0;
	unsigned int max = BPF_CORE_READ(fdt, max_fds);
	if ((unsigned int)fd >= max)
		return 0;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = 0;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return 0;
	struct inode *inode = BPF_CORE_READ(f, f_inode);
	if (!inode)
		return 0;
	if ((BPF_CORE_READ(inode, i_mode) & S_IFMT) != S_IFCHR)
		return 0;
	return BPF_CORE_READ(inode, i_rdev) == target_dev;
}

SEC("raw_tracepoint/sys_enter")
int ioctl_enter(struct bpf_raw_tracepoint_args *ctx)
{
	if (ctx->args[1] != NR_IOCTL_X86_64)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	if (target_tgid && (__u32)(id >> 32) != target_tgid)
		return 0;
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	int fd = (int)BPF_CORE_READ(regs, di);
	if (!fd_is_target(fd))
		return 0;
	struct start s = {
		.ts = bpf_ktime_get_ns(),
		.cmd = (__u32)BPF_CORE_READ(regs, si),
	};
	__u32 tid = (__u32)id;
	bpf_map_update_elem(&ioctl_start, &tid, &s, BPF_ANY);
	return 0;
}

SEC("raw_tracepoint/sys_exit")
int ioctl_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	if (BPF_CORE_READ(regs, orig_ax) != NR_IOCTL_X86_64)
		return 0;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct start *s = bpf_map_lookup_elem(&ioctl_start, &tid);
	if (!s)
		return 0;
	__u64 delta = bpf_ktime_get_ns() - s->ts;
	struct ioctl_key key = {.cmd = s->cmd};
	bpf_map_delete_elem(&ioctl_start, &tid);
	long ret = (long)ctx->args[1];
	hist_add(&ioctl_hists, &key, delta, unit_ns, ret < 0);
	return 0;
}
