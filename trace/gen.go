package trace

// The eBPF objects are built with clang from Debian (scripts/deps-bpf.sh) and
// committed; run "go generate ./trace/..." after changing trace/bpf/*.c.

//go:generate go tool bpf2go -tags linux -target amd64 -type hist -type ioctl_key ioctl bpf/ioctl.c -- -O2 -g -Wall -Werror
//go:generate go tool bpf2go -tags linux -target amd64 -type hist -type op_key cuda bpf/cuda.c -- -O2 -g -Wall -Werror
//go:generate go tool bpf2go -tags linux -target amd64 tracepoint bpf/tracepoint.c -- -O2 -g -Wall -Werror
