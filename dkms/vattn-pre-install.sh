#!/bin/sh
# vattn-pre-install.sh KVER NV_VERSION: DKMS's PRE_INSTALL for vattn-uvm. nvidia-uvm binds
# to nvidia.ko's internal interface with no runtime version check, so refuse to install a
# build whose NVIDIA version differs from the nvidia.ko installed for that kernel.
set -u
kver=$1
want=$2
have=$(modinfo -k "$kver" -F version nvidia 2>/dev/null | head -n1)
if [ -z "$have" ]; then
    echo "vattn-uvm: no nvidia.ko is installed for kernel $kver; install NVIDIA driver $want for it first" >&2
    exit 1
fi
if [ "$have" != "$want" ]; then
    echo "vattn-uvm: nvidia.ko for kernel $kver is version $have, this vattn-uvm build is for $want; refusing to install" >&2
    exit 1
fi
echo "vattn-uvm: nvidia.ko for kernel $kver is $have: ok"
