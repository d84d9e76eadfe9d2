/* Allocates through one runtime allocation path until refused, then frees everything.
 * usage: rt_limits PATH CHUNK_MIB   (PATH: malloc pitch managed async pool array array3d mipmap)
 * Prints "key value" lines: total, free_before, chunks, allocated, error, free_holding, free_after. */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(call) do { cudaError_t e_ = (call); if (e_ != cudaSuccess) { \
    printf("FAIL %s:%d %s -> %d\n", __FILE__, __LINE__, #call, (int)e_); return 1; } } while (0)

enum { MAXP = 4096 };
static struct cudaExtent extent(size_t w, size_t h, size_t d) { struct cudaExtent e = { w, h, d }; return e; }
static void *ptrs[MAXP];
static cudaArray_t arrays[MAXP];
static cudaMipmappedArray_t mips[MAXP];

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s PATH CHUNK_MIB\n", argv[0]); return 2; }
    const char *path = argv[1];
    size_t chunk = (size_t)atol(argv[2]) << 20;
    size_t free0, total, free1, free2;
    CHECK(cudaSetDevice(0));
    CHECK(cudaFree(0));
    CHECK(cudaMemGetInfo(&free0, &total));
    cudaStream_t s;
    CHECK(cudaStreamCreate(&s));
#if CUDART_VERSION >= 11020
    cudaMemPool_t pool;
    struct cudaMemPoolProps props;
    memset(&props, 0, sizeof props);
    props.allocType = cudaMemAllocationTypePinned;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = 0;
    CHECK(cudaMemPoolCreate(&pool, &props));
#endif
    int n = 0;
    cudaError_t err = cudaSuccess;
    size_t got = 0;
    for (; n < MAXP; n++) {
        if (!strcmp(path, "malloc")) err = cudaMalloc(&ptrs[n], chunk);
        else if (!strcmp(path, "managed")) err = cudaMallocManaged(&ptrs[n], chunk, cudaMemAttachGlobal);
        else if (!strcmp(path, "pitch")) { size_t pitch; err = cudaMallocPitch(&ptrs[n], &pitch, 1000, chunk / 1024); }
#if CUDART_VERSION >= 11020
        else if (!strcmp(path, "async")) { err = cudaMallocAsync(&ptrs[n], chunk, s); if (!err) err = cudaStreamSynchronize(s); }
        else if (!strcmp(path, "pool")) { err = cudaMallocFromPoolAsync(&ptrs[n], chunk, pool, s); if (!err) err = cudaStreamSynchronize(s); }
#endif
        else if (!strcmp(path, "array")) {
            struct cudaChannelFormatDesc d = cudaCreateChannelDesc(32, 0, 0, 0, cudaChannelFormatKindFloat);
            err = cudaMallocArray(&arrays[n], &d, 1024, chunk / 4096, 0);
        } else if (!strcmp(path, "array3d")) {
            struct cudaChannelFormatDesc d = cudaCreateChannelDesc(8, 0, 0, 0, cudaChannelFormatKindUnsigned);
            err = cudaMalloc3DArray(&arrays[n], &d, extent(1024, 1024, chunk >> 20), 0);
        } else if (!strcmp(path, "mipmap")) {
            struct cudaChannelFormatDesc d = cudaCreateChannelDesc(8, 0, 0, 0, cudaChannelFormatKindUnsigned);
            err = cudaMallocMipmappedArray(&mips[n], &d, extent(4096, chunk >> 12, 0), 1, 0);
        } else { fprintf(stderr, "unknown path %s\n", path); return 2; }
        if (err != cudaSuccess) break;
        got += chunk;
    }
    CHECK(cudaMemGetInfo(&free1, &total));
    (void)cudaGetLastError();
    for (int i = 0; i < n; i++) {
        if (!strcmp(path, "array") || !strcmp(path, "array3d")) CHECK(cudaFreeArray(arrays[i]));
        else if (!strcmp(path, "mipmap")) CHECK(cudaFreeMipmappedArray(mips[i]));
#if CUDART_VERSION >= 11020
        else if (!strcmp(path, "async") || !strcmp(path, "pool")) CHECK(cudaFreeAsync(ptrs[i], s));
#endif
        else CHECK(cudaFree(ptrs[i]));
    }
    CHECK(cudaStreamSynchronize(s));
    CHECK(cudaMemGetInfo(&free2, &total));
    printf("total %zu\nfree_before %zu\nchunks %d\nallocated %zu\nerror %d\nfree_holding %zu\nfree_after %zu\n",
           total, free0, n, got, (int)err, free1, free2);
    return 0;
}
