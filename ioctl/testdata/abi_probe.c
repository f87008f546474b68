/* abi_probe prints what a C compiler makes of uvm_vattn_ioctl.h, for TestABIMatchesHeader:
 *   S <struct> <size>
 *   F <struct> <field> <offset> <size>
 *   C <constant> <value>
 */
#include <stddef.h>
#include <stdio.h>
#include "uvm_vattn_ioctl.h"

#define S(t) printf("S %s %zu\n", #t, sizeof(t))
#define F(t, f) printf("F %s %s %zu %zu\n", #t, #f, offsetof(t, f), sizeof(((t *)0)->f))
#define C(c) printf("C %s %llu\n", #c, (unsigned long long)(c))

int main(void)
{
    S(UVM_VATTN_GET_INFO_PARAMS);
    F(UVM_VATTN_GET_INFO_PARAMS, abiVersion);
    F(UVM_VATTN_GET_INFO_PARAMS, maxBatch);
    F(UVM_VATTN_GET_INFO_PARAMS, maxGpus);
    F(UVM_VATTN_GET_INFO_PARAMS, rmStatus);

    S(UVM_VATTN_MAP_ENTRY);
    F(UVM_VATTN_MAP_ENTRY, base);
    F(UVM_VATTN_MAP_ENTRY, length);
    F(UVM_VATTN_MAP_ENTRY, offset);
    F(UVM_VATTN_MAP_ENTRY, hMemory);
    F(UVM_VATTN_MAP_ENTRY, reserved);

    S(UVM_VATTN_UNMAP_ENTRY);
    F(UVM_VATTN_UNMAP_ENTRY, base);
    F(UVM_VATTN_UNMAP_ENTRY, length);

    S(UVM_VATTN_MAP_BATCH_PARAMS);
    F(UVM_VATTN_MAP_BATCH_PARAMS, entries);
    F(UVM_VATTN_MAP_BATCH_PARAMS, gpuUuids);
    F(UVM_VATTN_MAP_BATCH_PARAMS, count);
    F(UVM_VATTN_MAP_BATCH_PARAMS, gpuCount);
    F(UVM_VATTN_MAP_BATCH_PARAMS, rmCtrlFd);
    F(UVM_VATTN_MAP_BATCH_PARAMS, hClient);
    F(UVM_VATTN_MAP_BATCH_PARAMS, flags);
    F(UVM_VATTN_MAP_BATCH_PARAMS, errorIndex);
    F(UVM_VATTN_MAP_BATCH_PARAMS, rmStatus);
    F(UVM_VATTN_MAP_BATCH_PARAMS, reserved);

    S(UVM_VATTN_UNMAP_BATCH_PARAMS);
    F(UVM_VATTN_UNMAP_BATCH_PARAMS, entries);
    F(UVM_VATTN_UNMAP_BATCH_PARAMS, gpuUuids);
    F(UVM_VATTN_UNMAP_BATCH_PARAMS, count);
    F(UVM_VATTN_UNMAP_BATCH_PARAMS, gpuCount);
    F(UVM_VATTN_UNMAP_BATCH_PARAMS, flags);
    F(UVM_VATTN_UNMAP_BATCH_PARAMS, errorIndex);
    F(UVM_VATTN_UNMAP_BATCH_PARAMS, rmStatus);
    F(UVM_VATTN_UNMAP_BATCH_PARAMS, reserved);

    C(UVM_VATTN_ABI_VERSION);
    C(UVM_VATTN_IOCTL_BASE);
    C(UVM_VATTN_GET_INFO);
    C(UVM_VATTN_MAP_BATCH);
    C(UVM_VATTN_UNMAP_BATCH);
    C(UVM_VATTN_IOCTL_FIRST);
    C(UVM_VATTN_IOCTL_LAST);
    C(UVM_VATTN_MAX_BATCH);
    C(UVM_VATTN_MAX_GPUS);
    C(UVM_VATTN_PAGE_SIZE);
    C(UVM_VATTN_NV_OK);
    C(UVM_VATTN_NV_ERR_ILLEGAL_ACTION);
    C(UVM_VATTN_NV_ERR_INVALID_ADDRESS);
    C(UVM_VATTN_NV_ERR_INVALID_ARGUMENT);
    C(UVM_VATTN_NV_ERR_INVALID_DEVICE);
    C(UVM_VATTN_NV_ERR_INVALID_LIMIT);
    C(UVM_VATTN_NV_ERR_INVALID_OFFSET);
    C(UVM_VATTN_NV_ERR_NO_MEMORY);
    C(UVM_VATTN_NV_ERR_NOT_SUPPORTED);
    C(UVM_VATTN_NV_ERR_UVM_ADDRESS_IN_USE);
    return 0;
}
