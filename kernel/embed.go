// Package kernel carries the vattn nvidia-uvm patch (our C files and the per-version
// patch series under nvidia-uvm-patch/) inside the vattnctl binary, so install-driver
// can stage a patched tree on a machine that has no checkout of this repository.
package kernel

import "embed"

// Patch holds nvidia-uvm-patch/: our C sources and headers (copied into nvidia-uvm/)
// and series/<ver>/ for each proven NVIDIA version (a "series" file naming the -p1
// patches to apply in order; package driver applies them with no fuzz).
//
//go:embed nvidia-uvm-patch/*.c nvidia-uvm-patch/*.h nvidia-uvm-patch/series
var Patch embed.FS
