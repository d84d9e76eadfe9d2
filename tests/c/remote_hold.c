/* Holds device memory: allocates SIZE_MIB, prints "held", waits for a line on standard input,
 * then asks for the memory info again (or, with "copy", copies 4 KiB to the device) and prints
 * the runtime's error code ("after CODE").
 * usage: remote_hold SIZE_MIB [copy] */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc != 2 && argc != 3) { fprintf(stderr, "usage: %s SIZE_MIB [copy]\n", argv[0]); return 2; }
    size_t n = (size_t)atol(argv[1]) << 20;
    void *d = NULL;
    cudaError_t e = cudaMalloc(&d, n);
    if (e != cudaSuccess) { printf("FAIL cudaMalloc %d\n", (int)e); return 1; }
    printf("held\n");
    fflush(stdout);
    char line[16];
    if (!fgets(line, sizeof line, stdin)) return 0;
    size_t free_b = 0, total = 0;
    static char host[4096];
    if (argc == 3) e = cudaMemcpy(d, host, sizeof host, cudaMemcpyHostToDevice);
    else e = cudaMemGetInfo(&free_b, &total);
    printf("after %d\n", (int)e);
    return 0;
}
