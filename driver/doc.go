// Package driver installs, removes and reports the vattn-patched nvidia-uvm kernel module.
// It detects the NVIDIA driver and kernel from /proc, /sys and /lib/modules, finds the
// exact-version NVIDIA source, stages it with the patch series for that version, and
// drives DKMS through a Plan whose every step can be undone, so a failure anywhere
// returns the machine to the state recorded before the first change. vattnctl's
// install-driver, uninstall-driver and status commands are thin wrappers around it.
package driver
