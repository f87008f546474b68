// Package kernel carries the vattn nvidia-uvm patch (our C files and the per-version
// patch series under nvidia-uvm-patch/) inside the vattnctl binary, so install-driver
// can stage a patched tree on a machine that has no checkout of this repository.
package kernel

import "embed"

// Patch holds nvidia-uvm-patch/: our C sources and headers (copied into nvidia-uvm/)
// and series/<ver>/ (a "series" file naming the patches to apply with patch -p1).
//
//go:embed nvidia-uvm-patch/*.c nvidia-uvm-patch/*.h nvidia-uvm-patch/series
var Patch embed.FS
