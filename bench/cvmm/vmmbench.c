// vmmbench: the raw CUDA driver API baseline for "vattnctl map".
//
// It does what vattnctl map --backend cudavmm does, with nothing in between:
// reserve a range, cuMemCreate N pages, map them (cuMemMap, then
// cuMemSetAccess once per batch run or once per page), unmap, release, free
// the range; each batch of calls timed with CLOCK_MONOTONIC. It prints one
// JSON object with the same per-operation fields vattnctl map -o json has.
//
// It declares the few driver prototypes it needs (no CUDA headers) and links
// against the driver's libcuda.so.1:
//   gcc -O2 -o vmmbench vmmbench.c -l:libcuda.so.1
// or, for the in-process comparison (backend/cudavmm's device tests):
//   gcc -O2 -shared -fPIC -o libvmmbench.so vmmbench.c -l:libcuda.so.1
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int CUresult;
typedef int CUdevice;
typedef void *CUcontext;
typedef unsigned long long CUdeviceptr;
typedef unsigned long long CUmemGenericAllocationHandle;

// CUmemAllocationProp and CUmemAccessDesc as in cuda.h.
typedef struct {
    int type;                 // CU_MEM_ALLOCATION_TYPE_PINNED = 1
    int requestedHandleTypes; // CU_MEM_HANDLE_TYPE_NONE = 0
    struct { int type; int id; } location; // CU_MEM_LOCATION_TYPE_DEVICE = 1
    void *win32HandleMetaData;
    struct {
        unsigned char compressionType;
        unsigned char gpuDirectRDMACapable;
        unsigned short usage;
        unsigned char reserved[4];
    } allocFlags;
} CUmemAllocationProp;

typedef struct {
    struct { int type; int id; } location;
    int flags; // CU_MEM_ACCESS_FLAGS_PROT_READWRITE = 3
} CUmemAccessDesc;

CUresult cuInit(unsigned int);
CUresult cuDeviceGet(CUdevice *, int);
CUresult cuDevicePrimaryCtxRetain(CUcontext *, CUdevice);
CUresult cuDevicePrimaryCtxRelease_v2(CUdevice);
CUresult cuCtxSetCurrent(CUcontext);
CUresult cuGetErrorName(CUresult, const char **);
CUresult cuMemGetAllocationGranularity(size_t *, const CUmemAllocationProp *, int);
CUresult cuMemAddressReserve(CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long);
CUresult cuMemAddressFree(CUdeviceptr, size_t);
CUresult cuMemCreate(CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *, unsigned long long);
CUresult cuMemRelease(CUmemGenericAllocationHandle);
CUresult cuMemMap(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle, unsigned long long);
CUresult cuMemUnmap(CUdeviceptr, size_t);
CUresult cuMemSetAccess(CUdeviceptr, size_t, const CUmemAccessDesc *, size_t);

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

// Nearest-rank percentile, as vattnctl map computes it.
static double pct(const double *s, int n, double p) {
    int i = (int)(p * n + 0.999999) - 1;
    if (i < 0) i = 0;
    if (i > n - 1) i = n - 1;
    return s[i];
}

static void stats(const char *op, double *d, int n, int pages, size_t page_size, int last) {
    double total = 0;
    for (int i = 0; i < n; i++) total += d[i];
    qsort(d, n, sizeof *d, cmp);
    printf("    {\"op\": \"%s\", \"calls\": %d, \"pages\": %d, \"p50_us\": %.3f, \"p90_us\": %.3f, \"p99_us\": %.3f, "
           "\"max_us\": %.3f, \"total_ms\": %.3f, \"us_per_page\": %.3f, \"gb_per_s\": %.3f}%s\n",
           op, n, pages, pct(d, n, .5), pct(d, n, .9), pct(d, n, .99), d[n - 1], total / 1e3, total / pages,
           (double)pages * page_size / (total / 1e6) / 1e9, last ? "" : ",");
}

// vmmbench_run does one round: reserve, create, map (+ access), unmap,
// release, free the range, storing each call's time (µs) in t_alloc, t_map,
// t_unmap and t_free (one entry per batch) and the reserve and release
// times in t_range[0..1], and the page size in t_range[2]. It returns 0 or the failing CUresult. It is
// exported so that a Go test can run it in its own process
// (gcc -shared -fPIC), next to the Go backend on the same context and thread.
int vmmbench_run(int pages, int batch, int per_page, int device,
                 double *t_range, double *t_alloc, double *t_map, double *t_unmap, double *t_free) {
    CUdevice dev;
    CUcontext ctx;
    CUresult r;
#define RK(x) do { if ((r = (x)) != 0) { const char *n = "?"; cuGetErrorName(r, &n); fprintf(stderr, "vmmbench: %s: %s\n", #x, n); return r; } } while (0)
    RK(cuInit(0));
    RK(cuDeviceGet(&dev, device));
    RK(cuDevicePrimaryCtxRetain(&ctx, dev));
    RK(cuCtxSetCurrent(ctx));

    CUmemAllocationProp prop;
    memset(&prop, 0, sizeof prop);
    prop.type = 1;
    prop.location.type = 1;
    prop.location.id = dev;
    CUmemAccessDesc access = {{1, dev}, 3};
    size_t size;
    RK(cuMemGetAllocationGranularity(&size, &prop, 0));
    t_range[2] = (double)size;

    CUmemGenericAllocationHandle *h = calloc(pages, sizeof *h);
    double t0;
    CUdeviceptr base;
    t0 = now_us();
    RK(cuMemAddressReserve(&base, (size_t)pages * size, size, 0, 0));
    t_range[0] = now_us() - t0;
    for (int c = 0, i = 0; i < pages; c++, i += batch) {
        int n = pages - i < batch ? pages - i : batch;
        t0 = now_us();
        for (int j = i; j < i + n; j++) RK(cuMemCreate(&h[j], size, &prop, 0));
        t_alloc[c] = now_us() - t0;
    }
    for (int c = 0, i = 0; i < pages; c++, i += batch) {
        int n = pages - i < batch ? pages - i : batch;
        t0 = now_us();
        for (int j = i; j < i + n; j++) {
            RK(cuMemMap(base + (CUdeviceptr)j * size, size, 0, h[j], 0));
            if (per_page) RK(cuMemSetAccess(base + (CUdeviceptr)j * size, size, &access, 1));
        }
        if (!per_page) RK(cuMemSetAccess(base + (CUdeviceptr)i * size, (size_t)n * size, &access, 1));
        t_map[c] = now_us() - t0;
    }
    for (int c = 0, i = 0; i < pages; c++, i += batch) {
        int n = pages - i < batch ? pages - i : batch;
        t0 = now_us();
        for (int j = i; j < i + n; j++) RK(cuMemUnmap(base + (CUdeviceptr)j * size, size));
        t_unmap[c] = now_us() - t0;
    }
    for (int c = 0, i = 0; i < pages; c++, i += batch) {
        int n = pages - i < batch ? pages - i : batch;
        t0 = now_us();
        for (int j = i; j < i + n; j++) RK(cuMemRelease(h[j]));
        t_free[c] = now_us() - t0;
    }
    t0 = now_us();
    RK(cuMemAddressFree(base, (size_t)pages * size));
    t_range[1] = now_us() - t0;
    RK(cuDevicePrimaryCtxRelease_v2(dev));
    free(h);
    return 0;
#undef RK
}

int main(int argc, char **argv) {
    int pages = 1024, batch = 1, device = 0, per_page = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--pages")) pages = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--device")) device = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--access")) per_page = !strcmp(argv[i + 1], "page");
        else { fprintf(stderr, "usage: vmmbench [--pages N] [--batch B] [--access run|page] [--device D]\n"); return 2; }
    }
    if (pages < 1 || batch < 1) return 2;
    int calls = (pages + batch - 1) / batch;
    double t_range[3], *t_alloc = calloc(calls, sizeof(double)), *t_map = calloc(calls, sizeof(double)),
           *t_unmap = calloc(calls, sizeof(double)), *t_free = calloc(calls, sizeof(double));
    if (vmmbench_run(pages, batch, per_page, device, t_range, t_alloc, t_map, t_unmap, t_free) != 0) return 1;
    size_t size = (size_t)t_range[2];
    printf("{\n  \"backend\": \"raw-c\",\n  \"pages\": %d,\n  \"batch\": %d,\n  \"access\": \"%s\",\n  \"ops\": [\n",
           pages, batch, per_page ? "page" : "run");
    stats("reserve", &t_range[0], 1, pages, size, 0);
    stats("alloc", t_alloc, calls, pages, size, 0);
    stats("map", t_map, calls, pages, size, 0);
    stats("unmap", t_unmap, calls, pages, size, 0);
    stats("free", t_free, calls, pages, size, 0);
    stats("release", &t_range[1], 1, pages, size, 1);
    printf("  ]\n}\n");
    return 0;
}
