/* callcuda.c: calls the fake CUDA VMM functions a known number of times.
 * usage: callcuda ITERATIONS SLEEP_NS [bench]
 * Without "bench" each iteration calls every function once (cuMemAddressFree
 * and its _v2 both); with "bench" it calls cuMemMap in a tight loop, a stand-in
 * for a map loop, and prints the mean nanoseconds per call. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void fake_set_sleep_ns(long ns);
int cuMemAddressReserve(void);
int cuMemCreate(void);
int cuMemMap(void);
int cuMemSetAccess(void);
int cuMemUnmap(void);
int cuMemRelease(void);
int cuMemAddressFree(void);
int cuMemAddressFree_v2(void);

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: callcuda ITERATIONS SLEEP_NS [bench]\n");
        return 2;
    }
    long n = atol(argv[1]);
    fake_set_sleep_ns(atol(argv[2]));
    if (argc > 3 && strcmp(argv[3], "bench") == 0) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (long i = 0; i < n; i++)
            cuMemMap();
        clock_gettime(CLOCK_MONOTONIC, &b);
        double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
        printf("%.1f\n", ns / (double)n);
        return 0;
    }
    for (long i = 0; i < n; i++) {
        cuMemAddressReserve();
        cuMemCreate();
        cuMemMap();
        cuMemSetAccess();
        cuMemUnmap();
        cuMemRelease();
        cuMemAddressFree();
        cuMemAddressFree_v2();
    }
    return 0;
}
