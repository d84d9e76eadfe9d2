/* Graphs that copy between host memory and the device, as torch.cuda.graph captures them and
 * as cudaGraphAddMemcpyNode1D builds them: every launch reads the host source as it is when
 * launched and writes the host destination.
 *
 * Usage: graph_host
 * Prints "captured_ok B", "built_ok B", "child_ok B", "rows_captured_ok B", "rows_built_ok B"
 * (each launched three times with new host data; the rows copied 2D out of and into pitched
 * host memory), "broken B" (a capture a synchronisation invalidates ends without a graph), "freed B"
 * (the device memory free once everything is destroyed is what it was at the start), then
 * "OK". */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <string.h>

#define N 4096

#define CHECK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { \
    printf("FAIL %s: %d %s\n", #x, e_, cudaGetErrorString(e_)); return 1; } } while (0)

/* Pinned host buffers, as torch.cuda.graph's copies use. */
static int *in, *out;

/* Rows of WIDTH ints copied out of rows PITCH ints apart: what lies between stays. */
#define ROWS 8
#define WIDTH 256
#define PITCH 1024
static int *in2, *out2;

static void fill_rows(int round) {
    for (int i = 0; i < ROWS * PITCH; i++) {
        in2[i] = round * 100000 + i;
        out2[i] = -1;
    }
}

static int rows_match(int round) {
    for (int i = 0; i < ROWS * PITCH; i++)
        if (out2[i] != (i % PITCH < WIDTH ? round * 100000 + i : -1)) return 0;
    return 1;
}

static void fill(int round) {
    for (int i = 0; i < N; i++) in[i] = round * 100000 + i;
    memset(out, 0, N * sizeof(int));
}

static int matches(int round) {
    for (int i = 0; i < N; i++)
        if (out[i] != round * 100000 + i) return 0;
    return 1;
}

/* Launches `exec` three times with new host data; whether each result came back. */
static int replays_with(cudaGraphExec_t exec, cudaStream_t s, void (*fill_with)(int),
                        int (*check)(int)) {
    int ok = 1;
    for (int round = 1; round <= 3; round++) {
        fill_with(round);
        if (cudaGraphLaunch(exec, s) != cudaSuccess || cudaStreamSynchronize(s) != cudaSuccess)
            return 0;
        ok &= check(round);
    }
    return ok;
}

static int replays(cudaGraphExec_t exec, cudaStream_t s) {
    return replays_with(exec, s, fill, matches);
}

/* A copy of the rows between host memory and `d`, as a node's parameters. */
static struct cudaMemcpy3DParms rows_copy(int *d, int to_device) {
    struct cudaMemcpy3DParms p;
    memset(&p, 0, sizeof p);
    struct cudaPitchedPtr host = {to_device ? (void *)in2 : (void *)out2, PITCH * sizeof(int),
                                  WIDTH * sizeof(int), ROWS};
    struct cudaPitchedPtr dev = {d, WIDTH * sizeof(int), WIDTH * sizeof(int), ROWS};
    p.srcPtr = to_device ? host : dev;
    p.dstPtr = to_device ? dev : host;
    p.extent = (struct cudaExtent){WIDTH * sizeof(int), ROWS, 1};
    p.kind = to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost;
    return p;
}

int main(void) {
    size_t free0, free1, total;
    cudaStream_t s;
    int *d, *d2;
    CHECK(cudaFree(0));
    CHECK(cudaMallocHost((void **)&in, N * sizeof(int)));
    CHECK(cudaMallocHost((void **)&out, N * sizeof(int)));
    CHECK(cudaMallocHost((void **)&in2, ROWS * PITCH * sizeof(int)));
    CHECK(cudaMallocHost((void **)&out2, ROWS * PITCH * sizeof(int)));
    CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    CHECK(cudaMalloc((void **)&d, N * sizeof(int)));
    CHECK(cudaMalloc((void **)&d2, N * sizeof(int)));
    CHECK(cudaMemGetInfo(&free0, &total));

    /* Captured: host -> d -> d2 -> host. */
    cudaGraph_t captured;
    cudaGraphExec_t captured_exec;
    fill(0);
    CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    CHECK(cudaMemcpyAsync(d, in, N * sizeof(int), cudaMemcpyHostToDevice, s));
    CHECK(cudaMemcpyAsync(d2, d, N * sizeof(int), cudaMemcpyDeviceToDevice, s));
    CHECK(cudaMemcpyAsync(out, d2, N * sizeof(int), cudaMemcpyDeviceToHost, s));
    CHECK(cudaStreamEndCapture(s, &captured));
    CHECK(cudaGraphInstantiate(&captured_exec, captured, 0));
    printf("captured_ok %d\n", replays(captured_exec, s));

    /* Built: a host-to-device node, then a device-to-host one. */
    cudaGraph_t built, parent;
    cudaGraphExec_t built_exec, parent_exec;
    cudaGraphNode_t up, down, child;
    CHECK(cudaGraphCreate(&built, 0));
    CHECK(cudaGraphAddMemcpyNode1D(&up, built, NULL, 0, d, in, N * sizeof(int),
                                   cudaMemcpyHostToDevice));
    CHECK(cudaGraphAddMemcpyNode1D(&down, built, &up, 1, out, d, N * sizeof(int),
                                   cudaMemcpyDeviceToHost));
    CHECK(cudaGraphInstantiate(&built_exec, built, 0));
    printf("built_ok %d\n", replays(built_exec, s));

    /* The built graph as a child of another. */
    CHECK(cudaGraphCreate(&parent, 0));
    CHECK(cudaGraphAddChildGraphNode(&child, parent, NULL, 0, built));
    CHECK(cudaGraphInstantiate(&parent_exec, parent, 0));
    printf("child_ok %d\n", replays(parent_exec, s));

    /* Rows, captured and built. */
    cudaGraph_t rows_captured, rows_built;
    cudaGraphExec_t rows_captured_exec, rows_built_exec;
    size_t row = WIDTH * sizeof(int), pitch = PITCH * sizeof(int);
    CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    CHECK(cudaMemcpy2DAsync(d, row, in2, pitch, row, ROWS, cudaMemcpyHostToDevice, s));
    CHECK(cudaMemcpy2DAsync(out2, pitch, d, row, row, ROWS, cudaMemcpyDeviceToHost, s));
    CHECK(cudaStreamEndCapture(s, &rows_captured));
    CHECK(cudaGraphInstantiate(&rows_captured_exec, rows_captured, 0));
    printf("rows_captured_ok %d\n", replays_with(rows_captured_exec, s, fill_rows, rows_match));
    struct cudaMemcpy3DParms rows_up = rows_copy(d, 1), rows_down = rows_copy(d, 0);
    cudaGraphNode_t rows_in, rows_out;
    CHECK(cudaGraphCreate(&rows_built, 0));
    CHECK(cudaGraphAddMemcpyNode(&rows_in, rows_built, NULL, 0, &rows_up));
    CHECK(cudaGraphAddMemcpyNode(&rows_out, rows_built, &rows_in, 1, &rows_down));
    CHECK(cudaGraphInstantiate(&rows_built_exec, rows_built, 0));
    printf("rows_built_ok %d\n", replays_with(rows_built_exec, s, fill_rows, rows_match));
    CHECK(cudaGraphExecDestroy(rows_captured_exec));
    CHECK(cudaGraphExecDestroy(rows_built_exec));
    CHECK(cudaGraphDestroy(rows_captured));
    CHECK(cudaGraphDestroy(rows_built));

    /* A capture a synchronisation breaks: its staging buffers go with it. */
    cudaGraph_t broken = NULL;
    CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    CHECK(cudaMemcpyAsync(d, in, N * sizeof(int), cudaMemcpyHostToDevice, s));
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
