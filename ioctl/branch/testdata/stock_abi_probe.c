/* stock_abi_probe prints what a C compiler makes of NVIDIA's headers of one driver
 * branch, for TestStockABI. Build with the branch's include flags and
 * -DVATTN_MAJOR=<major>, which only decides which fields the branch has.
 *   S <struct> <size>
 *   F <struct> <field> <offset> <size>
 *   C <constant> <value>
 */
#include <stddef.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include "nvtypes.h"
#include "nvos.h"
#include "nvstatus.h"
#include "class/cl0080.h"
#include "class/cl2080.h"
#include "class/cl0040.h"
#include "ctrl/ctrl0000/ctrl0000gpu.h"
#include "nv-ioctl.h"
#include "nv-ioctl-numbers.h"
#include "nv_escape.h"
#include "uvm_ioctl.h"

#define S(t) printf("S %s %zu\n", #t, sizeof(t))
#define F(t, f) printf("F %s %s %zu %zu\n", #t, #f, offsetof(t, f), sizeof(((t *)0)->f))
#define C(c) printf("C %s %llu\n", #c, (unsigned long long)(c))
#define RMIOC(nr, t) printf("C %s %llu\n", "ioc:" #nr, \
    (unsigned long long)_IOC(_IOC_READ | _IOC_WRITE, NV_IOCTL_MAGIC, nr, sizeof(t)))

int main(void)
{
    /* RM escapes on /dev/nvidiactl and /dev/nvidiaN. */
    S(NVOS21_PARAMETERS);
    F(NVOS21_PARAMETERS, hRoot);
    F(NVOS21_PARAMETERS, hObjectParent);
    F(NVOS21_PARAMETERS, hObjectNew);
    F(NVOS21_PARAMETERS, hClass);
    F(NVOS21_PARAMETERS, pAllocParms);
    F(NVOS21_PARAMETERS, paramsSize);
    F(NVOS21_PARAMETERS, status);

    S(NVOS54_PARAMETERS);
    F(NVOS54_PARAMETERS, hClient);
    F(NVOS54_PARAMETERS, hObject);
    F(NVOS54_PARAMETERS, cmd);
    F(NVOS54_PARAMETERS, flags);
    F(NVOS54_PARAMETERS, params);
    F(NVOS54_PARAMETERS, paramsSize);
    F(NVOS54_PARAMETERS, status);

    S(NVOS00_PARAMETERS);
    F(NVOS00_PARAMETERS, hRoot);
    F(NVOS00_PARAMETERS, hObjectParent);
    F(NVOS00_PARAMETERS, hObjectOld);
    F(NVOS00_PARAMETERS, status);

    S(nv_pci_info_t);
    F(nv_pci_info_t, domain);
    F(nv_pci_info_t, bus);
    F(nv_pci_info_t, slot);
    F(nv_pci_info_t, function);
    F(nv_pci_info_t, vendor_id);
    F(nv_pci_info_t, device_id);

    S(nv_ioctl_card_info_t);
    F(nv_ioctl_card_info_t, valid);
    F(nv_ioctl_card_info_t, pci_info);
    F(nv_ioctl_card_info_t, gpu_id);
    F(nv_ioctl_card_info_t, interrupt_line);
    F(nv_ioctl_card_info_t, reg_address);
    F(nv_ioctl_card_info_t, reg_size);
    F(nv_ioctl_card_info_t, fb_address);
    F(nv_ioctl_card_info_t, fb_size);
    F(nv_ioctl_card_info_t, minor_number);
    F(nv_ioctl_card_info_t, dev_name);

    S(nv_ioctl_register_fd_t);
    F(nv_ioctl_register_fd_t, ctl_fd);

    S(NV0080_ALLOC_PARAMETERS);
    F(NV0080_ALLOC_PARAMETERS, deviceId);
    F(NV0080_ALLOC_PARAMETERS, hClientShare);
    F(NV0080_ALLOC_PARAMETERS, hTargetClient);
    F(NV0080_ALLOC_PARAMETERS, hTargetDevice);
    F(NV0080_ALLOC_PARAMETERS, flags);
    F(NV0080_ALLOC_PARAMETERS, vaSpaceSize);
    F(NV0080_ALLOC_PARAMETERS, vaStartInternal);
    F(NV0080_ALLOC_PARAMETERS, vaLimitInternal);
    F(NV0080_ALLOC_PARAMETERS, vaMode);

    S(NV2080_ALLOC_PARAMETERS);
    F(NV2080_ALLOC_PARAMETERS, subDeviceId);

    S(NV_MEMORY_ALLOCATION_PARAMS);
    F(NV_MEMORY_ALLOCATION_PARAMS, owner);
    F(NV_MEMORY_ALLOCATION_PARAMS, type);
    F(NV_MEMORY_ALLOCATION_PARAMS, flags);
    F(NV_MEMORY_ALLOCATION_PARAMS, width);
    F(NV_MEMORY_ALLOCATION_PARAMS, height);
    F(NV_MEMORY_ALLOCATION_PARAMS, pitch);
    F(NV_MEMORY_ALLOCATION_PARAMS, attr);
    F(NV_MEMORY_ALLOCATION_PARAMS, attr2);
    F(NV_MEMORY_ALLOCATION_PARAMS, format);
    F(NV_MEMORY_ALLOCATION_PARAMS, comprCovg);
    F(NV_MEMORY_ALLOCATION_PARAMS, zcullCovg);
    F(NV_MEMORY_ALLOCATION_PARAMS, rangeLo);
    F(NV_MEMORY_ALLOCATION_PARAMS, rangeHi);
    F(NV_MEMORY_ALLOCATION_PARAMS, size);
    F(NV_MEMORY_ALLOCATION_PARAMS, alignment);
    F(NV_MEMORY_ALLOCATION_PARAMS, offset);
    F(NV_MEMORY_ALLOCATION_PARAMS, limit);
    F(NV_MEMORY_ALLOCATION_PARAMS, address);
    F(NV_MEMORY_ALLOCATION_PARAMS, ctagOffset);
    F(NV_MEMORY_ALLOCATION_PARAMS, hVASpace);
    F(NV_MEMORY_ALLOCATION_PARAMS, internalflags);
    F(NV_MEMORY_ALLOCATION_PARAMS, tag);
#if VATTN_MAJOR >= 550
    F(NV_MEMORY_ALLOCATION_PARAMS, numaNode);
#endif

    S(NV0000_CTRL_GPU_GET_UUID_INFO_PARAMS);
    F(NV0000_CTRL_GPU_GET_UUID_INFO_PARAMS, gpuUuid);
    F(NV0000_CTRL_GPU_GET_UUID_INFO_PARAMS, flags);
    F(NV0000_CTRL_GPU_GET_UUID_INFO_PARAMS, gpuId);
    F(NV0000_CTRL_GPU_GET_UUID_INFO_PARAMS, deviceInstance);
    F(NV0000_CTRL_GPU_GET_UUID_INFO_PARAMS, subdeviceInstance);

    S(NV0000_CTRL_GPU_GET_ID_INFO_V2_PARAMS);
    F(NV0000_CTRL_GPU_GET_ID_INFO_V2_PARAMS, gpuId);
    F(NV0000_CTRL_GPU_GET_ID_INFO_V2_PARAMS, gpuFlags);
    F(NV0000_CTRL_GPU_GET_ID_INFO_V2_PARAMS, deviceInstance);
    F(NV0000_CTRL_GPU_GET_ID_INFO_V2_PARAMS, subDeviceInstance);
    F(NV0000_CTRL_GPU_GET_ID_INFO_V2_PARAMS, sliStatus);
    F(NV0000_CTRL_GPU_GET_ID_INFO_V2_PARAMS, boardId);
    F(NV0000_CTRL_GPU_GET_ID_INFO_V2_PARAMS, gpuInstance);
    F(NV0000_CTRL_GPU_GET_ID_INFO_V2_PARAMS, numaId);


    C(NV_IOCTL_MAGIC);
    C(NV_IOCTL_BASE);
    C(NV_ESC_CARD_INFO);
    C(NV_ESC_REGISTER_FD);
    C(NV_ESC_RM_ALLOC);
    C(NV_ESC_RM_CONTROL);
    C(NV_ESC_RM_FREE);
    RMIOC(NV_ESC_RM_ALLOC, NVOS21_PARAMETERS);
    RMIOC(NV_ESC_RM_CONTROL, NVOS54_PARAMETERS);
    RMIOC(NV_ESC_RM_FREE, NVOS00_PARAMETERS);
    RMIOC(NV_ESC_REGISTER_FD, nv_ioctl_register_fd_t);
    C(NV_MAX_DEVICES);
    C(NV01_ROOT_CLIENT);
    C(NV01_DEVICE_0);
    C(NV20_SUBDEVICE_0);
    C(NV01_MEMORY_LOCAL_USER);
    C(NV_DEVICE_ALLOCATION_VAMODE_MULTIPLE_VASPACES);
    C(NV0000_CTRL_CMD_GPU_GET_UUID_INFO);
    C(NV0000_CTRL_CMD_GPU_GET_UUID_INFO_FLAGS_FORMAT_BINARY);
    C(NV0000_CTRL_CMD_GPU_GET_UUID_INFO_FLAGS_TYPE_SHA1);
    C(NV0000_GPU_MAX_GID_LENGTH);
    C(NV0000_CTRL_CMD_GPU_GET_ID_INFO_V2);
    C(NV0000_CTRL_GPU_INVALID_ID);
    C(NVOS32_TYPE_IMAGE);
    C(NVOS32_ALLOC_FLAGS_IGNORE_BANK_PLACEMENT);
    C(NVOS32_ALLOC_FLAGS_ALIGNMENT_FORCE);
    C(NVOS32_ALLOC_FLAGS_MAP_NOT_REQUIRED);
    C(NVOS32_ALLOC_FLAGS_PERSISTENT_VIDMEM);
    C(NVOS32_ATTR_PAGE_SIZE_BIG);
    C(NVOS32_ATTR_PAGE_SIZE_HUGE);
    C(NVOS32_ATTR_LOCATION_VIDMEM);
    C(NVOS32_ATTR_PHYSICALITY_ALLOW_NONCONTIGUOUS);
    /* Bit positions of the attr fields (hi:lo ranges in the header). */
    C(DRF_SHIFT(NVOS32_ATTR_PAGE_SIZE));
    C(DRF_SHIFT(NVOS32_ATTR_LOCATION));
    C(DRF_SHIFT(NVOS32_ATTR_PHYSICALITY));
    C(NV_OK);
    C(NV_ERR_ILLEGAL_ACTION);
    C(NV_ERR_IN_USE);
    C(NV_ERR_INSUFFICIENT_RESOURCES);
    C(NV_ERR_INVALID_ADDRESS);
    C(NV_ERR_INVALID_ARGUMENT);
    C(NV_ERR_INVALID_DEVICE);
    C(NV_ERR_INVALID_LIMIT);
    C(NV_ERR_INVALID_OFFSET);
    C(NV_ERR_INVALID_STATE);
    C(NV_ERR_NO_MEMORY);
    C(NV_ERR_NOT_SUPPORTED);
    C(NV_ERR_OBJECT_NOT_FOUND);
    C(NV_ERR_UVM_ADDRESS_IN_USE);
    C(NV_ERR_INVALID_CLIENT);
    C(NV_ERR_INVALID_OBJECT_HANDLE);
    C(NV_ERR_INVALID_CLASS);
    C(NV_ERR_INSUFFICIENT_PERMISSIONS);
    C(NV_ERR_OPERATING_SYSTEM);
    C(NV_ERR_INVALID_PARAM_STRUCT);

    /* Stock nvidia-uvm commands on CUDA's va_space file. */
    S(UvmGpuMappingAttributes);
    F(UvmGpuMappingAttributes, gpuUuid);
    F(UvmGpuMappingAttributes, gpuMappingType);
    F(UvmGpuMappingAttributes, gpuCachingType);
    F(UvmGpuMappingAttributes, gpuFormatType);
    F(UvmGpuMappingAttributes, gpuElementBits);
    F(UvmGpuMappingAttributes, gpuCompressionType);

    S(UVM_CREATE_EXTERNAL_RANGE_PARAMS);
    F(UVM_CREATE_EXTERNAL_RANGE_PARAMS, base);
    F(UVM_CREATE_EXTERNAL_RANGE_PARAMS, length);
    F(UVM_CREATE_EXTERNAL_RANGE_PARAMS, rmStatus);

    S(UVM_MAP_EXTERNAL_ALLOCATION_PARAMS);
    F(UVM_MAP_EXTERNAL_ALLOCATION_PARAMS, base);
    F(UVM_MAP_EXTERNAL_ALLOCATION_PARAMS, length);
    F(UVM_MAP_EXTERNAL_ALLOCATION_PARAMS, offset);
    F(UVM_MAP_EXTERNAL_ALLOCATION_PARAMS, perGpuAttributes);
    F(UVM_MAP_EXTERNAL_ALLOCATION_PARAMS, gpuAttributesCount);
    F(UVM_MAP_EXTERNAL_ALLOCATION_PARAMS, rmCtrlFd);
    F(UVM_MAP_EXTERNAL_ALLOCATION_PARAMS, hClient);
    F(UVM_MAP_EXTERNAL_ALLOCATION_PARAMS, hMemory);
    F(UVM_MAP_EXTERNAL_ALLOCATION_PARAMS, rmStatus);

    S(UVM_UNMAP_EXTERNAL_PARAMS);
    F(UVM_UNMAP_EXTERNAL_PARAMS, base);
    F(UVM_UNMAP_EXTERNAL_PARAMS, length);
    F(UVM_UNMAP_EXTERNAL_PARAMS, gpuUuid);
    F(UVM_UNMAP_EXTERNAL_PARAMS, rmStatus);

    S(UVM_FREE_PARAMS);
    F(UVM_FREE_PARAMS, base);
#if VATTN_MAJOR < 590
    F(UVM_FREE_PARAMS, length);
#endif
    F(UVM_FREE_PARAMS, rmStatus);

    C(UVM_CREATE_EXTERNAL_RANGE);
    C(UVM_MAP_EXTERNAL_ALLOCATION);
    C(UVM_UNMAP_EXTERNAL);
    C(UVM_FREE);
    C(UvmGpuMappingTypeDefault);
    C(UvmGpuCachingTypeDefault);
    C(UvmGpuFormatTypeDefault);
    C(UvmGpuFormatElementBitsDefault);
    C(UvmGpuCompressionTypeDefault);
    return 0;
}
