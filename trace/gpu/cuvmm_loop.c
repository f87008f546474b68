/* cuvmm_loop.c: a CUDA VMM map loop for measuring what `vattnctl trace`
 * sees and costs on a GPU machine. Each iteration reserves a virtual range,
 * creates a physical allocation of one granule (2 MiB on current GPUs), maps
 * it, sets read/write access, then unmaps, releases and frees it. It prints
 * the mean nanoseconds per iteration. libcuda is loaded with dlopen, so no
 * CUDA headers are needed to build it:
 *
 *   gcc -O2 -o cuvmm_loop trace/gpu/cuvmm_loop.c -ldl
 *   ./cuvmm_loop ITERATIONS [DEVICE]
 *
 * The types below follow the CUDA driver API's documented layouts
 * (CUmemAllocationProp, CUmemAccessDesc); only what the calls need. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int CUresult;
typedef int CUdevice;
typedef void *CUcontext;
typedef unsigned long long CUdeviceptr;
typedef unsigned long long CUmemGenericAllocationHandle;

typedef struct {
    int type; /* CU_MEM_LOCATION_TYPE_DEVICE = 1 */
    int id;
} CUmemLocation;

typedef struct {
    int type;                 /* CU_MEM_ALLOCATION_TYPE_PINNED = 1 */
    int requestedHandleTypes; /* CU_MEM_HANDLE_TYPE_NONE = 0 */
    CUmemLocation location;
    void *win32HandleMetaData;
    struct {
        unsigned char compressionType;
        unsigned char gpuDirectRDMACapable;
        unsigned short usage;
        unsigned char reserved[4];
    } allocFlags;
} CUmemAllocationProp;

typedef struct {
    CUmemLocation location;
    int flags; /* CU_MEM_ACCESS_FLAGS_PROT_READWRITE = 3 */
} CUmemAccessDesc;

static void *lib;

static void *sym(const char *name)
{
    void *p = dlsym(lib, name);
    if (!p) {
        fprintf(stderr, "cuvmm_loop: %s: %s\n", name, dlerror());
        exit(1);
    }
    return p;
}

#define CHECK(call)                                                        \
    do {                                                                   \
        CUresult rc_ = (call);                                             \
        if (rc_ != 0) {                                                    \
            fprintf(stderr, "cuvmm_loop: %s: CUresult %d\n", #call, rc_); \
            exit(1);                                                       \
        }                                                                  \
    } while (0)

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: cuvmm_loop ITERATIONS [DEVICE]\n");
        return 2;
    }
    long n = atol(argv[1]);
    int ordinal = argc > 2 ? atoi(argv[2]) : 0;
    lib = dlopen("libcuda.so.1", RTLD_NOW);
    if (!lib) {
        fprintf(stderr, "cuvmm_loop: dlopen libcuda.so.1: %s\n", dlerror());
        return 1;
    }
    CUresult (*cuInit)(unsigned) = sym("cuInit");
    CUresult (*cuDeviceGet)(CUdevice *, int) = sym("cuDeviceGet");
    CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *, CUdevice) = sym("cuDevicePrimaryCtxRetain");
    CUresult (*cuCtxSetCurrent)(CUcontext) = sym("cuCtxSetCurrent");
    CUresult (*cuMemGetAllocationGranularity)(size_t *, const CUmemAllocationProp *, int) = sym("cuMemGetAllocationGranularity");
    CUresult (*cuMemAddressReserve)(CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long) = sym("cuMemAddressReserve");
    CUresult (*cuMemAddressFree)(CUdeviceptr, size_t) = sym("cuMemAddressFree");
    CUresult (*cuMemCreate)(CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *, unsigned long long) = sym("cuMemCreate");
    CUresult (*cuMemRelease)(CUmemGenericAllocationHandle) = sym("cuMemRelease");
    CUresult (*cuMemMap)(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle, unsigned long long) = sym("cuMemMap");
    CUresult (*cuMemUnmap)(CUdeviceptr, size_t) = sym("cuMemUnmap");
    CUresult (*cuMemSetAccess)(CUdeviceptr, size_t, const CUmemAccessDesc *, size_t) = sym("cuMemSetAccess");

    CUdevice dev;
    CUcontext ctx;
    CHECK(cuInit(0));
    CHECK(cuDeviceGet(&dev, ordinal));
    CHECK(cuDevicePrimaryCtxRetain(&ctx, dev));
    CHECK(cuCtxSetCurrent(ctx));

    CUmemAllocationProp prop;
    memset(&prop, 0, sizeof(prop));
    prop.type = 1;
    prop.location.type = 1;
    prop.location.id = dev;
    size_t size = 0;
    CHECK(cuMemGetAllocationGranularity(&size, &prop, 0));
    CUmemAccessDesc access = {{1, dev}, 3};

    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) {
        CUdeviceptr ptr;
        CUmemGenericAllocationHandle h;
        CHECK(cuMemAddressReserve(&ptr, size, 0, 0, 0));
        CHECK(cuMemCreate(&h, size, &prop, 0));
        CHECK(cuMemMap(ptr, size, 0, h, 0));
        CHECK(cuMemSetAccess(ptr, size, &access, 1));
        CHECK(cuMemUnmap(ptr, size));
        CHECK(cuMemRelease(h));
        CHECK(cuMemAddressFree(ptr, size));
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
    printf("granularity %zu bytes, %ld iterations, %.0f ns/iteration\n", size, n, ns / (double)n);
    return 0;
}
