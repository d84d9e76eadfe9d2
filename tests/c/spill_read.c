/* Reads two buffers with a simulated memory-bound kernel (`reads=buffer`): the first allocated
 * inside the tenant's limit, the second past it (spilled to host memory when the tenant has a
 * spill allowance). Driver API, through dlopen as NVIDIA's runtime does.
 * Usage: spill_read MIB [free]    (each buffer's size)
 * Prints "spilled_first F", "spilled_second S" (1 when pinned host memory), "managed_second M"
 * (1 when managed memory), "first_ms A", "second_ms B" (time of a read of each,
 * by events, the fastest of three); with "free", then frees the first buffer and prints "again_ms C", a read of the second
 * one after that. */
#include <cuda.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(x) do { CUresult r_ = (x); if (r_ != CUDA_SUCCESS) { \
    printf("FAIL %s: %d\n", #x, (int)r_); return 1; } } while (0)

static CUresult (*p_cuInit)(unsigned);
static CUresult (*p_cuDevicePrimaryCtxRetain)(CUcontext *, CUdevice);
static CUresult (*p_cuCtxSetCurrent)(CUcontext);
static CUresult (*p_cuMemAlloc_v2)(CUdeviceptr *, size_t);
static CUresult (*p_cuMemHostGetFlags)(unsigned *, void *);
static CUresult (*p_cuModuleLoadData)(CUmodule *, const void *);
static CUresult (*p_cuModuleGetFunction)(CUfunction *, CUmodule, const char *);
static CUresult (*p_cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
                                    unsigned, unsigned, CUstream, void **, void **);
static CUresult (*p_cuCtxSynchronize)(void);
static CUresult (*p_cuMemFree_v2)(CUdeviceptr);
static CUresult (*p_cuPointerGetAttribute)(void *, int, CUdeviceptr);

static CUresult (*p_cuEventCreate)(CUevent *, unsigned);
static CUresult (*p_cuEventRecord)(CUevent, CUstream);
static CUresult (*p_cuEventSynchronize)(CUevent);
static CUresult (*p_cuEventElapsedTime)(float *, CUevent, CUevent);

/* The fastest of three reads, timed by events around the kernel (the device's time, not how
 * soon a busy machine wakes the waiting thread). */
static int read_ms(CUfunction f, CUdeviceptr p, unsigned long long bytes, double *ms) {
    void *params[] = {&p, &bytes};
    CUevent start, end;
    if (p_cuEventCreate(&start, 0) != CUDA_SUCCESS || p_cuEventCreate(&end, 0) != CUDA_SUCCESS) return 1;
    for (int i = 0; i < 3; i++) {
        float took = 0;
        if (p_cuEventRecord(start, NULL) != CUDA_SUCCESS) return 1;
        if (p_cuLaunchKernel(f, 1, 1, 1, 256, 1, 1, 0, NULL, params, NULL) != CUDA_SUCCESS) return 1;
        if (p_cuEventRecord(end, NULL) != CUDA_SUCCESS) return 1;
        if (p_cuEventSynchronize(end) != CUDA_SUCCESS) return 1;
        if (p_cuEventElapsedTime(&took, start, end) != CUDA_SUCCESS) return 1;
        if (i == 0 || took < *ms) *ms = took;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2 && argc != 3) { fprintf(stderr, "usage: %s MIB [free]\n", argv[0]); return 2; }
    unsigned long long bytes = (unsigned long long)atol(argv[1]) << 20;
    void *lib = dlopen("libcuda.so.1", RTLD_NOW);
    if (!lib) { printf("FAIL dlopen\n"); return 1; }
#define LOAD(name) p_##name = (__typeof__(p_##name))dlsym(lib, #name); if (!p_##name) { printf("FAIL dlsym %s\n", #name); return 1; }
    LOAD(cuInit) LOAD(cuDevicePrimaryCtxRetain) LOAD(cuCtxSetCurrent) LOAD(cuMemAlloc_v2)
    LOAD(cuMemHostGetFlags) LOAD(cuModuleLoadData) LOAD(cuModuleGetFunction) LOAD(cuLaunchKernel)
    LOAD(cuCtxSynchronize) LOAD(cuMemFree_v2) LOAD(cuPointerGetAttribute)
    LOAD(cuEventCreate) LOAD(cuEventRecord) LOAD(cuEventSynchronize) LOAD(cuEventElapsedTime)
    CUcontext ctx;
    CHECK(p_cuInit(0));
    CHECK(p_cuDevicePrimaryCtxRetain(&ctx, 0));
    CHECK(p_cuCtxSetCurrent(ctx));
    CUmodule m;
    CUfunction f;
    CHECK(p_cuModuleLoadData(&m, "gpupool-sim-module 1\nkernel read 0us reads=buffer\n"));
    CHECK(p_cuModuleGetFunction(&f, m, "read"));
    CUdeviceptr buf[2];
    for (int i = 0; i < 2; i++) {
        CHECK(p_cuMemAlloc_v2(&buf[i], bytes));
        unsigned flags;
        printf("spilled_%s %d\n", i ? "second" : "first",
               p_cuMemHostGetFlags(&flags, (void *)(uintptr_t)buf[i]) == CUDA_SUCCESS);
    }
    unsigned managed = 0;
    CHECK(p_cuPointerGetAttribute(&managed, 8 /* CU_POINTER_ATTRIBUTE_IS_MANAGED */, buf[1]));
    printf("managed_second %u\n", managed);
    for (int i = 0; i < 2; i++) {
        double ms;
        if (read_ms(f, buf[i], bytes, &ms)) { printf("FAIL read\n"); return 1; }
        printf("%s_ms %.3f\n", i ? "second" : "first", ms);
    }
    if (argc == 3) {
        double ms;
        CHECK(p_cuMemFree_v2(buf[0]));
        if (read_ms(f, buf[1], bytes, &ms)) { printf("FAIL read\n"); return 1; }
        printf("again_ms %.3f\n", ms);
        CHECK(p_cuMemFree_v2(buf[1]));
    }
    return 0;
}
