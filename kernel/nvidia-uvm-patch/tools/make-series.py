#!/usr/bin/env python3
# make-series.py SRC VERSION OUTDIR: regenerates a branch's patch series from a pristine
# kernel-open tree (as scripts/kernel-deps.sh unpacks it). Each edit names the exact
# text it anchors on and fails if that text is not found exactly once, so a new
# branch either regenerates cleanly or says which hook needs porting.
# Work files go to /tmp/mkp/VERSION.
import os, shutil, subprocess, sys
src, ver, outdir = sys.argv[1], sys.argv[2], sys.argv[3]
branch = ver.split('.')[0]
work = '/tmp/mkp/' + ver
shutil.rmtree(work, ignore_errors=True)
files = ['nvidia-uvm/uvm.c', 'nvidia-uvm/nvidia-uvm-sources.Kbuild', 'nvidia-uvm/nvidia-uvm.Kbuild']
compat = ['conftest.sh', 'nvidia/nvidia.Kbuild', 'nvidia/nv-pci.c']
for side in 'ab':
    for f in files + compat:
        os.makedirs(os.path.dirname(f'{work}/{side}/{f}') or '.', exist_ok=True)
        shutil.copy(f'{src}/{f}', f'{work}/{side}/{f}')

def edit(path, old, new, count=1):
    p = f'{work}/b/{path}'
    s = open(p).read()
    assert s.count(old) == count, (path, old, s.count(old))
    s = s.replace(old, new)
    open(p, 'w').write(s)

def diff(names, out, header):
    d = subprocess.run(['diff', '-u', '--label', 'x', '--label', 'y', '/dev/null', '/dev/null'], capture_output=True)
    body = ''
    for f in names:
        r = subprocess.run(['diff', '-u', '--label', f'a/{f}', '--label', f'b/{f}', f'{work}/a/{f}', f'{work}/b/{f}'],
                           capture_output=True, text=True)
        assert r.returncode == 1, (f, r.returncode, r.stderr)
        body += f'diff -u a/{f} b/{f}\n' + r.stdout
    open(out, 'w').write(header + '\n' + body)

# --- hooks -----------------------------------------------------------------------------
edit('nvidia-uvm/uvm.c', '#include "uvm_kvmalloc.h"\n', '#include "uvm_kvmalloc.h"\n#include "uvm_vattn_hooks.h"\n')
edit('nvidia-uvm/uvm.c', '    // Try the test ioctls if none of the above matched\n',
     '    // vattn: small-page commands, in their own numeric range (uvm_vattn_ioctl.h)\n'
     '    if (UVM_VATTN_IS_CMD(cmd))\n'
     '        return uvm_vattn_ioctl(filp, cmd, arg);\n\n'
     '    // Try the test ioctls if none of the above matched\n')
# Nothing else: the batched commands' mappings are UVM's own external-mapping records,
# so UVM's own teardown covers them; no hook in va_space, range or block code.
edit('nvidia-uvm/nvidia-uvm-sources.Kbuild', 'NVIDIA_UVM_SOURCES += nvidia-uvm/uvm.c\n',
     'NVIDIA_UVM_SOURCES += nvidia-uvm/uvm.c\nNVIDIA_UVM_SOURCES += nvidia-uvm/uvm_vattn.c\nNVIDIA_UVM_SOURCES += nvidia-uvm/uvm_vattn_kernel.c\n')
edit('nvidia-uvm/nvidia-uvm.Kbuild', '$(call ASSIGN_PER_OBJ_CFLAGS, $(NVIDIA_UVM_OBJECTS), $(NVIDIA_UVM_CFLAGS))\n',
     '$(call ASSIGN_PER_OBJ_CFLAGS, $(NVIDIA_UVM_OBJECTS), $(NVIDIA_UVM_CFLAGS))\n'
     f'$(call ASSIGN_PER_OBJ_CFLAGS, nvidia-uvm/uvm_vattn_kernel.o, -DUVM_VATTN_BRANCH={branch})\n')

os.makedirs(outdir, exist_ok=True)
series = []
if branch in ('535', '550'):  # current bookworm kernels backported the argument; 580 handles it
    edit('nvidia/nv-pci.c', '    r = pci_resize_resource(pci_dev, NV_GPU_BAR1, requested_size);\n',
         '#if defined(NV_PCI_RESIZE_RESOURCE_HAS_EXCLUDE_BARS_ARG)\n'
         '    r = pci_resize_resource(pci_dev, NV_GPU_BAR1, requested_size, 0);\n'
         '#else\n'
         '    r = pci_resize_resource(pci_dev, NV_GPU_BAR1, requested_size);\n'
         '#endif\n')
    edit('nvidia/nvidia.Kbuild', 'NV_CONFTEST_TYPE_COMPILE_TESTS += pci_dev_has_ats_enabled\n',
         'NV_CONFTEST_TYPE_COMPILE_TESTS += pci_dev_has_ats_enabled\n'
         'NV_CONFTEST_TYPE_COMPILE_TESTS += pci_resize_resource_has_exclude_bars_arg\n')
    edit('conftest.sh', '        pci_dev_has_ats_enabled)\n',
         '        pci_resize_resource_has_exclude_bars_arg)\n'
         '            #\n'
         '            # Determine if pci_resize_resource() takes a fourth argument,\n'
         '            # exclude_bars (vattn build compatibility: Linux 6.1.y and 6.12.y\n'
         '            # stable kernels backported it). A positive compile test: the\n'
         '            # four-argument call compiles only against the new prototype.\n'
         '            #\n'
         '            CODE="\n'
         '            #include <linux/pci.h>\n'
         '            int conftest_pci_resize_resource_has_exclude_bars_arg(struct pci_dev *dev) {\n'
         '                return pci_resize_resource(dev, 0, 0, 0);\n'
         '            }"\n\n'
         '            compile_check_conftest "$CODE" "NV_PCI_RESIZE_RESOURCE_HAS_EXCLUDE_BARS_ARG" "" "types"\n'
         '        ;;\n\n'
         '        pci_dev_has_ats_enabled)\n')
    diff(['conftest.sh', 'nvidia/nvidia.Kbuild', 'nvidia/nv-pci.c'], f'{outdir}/0000-build-compat-pci-resize-resource.patch',
         f'vattn build compatibility (not part of vattn): NVIDIA {ver} nvidia/nv-pci.c calls\n'
         'pci_resize_resource() with three arguments; current bookworm kernels (6.1.y) and 6.12.y\n'
         'backported a fourth, exclude_bars. A conftest detects it and nv-pci.c passes 0 then.\n'
         'Needed only so nvidia.ko, whose symbols nvidia-uvm.ko links against, builds.\n')
    series.append('0000-build-compat-pci-resize-resource.patch')
diff(files, f'{outdir}/0001-nvidia-uvm-vattn-hooks.patch',
     f'vattn for nvidia-uvm {ver}: route the vattn ioctl range (uvm_vattn_ioctl.h) to\n'
     'uvm_vattn.c and build uvm_vattn.c and uvm_vattn_kernel.c (copied into nvidia-uvm/ before\n'
     'applying). Nothing else: the batched map and unmap write UVM\'s own external-mapping\n'
     'records into the caller\'s external ranges, which UVM\'s own teardown covers (range\n'
     'free, process exit, GPU removal). Processes that never issue a vattn ioctl run exactly\n'
     'the stock code paths.\n')
series.append('0001-nvidia-uvm-vattn-hooks.patch')
open(f'{outdir}/series', 'w').write('\n'.join(series) + '\n')
