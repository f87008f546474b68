// Package kernel holds the checks of the patched nvidia-uvm that run without a GPU:
// shim_test.go compiles the module's own uvm_vattn.c in userspace against a model of
// UVM (tests/kernel/shim) and runs its directed and randomized tests under
// AddressSanitizer and UndefinedBehaviorSanitizer. The kernel builds themselves
// (patch series, both driver branches, sparse) are driven by scripts/kernel-check.sh.
package kernel
