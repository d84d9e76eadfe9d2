/* Holds device memory: allocates SIZE_MIB, prints "held", waits for a line on standard input,
 * then asks for the memory info again and prints the runtime's error code ("after CODE").
 * usage: remote_hold SIZE_MIB */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s SIZE_MIB\n", argv[0]); return 2; }
    size_t n = (size_t)atol(argv[1]) << 20;
    void *d = NULL;
    cudaError_t e = cudaMalloc(&d, n);
    if (e != cudaSuccess) { printf("FAIL cudaMalloc %d\n", (int)e); return 1; }
    printf("held\n");
    fflush(stdout);
    char line[16];
    if (!fgets(line, sizeof line, stdin)) return 0;
    size_t free_b = 0, total = 0;
    e = cudaMemGetInfo(&free_b, &total);
    printf("after %d\n", (int)e);
    return 0;
}
