/* Many threads allocating and freeing random sizes through the runtime until told to stop.
 * usage: stress THREADS ITERATIONS MAX_MIB
 * Prints "ok N", "oom N" (allocations refused), "bad N" (errors other than out-of-memory), and
 * free memory before and after (equal unless something leaked).
 * With STRESS_BARRIER_DIR set, it creates DIR/ready.PID once its context exists and waits for
 * DIR/go before allocating, so that every process's context is accounted before the race. */
#include <cuda_runtime_api.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int iterations, max_mib;
static long ok_count, oom_count, bad_count;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void *worker(void *arg) {
    unsigned seed = (unsigned)(size_t)arg * 7919u + 17u;
    void *held[4] = { 0 };
    long ok = 0, oom = 0, bad = 0;
    cudaSetDevice(0);
    for (int i = 0; i < iterations; i++) {
        int slot = rand_r(&seed) % 4;
        if (held[slot]) {
            if (cudaFree(held[slot]) != cudaSuccess) bad++;
            held[slot] = NULL;
            continue;
        }
        size_t size = ((size_t)(rand_r(&seed) % max_mib) + 1) << 20;
        cudaError_t e = (i % 3 == 0) ? cudaMallocManaged(&held[slot], size, cudaMemAttachGlobal)
                                     : cudaMalloc(&held[slot], size);
        if (e == cudaSuccess) ok++;
        else if (e == cudaErrorMemoryAllocation) { oom++; held[slot] = NULL; cudaGetLastError(); }
        else { bad++; held[slot] = NULL; }
    }
    for (int s = 0; s < 4; s++) if (held[s] && cudaFree(held[s]) != cudaSuccess) bad++;
    pthread_mutex_lock(&lock);
    ok_count += ok; oom_count += oom; bad_count += bad;
    pthread_mutex_unlock(&lock);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: %s THREADS ITERATIONS MAX_MIB\n", argv[0]); return 2; }
    int threads = atoi(argv[1]);
    iterations = atoi(argv[2]);
    max_mib = atoi(argv[3]);
    size_t free0, total0;
    if (cudaFree(0) != cudaSuccess || cudaMemGetInfo(&free0, &total0) != cudaSuccess) { printf("FAIL init\n"); return 1; }
    const char *dir = getenv("STRESS_BARRIER_DIR");
    if (dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/ready.%d", dir, (int)getpid());
        FILE *f = fopen(path, "w");
        if (!f) { printf("FAIL barrier\n"); return 1; }
        fclose(f);
        snprintf(path, sizeof path, "%s/go", dir);
        while (access(path, F_OK) != 0) usleep(1000);
    }
    pthread_t t[64];
    for (int i = 0; i < threads && i < 64; i++) pthread_create(&t[i], NULL, worker, (void *)(size_t)i);
    for (int i = 0; i < threads && i < 64; i++) pthread_join(t[i], NULL);
    size_t free_end = 0;
    if (cudaMemGetInfo(&free_end, &total0) != cudaSuccess) { printf("FAIL meminfo\n"); return 1; }
    printf("ok %ld\noom %ld\nbad %ld\nfree_start %zu\nfree_end %zu\n", ok_count, oom_count, bad_count, free0, free_end);
    return 0;
}
