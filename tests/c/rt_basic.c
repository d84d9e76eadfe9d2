/* Exercises NVIDIA's runtime on whatever libcuda.so.1 the loader finds: device queries, memory
 * info, malloc / memcpy / memset / free (sync and async), pinned and managed memory, streams,
 * events, pools. Prints "key value" lines the Rust tests parse; exits non-zero on any failure. */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(call) do { cudaError_t e_ = (call); if (e_ != cudaSuccess) { \
    printf("FAIL %s:%d %s -> %d %s\n", __FILE__, __LINE__, #call, (int)e_, cudaGetErrorString(e_)); \
    return 1; } } while (0)
#define EXPECT(cond) do { if (!(cond)) { printf("FAIL %s:%d %s\n", __FILE__, __LINE__, #cond); return 1; } } while (0)

int main(void) {
    int rt = 0, drv = 0, n = 0;
    CHECK(cudaRuntimeGetVersion(&rt));
    CHECK(cudaDriverGetVersion(&drv));
    CHECK(cudaGetDeviceCount(&n));
    printf("runtime %d\ndriver %d\ndevices %d\n", rt, drv, n);
    EXPECT(n >= 1);
    struct cudaDeviceProp prop;
    CHECK(cudaGetDeviceProperties(&prop, 0));
    printf("name %s\nsms %d\ntotal_global %zu\ncc %d.%d\n", prop.name, prop.multiProcessorCount,
           prop.totalGlobalMem, prop.major, prop.minor);
    CHECK(cudaSetDevice(0));
    size_t free0 = 0, total = 0;
    CHECK(cudaMemGetInfo(&free0, &total));
    printf("meminfo_free %zu\nmeminfo_total %zu\n", free0, total);

    const size_t N = 1 << 20;
    unsigned char *host = malloc(N), *back = malloc(N);
    for (size_t i = 0; i < N; i++) host[i] = (unsigned char)(i * 7);
    void *d = NULL, *d2 = NULL;
    CHECK(cudaMalloc(&d, N));
    CHECK(cudaMalloc(&d2, N));
    CHECK(cudaMemcpy(d, host, N, cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(d2, d, N, cudaMemcpyDeviceToDevice));
    CHECK(cudaMemcpy(back, d2, N, cudaMemcpyDeviceToHost));
    EXPECT(memcmp(host, back, N) == 0);
    CHECK(cudaMemset(d, 0xab, N / 2));
    CHECK(cudaMemcpy(back, d, N, cudaMemcpyDeviceToHost));
    EXPECT(back[0] == 0xab && back[N / 2 - 1] == 0xab && back[N / 2] == host[N / 2]);
    size_t free1 = 0;
    CHECK(cudaMemGetInfo(&free1, &total));
    printf("meminfo_free_after_2MiB %zu\n", free1);

    cudaStream_t s;
    CHECK(cudaStreamCreate(&s));
    void *pinned = NULL;
    CHECK(cudaMallocHost(&pinned, N));
    memset(pinned, 0x11, N);
    CHECK(cudaMemcpyAsync(d, pinned, N, cudaMemcpyHostToDevice, s));
    CHECK(cudaMemsetAsync(d, 0x22, 16, s));
    CHECK(cudaMemcpyAsync(back, d, N, cudaMemcpyDeviceToHost, s));
    CHECK(cudaStreamSynchronize(s));
    EXPECT(back[0] == 0x22 && back[16] == 0x11);
    struct cudaPointerAttributes attr;
    CHECK(cudaPointerGetAttributes(&attr, d));
    EXPECT(attr.type == cudaMemoryTypeDevice && attr.device == 0);
    CHECK(cudaPointerGetAttributes(&attr, pinned));
    EXPECT(attr.type == cudaMemoryTypeHost);
    CHECK(cudaPointerGetAttributes(&attr, back));
    EXPECT(attr.type == cudaMemoryTypeUnregistered);

    cudaEvent_t a, b;
    CHECK(cudaEventCreate(&a));
    CHECK(cudaEventCreate(&b));
    CHECK(cudaEventRecord(a, s));
    CHECK(cudaEventRecord(b, s));
    CHECK(cudaEventSynchronize(b));
    float ms = -1;
    CHECK(cudaEventElapsedTime(&ms, a, b));
    EXPECT(ms >= 0);
    enum cudaStreamCaptureStatus cs;
    CHECK(cudaStreamIsCapturing(s, &cs));
    EXPECT(cs == cudaStreamCaptureStatusNone);

    void *m = NULL;
    CHECK(cudaMallocManaged(&m, 4096, cudaMemAttachGlobal));
    memset(m, 3, 4096);
    CHECK(cudaMemcpy(back, m, 4096, cudaMemcpyDefault));
    EXPECT(back[4095] == 3);
#if CUDART_VERSION >= 11020
    void *pa = NULL;
    CHECK(cudaMallocAsync(&pa, N, s));
    CHECK(cudaMemsetAsync(pa, 5, N, s));
    CHECK(cudaMemcpyAsync(back, pa, N, cudaMemcpyDeviceToHost, s));
    CHECK(cudaStreamSynchronize(s));
    EXPECT(back[N - 1] == 5);
    CHECK(cudaFreeAsync(pa, s));
    cudaMemPool_t pool;
    CHECK(cudaDeviceGetDefaultMemPool(&pool, 0));
    unsigned long long used = 1;
    CHECK(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemCurrent, &used));
    EXPECT(used == 0);
#endif
    {
        /* Past the card's largest mipmapped 2D extent (32768): refused, as on an H100. */
        struct cudaChannelFormatDesc cd = cudaCreateChannelDesc(8, 0, 0, 0, cudaChannelFormatKindUnsigned);
        cudaMipmappedArray_t big;
        struct cudaExtent e = {1024, 98304, 0};
        EXPECT(cudaMallocMipmappedArray(&big, &cd, e, 1, 0) == cudaErrorInvalidValue);
        (void)cudaGetLastError();
    }
    size_t pitch = 0;
    void *p2 = NULL;
    CHECK(cudaMallocPitch(&p2, &pitch, 1000, 10));
    EXPECT(pitch >= 1000);
    CHECK(cudaMemcpy2D(p2, pitch, host, 1000, 1000, 10, cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy2D(back, 1000, p2, pitch, 1000, 10, cudaMemcpyDeviceToHost));
    EXPECT(memcmp(back, host, 10000) == 0);
    CHECK(cudaFree(p2));
    CHECK(cudaFree(m));
    CHECK(cudaFreeHost(pinned));
    CHECK(cudaFree(d));
    CHECK(cudaFree(d2));
    CHECK(cudaStreamDestroy(s));
    /* a pool gives back what was freed into it at the next synchronisation */
    CHECK(cudaDeviceSynchronize());
    size_t free2 = 0;
    CHECK(cudaMemGetInfo(&free2, &total));
    EXPECT(free2 == free0);
    printf("OK\n");
    return 0;
}
