/* What a hostile tenant tries against its memory limit, through the driver API.
 * usage: hostile MODE HOLD_MIB
 *   sizes   hold HOLD_MIB, then ask for sizes near SIZE_MAX on every allocation path; then
 *           allocate 64 MiB chunks until refused
 *   vmm     create 1 GiB handles, map each and release it while mapped, until refused
 *   arrays  create arrays of every kind of format code, known or not, until refused
 *   exec    hold HOLD_MIB, then exec itself as "after-exec", which allocates HOLD_MIB again
 * Prints "key value" lines; "held" is what the process held at the end (bytes). */
#include <cuda.h>
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(call) do { CUresult e_ = (call); if (e_ != CUDA_SUCCESS) { \
    printf("FAIL %s:%d %s -> %d\n", __FILE__, __LINE__, #call, (int)e_); return 1; } } while (0)

/* The driver through dlopen + dlsym, as most programs that do not link libcuda reach it. */
#define DRIVER(X) \
    X(cuInit, "cuInit", CUresult (*)(unsigned)) \
    X(cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain", CUresult (*)(CUcontext *, CUdevice)) \
    X(cuCtxSetCurrent, "cuCtxSetCurrent", CUresult (*)(CUcontext)) \
    X(cuMemGetInfo, "cuMemGetInfo_v2", CUresult (*)(size_t *, size_t *)) \
    X(cuMemAlloc, "cuMemAlloc_v2", CUresult (*)(CUdeviceptr *, size_t)) \
    X(cuMemAllocManaged, "cuMemAllocManaged", CUresult (*)(CUdeviceptr *, size_t, unsigned)) \
    X(cuMemAllocPitch, "cuMemAllocPitch_v2", CUresult (*)(CUdeviceptr *, size_t *, size_t, size_t, unsigned)) \
    X(cuMemAllocAsync, "cuMemAllocAsync", CUresult (*)(CUdeviceptr *, size_t, CUstream)) \
    X(cuMemCreate, "cuMemCreate", CUresult (*)(CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *, unsigned long long)) \
    X(cuMemRelease, "cuMemRelease", CUresult (*)(CUmemGenericAllocationHandle)) \
    X(cuMemAddressReserve, "cuMemAddressReserve", CUresult (*)(CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long)) \
    X(cuMemMap, "cuMemMap", CUresult (*)(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle, unsigned long long)) \
    X(cuArrayCreate, "cuArrayCreate_v2", CUresult (*)(CUarray *, const CUDA_ARRAY_DESCRIPTOR *)) \
    X(cuArray3DCreate, "cuArray3DCreate_v2", CUresult (*)(CUarray *, const CUDA_ARRAY3D_DESCRIPTOR *))
#define DECLARE(var, name, type) static __typeof__(type) p_##var;
DRIVER(DECLARE)
#define RESOLVE(var, name, type) \
    if (!(p_##var = (__typeof__(type))dlsym(lib, name))) { printf("FAIL dlsym %s\n", name); exit(1); }
#define cuInit p_cuInit
#define cuDevicePrimaryCtxRetain p_cuDevicePrimaryCtxRetain
#define cuCtxSetCurrent p_cuCtxSetCurrent
#undef cuMemGetInfo
#define cuMemGetInfo p_cuMemGetInfo
#undef cuMemAlloc
#define cuMemAlloc p_cuMemAlloc
#define cuMemAllocManaged p_cuMemAllocManaged
#undef cuMemAllocPitch
#define cuMemAllocPitch p_cuMemAllocPitch
#define cuMemAllocAsync p_cuMemAllocAsync
#define cuMemCreate p_cuMemCreate
#define cuMemRelease p_cuMemRelease
#define cuMemAddressReserve p_cuMemAddressReserve
#define cuMemMap p_cuMemMap
#undef cuArrayCreate
#define cuArrayCreate p_cuArrayCreate
#undef cuArray3DCreate
#define cuArray3DCreate p_cuArray3DCreate

static size_t mib(size_t n) { return n << 20; }

/* Allocates 64 MiB chunks until refused; returns the bytes obtained (kept). */
static size_t fill(void) {
    size_t got = 0;
    CUdeviceptr p;
    while (cuMemAlloc(&p, mib(64)) == CUDA_SUCCESS) got += mib(64);
    return got;
}

static int sizes(size_t hold) {
    CUdeviceptr p;
    CHECK(cuMemAlloc(&p, hold));
    size_t f0, t;
    CHECK(cuMemGetInfo(&f0, &t));
    const size_t huge[] = { SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - mib(1) + 1, SIZE_MAX / 2 + 1,
                            (SIZE_MAX >> 20) << 20 };
    for (int i = 0; i < (int)(sizeof huge / sizeof huge[0]); i++) {
        size_t s = huge[i];
        CUdeviceptr q = 0;
        size_t pitch = 0;
        printf("alloc_%d %d\n", i, (int)cuMemAlloc(&q, s));
        printf("managed_%d %d\n", i, (int)cuMemAllocManaged(&q, s, CU_MEM_ATTACH_GLOBAL));
        printf("pitch_%d %d\n", i, (int)cuMemAllocPitch(&q, &pitch, s, 4, 4));
        printf("pitch_rows_%d %d\n", i, (int)cuMemAllocPitch(&q, &pitch, 4096, s / 4096 + 1, 4));
        printf("async_%d %d\n", i, (int)cuMemAllocAsync(&q, s, 0));
        CUmemAllocationProp prop;
        memset(&prop, 0, sizeof prop);
        prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
        prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
        prop.location.id = 0;
        CUmemGenericAllocationHandle h;
        printf("vmm_%d %d\n", i, (int)cuMemCreate(&h, s, &prop, 0));
        CUDA_ARRAY3D_DESCRIPTOR d3;
        memset(&d3, 0, sizeof d3);
        d3.Width = s / 16;
        d3.Height = 16;
        d3.Depth = 16;
        d3.Format = CU_AD_FORMAT_FLOAT;
        d3.NumChannels = 4;
        CUarray a;
        printf("array_%d %d\n", i, (int)cuArray3DCreate(&a, &d3));
    }
    size_t f1;
    CHECK(cuMemGetInfo(&f1, &t));
    printf("free_before %zu\nfree_after_huge %zu\n", f0, f1);
    printf("held %zu\n", hold + fill());
    return 0;
}

static int vmm(void) {
    CUmemAllocationProp prop;
    memset(&prop, 0, sizeof prop);
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = 0;
    size_t g = mib(1024), held = 0;
    int mapped = 0;
    CUresult err = CUDA_SUCCESS;
    for (int i = 0; i < 32; i++) {
        CUmemGenericAllocationHandle h;
        if ((err = cuMemCreate(&h, g, &prop, 0)) != CUDA_SUCCESS) break;
        CUdeviceptr va;
        CHECK(cuMemAddressReserve(&va, g, 0, 0, 0));
        CHECK(cuMemMap(va, g, 0, h, 0));
        /* Released while mapped: the driver frees it at the last unmap, not now. */
        CHECK(cuMemRelease(h));
        mapped++;
        held += g;
    }
    printf("mapped %d\nerror %d\n", mapped, (int)err);
    printf("held %zu\n", held + fill());
    return 0;
}

static int arrays(void) {
    /* 2048 x 2048 arrays of plain, normalized, block-compressed and video formats (with the bytes
     * per element a driver needs at least), and codes no driver defines (bytes 0). */
    const struct { unsigned format, channels; size_t bytes; } kinds[] = {
        { 0x01, 4, 4 }, { 0x20, 4, 16 }, { 0xb0, 1, 1 }, { 0x91, 4, 0 }, { 0xc5, 1, 8 },
        { 0xa8, 1, 4 }, { 0x77, 1, 0 }, { 0x12345, 1, 0 } };
    const int n = (int)(sizeof kinds / sizeof kinds[0]);
    size_t held = 0;
    int created = 0, invalid = 0, unknown_created = 0;
    for (int round = 0; round < 256; round++) {
        for (int i = 0; i < n; i++) {
            CUDA_ARRAY_DESCRIPTOR d;
            memset(&d, 0, sizeof d);
            d.Width = 2048;
            d.Height = 2048;
            d.Format = (CUarray_format)kinds[i].format;
            d.NumChannels = kinds[i].channels;
            CUarray a;
            CUresult rc = cuArrayCreate(&a, &d);
            if (rc == CUDA_SUCCESS) {
                created++;
                /* BC1 packs 4x4 pixels in 8 bytes: half a byte per pixel */
                held += kinds[i].format == 0x91 ? (size_t)2048 * 2048 / 2
                                                : (size_t)2048 * 2048 * kinds[i].bytes;
                if (kinds[i].format == 0x77 || kinds[i].format == 0x12345) unknown_created++;
            } else if (rc == CUDA_ERROR_INVALID_VALUE) {
                invalid++;
            }
        }
    }
    printf("created %d\ninvalid %d\nunknown_created %d\n", created, invalid, unknown_created);
    printf("held %zu\n", held);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s MODE HOLD_MIB\n", argv[0]); return 2; }
    const char *mode = argv[1];
    size_t hold = mib((size_t)atol(argv[2]));
    void *lib = dlopen("libcuda.so.1", RTLD_NOW);
    if (!lib) { printf("FAIL dlopen\n"); return 1; }
    DRIVER(RESOLVE)
    CHECK(cuInit(0));
    CUcontext ctx;
    CHECK(cuDevicePrimaryCtxRetain(&ctx, 0));
    CHECK(cuCtxSetCurrent(ctx));
    if (!strcmp(mode, "sizes")) return sizes(hold);
    if (!strcmp(mode, "vmm")) return vmm();
    if (!strcmp(mode, "arrays")) return arrays();
    if (!strcmp(mode, "exec")) {
        CUdeviceptr p;
        CHECK(cuMemAlloc(&p, hold));
        fflush(stdout);
        char *args[] = { argv[0], "after-exec", argv[2], NULL };
        execv("/proc/self/exe", args);
        printf("FAIL exec\n");
        return 1;
    }
    if (!strcmp(mode, "after-exec")) {
        CUdeviceptr p;
        printf("after_exec_alloc %d\n", (int)cuMemAlloc(&p, hold));
        return 0;
    }
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
}
