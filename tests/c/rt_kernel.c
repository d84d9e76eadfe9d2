/* Kernels registered with NVIDIA's runtime, as a program compiled by nvcc registers them,
 * launched with cudaLaunchKernel (what `kernel<<<grid, block>>>(...)` compiles to).
 *
 * Usage: rt_kernel KERNEL SECONDS [graph]
 *   Registers a fat binary holding a simulated module (kernel `busy` running KERNEL, e.g. 1ms),
 *   launches `busy` without synchronising until SECONDS have passed, then synchronises.
 *   Also checks that a launch of a function never registered fails.
 *   With `graph`: also captures four launches and a memset on a stream into a CUDA graph, as
 *   torch.cuda.graph does, and replays it twice.
 * Prints "launches N", "seconds S", "unregistered E" (the error of that launch), with `graph`
 * "graph_nodes N", "nothing_ran_in_capture B", "replays_ms T", "memset_ok B", then "OK". */
#include "sim_fatbin.h"
#include <stdlib.h>
#include <string.h>

static struct {
    struct fatbin_head h;
    char payload[256];
} __attribute__((aligned(8))) fatbin;
static struct fatbin_wrapper wrapper = {0x466243b1, 1, &fatbin, 0};

static void busy(void) {}
static void never_registered(void) {}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s KERNEL SECONDS\n", argv[0]); return 2; }
    double seconds = atof(argv[2]);
    fatbin_init(&fatbin.h, sizeof fatbin, sizeof fatbin.payload);
    snprintf(fatbin.payload, sizeof fatbin.payload,
             "gpupool-sim-module 1\nkernel busy %s\nkernel other 1us\n", argv[1]);
    void **handle = __cudaRegisterFatBinary(&wrapper);
    __cudaRegisterFunction(handle, (const char *)busy, "busy", "busy", -1, 0, 0, 0, 0, 0);
    __cudaRegisterFatBinaryEnd(handle);

    dim3 grid = {1, 1, 1}, block = {32, 1, 1};
    CHECK(cudaFree(0));
    double t0 = now(), end = t0 + seconds;
    long n = 0;
    do {
        CHECK(cudaLaunchKernel((const void *)busy, grid, block, NULL, 0, 0));
        n++;
    } while (now() < end);
    CHECK(cudaDeviceSynchronize());
    double took = now() - t0;
    cudaError_t e = cudaLaunchKernel((const void *)never_registered, grid, block, NULL, 0, 0);
    cudaGetLastError();
    printf("launches %ld\nseconds %.6f\nunregistered %d\n", n, took, e);
    if (e == cudaSuccess) { printf("FAIL an unregistered function launched\n"); return 1; }
    if (argc > 3 && !strcmp(argv[3], "graph")) {
        cudaStream_t s;
        cudaEvent_t e0, e1;
        cudaGraph_t g;
        cudaGraphExec_t exec;
        int *d, back[4] = {0};
        CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
        CHECK(cudaEventCreate(&e0));
        CHECK(cudaEventCreate(&e1));
        CHECK(cudaMalloc((void **)&d, sizeof back));
        CHECK(cudaMemset(d, 0, sizeof back));
        CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
        for (int i = 0; i < 4; i++)
            CHECK(cudaLaunchKernel((const void *)busy, grid, block, NULL, 0, s));
        CHECK(cudaMemsetAsync(d, 0x11, sizeof back, s));
        CHECK(cudaStreamEndCapture(s, &g));
        CHECK(cudaMemcpy(back, d, sizeof back, cudaMemcpyDeviceToHost));
        printf("nothing_ran_in_capture %d\n", back[0] == 0);
        size_t nodes = 0;
        CHECK(cudaGraphGetNodes(g, NULL, &nodes));
        CHECK(cudaGraphInstantiateWithFlags(&exec, g, 0));
        CHECK(cudaEventRecord(e0, s));
        CHECK(cudaGraphLaunch(exec, s));
        CHECK(cudaGraphLaunch(exec, s));
        CHECK(cudaEventRecord(e1, s));
        CHECK(cudaStreamSynchronize(s));
        float ms = 0;
        CHECK(cudaEventElapsedTime(&ms, e0, e1));
        CHECK(cudaMemcpy(back, d, sizeof back, cudaMemcpyDeviceToHost));
        printf("graph_nodes %zu\nreplays_ms %.3f\nmemset_ok %d\n", nodes, ms, back[3] == 0x11111111);
        CHECK(cudaGraphExecDestroy(exec));
        CHECK(cudaGraphDestroy(g));
    }
    printf("OK\n");
    return 0;
}
