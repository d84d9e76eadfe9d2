/* Keeps a simulated GPU busy with kernels of a known duration for a while, through one launch
 * path, and prints how much work it submitted. The kernels come from a simulated module image
 * (see crates/gpupool-simgpu/src/module.rs).
 * usage: compute PATH KERNEL SECONDS [THREADS]
 *   PATH: sync (launch + cuStreamSynchronize each time), async (never synchronise until the
 *         end), ex (cuLaunchKernelEx, async), coop (cuLaunchCooperativeKernel, async),
 *         graph (a one-node graph, cuGraphLaunch, async), ptsz (cuLaunchKernel_ptsz on the
 *         per-thread stream, async), capture (after 3 launches, as a warm-up, 50 launches
 *         captured into a graph, which is launched async; "capture_seconds" is the longest
 *         capture)
 *   KERNEL: a duration such as 50us or 20ms
 *   THREADS: threads launching at once, each on its own stream (default 1)
 * Prints "launches N", "seconds S", "kernel_ns K". */
#include <cuda.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK(call) do { CUresult e_ = (call); if (e_ != CUDA_SUCCESS) { \
    printf("FAIL %s:%d %s -> %d\n", __FILE__, __LINE__, #call, (int)e_); exit(1); } } while (0)
#define FN(name) static __typeof__(&name) p_##name;
FN(cuInit) FN(cuDevicePrimaryCtxRetain) FN(cuCtxSetCurrent) FN(cuModuleLoadData)
FN(cuModuleGetFunction) FN(cuStreamCreate) FN(cuStreamSynchronize) FN(cuLaunchKernel)
FN(cuLaunchKernelEx) FN(cuLaunchCooperativeKernel) FN(cuGraphCreate) FN(cuGraphAddKernelNode)
FN(cuGraphInstantiateWithFlags) FN(cuGraphLaunch) FN(cuCtxSynchronize) FN(cuStreamBeginCapture_v2)
FN(cuStreamEndCapture)
static CUresult (*p_launch_ptsz)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
                                 unsigned, unsigned, CUstream, void **, void **);
static CUresult (*p_sync_ptsz)(CUstream);

static const char *path;
static double seconds;
static CUcontext ctx;
static CUfunction fn;
static long launches[64];
static double capture_seconds[64];
enum { CAPTURED = 50 };

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *worker(void *arg) {
    long id = (long)arg;
    CHECK(p_cuCtxSetCurrent(ctx));
    CUstream s;
    CHECK(p_cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    CUgraphExec exec = NULL;
    if (!strcmp(path, "graph")) {
        CUgraph g;
        CUgraphNode node;
        CUDA_KERNEL_NODE_PARAMS p;
        memset(&p, 0, sizeof p);
        p.func = fn;
        p.gridDimX = p.gridDimY = p.gridDimZ = 1;
        p.blockDimX = 32; p.blockDimY = p.blockDimZ = 1;
        CHECK(p_cuGraphCreate(&g, 0));
        CHECK(p_cuGraphAddKernelNode(&node, g, NULL, 0, &p));
        CHECK(p_cuGraphInstantiateWithFlags(&exec, g, 0));
    } else if (!strcmp(path, "capture")) {
        CUgraph g;
        for (int i = 0; i < 3; i++) CHECK(p_cuLaunchKernel(fn, 1, 1, 1, 32, 1, 1, 0, s, NULL, NULL));
        CHECK(p_cuStreamSynchronize(s));
        double t = now();
        CHECK(p_cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_GLOBAL));
        for (int i = 0; i < CAPTURED; i++) CHECK(p_cuLaunchKernel(fn, 1, 1, 1, 32, 1, 1, 0, s, NULL, NULL));
        CHECK(p_cuStreamEndCapture(s, &g));
        capture_seconds[id] = now() - t;
        CHECK(p_cuGraphInstantiateWithFlags(&exec, g, 0));
    }
    double end = now() + seconds;
    long n = 0;
    while (now() < end) {
        if (!strcmp(path, "sync") || !strcmp(path, "async")) {
            CHECK(p_cuLaunchKernel(fn, 1, 1, 1, 32, 1, 1, 0, s, NULL, NULL));
            if (!strcmp(path, "sync")) CHECK(p_cuStreamSynchronize(s));
        } else if (!strcmp(path, "ex")) {
            CUlaunchConfig c;
            memset(&c, 0, sizeof c);
            c.gridDimX = c.gridDimY = c.gridDimZ = 1;
            c.blockDimX = 32; c.blockDimY = c.blockDimZ = 1;
            c.hStream = s;
            CHECK(p_cuLaunchKernelEx(&c, fn, NULL, NULL));
        } else if (!strcmp(path, "coop")) {
            CHECK(p_cuLaunchCooperativeKernel(fn, 1, 1, 1, 32, 1, 1, 0, s, NULL));
        } else if (!strcmp(path, "graph")) {
            CHECK(p_cuGraphLaunch(exec, s));
        } else if (!strcmp(path, "capture")) {
            CHECK(p_cuGraphLaunch(exec, s));
            n += CAPTURED - 1;
        } else if (!strcmp(path, "ptsz")) {
            CHECK(p_launch_ptsz(fn, 1, 1, 1, 32, 1, 1, 0, NULL, NULL, NULL));
        } else {
            printf("FAIL unknown path %s\n", path);
            exit(2);
        }
        n++;
    }
    if (!strcmp(path, "ptsz")) CHECK(p_sync_ptsz(NULL));
    CHECK(p_cuStreamSynchronize(s));
    launches[id] = n;
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: %s PATH KERNEL SECONDS [THREADS]\n", argv[0]); return 2; }
    path = argv[1];
    seconds = atof(argv[3]);
    int threads = argc > 4 ? atoi(argv[4]) : 1;
    if (threads < 1 || threads > 64) { fprintf(stderr, "THREADS must be 1..64\n"); return 2; }
    void *lib = dlopen("libcuda.so.1", RTLD_NOW);
    if (!lib) { printf("FAIL dlopen\n"); return 1; }
#define LOAD(name) p_##name = (__typeof__(p_##name))dlsym(lib, #name); if (!p_##name) { printf("FAIL dlsym %s\n", #name); return 1; }
    LOAD(cuInit) LOAD(cuDevicePrimaryCtxRetain) LOAD(cuCtxSetCurrent) LOAD(cuModuleLoadData)
    LOAD(cuModuleGetFunction) LOAD(cuStreamCreate) LOAD(cuStreamSynchronize) LOAD(cuLaunchKernel)
    LOAD(cuLaunchKernelEx) LOAD(cuLaunchCooperativeKernel) LOAD(cuGraphCreate)
    LOAD(cuGraphAddKernelNode) LOAD(cuGraphInstantiateWithFlags) LOAD(cuGraphLaunch)
    LOAD(cuCtxSynchronize) LOAD(cuStreamBeginCapture_v2) LOAD(cuStreamEndCapture)
    p_launch_ptsz = dlsym(lib, "cuLaunchKernel_ptsz");
    p_sync_ptsz = dlsym(lib, "cuStreamSynchronize_ptsz");
    if (!p_launch_ptsz || !p_sync_ptsz) { printf("FAIL dlsym ptsz\n"); return 1; }
    char image[256];
    snprintf(image, sizeof image, "gpupool-sim-module 1\nkernel busy %s\n", argv[2]);
    CHECK(p_cuInit(0));
    CHECK(p_cuDevicePrimaryCtxRetain(&ctx, 0));
    CHECK(p_cuCtxSetCurrent(ctx));
    CUmodule m;
    CHECK(p_cuModuleLoadData(&m, image));
    CHECK(p_cuModuleGetFunction(&fn, m, "busy"));
    double t0 = now();
    pthread_t th[64];
    for (long i = 0; i < threads; i++) pthread_create(&th[i], NULL, worker, (void *)i);
    long total = 0;
    double longest_capture = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        total += launches[i];
        if (capture_seconds[i] > longest_capture) longest_capture = capture_seconds[i];
    }
    CHECK(p_cuCtxSynchronize());
    printf("launches %ld\nseconds %.6f\ncapture_seconds %.6f\n", total, now() - t0, longest_capture);
    return 0;
}
