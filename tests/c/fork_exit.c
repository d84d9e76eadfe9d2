/* A CUDA process that forks children which do not use CUDA (like PyTorch's DataLoader workers)
 * while its own threads allocate and free. The children's exit must not release the parent's
 * accounting, and nothing may deadlock. Prints "key value" lines. */
#include <cuda_runtime_api.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(call) do { cudaError_t e_ = (call); if (e_ != cudaSuccess) { \
    printf("FAIL %s:%d %s -> %d\n", __FILE__, __LINE__, #call, (int)e_); exit(1); } } while (0)

static volatile int stop;

static void *churn(void *arg) {
    (void)arg;
    CHECK(cudaSetDevice(0));
    while (!stop) {
        void *p;
        CHECK(cudaMalloc(&p, 1 << 20));
        CHECK(cudaFree(p));
    }
    return NULL;
}

int main(void) {
    void *held;
    size_t f0, f1, total;
    CHECK(cudaMalloc(&held, 512 << 20));
    CHECK(cudaMemGetInfo(&f0, &total));
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, churn, NULL);
    int children = 0;
    for (int i = 0; i < 50; i++) {
        pid_t pid = fork();
        if (pid == 0) exit(0); /* runs atexit handlers, as a worker's normal exit does */
        int st = 0;
        if (pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0) children++;
    }
    stop = 1;
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    CHECK(cudaMemGetInfo(&f1, &total));
    printf("children %d\nfree_before %zu\nfree_after %zu\n", children, f0, f1);
    CHECK(cudaFree(held));
    return 0;
}
