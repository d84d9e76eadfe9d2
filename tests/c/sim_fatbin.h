/* What the test programs that register kernels with NVIDIA's runtime share: the runtime's
 * registration functions (as nvcc's generated code calls them), the fat-binary layout that
 * carries a simulated module, a clock and an error check. */
#ifndef SIM_FATBIN_H
#define SIM_FATBIN_H

#include <cuda_runtime_api.h>
#include <stdio.h>
#include <time.h>

void **__cudaRegisterFatBinary(void *);
void __cudaRegisterFatBinaryEnd(void **);
void __cudaRegisterFunction(void **, const char *, char *, const char *, int, void *, void *,
                            void *, void *, int *);

/* A fat binary's one entry header; its payload (the simulated module text) follows. */
struct entry {
    unsigned short kind, version;
    unsigned int header_size;
    unsigned long long payload_size;
    unsigned int compressed, minor, arch, pad;
    char rest[32];
};

/* A fat binary's header and entry header. */
struct fatbin_head {
    unsigned int magic;
    unsigned short version, header_size;
    unsigned long long fat_size;
    struct entry e;
};

/* What __cudaRegisterFatBinary takes. */
struct fatbin_wrapper {
    int magic, version;
    const void *data;
    void *filename;
};

/* Fills the headers of a fat binary of `total` bytes whose payload has `payload` bytes. */
static inline void fatbin_init(struct fatbin_head *h, unsigned long long total,
                               unsigned long long payload) {
    h->magic = 0xBA55ED50;
    h->version = 1;
    h->header_size = 16;
    h->fat_size = total - 16;
    h->e.kind = 2;
    h->e.version = 0x101;
    h->e.header_size = sizeof(struct entry);
    h->e.payload_size = payload;
    h->e.arch = 90;
}

static inline double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

#define CHECK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { \
    printf("FAIL %s: %d %s\n", #x, e_, cudaGetErrorString(e_)); return 1; } } while (0)

#endif
