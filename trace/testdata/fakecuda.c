/* fakecuda.c: a stand-in for libcuda in the tracer's tests. It exports
 * functions named like the CUDA VMM calls that sleep for a set time, so the
 * uprobe source can be checked for exact counts and latency lower bounds. */
#include <time.h>

static long sleep_ns;

void fake_set_sleep_ns(long ns) { sleep_ns = ns; }

static int nap(int rc)
{
    if (sleep_ns > 0) {
        struct timespec ts = { sleep_ns / 1000000000L, sleep_ns % 1000000000L };
        while (nanosleep(&ts, &ts) != 0) {
        }
    }
    return rc;
}

int cuMemAddressReserve(void) { return nap(0); }
int cuMemCreate(void) { return nap(0); }
int cuMemMap(void) { return nap(0); }
int cuMemSetAccess(void) { return nap(0); }
int cuMemUnmap(void) { return nap(0); }
/* Fails, so the tests see errors counted. */
int cuMemRelease(void) { return nap(1); }
int cuMemAddressFree(void) { return nap(0); }
/* Exported beside the plain name, as libcuda does for some calls. */
int cuMemAddressFree_v2(void) { return nap(0); }
