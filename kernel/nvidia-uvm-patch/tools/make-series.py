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
files = ['nvidia-uvm/uvm.c', 'nvidia-uvm/uvm_va_space.h', 'nvidia-uvm/uvm_va_space.c',
         'nvidia-uvm/uvm_va_range.c', 'nvidia-uvm/nvidia-uvm-sources.Kbuild', 'nvidia-uvm/nvidia-uvm.Kbuild']
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
edit('nvidia-uvm/uvm_va_space.h',
     '    // Queue item for deferred f_ops->release() handling\n    nv_kthread_q_item_t deferred_release_q_item;\n};\n',
     '    // Queue item for deferred f_ops->release() handling\n    nv_kthread_q_item_t deferred_release_q_item;\n\n'
     '    // vattn: pages this file allocated and mapped through the vattn ioctls, NULL\n'
     '    // until the first one (uvm_vattn.c).\n'
     '    struct uvm_vattn_state *vattn;\n};\n')
edit('nvidia-uvm/uvm_va_space.c', '#include "nv-kthread-q.h"\n', '#include "nv-kthread-q.h"\n#include "uvm_vattn_hooks.h"\n')
edit('nvidia-uvm/uvm_va_space.c',
     '    LIST_HEAD(deferred_free_list);\n\n    // Remove the VA space from the global list before we start tearing things\n',
     '    LIST_HEAD(deferred_free_list);\n\n'
     '    // vattn: unmap and free what this file holds through the vattn ioctls while\n'
     '    // every range, GPU VA space and GPU is still in place.\n'
     '    uvm_vattn_va_space_destroy(va_space);\n\n'
     '    // Remove the VA space from the global list before we start tearing things\n')
# --- the fence (uvm_vattn.c "Ownership"; docs/driver-abi.md) ---------------------------
# (a) no va_block in a range vattn owns: every managed block is created here.
rng = 'managed_range' if int(branch) >= 580 else 'va_range'
rng_vs = 'managed_range->va_range.va_space' if int(branch) >= 580 else 'va_range->va_space'
edit('nvidia-uvm/uvm_va_range.c', '#include "nv_uvm_interface.h"\n',
     '#include "nv_uvm_interface.h"\n#include "uvm_vattn_hooks.h"\n')
edit('nvidia-uvm/uvm_va_range.c',
     f'    block = uvm_va_range_block({rng}, index);\n    if (!block) {{\n',
     f'    block = uvm_va_range_block({rng}, index);\n    if (!block) {{\n'
     '        // vattn: no va_block where vattn writes the GPU PTEs (fault = fatal)\n'
     f'        if (uvm_vattn_block_create_denied({rng_vs}, block_calc_start({rng}, index), block_calc_end({rng}, index)))\n'
     '            return NV_ERR_INVALID_ADDRESS;\n\n')
# (b) range destroy (munmap, cudaFree, va_space teardown): our PTEs go first.
edit('nvidia-uvm/uvm_va_range.c',
     '    if (!RB_EMPTY_NODE(&va_range->node.rb_node))\n        uvm_range_tree_remove(&va_range->va_space->va_range_tree, &va_range->node);\n',
     '    // vattn: unmap vattn\'s pages in a managed range before it goes\n'
     '    uvm_vattn_va_range_destroy(va_range);\n\n'
     '    if (!RB_EMPTY_NODE(&va_range->node.rb_node))\n        uvm_range_tree_remove(&va_range->va_space->va_range_tree, &va_range->node);\n')
# (c) GPU VA space removal (unregister GPU VA space or GPU): before its page tables go.
edit('nvidia-uvm/uvm_va_space.c',
     '    uvm_assert_rwsem_locked_write(&va_space->lock);\n\n    uvm_gpu_va_space_detach_all_user_channels(gpu_va_space, deferred_free_list);\n',
     '    uvm_assert_rwsem_locked_write(&va_space->lock);\n\n'
     '    // vattn: unmap vattn\'s pages on this GPU before its page tables go\n'
     '    uvm_vattn_gpu_va_space_remove(gpu_va_space);\n\n'
     '    uvm_gpu_va_space_detach_all_user_channels(gpu_va_space, deferred_free_list);\n')

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
     f'vattn hooks for nvidia-uvm {ver}: route the vattn ioctl range to uvm_vattn.c, give the\n'
     'va_space a pointer to its vattn state, release that state first in uvm_va_space_destroy(),\n'
     'and build uvm_vattn.c and uvm_vattn_kernel.c (copied into nvidia-uvm/ before applying).\n'
     'The fence (docs/driver-abi.md): uvm_va_range_block_create() creates no va_block in a\n'
     'range vattn owns; uvm_va_range_destroy() and remove_gpu_va_space() let vattn unmap\n'
     'its pages first. Each hook is one pointer test for a va_space that never used vattn:\n'
     'processes that never issue a vattn ioctl run exactly the stock code paths.\n')
series.append('0001-nvidia-uvm-vattn-hooks.patch')
open(f'{outdir}/series', 'w').write('\n'.join(series) + '\n')
