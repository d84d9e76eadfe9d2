/* A CUDA process that forks children which do not use CUDA (like data-loader workers) while its
 * own threads allocate and free. The children's normal exit (atexit handlers run) must not
 * release the parent's accounting, and nothing of ours may deadlock. Driver API only: NVIDIA's
 * runtime itself is not fork-safe at exit (its destructors take a lock another thread of the
 * parent may have held at fork time). Prints "key value" lines. */
#include <cuda.h>
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

typedef CUresult (*gpa_t)(const char *, void **, int, cuuint64_t, CUdriverProcAddressQueryResult *);
static gpa_t gpa;
static CUresult (*alloc)(CUdeviceptr *, size_t);
static CUresult (*mfree)(CUdeviceptr);
static CUresult (*info)(size_t *, size_t *);
static CUresult (*set_current)(CUcontext);
static CUresult (*ctx_device)(CUdevice *);
static CUcontext ctx;
static volatile int stop, ask_device;

static void *get(const char *name, int version) {
    void *p = NULL;
    CUdriverProcAddressQueryResult st;
    if (gpa(name, &p, version, 0, &st) != CUDA_SUCCESS || !p) { printf("FAIL lookup %s\n", name); exit(1); }
    return p;
}
#define CHECK(call) do { CUresult e_ = (call); if (e_ != CUDA_SUCCESS) { \
    printf("FAIL %s:%d %s -> %d\n", __FILE__, __LINE__, #call, (int)e_); exit(1); } } while (0)

static void *churn(void *arg) {
    (void)arg;
    CHECK(set_current(ctx));
    while (!stop) {
        CUdeviceptr p;
        CHECK(alloc(&p, 1 << 20));
        CHECK(mfree(p));
        for (int i = 0; ask_device && i < 100; i++) {
            CUdevice d;
            CHECK(ctx_device(&d));
        }
    }
    return NULL;
}

/* Waits up to 10 s for child `pid`; its exit code, or -1 if it hung (then killed) or died. */
static int wait_child(pid_t pid) {
    for (int i = 0; i < 1000; i++) {
        int st = 0;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        if (r < 0) return -1;
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

int main(int argc, char **argv) {
    /* "child-calls": each child also asks for memory info and exits with the result;
     * "child-device": the threads also ask for their context's device (an answer a driver
     * library may keep), and each child asks for it and exits with the result */
    int child_device = argc > 1 && !strcmp(argv[1], "child-device");
    int child_calls = child_device || (argc > 1 && !strcmp(argv[1], "child-calls"));
    ask_device = child_device;
    void *lib = dlopen("libcuda.so.1", RTLD_NOW);
    if (!lib || !(gpa = (gpa_t)dlsym(lib, "cuGetProcAddress_v2"))) { printf("FAIL load\n"); return 1; }
    CUresult (*init)(unsigned) = (CUresult (*)(unsigned))get("cuInit", 2000);
    CUresult (*retain)(CUcontext *, CUdevice) = (CUresult (*)(CUcontext *, CUdevice))get("cuDevicePrimaryCtxRetain", 7000);
    set_current = (CUresult (*)(CUcontext))get("cuCtxSetCurrent", 4000);
    alloc = (CUresult (*)(CUdeviceptr *, size_t))get("cuMemAlloc", 3020);
    mfree = (CUresult (*)(CUdeviceptr))get("cuMemFree", 3020);
    info = (CUresult (*)(size_t *, size_t *))get("cuMemGetInfo", 3020);
    ctx_device = (CUresult (*)(CUdevice *))get("cuCtxGetDevice", 2000);
    CHECK(init(0));
    CHECK(retain(&ctx, 0));
    CHECK(set_current(ctx));
    CUdeviceptr held;
    size_t f0, f1, total;
    CHECK(alloc(&held, 512 << 20));
    CHECK(info(&f0, &total));
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, churn, NULL);
    int children = 0;
    int child_call_rc = -2;
    for (int i = 0; i < 50; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            if (child_device) {
                CUdevice d;
                exit((int)ctx_device(&d));
            }
            if (child_calls) {
                size_t f, t;
                exit((int)info(&f, &t));
            }
            exit(0); /* runs atexit handlers and library destructors */
        }
        int code = pid > 0 ? wait_child(pid) : -1;
        if (child_calls && child_call_rc == -2) child_call_rc = code;
        /* children ended, each with the first one's code (0 when they call nothing) */
        if (code == (child_calls ? child_call_rc : 0) && code >= 0) children++;
    }
    stop = 1;
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    CHECK(info(&f1, &total));
    printf("children %d\nfree_before %zu\nfree_after %zu\n", children, f0, f1);
    if (child_calls) printf("child_call_rc %d\n", child_call_rc);
    CHECK(mfree(held));
    return 0;
}
