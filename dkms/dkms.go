// Package dkms holds the DKMS packaging of the vattn-patched nvidia-uvm: the dkms.conf
// template, the PRE_INSTALL version check and the modprobe.d redirect that
// vattnctl install-driver writes.
package dkms

import (
	_ "embed"
	"strings"
)

// Names of the package and the files it installs.
const (
	PackageName   = "vattn-uvm"
	ModuleFile    = "nvidia-uvm-vattn" // DEST_MODULE_NAME: never NVIDIA's nvidia-uvm.ko
	Revision      = 1                  // the N in <nvidia-version>-vattn<N>
	PreInstall    = "vattn-pre-install.sh"
	ModprobeConf  = "/etc/modprobe.d/vattn-uvm.conf"
	InstallMarker = "--ignore-install " + ModuleFile
)

var (
	//go:embed dkms.conf.in
	confTemplate string
	//go:embed vattn-pre-install.sh
	preInstall []byte
	//go:embed modprobe.conf
	modprobeConf []byte
)

// Conf returns dkms.conf for package version pkgVersion built from NVIDIA nvVersion.
func Conf(pkgVersion, nvVersion string) []byte {
	r := strings.NewReplacer("@PACKAGE_VERSION@", pkgVersion, "@NV_VERSION@", nvVersion)
	return []byte(r.Replace(confTemplate))
}

// PreInstallScript returns the PRE_INSTALL script.
func PreInstallScript() []byte { return append([]byte(nil), preInstall...) }

// ModprobeRedirect returns the modprobe.d file selecting our module.
func ModprobeRedirect() []byte { return append([]byte(nil), modprobeConf...) }
