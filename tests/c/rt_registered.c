/* A program start as NVIDIA's runtime sees a large one: MODULES fat binaries registered,
 * KERNELS kernels in each (simulated modules), as nvcc's registration code does; then the
 * first CUDA call (which loads them) and a first launch of one kernel.
 *
 * Usage: rt_registered MODULES KERNELS
 * Prints "first_call_s S" (cudaFree(0), with the loads), "first_launch_s S" (a launch and a
 * synchronisation), then "OK". */
#include "sim_fatbin.h"
#include <stdlib.h>

#define MAX_MODULES 4096
#define MAX_KERNELS 64
#define PAYLOAD 4096

static struct fatbin {
    struct fatbin_head h;
    char payload[PAYLOAD];
} __attribute__((aligned(8))) fatbins[MAX_MODULES];
static struct fatbin_wrapper wrappers[MAX_MODULES];
/* One address per kernel: what the runtime knows a kernel by. */
static char stubs[MAX_MODULES][MAX_KERNELS];
static char names[MAX_MODULES][MAX_KERNELS][24];

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s MODULES KERNELS\n", argv[0]); return 2; }
    int modules = atoi(argv[1]), kernels = atoi(argv[2]);
    if (modules < 1 || modules > MAX_MODULES || kernels < 1 || kernels > MAX_KERNELS) {
        fprintf(stderr, "MODULES 1..%d, KERNELS 1..%d\n", MAX_MODULES, MAX_KERNELS);
        return 2;
    }
    for (int m = 0; m < modules; m++) {
        struct fatbin *f = &fatbins[m];
        fatbin_init(&f->h, sizeof *f, sizeof f->payload);
        int at = snprintf(f->payload, PAYLOAD, "gpupool-sim-module 1\n");
        for (int k = 0; k < kernels; k++) {
            snprintf(names[m][k], sizeof names[m][k], "m%dk%d", m, k);
            at += snprintf(f->payload + at, PAYLOAD - at, "kernel %s 1us\n", names[m][k]);
        }
        wrappers[m] = (struct fatbin_wrapper){0x466243b1, 1, f, 0};
        void **handle = __cudaRegisterFatBinary(&wrappers[m]);
        for (int k = 0; k < kernels; k++)
            __cudaRegisterFunction(handle, &stubs[m][k], names[m][k], names[m][k], -1, 0, 0, 0,
                                   0, 0);
        __cudaRegisterFatBinaryEnd(handle);
    }
    double t0 = now();
    CHECK(cudaFree(0));
    double t1 = now();
    dim3 grid = {1, 1, 1}, block = {32, 1, 1};
    CHECK(cudaLaunchKernel((const void *)&stubs[modules - 1][kernels - 1], grid, block, NULL, 0,
                           0));
    CHECK(cudaDeviceSynchronize());
    double t2 = now();
    printf("first_call_s %.6f\nfirst_launch_s %.6f\nOK\n", t1 - t0, t2 - t1);
    return 0;
}
