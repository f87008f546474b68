/* common.h: the few kernel types and BPF constants the tracer's programs
 * need, written out by hand instead of a generated vmlinux.h. Kernel structs
 * carry preserve_access_index, so field offsets are relocated (CO-RE) against
 * the running kernel's BTF at load time; only the members we read are listed.
 */
#ifndef VATTN_TRACE_COMMON_H
#define VATTN_TRACE_COMMON_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed char __s8;
typedef short __s16;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef __u8 u8;
typedef __u32 u32;
typedef __u64 u64;

/* Values from include/uapi/linux/bpf.h. */
enum {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_RINGBUF = 27,
};
enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
};

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct bpf_raw_tracepoint_args {
	__u64 args[0];
};

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)
struct pt_regs {
	unsigned long di;
	unsigned long si;
	unsigned long dx;
	unsigned long ax;
	unsigned long orig_ax;
};
struct inode {
	unsigned short i_mode;
	__u32 i_rdev;
};
struct file {
	struct inode *f_inode;
};
struct fdtable {
	unsigned int max_fds;
	struct file **fd;
};
struct files_struct {
	struct fdtable *fdt;
};
struct task_struct {
	struct files_struct *files;
};
#pragma clang attribute pop

/* Histograms: log2 slots of a latency in the unit the tracer chose
 * (unit_ns nanoseconds), as bcc's funclatency keeps them. */
#define HIST_SLOTS 64

struct hist {
	__u64 slots[HIST_SLOTS];
	__u64 count;
	__u64 sum_ns;
	__u64 errors;
};

static __always_inline __u32 log2_u64(__u64 v)
{
	__u32 r = 0;
	/* Unrolled binary search: the verifier needs bounded work. */
	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) { r += 1; }
	return r;
}

/* hist_add records one latency into the histogram of key, creating it on
 * first use; atomic adds keep counts exact when CPUs race. */
static __always_inline void hist_add(void *map, const void *key, __u64 delta_ns, __u64 unit_ns, int failed)
{
	struct hist *h = bpf_map_lookup_elem(map, key);
	if (!h) {
		static const struct hist zero;
		bpf_map_update_elem(map, key, &zero, BPF_NOEXIST);
		h = bpf_map_lookup_elem(map, key);
		if (!h)
			return;
	}
	__u64 v = unit_ns > 1 ? delta_ns / unit_ns : delta_ns;
	__u32 slot = v ? log2_u64(v) : 0;
	if (slot >= HIST_SLOTS)
		slot = HIST_SLOTS - 1;
	__sync_fetch_and_add(&h->slots[slot], 1);
	__sync_fetch_and_add(&h->count, 1);
	__sync_fetch_and_add(&h->sum_ns, delta_ns);
	if (failed)
		__sync_fetch_and_add(&h->errors, 1);
}

#endif
