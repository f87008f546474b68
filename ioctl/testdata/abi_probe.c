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
    S(UVM_VATTN_GPU_INFO);
    F(UVM_VATTN_GPU_INFO, gpuUuid);
    F(UVM_VATTN_GPU_INFO, pageSizes);
    F(UVM_VATTN_GPU_INFO, pinnedBytes);

    S(UVM_VATTN_GET_INFO_PARAMS);
    F(UVM_VATTN_GET_INFO_PARAMS, abiVersion);
    F(UVM_VATTN_GET_INFO_PARAMS, maxBatch);
    F(UVM_VATTN_GET_INFO_PARAMS, gpuInfo);
    F(UVM_VATTN_GET_INFO_PARAMS, gpuCapacity);
    F(UVM_VATTN_GET_INFO_PARAMS, gpuCount);
    F(UVM_VATTN_GET_INFO_PARAMS, pinnedLimitBytes);
    F(UVM_VATTN_GET_INFO_PARAMS, pinnedBytes);
    F(UVM_VATTN_GET_INFO_PARAMS, reserved0);
    F(UVM_VATTN_GET_INFO_PARAMS, rmStatus);

    S(UVM_VATTN_ALLOC_PARAMS);
    F(UVM_VATTN_ALLOC_PARAMS, gpuUuid);
    F(UVM_VATTN_ALLOC_PARAMS, pageSize);
    F(UVM_VATTN_ALLOC_PARAMS, handles);
    F(UVM_VATTN_ALLOC_PARAMS, count);
    F(UVM_VATTN_ALLOC_PARAMS, done);
    F(UVM_VATTN_ALLOC_PARAMS, flags);
    F(UVM_VATTN_ALLOC_PARAMS, rmStatus);

    S(UVM_VATTN_MAP_ENTRY);
    F(UVM_VATTN_MAP_ENTRY, address);
    F(UVM_VATTN_MAP_ENTRY, handle);

    S(UVM_VATTN_MAP_PARAMS);
    F(UVM_VATTN_MAP_PARAMS, entries);
    F(UVM_VATTN_MAP_PARAMS, count);
    F(UVM_VATTN_MAP_PARAMS, done);
    F(UVM_VATTN_MAP_PARAMS, errorIndex);
    F(UVM_VATTN_MAP_PARAMS, rmStatus);

    S(UVM_VATTN_UNMAP_PARAMS);
    F(UVM_VATTN_UNMAP_PARAMS, addresses);
    F(UVM_VATTN_UNMAP_PARAMS, count);
    F(UVM_VATTN_UNMAP_PARAMS, done);
    F(UVM_VATTN_UNMAP_PARAMS, errorIndex);
    F(UVM_VATTN_UNMAP_PARAMS, rmStatus);

    S(UVM_VATTN_FREE_PARAMS);
    F(UVM_VATTN_FREE_PARAMS, handles);
    F(UVM_VATTN_FREE_PARAMS, count);
    F(UVM_VATTN_FREE_PARAMS, done);
    F(UVM_VATTN_FREE_PARAMS, errorIndex);
    F(UVM_VATTN_FREE_PARAMS, rmStatus);

    S(UVM_VATTN_RELEASE_RANGE_PARAMS);
    F(UVM_VATTN_RELEASE_RANGE_PARAMS, base);
    F(UVM_VATTN_RELEASE_RANGE_PARAMS, length);
    F(UVM_VATTN_RELEASE_RANGE_PARAMS, flags);
    F(UVM_VATTN_RELEASE_RANGE_PARAMS, unmapped);
    F(UVM_VATTN_RELEASE_RANGE_PARAMS, freed);
    F(UVM_VATTN_RELEASE_RANGE_PARAMS, rmStatus);

    C(UVM_VATTN_ABI_VERSION);
    C(UVM_VATTN_IOCTL_BASE);
    C(UVM_VATTN_GET_INFO);
    C(UVM_VATTN_ALLOC);
    C(UVM_VATTN_MAP);
    C(UVM_VATTN_UNMAP);
    C(UVM_VATTN_FREE);
    C(UVM_VATTN_RELEASE_RANGE);
    C(UVM_VATTN_IOCTL_FIRST);
    C(UVM_VATTN_IOCTL_LAST);
    C(UVM_VATTN_MAX_BATCH);
    C(UVM_VATTN_MAX_GPUS);
    C(UVM_VATTN_PAGE_SIZE_64K);
    C(UVM_VATTN_PAGE_SIZE_128K);
    C(UVM_VATTN_PAGE_SIZE_256K);
    C(UVM_VATTN_PAGE_SIZE_2M);
    C(UVM_VATTN_PAGE_SIZES_ALL);
    C(UVM_VATTN_RELEASE_FREE);
    C(UVM_VATTN_NV_OK);
    C(UVM_VATTN_NV_ERR_ILLEGAL_ACTION);
    C(UVM_VATTN_NV_ERR_IN_USE);
    C(UVM_VATTN_NV_ERR_INSUFFICIENT_RESOURCES);
    C(UVM_VATTN_NV_ERR_INVALID_ADDRESS);
    C(UVM_VATTN_NV_ERR_INVALID_ARGUMENT);
    C(UVM_VATTN_NV_ERR_INVALID_DEVICE);
    C(UVM_VATTN_NV_ERR_INVALID_LIMIT);
    C(UVM_VATTN_NV_ERR_INVALID_OFFSET);
    C(UVM_VATTN_NV_ERR_NO_MEMORY);
    C(UVM_VATTN_NV_ERR_NOT_SUPPORTED);
    C(UVM_VATTN_NV_ERR_OBJECT_NOT_FOUND);
    C(UVM_VATTN_NV_ERR_UVM_ADDRESS_IN_USE);
    C(UVM_VATTN_NV_ERR_INVALID_STATE);
    return 0;
}
