/* Graphs that copy between host memory and the device, as torch.cuda.graph captures them and
 * as cudaGraphAddMemcpyNode1D builds them: every launch reads the host source as it is when
 * launched and writes the host destination.
 *
 * Usage: graph_host
 * Prints "captured_ok B", "built_ok B", "child_ok B" (each launched three times with new host
 * data), "broken B" (a capture a synchronisation invalidates ends without a graph), "freed B"
 * (the device memory free once everything is destroyed is what it was at the start), then
 * "OK". */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <string.h>

#define N 4096

#define CHECK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { \
    printf("FAIL %s: %d %s\n", #x, e_, cudaGetErrorString(e_)); return 1; } } while (0)

static int in[N], out[N];

static void fill(int round) {
    for (int i = 0; i < N; i++) in[i] = round * 100000 + i;
    memset(out, 0, sizeof out);
}

static int matches(int round) {
    for (int i = 0; i < N; i++)
        if (out[i] != round * 100000 + i) return 0;
    return 1;
}

/* Launches `exec` three times with new host data; whether each result came back. */
static int replays(cudaGraphExec_t exec, cudaStream_t s) {
    int ok = 1;
    for (int round = 1; round <= 3; round++) {
        fill(round);
        if (cudaGraphLaunch(exec, s) != cudaSuccess || cudaStreamSynchronize(s) != cudaSuccess)
            return 0;
        ok &= matches(round);
    }
    return ok;
}

int main(void) {
    size_t free0, free1, total;
    cudaStream_t s;
    int *d, *d2;
    CHECK(cudaFree(0));
    CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    CHECK(cudaMalloc((void **)&d, sizeof in));
    CHECK(cudaMalloc((void **)&d2, sizeof in));
    CHECK(cudaMemGetInfo(&free0, &total));

    /* Captured: host -> d -> d2 -> host. */
    cudaGraph_t captured;
    cudaGraphExec_t captured_exec;
    fill(0);
    CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    CHECK(cudaMemcpyAsync(d, in, sizeof in, cudaMemcpyHostToDevice, s));
    CHECK(cudaMemcpyAsync(d2, d, sizeof in, cudaMemcpyDeviceToDevice, s));
    CHECK(cudaMemcpyAsync(out, d2, sizeof out, cudaMemcpyDeviceToHost, s));
    CHECK(cudaStreamEndCapture(s, &captured));
    CHECK(cudaGraphInstantiate(&captured_exec, captured, 0));
    printf("captured_ok %d\n", replays(captured_exec, s));

    /* Built: a host-to-device node, then a device-to-host one. */
    cudaGraph_t built, parent;
    cudaGraphExec_t built_exec, parent_exec;
    cudaGraphNode_t up, down, child;
    CHECK(cudaGraphCreate(&built, 0));
    CHECK(cudaGraphAddMemcpyNode1D(&up, built, NULL, 0, d, in, sizeof in,
                                   cudaMemcpyHostToDevice));
    CHECK(cudaGraphAddMemcpyNode1D(&down, built, &up, 1, out, d, sizeof out,
                                   cudaMemcpyDeviceToHost));
    CHECK(cudaGraphInstantiate(&built_exec, built, 0));
    printf("built_ok %d\n", replays(built_exec, s));

    /* The built graph as a child of another. */
    CHECK(cudaGraphCreate(&parent, 0));
    CHECK(cudaGraphAddChildGraphNode(&child, parent, NULL, 0, built));
    CHECK(cudaGraphInstantiate(&parent_exec, parent, 0));
    printf("child_ok %d\n", replays(parent_exec, s));

    /* A capture a synchronisation breaks: its staging buffers go with it. */
    cudaGraph_t broken = NULL;
    CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    CHECK(cudaMemcpyAsync(d, in, sizeof in, cudaMemcpyHostToDevice, s));
    cudaError_t sync_rc = cudaStreamSynchronize(s);
    cudaError_t end_rc = cudaStreamEndCapture(s, &broken);
    cudaGetLastError();
    printf("broken %d\n",
           sync_rc != cudaSuccess && end_rc == cudaErrorStreamCaptureInvalidated && !broken);

    CHECK(cudaGraphExecDestroy(captured_exec));
    CHECK(cudaGraphExecDestroy(built_exec));
    CHECK(cudaGraphExecDestroy(parent_exec));
    CHECK(cudaGraphDestroy(captured));
    CHECK(cudaGraphDestroy(built));
    CHECK(cudaGraphDestroy(parent));
    CHECK(cudaDeviceSynchronize());
    CHECK(cudaMemGetInfo(&free1, &total));
    printf("freed %d\n", free1 == free0);
    printf("OK\n");
    return 0;
}
