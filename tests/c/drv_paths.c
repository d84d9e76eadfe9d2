/* Driver-API allocation paths, with every function resolved through cuGetProcAddress_v2 the way
 * NVIDIA's runtime does it (only cuGetProcAddress_v2 itself comes from dlsym).
 * usage: drv_paths PATH CHUNK_MIB   (PATH: ipc vmm_share torch_driver_api link jit_ptx big_copies launch_events vmm ctx ptsz pool1 pool_keep pool_release graph_mem pitch lookup errors streams stream_names kernels variables
 *        attributes dlsym_needs capture …)
 * Prints "key value" lines like rt_limits. */
#include <cuda.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef CUresult (*gpa_t)(const char *, void **, int, cuuint64_t, CUdriverProcAddressQueryResult *);
static gpa_t gpa;
static void *lib;

static void *get(const char *name, int version, cuuint64_t flags) {
    void *p = NULL;
    CUdriverProcAddressQueryResult st;
    if (gpa(name, &p, version, flags, &st) != CUDA_SUCCESS || !p) {
        printf("FAIL lookup %s\n", name);
        exit(1);
    }
    return p;
}
#define FN(var, name, ver, type) __typeof__(type) var = (__typeof__(type))get(name, ver, 0)
#define CHECK(call) do { CUresult e_ = (call); if (e_ != CUDA_SUCCESS) { \
    printf("FAIL %s:%d %s -> %d\n", __FILE__, __LINE__, #call, (int)e_); return 1; } } while (0)

enum { MAXP = 4096 };

/* Host work for the "streams" path: counts its calls in *user. */
static void CUDA_CB host_fn(void *user) { ++*(int *)user; }
static void CUDA_CB stream_cb(CUstream s, CUresult status, void *user) {
    (void)s;
    if (status == CUDA_SUCCESS) ++*(int *)user;
}
typedef CUresult (*get_nodes_t)(CUgraph, CUgraphNode *, size_t *);
typedef CUresult (*node_type_t)(CUgraphNode, CUgraphNodeType *);

/* Prints "nodes_rc", "nodes" and (for up to 16 nodes) "node_types T,T,…" of graph g. */
static void print_nodes(get_nodes_t get_nodes, node_type_t node_type, CUgraph g) {
    size_t n = 0;
    CUresult rc = get_nodes(g, NULL, &n);
    printf("nodes_rc %d\nnodes %zu\n", (int)rc, n);
    CUgraphNode list[16];
    if (rc != CUDA_SUCCESS || n > 16 || get_nodes(g, list, &n) != CUDA_SUCCESS) return;
    printf("node_types ");
    for (size_t i = 0; i < n; i++) {
        CUgraphNodeType t = (CUgraphNodeType)-1;
        node_type(list[i], &t);
        printf("%s%d", i ? "," : "", (int)t);
    }
    printf("\n");
}

/* Interprocess handles: "ipc" exports memory and an event, then runs this program again as
 * "ipc_child MEM_HEX EVENT_HEX" (a second process: through a server, a second client of the
 * same tenant), which opens both, checks and rewrites the memory and waits for the event.
 * A simulated kernel keeps the event pending while the child looks (on a real card, whose
 * driver refuses the simulated module, "busy_kernel 0" and no pending check). Through a
 * server, DRV_IPC_CHILD_TOKEN_FILE makes the child another tenant. */
enum { IPC_BYTES = 1 << 20 };

static void to_hex(const void *p, char *out) {
    const unsigned char *b = p;
    for (int i = 0; i < 64; i++) sprintf(out + 2 * i, "%02x", b[i]);
}

static int from_hex(const char *s, void *p) {
    unsigned char *b = p;
    if (strlen(s) != 128) return 0;
    for (int i = 0; i < 64; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1) return 0;
        b[i] = (unsigned char)v;
    }
    return 1;
}

static int count_bytes(CUresult (*dtoh)(void *, CUdeviceptr, size_t), CUdeviceptr d, size_t off,
                       size_t len, unsigned char want) {
    static unsigned char buf[IPC_BYTES];
    if (dtoh(buf, d + off, len) != CUDA_SUCCESS) return -1;
    int n = 0;
    for (size_t i = 0; i < len; i++) n += buf[i] == want;
    return n;
}

static int ipc_path(const char *path, int argc, char **argv) {
    FN(alloc, "cuMemAlloc", 3020, CUresult (*)(CUdeviceptr *, size_t));
    FN(mfree, "cuMemFree", 3020, CUresult (*)(CUdeviceptr));
    FN(memset8, "cuMemsetD8", 3020, CUresult (*)(CUdeviceptr, unsigned char, size_t));
    FN(dtoh, "cuMemcpyDtoH", 3020, CUresult (*)(void *, CUdeviceptr, size_t));
    FN(host_alloc, "cuMemAllocHost", 3020, CUresult (*)(void **, size_t));
    FN(event_create, "cuEventCreate", 2000, CUresult (*)(CUevent *, unsigned));
    FN(event_record, "cuEventRecord", 2000, CUresult (*)(CUevent, CUstream));
    FN(event_query, "cuEventQuery", 2000, CUresult (*)(CUevent));
    FN(event_sync, "cuEventSynchronize", 2000, CUresult (*)(CUevent));
    FN(stream_wait, "cuStreamWaitEvent", 3020, CUresult (*)(CUstream, CUevent, unsigned));
    FN(ctx_sync, "cuCtxSynchronize", 2000, CUresult (*)(void));
    FN(get_mem, "cuIpcGetMemHandle", 4010, CUresult (*)(CUipcMemHandle *, CUdeviceptr));
    FN(open_mem, "cuIpcOpenMemHandle", 11000, CUresult (*)(CUdeviceptr *, CUipcMemHandle, unsigned));
    FN(close_mem, "cuIpcCloseMemHandle", 4010, CUresult (*)(CUdeviceptr));
    FN(get_event, "cuIpcGetEventHandle", 4010, CUresult (*)(CUipcEventHandle *, CUevent));
    FN(open_event, "cuIpcOpenEventHandle", 4010, CUresult (*)(CUevent *, CUipcEventHandle));
    const unsigned ipc_flags = CU_EVENT_DISABLE_TIMING | CU_EVENT_INTERPROCESS;
    if (!strcmp(path, "ipc_child")) {
        CUipcMemHandle mh;
        CUipcEventHandle eh;
        if (argc != 5 || !from_hex(argv[3], &mh) || !from_hex(argv[4], &eh)) {
            printf("FAIL child arguments\n");
            return 1;
        }
        CUevent ev;
        CUresult rc = open_event(&ev, eh);
        printf("child_open_event_rc %d\n", (int)rc);
        if (rc == CUDA_SUCCESS) {
            printf("child_event_pending %d\n", event_query(ev) == CUDA_ERROR_NOT_READY);
            printf("child_stream_wait_rc %d\n", (int)stream_wait(NULL, ev, 0));
            printf("child_event_sync_rc %d\n", (int)event_sync(ev));
            printf("child_event_done %d\n", event_query(ev) == CUDA_SUCCESS);
        }
        CUdeviceptr d = 0, again = 0;
        rc = open_mem(&d, mh, CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS);
        printf("child_open_rc %d\n", (int)rc);
        if (rc != CUDA_SUCCESS) return 1;
        printf("child_sees_pattern %d\n", count_bytes(dtoh, d, 0, IPC_BYTES, 0x5a) == IPC_BYTES);
        printf("child_open_again_same %d\n",
               open_mem(&again, mh, CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS) == CUDA_SUCCESS && again == d);
        CHECK(memset8(d, 0xa5, IPC_BYTES / 2));
        CHECK(ctx_sync());
        printf("child_close_rc %d\n", (int)close_mem(d));
        printf("child_close_last_rc %d\n", (int)close_mem(d));
        printf("child_close_extra_rc %d\n", (int)close_mem(d));
        CUipcMemHandle forged = mh;
        forged.reserved[63] ^= 1;
        CUdeviceptr f = 0;
        printf("child_forged_refused %d\n",
               open_mem(&f, forged, CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS) != CUDA_SUCCESS);
        return 0;
    }
    CUdeviceptr d, other;
    CHECK(alloc(&d, IPC_BYTES));
    CHECK(alloc(&other, IPC_BYTES));
    CHECK(memset8(d, 0x5a, IPC_BYTES));
    CHECK(ctx_sync());
    CUipcMemHandle mh, mh_again;
    CHECK(get_mem(&mh, d));
    CHECK(get_mem(&mh_again, d));
    printf("same_handle_twice %d\n", !memcmp(&mh, &mh_again, sizeof mh));
    CUdeviceptr self = 0;
    printf("open_own_rc %d\n", (int)open_mem(&self, mh, CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS));
    void *host = NULL;
    CHECK(host_alloc(&host, 4096));
    CUipcMemHandle hh;
    printf("host_handle_rc %d\n", (int)get_mem(&hh, (CUdeviceptr)(uintptr_t)host));
    CUevent plain, ev;
    CHECK(event_create(&plain, CU_EVENT_DISABLE_TIMING));
    CUipcEventHandle eh;
    printf("plain_event_handle_rc %d\n", (int)get_event(&eh, plain));
    printf("timed_interprocess_rc %d\n", (int)event_create(&ev, CU_EVENT_INTERPROCESS));
    CHECK(event_create(&ev, ipc_flags));
    /* A simulated 3 s kernel before the event, so that the child finds it pending. */
    FN(load_data, "cuModuleLoadData", 2000, CUresult (*)(CUmodule *, const void *));
    FN(get_fn, "cuModuleGetFunction", 2000, CUresult (*)(CUfunction *, CUmodule, const char *));
    FN(launch, "cuLaunchKernel", 4000, CUresult (*)(CUfunction, unsigned, unsigned, unsigned, unsigned,
                                                    unsigned, unsigned, unsigned, CUstream, void **, void **));
    static const char image[] = "gpupool-sim-module 1\nkernel busy 3s\n";
    CUmodule m;
    CUfunction busy;
    int simulated = load_data(&m, image) == CUDA_SUCCESS && get_fn(&busy, m, "busy") == CUDA_SUCCESS;
    printf("busy_kernel %d\n", simulated);
    if (simulated) CHECK(launch(busy, 1, 1, 1, 1, 1, 1, 0, NULL, NULL, NULL));
    CHECK(event_record(ev, NULL));
    CHECK(get_event(&eh, ev));
    char mem_hex[129], event_hex[129];
    to_hex(&mh, mem_hex);
    to_hex(&eh, event_hex);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        /* Through a server: the child may present another tenant's token. */
        const char *other = getenv("DRV_IPC_CHILD_TOKEN_FILE");
        if (other) setenv("GPUPOOL_REMOTE_TOKEN_FILE", other, 1);
        execl("/proc/self/exe", argv[0], "ipc_child", "64", mem_hex, event_hex, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    waitpid(child, &status, 0);
    printf("child_exit %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    int changed = count_bytes(dtoh, d, 0, IPC_BYTES / 2, 0xa5);
    int kept = count_bytes(dtoh, d, IPC_BYTES / 2, IPC_BYTES / 2, 0x5a);
    printf("child_writes_seen %d\n", changed == IPC_BYTES / 2 && kept == IPC_BYTES / 2);
    printf("event_done %d\n", event_query(ev) == CUDA_SUCCESS);
    printf("free_rc %d\n", (int)mfree(d));
    printf("free_other_rc %d\n", (int)mfree(other));
    return 0;
}

/* Physical memory shared as a file descriptor: "vmm_share" creates memory that may be exported
 * (CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR), writes into it, exports a descriptor and runs
 * this program again as "vmm_share_child FD" (the descriptor inherited), which imports it, maps
 * it, checks the bytes and rewrites half of them. Through a server, whose descriptors cannot
 * reach the client, the device says it cannot export them ("fd_supported 0") and an export is
 * refused. */
static int vmm_share_path(const char *path, int argc, char **argv) {
    FN(create, "cuMemCreate", 10020, CUresult (*)(CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *, unsigned long long));
    FN(gran, "cuMemGetAllocationGranularity", 10020, CUresult (*)(size_t *, const CUmemAllocationProp *, CUmemAllocationGranularity_flags));
    FN(release, "cuMemRelease", 10020, CUresult (*)(CUmemGenericAllocationHandle));
    FN(reserve, "cuMemAddressReserve", 10020, CUresult (*)(CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long));
    FN(map, "cuMemMap", 10020, CUresult (*)(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle, unsigned long long));
    FN(access, "cuMemSetAccess", 10020, CUresult (*)(CUdeviceptr, size_t, const CUmemAccessDesc *, size_t));
    FN(unmap, "cuMemUnmap", 10020, CUresult (*)(CUdeviceptr, size_t));
    FN(afree, "cuMemAddressFree", 10020, CUresult (*)(CUdeviceptr, size_t));
    FN(memset8, "cuMemsetD8", 3020, CUresult (*)(CUdeviceptr, unsigned char, size_t));
    FN(dtoh, "cuMemcpyDtoH", 3020, CUresult (*)(void *, CUdeviceptr, size_t));
    FN(ctx_sync, "cuCtxSynchronize", 2000, CUresult (*)(void));
    FN(attr, "cuDeviceGetAttribute", 2000, CUresult (*)(int *, CUdevice_attribute, CUdevice));
    FN(export_fd, "cuMemExportToShareableHandle", 10020, CUresult (*)(void *, CUmemGenericAllocationHandle, CUmemAllocationHandleType, unsigned long long));
    FN(import_fd, "cuMemImportFromShareableHandle", 10020, CUresult (*)(CUmemGenericAllocationHandle *, void *, CUmemAllocationHandleType));
    CUmemAllocationProp prop;
    memset(&prop, 0, sizeof prop);
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = 0;
    prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
    size_t g = 0;
    CHECK(gran(&g, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
    CUmemAccessDesc ad = { { CU_MEM_LOCATION_TYPE_DEVICE, 0 }, CU_MEM_ACCESS_FLAGS_PROT_READWRITE };
    if (!strcmp(path, "vmm_share_child")) {
        if (argc != 4) { printf("FAIL child arguments\n"); return 1; }
        int fd = atoi(argv[3]);
        CUmemGenericAllocationHandle h;
        CUresult rc = import_fd(&h, (void *)(uintptr_t)fd, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR);
        printf("child_import_rc %d\n", (int)rc);
        if (rc != CUDA_SUCCESS) return 1;
        CUdeviceptr va;
        CHECK(reserve(&va, g, 0, 0, 0));
        CHECK(map(va, g, 0, h, 0));
        CHECK(access(va, g, &ad, 1));
        printf("child_sees_pattern %d\n", count_bytes(dtoh, va, 0, IPC_BYTES < g ? IPC_BYTES : g, 0x3c) ==
               (int)(IPC_BYTES < g ? IPC_BYTES : g));
        CHECK(memset8(va, 0xc3, g / 2));
        CHECK(ctx_sync());
        CHECK(unmap(va, g));
        CHECK(afree(va, g));
        printf("child_release_rc %d\n", (int)release(h));
        return 0;
    }
    int fd_supported = -1;
    CHECK(attr(&fd_supported, CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED, 0));
    printf("fd_supported %d\n", fd_supported);
    CUmemGenericAllocationHandle h, plain;
    int fd = -1;
    if (!fd_supported) {
        prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_NONE;
        CHECK(create(&h, g, &prop, 0));
        printf("unsupported_export_rc %d\n", (int)export_fd(&fd, h, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0));
        CHECK(release(h));
        return 0;
    }
    CHECK(create(&h, g, &prop, 0));
    CUmemAllocationProp plain_prop = prop;
    plain_prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_NONE;
    CHECK(create(&plain, g, &plain_prop, 0));
    printf("plain_export_refused %d\n", export_fd(&fd, plain, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0) != CUDA_SUCCESS);
    CUmemGenericAllocationHandle bogus;
    printf("bogus_import_refused %d\n", import_fd(&bogus, (void *)(uintptr_t)0, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR) != CUDA_SUCCESS);
    CUdeviceptr va;
    CHECK(reserve(&va, g, 0, 0, 0));
    CHECK(map(va, g, 0, h, 0));
    CHECK(access(va, g, &ad, 1));
    CHECK(memset8(va, 0x3c, g));
    CHECK(ctx_sync());
    CHECK(export_fd(&fd, h, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0));
    printf("exported_fd %d\n", fd >= 0);
    /* The same process imports it too, as a second handle of the same memory. */
    CUmemGenericAllocationHandle again;
    printf("self_import_rc %d\n", (int)import_fd(&again, (void *)(uintptr_t)fd, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR));
    CHECK(release(again));
    fcntl(fd, F_SETFD, 0);
    char fd_arg[16];
    snprintf(fd_arg, sizeof fd_arg, "%d", fd);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        execl("/proc/self/exe", argv[0], "vmm_share_child", "64", fd_arg, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    waitpid(child, &status, 0);
    close(fd);
    printf("child_exit %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    size_t half = g / 2 < IPC_BYTES ? g / 2 : IPC_BYTES;
    printf("child_writes_seen %d\n", count_bytes(dtoh, va, 0, half, 0xc3) == (int)half &&
                                         count_bytes(dtoh, va, g / 2, half, 0x3c) == (int)half);
    CHECK(unmap(va, g));
    CHECK(afree(va, g));
    CHECK(release(h));
    CHECK(release(plain));
    return 0;
}

static CUdeviceptr ptrs[MAXP];
static CUmemGenericAllocationHandle handles[MAXP];
static CUcontext ctxs[MAXP];

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s PATH CHUNK_MIB [ARGS]\n", argv[0]); return 2; }
    const char *path = argv[1];
    size_t chunk = (size_t)atol(argv[2]) << 20;
    lib = dlopen("libcuda.so.1", RTLD_NOW);
    if (!lib) { printf("FAIL dlopen\n"); return 1; }
    gpa = (gpa_t)dlsym(lib, "cuGetProcAddress_v2");
    if (!gpa) { printf("FAIL dlsym\n"); return 1; }
    FN(init, "cuInit", 2000, CUresult (*)(unsigned));
    if (!strcmp(path, "errors")) {
        /* like a real driver: nothing works before cuInit, memory calls need a context */
        FN(info0, "cuMemGetInfo", 3020, CUresult (*)(size_t *, size_t *));
        FN(count, "cuDeviceGetCount", 2000, CUresult (*)(int *));
        FN(alloc0, "cuMemAlloc", 3020, CUresult (*)(CUdeviceptr *, size_t));
        size_t f, t;
        int n = 0;
        CUdeviceptr p;
        printf("count_before_init %d\n", (int)count(&n));
        printf("info_before_init %d\n", (int)info0(&f, &t));
        CHECK(init(0));
        printf("info_without_context %d\n", (int)info0(&f, &t));
        printf("alloc_without_context %d\n", (int)alloc0(&p, 1 << 20));
        printf("init_bad_flags %d\n", (int)init(7));
        return 0;
    }
    FN(retain, "cuDevicePrimaryCtxRetain", 7000, CUresult (*)(CUcontext *, CUdevice));
    FN(set_current, "cuCtxSetCurrent", 4000, CUresult (*)(CUcontext));
    FN(info, "cuMemGetInfo", 3020, CUresult (*)(size_t *, size_t *));
    CHECK(init(0));
    CUcontext primary;
    CHECK(retain(&primary, 0));
    CHECK(set_current(primary));
    size_t free0, free1, free2, total;
    CHECK(info(&free0, &total));

    if (!strcmp(path, "torch_driver_api")) {
        /* Every driver and NVML function PyTorch's driver API table looks up at its first use
         * (expandable segments, symmetric memory), resolved as it resolves them: the driver's
         * at version 12000, NVML's from libnvidia-ml.so.1. A missing one stops PyTorch. */
        static const char *driver[] = {
            "cuCtxGetCurrent", "cuCtxSetCurrent", "cuCtxPushCurrent", "cuCtxPopCurrent",
            "cuDeviceGet", "cuDeviceGetAttribute", "cuGetErrorString", "cuMemAddressFree",
            "cuMemAddressReserve", "cuMemCreate", "cuMemExportToShareableHandle",
            "cuMemGetAddressRange", "cuMemGetAllocationGranularity",
            "cuMemGetAllocationPropertiesFromHandle", "cuMemImportFromShareableHandle",
            "cuMemMap", "cuMemRelease", "cuMemRetainAllocationHandle", "cuMemSetAccess",
            "cuMemUnmap", "cuMemsetD32Async", "cuStreamWriteValue32", NULL };
        static const char *nvml[] = {
            "nvmlInit_v2", "nvmlDeviceGetHandleByPciBusId_v2", "nvmlDeviceGetNvLinkRemoteDeviceType",
            "nvmlDeviceGetNvLinkRemotePciInfo_v2", "nvmlDeviceGetComputeRunningProcesses",
            "nvmlSystemGetCudaDriverVersion_v2", "nvmlDeviceGetGpuFabricInfoV", NULL };
        int n = 0;
        for (const char **f = driver; *f; f++, n++) get(*f, 12000, 0);
        void *ml = dlopen("libnvidia-ml.so.1", RTLD_NOW);
        for (const char **f = nvml; ml && *f; f++, n++)
            if (!dlsym(ml, *f)) { printf("FAIL nvml %s\n", *f); return 1; }
        printf("nvml_loaded %d\nresolved %d\n", ml != NULL, n);
        return 0;
    }
    if (!strcmp(path, "lookup")) {
        /* Hooked symbols resolve to the interposer's export, honouring version and flags;
         * others to the driver's own variant of the requested flavour. */
        void *alloc = get("cuMemAlloc", 3020, 0);
        void *async_ptsz = get("cuMemAllocAsync", 11020, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM);
        void *async_legacy = get("cuMemAllocAsync", 11020, 0);
        void *htod_ptds = get("cuMemcpyHtoD", 7000, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM);
        printf("alloc_is_default %d\n", alloc == dlsym(RTLD_DEFAULT, "cuMemAlloc_v2"));
        printf("async_ptsz_is_default %d\n", async_ptsz == dlsym(RTLD_DEFAULT, "cuMemAllocAsync_ptsz"));
        printf("async_variants_differ %d\n", async_ptsz != async_legacy);
        printf("htod_ptds_is_driver %d\n", htod_ptds == dlsym(lib, "cuMemcpyHtoD_v2_ptds"));
        void *none = NULL;
        CUdriverProcAddressQueryResult st = CU_GET_PROC_ADDRESS_SUCCESS;
        CUresult none_rc = gpa("cuNoSuchFunction", &none, 12000, 0, &st);
        printf("unknown_name_rc %d\nunknown_name_status %d\n", (int)none_rc, (int)st);
        printf("probe_not_found %d\n", none == NULL && st == CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND);
        return 0;
    }

    if (!strcmp(path, "streams")) {
        /* Stream queries and host work as PyTorch's runtime uses them. */
        typedef CUresult (*capture3_t)(CUstream, CUstreamCaptureStatus *, cuuint64_t *, CUgraph *,
                                       const CUgraphNode **, const CUgraphEdgeData **, size_t *);
        FN(stream_create, "cuStreamCreate", 2000, CUresult (*)(CUstream *, unsigned));
        FN(stream_sync, "cuStreamSynchronize", 2000, CUresult (*)(CUstream));
        FN(capture2, "cuStreamGetCaptureInfo", 11030, CUresult (*)(CUstream, CUstreamCaptureStatus *,
           cuuint64_t *, CUgraph *, const CUgraphNode **, size_t *));
        capture3_t capture3_ptsz = (capture3_t)get("cuStreamGetCaptureInfo", 12030,
                                                   CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM);
        FN(host_func, "cuLaunchHostFunc", 10000, CUresult (*)(CUstream, CUhostFn, void *));
        FN(add_callback, "cuStreamAddCallback", 5000, CUresult (*)(CUstream, CUstreamCallback, void *, unsigned));
        FN(get_ctx2, "cuStreamGetCtx", 12050, CUresult (*)(CUstream, CUcontext *, CUgreenCtx *));
        FN(flush, "cuFlushGPUDirectRDMAWrites", 11030, CUresult (*)(CUflushGPUDirectRDMAWritesTarget,
           CUflushGPUDirectRDMAWritesScope));
        CUstream s;
        CHECK(stream_create(&s, 0));
        CUstreamCaptureStatus st = (CUstreamCaptureStatus)7;
        cuuint64_t id = 9;
        CUgraph g = (CUgraph)1;
        const CUgraphNode *deps = (const CUgraphNode *)1;
        size_t nd = 5;
        CHECK(capture2(s, &st, &id, &g, &deps, &nd));
        printf("capture_status %d\ncapture_empty %d\n", (int)st, id == 0 && !g && !deps && nd == 0);
        st = (CUstreamCaptureStatus)7;
        CHECK(capture3_ptsz(NULL, &st, NULL, NULL, NULL, NULL, NULL));
        printf("capture_ptsz_status %d\n", (int)st);
        int calls = 0;
        CHECK(host_func(s, host_fn, &calls));
        CHECK(add_callback(s, stream_cb, &calls, 0));
        CHECK(stream_sync(s));
        printf("host_calls %d\n", calls);
        CUcontext c = NULL;
        CUgreenCtx green = (CUgreenCtx)1;
        CHECK(get_ctx2(s, &c, &green));
        printf("stream_ctx_is_primary %d\ngreen_ctx_null %d\n", c == primary, green == NULL);
        printf("flush_rc %d\n", (int)flush(CU_FLUSH_GPU_DIRECT_RDMA_WRITES_TARGET_CURRENT_CTX,
                                          CU_FLUSH_GPU_DIRECT_RDMA_WRITES_TO_OWNER));
        FN(exchange_mode, "cuThreadExchangeStreamCaptureMode", 10010, CUresult (*)(CUstreamCaptureMode *));
        CUstreamCaptureMode mode = CU_STREAM_CAPTURE_MODE_RELAXED, back = CU_STREAM_CAPTURE_MODE_GLOBAL;
        CHECK(exchange_mode(&mode));
        CHECK(exchange_mode(&back));
        printf("capture_mode_was %d\ncapture_mode_kept %d\n", (int)mode, (int)back);
        return 0;
    }

    if (!strcmp(path, "stream_names")) {
        /* Many streams and events, used together, then destroyed; flags a driver refuses. */
        enum { N = 32 };
        FN(stream_create, "cuStreamCreate", 2000, CUresult (*)(CUstream *, unsigned));
        FN(stream_create_prio, "cuStreamCreateWithPriority", 5050,
           CUresult (*)(CUstream *, unsigned, int));
        FN(stream_destroy, "cuStreamDestroy", 4000, CUresult (*)(CUstream));
        FN(stream_flags, "cuStreamGetFlags", 5050, CUresult (*)(CUstream, unsigned *));
        FN(stream_wait, "cuStreamWaitEvent", 3020, CUresult (*)(CUstream, CUevent, unsigned));
        FN(stream_sync, "cuStreamSynchronize", 2000, CUresult (*)(CUstream));
        FN(event_create, "cuEventCreate", 2000, CUresult (*)(CUevent *, unsigned));
        FN(event_destroy, "cuEventDestroy", 4000, CUresult (*)(CUevent));
        FN(event_record, "cuEventRecord", 2000, CUresult (*)(CUevent, CUstream));
        FN(event_sync, "cuEventSynchronize", 2000, CUresult (*)(CUevent));
        FN(event_query, "cuEventQuery", 2000, CUresult (*)(CUevent));
        FN(elapsed, "cuEventElapsedTime", 2000, CUresult (*)(float *, CUevent, CUevent));
        CUstream streams[N];
        CUevent events[N];
        int flags_kept = 1, distinct = 1;
        for (int i = 0; i < N; i++) {
            unsigned want = (unsigned)(i & 1), got = 9;
            if (i % 4 == 3) CHECK(stream_create_prio(&streams[i], want, -1));
            else CHECK(stream_create(&streams[i], want));
            CHECK(event_create(&events[i], i % 3 == 0 ? 0 : i % 3 == 1 ? CU_EVENT_DISABLE_TIMING
                                                     : CU_EVENT_BLOCKING_SYNC));
            CHECK(stream_flags(streams[i], &got));
            flags_kept &= got == want;
            for (int j = 0; j < i; j++)
                distinct &= streams[j] != streams[i] && events[j] != events[i];
        }
        for (int i = 0; i < N; i++) {
            CHECK(event_record(events[i], streams[i]));
            CHECK(stream_wait(streams[(i + 1) % N], events[i], 0));
        }
        for (int i = 0; i < N; i++) CHECK(stream_sync(streams[i]));
        int done = 1;
        for (int i = 0; i < N; i++) {
            CHECK(event_sync(events[i]));
            done &= event_query(events[i]) == CUDA_SUCCESS;
        }
        float ms = -1;
        CHECK(elapsed(&ms, events[0], events[3]));
        printf("streams_flags_kept %d\nhandles_distinct %d\nevents_done %d\nelapsed_ok %d\n",
               flags_kept, distinct, done, ms >= 0);
        printf("untimed_elapsed_rc %d\n", (int)elapsed(&ms, events[0], events[1]));
        for (int i = 0; i < N; i++) {
            CHECK(event_destroy(events[i]));
            CHECK(stream_destroy(streams[i]));
        }
        CUstream bad_s;
        CUevent bad_e;
        printf("bad_stream_flags_rc %d\n", (int)stream_create(&bad_s, 2));
        printf("bad_event_flags_rc %d\n", (int)event_create(&bad_e, 0x100));
        printf("interprocess_timed_rc %d\n", (int)event_create(&bad_e, CU_EVENT_INTERPROCESS));
        printf("null_stream_out_rc %d\n", (int)stream_create(NULL, 0));
        printf("null_event_out_rc %d\n", (int)event_create(NULL, 0));
        CUstream last;
        CHECK(stream_create(&last, 0));
        CHECK(stream_sync(last));
        printf("after_refusals_ok 1\n");
        return 0;
    }

    if (!strcmp(path, "attributes")) {
        /* Every device attribute CUDA 13.0 knows, asked twice; unknown ones, a bad device. */
        FN(attr, "cuDeviceGetAttribute", 2000, CUresult (*)(int *, CUdevice_attribute, CUdevice));
        CHECK(init(0));
        long long sum = 0;
        int answered = 0, unknown = 0, same = 1;
        for (int a = 1; a <= 147; a++) {
            int v = -7, again = -8;
            CUresult rc = attr(&v, (CUdevice_attribute)a, 0);
            CUresult rc2 = attr(&again, (CUdevice_attribute)a, 0);
            same &= rc == rc2 && (rc != CUDA_SUCCESS || v == again);
            /* What a remote client answers itself: stream memory operations (92, 93) and
             * exporting memory as a descriptor or fabric handle (103, 128). */
            int client_side = a == 92 || a == 93 || a == 103 || a == 128;
            if (rc == CUDA_SUCCESS && !client_side) { answered++; sum += (long long)a * v; }
            if (rc == CUDA_ERROR_INVALID_VALUE) unknown++;
        }
        int v = 0;
        printf("answered %d\nunknown %d\nsum %lld\nsame_twice %d\n", answered, unknown, sum, same);
        printf("past_known_rc %d\n", (int)attr(&v, (CUdevice_attribute)9999, 0));
        printf("bad_device_rc %d\n", (int)attr(&v, CU_DEVICE_ATTRIBUTE_WARP_SIZE, 99));
        printf("null_out_rc %d\n", (int)attr(NULL, CU_DEVICE_ATTRIBUTE_WARP_SIZE, 0));
        CHECK(attr(&v, CU_DEVICE_ATTRIBUTE_WARP_SIZE, 0));
        printf("warp_size %d\n", v);
        /* Names and bus ids, twice each (a short buffer: the name cut, still terminated). */
        FN(get_name, "cuDeviceGetName", 2000, CUresult (*)(char *, int, CUdevice));
        FN(bus_id, "cuDeviceGetPCIBusId", 4010, CUresult (*)(char *, int, CUdevice));
        char name[64], again[64], shorter[8], bus[32], bus2[32];
        CHECK(get_name(name, sizeof name, 0));
        CHECK(get_name(again, sizeof again, 0));
        CHECK(get_name(shorter, sizeof shorter, 0));
        CHECK(bus_id(bus, sizeof bus, 0));
        CHECK(bus_id(bus2, sizeof bus2, 0));
        printf("names_same %d\nshort_name_cut %d\nbus_same %d\n", !strcmp(name, again),
               strlen(shorter) == 7 && !strncmp(shorter, name, 7), !strcmp(bus, bus2));
        return 0;
    }

    if (!strcmp(path, "dlsym_needs")) {
        /* What cuBLAS looks up with dlsym (it refuses to start when one is missing), and the
         * answers each gives. */
        static const char *const needs[] = {
            "cuKernelGetLibrary", "cuFuncSetCacheConfig", "cuCtxEnablePeerAccess",
            "cuCtxDisablePeerAccess", "cuLinkCreate_v2", "cuLinkAddData_v2", "cuLinkComplete",
            "cuLinkDestroy", "cuStreamWaitValue32", "cuStreamBatchMemOp", "cuStreamBeginCapture_v2",
            "cuStreamEndCapture", "cuGraphInstantiate", "cuGraphGetNodes", "cuGraphNodeGetType",
            "cuGraphKernelNodeGetParams", "cuGraphExecKernelNodeSetParams", "cuMemPrefetchAsync",
            /* looked up when Hopper kernels (tensor maps) or cuDNN's engines are first used */
            "cuTensorMapEncodeTiled", "cuTensorMapEncodeIm2col", "cuTensorMapReplaceAddress",
            "cuModuleLoadFatBinary", "cuLinkAddFile_v2", "cuCtxPushCurrent", "cuCtxPopCurrent",
            "cuCtxGetDevResource", "cuDevSmResourceSplitByCount", "cuDevResourceGenerateDesc",
            "cuGreenCtxCreate", "cuGreenCtxStreamCreate", "cuCtxFromGreenCtx", "cuGreenCtxDestroy",
            "cuStreamGetGreenCtx",
        };
        int missing = 0;
        for (size_t i = 0; i < sizeof needs / sizeof *needs; i++) {
            if (!dlsym(lib, needs[i])) {
                printf("missing %s\n", needs[i]);
                missing++;
            }
        }
        printf("missing_count %d\n", missing);
        if (missing) return 0;
        FN(retain, "cuDevicePrimaryCtxRetain", 7000, CUresult (*)(CUcontext *, CUdevice));
        FN(set_current, "cuCtxSetCurrent", 4000, CUresult (*)(CUcontext));
        FN(lib_load, "cuLibraryLoadData", 12000, CUresult (*)(CUlibrary *, const void *, CUjit_option *,
           void **, unsigned, CUlibraryOption *, void **, unsigned));
        FN(lib_kernel, "cuLibraryGetKernel", 12000, CUresult (*)(CUkernel *, CUlibrary, const char *));
        FN(kernel_fn, "cuKernelGetFunction", 12000, CUresult (*)(CUfunction *, CUkernel));
        FN(attr, "cuDeviceGetAttribute", 2000, CUresult (*)(int *, CUdevice_attribute, CUdevice));
        FN(alloc, "cuMemAllocManaged", 6000, CUresult (*)(CUdeviceptr *, size_t, unsigned));
        FN(graph_create, "cuGraphCreate", 10000, CUresult (*)(CUgraph *, unsigned));
        CUcontext ctx;
        CHECK(init(0));
        CHECK(retain(&ctx, 0));
        CHECK(set_current(ctx));
        static unsigned char cubin[64] = {0x7f, 'E', 'L', 'F', 2, 1, 1, 0x33};
        cubin[0x28] = 64;
        CUlibrary l, back = NULL;
        CUkernel k;
        CUfunction f;
        CHECK(lib_load(&l, cubin, NULL, NULL, 0, NULL, NULL, 0));
        CHECK(lib_kernel(&k, l, "gemm"));
        CHECK(kernel_fn(&f, k));
        CUresult (*kernel_lib)(CUlibrary *, CUkernel) = dlsym(lib, "cuKernelGetLibrary");
        CUresult (*cache)(CUfunction, CUfunc_cache) = dlsym(lib, "cuFuncSetCacheConfig");
        CUresult (*enable)(CUcontext, unsigned) = dlsym(lib, "cuCtxEnablePeerAccess");
        CUresult (*disable)(CUcontext) = dlsym(lib, "cuCtxDisablePeerAccess");
        CUresult (*link)(unsigned, CUjit_option *, void **, CUlinkState *) = dlsym(lib, "cuLinkCreate_v2");
        CUresult (*wait)(CUstream, CUdeviceptr, cuuint32_t, unsigned) = dlsym(lib, "cuStreamWaitValue32");
        CUresult (*end)(CUstream, CUgraph *) = dlsym(lib, "cuStreamEndCapture");
        CUresult (*inst)(CUgraphExec *, CUgraph, CUgraphNode *, char *, size_t) = dlsym(lib, "cuGraphInstantiate");
        CUresult (*prefetch)(CUdeviceptr, size_t, CUdevice, CUstream) = dlsym(lib, "cuMemPrefetchAsync");
        printf("kernel_library_rc %d\n", (int)kernel_lib(&back, k));
        printf("kernel_library_same %d\n", back == l);
        printf("cache_config_rc %d\n", (int)cache(f, CU_FUNC_CACHE_PREFER_SHARED));
        printf("enable_own_device_rc %d\n", (int)enable(ctx, 0));
        printf("disable_rc %d\n", (int)disable(ctx));
        CUlinkState st = NULL;
        printf("link_rc %d\n", (int)link(0, NULL, NULL, &st));
        int mem_ops = -1;
        CHECK(attr(&mem_ops, CU_DEVICE_ATTRIBUTE_CAN_USE_STREAM_MEM_OPS_V1, 0));
        printf("stream_mem_ops %d\n", mem_ops);
        CUdeviceptr m;
        CHECK(alloc(&m, 4096, CU_MEM_ATTACH_GLOBAL));
        printf("wait_value_rc %d\n", (int)wait(NULL, m, 1, 0));
        CUgraph g = NULL, captured = NULL;
        printf("end_capture_rc %d\n", (int)end(NULL, &captured));
        CUgraphExec exec = NULL;
        CHECK(graph_create(&g, 0));
        printf("instantiate_rc %d\n", (int)inst(&exec, g, NULL, NULL, 0));
        printf("prefetch_rc %d\nprefetch_outside_rc %d\n", (int)prefetch(m, 4096, 0, NULL),
               (int)prefetch(m, (size_t)1 << 30, 0, NULL));
        /* What PyTorch and the runtime resolve through cuGetProcAddress next to those. */
        FN(advise, "cuMemAdvise", 8000, CUresult (*)(CUdeviceptr, size_t, CUmem_advise, CUdevice));
        FN(param_info, "cuFuncGetParamInfo", 12040, CUresult (*)(CUfunction, size_t, size_t *, size_t *));
        FN(kernel_count, "cuLibraryGetKernelCount", 12040, CUresult (*)(unsigned *, CUlibrary));
        FN(stream_create, "cuStreamCreate", 2000, CUresult (*)(CUstream *, unsigned));
        FN(get_attr, "cuStreamGetAttribute", 11000, CUresult (*)(CUstream, CUstreamAttrID, CUstreamAttrValue *));
        FN(set_attr, "cuStreamSetAttribute", 11000, CUresult (*)(CUstream, CUstreamAttrID, const CUstreamAttrValue *));
        FN(copy_attrs, "cuStreamCopyAttributes", 11000, CUresult (*)(CUstream, CUstream));
        printf("advise_rc %d\n", (int)advise(m, 4096, CU_MEM_ADVISE_SET_READ_MOSTLY, 0));
        size_t off = 0, size = 0;
        printf("param_info_rc %d\n", (int)param_info(f, 0, &off, &size));
        unsigned nk = 0;
        CHECK(kernel_count(&nk, l));
        printf("kernel_count %u\n", nk);
        CUstream s1, s2;
        CHECK(stream_create(&s1, 0));
        CHECK(stream_create(&s2, 0));
        CUstreamAttrValue v;
        memset(&v, 0, sizeof v);
        v.syncPolicy = CU_SYNC_POLICY_YIELD;
        printf("set_attr_rc %d\n", (int)set_attr(s1, CU_STREAM_ATTRIBUTE_SYNCHRONIZATION_POLICY, &v));
        printf("get_attr_rc %d\n", (int)get_attr(s1, CU_STREAM_ATTRIBUTE_SYNCHRONIZATION_POLICY, &v));
        printf("copy_attrs_rc %d\n", (int)copy_attrs(s2, s1));
        CUresult (*stream_green)(CUstream, CUgreenCtx *) = dlsym(lib, "cuStreamGetGreenCtx");
        CUresult (*green_create)(CUgreenCtx *, CUdevResourceDesc, CUdevice, unsigned) =
            dlsym(lib, "cuGreenCtxCreate");
        CUgreenCtx green = (CUgreenCtx)1;
        printf("stream_green_rc %d\n", (int)stream_green(s1, &green));
        printf("stream_green_none %d\n", green == NULL);
        printf("green_create_rc %d\n", (int)green_create(&green, NULL, 0, 0));
        return 0;
    }

    if (!strcmp(path, "enumerate")) {
        /* A library's kernels listed, as cudaLibraryEnumerateKernels does. */
        FN(lib_load, "cuLibraryLoadData", 12000, CUresult (*)(CUlibrary *, const void *, CUjit_option *,
           void **, unsigned, CUlibraryOption *, void **, unsigned));
        FN(lib_kernel, "cuLibraryGetKernel", 12000, CUresult (*)(CUkernel *, CUlibrary, const char *));
        FN(count_of, "cuLibraryGetKernelCount", 12040, CUresult (*)(unsigned *, CUlibrary));
        FN(enumerate, "cuLibraryEnumerateKernels", 12040, CUresult (*)(CUkernel *, unsigned, CUlibrary));
        FN(kernel_lib, "cuKernelGetLibrary", 12050, CUresult (*)(CUlibrary *, CUkernel));
        FN(kernel_fn, "cuKernelGetFunction", 12000, CUresult (*)(CUfunction *, CUkernel));
        static const char image[] = "gpupool-sim-module 1\nkernel a 1us\nkernel b 2us\nkernel c 3us\n";
        CUlibrary l, back = NULL;
        CHECK(lib_load(&l, image, NULL, NULL, 0, NULL, NULL, 0));
        unsigned n = 0;
        CHECK(count_of(&n, l));
        printf("kernel_count %u\n", n);
        CUkernel ks[3] = {0}, named;
        printf("enumerate_rc %d\n", (int)enumerate(ks, 3, l));
        int same = 1;
        const char *names[3] = {"a", "b", "c"};
        for (int i = 0; i < 3; i++) {
            CHECK(lib_kernel(&named, l, names[i]));
            same &= named == ks[i];
        }
        printf("enumerated_are_named %d\n", same);
        CUfunction f = NULL;
        printf("enumerated_function_rc %d\n", (int)kernel_fn(&f, ks[2]));
        printf("enumerated_library_same %d\n", kernel_lib(&back, ks[1]) == CUDA_SUCCESS && back == l);
        printf("enumerate_none_rc %d\n", (int)enumerate(ks, 0, l));
        return 0;
    }

    if (!strcmp(path, "kernel_names")) {
        /* A library's kernels asked by name, as NVIDIA's runtime asks for every kernel it
         * registers, then launched (the first launch of each needs its parameter sizes). */
        FN(lib_load, "cuLibraryLoadData", 12000, CUresult (*)(CUlibrary *, const void *, CUjit_option *,
           void **, unsigned, CUlibraryOption *, void **, unsigned));
        FN(lib_kernel, "cuLibraryGetKernel", 12000, CUresult (*)(CUkernel *, CUlibrary, const char *));
        FN(kernel_fn, "cuKernelGetFunction", 12000, CUresult (*)(CUfunction *, CUkernel));
        FN(kernel_lib, "cuKernelGetLibrary", 12050, CUresult (*)(CUlibrary *, CUkernel));
        FN(launch, "cuLaunchKernel", 4000, CUresult (*)(CUfunction, unsigned, unsigned, unsigned,
           unsigned, unsigned, unsigned, unsigned, CUstream, void **, void **));
        FN(ctx_sync, "cuCtxSynchronize", 2000, CUresult (*)(void));
        static const char image[] = "gpupool-sim-module 1\nkernel a 1us\nkernel b 2us\n";
        CUlibrary l, back = NULL;
        CHECK(lib_load(&l, image, NULL, NULL, 0, NULL, NULL, 0));
        CUkernel a1, a2, b, missing = NULL;
        CHECK(lib_kernel(&a1, l, "a"));
        CHECK(lib_kernel(&a2, l, "a"));
        CHECK(lib_kernel(&b, l, "b"));
        printf("same_name_same_kernel %d\nother_name_other_kernel %d\n", a1 == a2, a1 != b);
        printf("kernel_library_same %d\n", kernel_lib(&back, b) == CUDA_SUCCESS && back == l);
        for (int i = 0; i < 3; i++) {
            CHECK(launch((CUfunction)a1, 1, 1, 1, 32, 1, 1, 0, NULL, NULL, NULL));
            CHECK(launch((CUfunction)b, 1, 1, 1, 32, 1, 1, 0, NULL, NULL, NULL));
        }
        CUfunction f = NULL;
        CHECK(kernel_fn(&f, b));
        CHECK(launch(f, 1, 1, 1, 32, 1, 1, 0, NULL, NULL, NULL));
        printf("launches_rc %d\n", (int)ctx_sync());
        /* A name the library lacks: refused at once by a driver; through a server, where the
         * kernel is first used (its launch, its function). */
        CUresult missing_rc = lib_kernel(&missing, l, "missing");
        int refused_at_use = missing_rc == CUDA_ERROR_NOT_FOUND;
        if (missing_rc == CUDA_SUCCESS) {
            refused_at_use = launch((CUfunction)missing, 1, 1, 1, 32, 1, 1, 0, NULL, NULL, NULL)
                                 == CUDA_ERROR_NOT_FOUND
                             && kernel_fn(&f, missing) == CUDA_ERROR_NOT_FOUND;
        }
        printf("missing_refused %d\n", refused_at_use);
        printf("after_missing_rc %d\n", (int)ctx_sync());
        return 0;
    }

    if (!strcmp(path, "module_file")) {
        /* Real GPU code loaded from a file, as Triton (torch.compile) loads its cubins: binary
         * bytes that are no text. */
        FN(load, "cuModuleLoad", 2000, CUresult (*)(CUmodule *, const char *));
        FN(get_fn, "cuModuleGetFunction", 2000, CUresult (*)(CUfunction *, CUmodule, const char *));
        unsigned char cubin[256] = {0x7f, 'E', 'L', 'F', 2, 1, 1, 0x33};
        cubin[0x28] = 64;
        for (int i = 64; i < 256; i++) cubin[i] = (unsigned char)(0x80 + i % 0x7f);
        char file[] = "/tmp/gpupool-drv-cubin-XXXXXX";
        int fd = mkstemp(file);
        FILE *f = fd < 0 ? NULL : fdopen(fd, "wb");
        if (!f || fwrite(cubin, 1, sizeof cubin, f) != sizeof cubin || fclose(f)) {
            printf("FAIL writing %s\n", file);
            return 1;
        }
        CUmodule m = NULL;
        CUfunction fn = NULL;
        printf("load_rc %d\n", (int)load(&m, file));
        printf("function_rc %d\n", m ? (int)get_fn(&fn, m, "triton_poi_fused_0") : -1);
        printf("missing_file_rc %d\n", (int)load(&m, "/nonexistent/gpupool.cubin"));
        unlink(file);
        return 0;
    }

    if (!strcmp(path, "link")) {
        /* The JIT linker as Numba and CuPy use it: inputs from memory and from a file, logs
         * and wall time in the caller's option values, the linked image loaded and launched;
         * then a kernel defined twice, a malformed input, and handles used after destroy. */
        FN(create, "cuLinkCreate", 6050, CUresult (*)(unsigned, CUjit_option *, void **, CUlinkState *));
        FN(add_data, "cuLinkAddData", 6050, CUresult (*)(CUlinkState, CUjitInputType, void *, size_t,
           const char *, unsigned, CUjit_option *, void **));
        FN(add_file, "cuLinkAddFile", 6050, CUresult (*)(CUlinkState, CUjitInputType, const char *,
           unsigned, CUjit_option *, void **));
        FN(complete, "cuLinkComplete", 5050, CUresult (*)(CUlinkState, void **, size_t *));
        FN(destroy, "cuLinkDestroy", 5050, CUresult (*)(CUlinkState));
        FN(load_data, "cuModuleLoadData", 2000, CUresult (*)(CUmodule *, const void *));
        FN(get_fn, "cuModuleGetFunction", 2000, CUresult (*)(CUfunction *, CUmodule, const char *));
        FN(launch, "cuLaunchKernel", 4000, CUresult (*)(CUfunction, unsigned, unsigned, unsigned,
           unsigned, unsigned, unsigned, unsigned, CUstream, void **, void **));
        FN(ctx_sync, "cuCtxSynchronize", 2000, CUresult (*)(void));
        static char info_log[256], error_log[256];
        CUjit_option opts[] = {CU_JIT_INFO_LOG_BUFFER, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES,
                               CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES,
                               CU_JIT_WALL_TIME, CU_JIT_LOG_VERBOSE};
        void *vals[] = {info_log, (void *)(uintptr_t)sizeof info_log, error_log,
                        (void *)(uintptr_t)sizeof error_log, NULL, (void *)1};
        CUlinkState st;
        CHECK(create(6, opts, vals, &st));
        static char first[] = "gpupool-sim-module 1\nkernel first 1us\n";
        static char real_ptx[] = ".version 8.0\n.target sm_90\n.entry any() { ret; }\n";
        char file[] = "/tmp/gpupool-drv-link-XXXXXX";
        int fd = mkstemp(file);
        static const char second[] = "gpupool-sim-module 1\nkernel second 2us per-block=1us\n";
        if (fd < 0 || write(fd, second, sizeof second) != (ssize_t)sizeof second || close(fd)) {
            printf("FAIL writing %s\n", file);
            return 1;
        }
        printf("add_rc %d\n", (int)add_data(st, CU_JIT_INPUT_PTX, first, sizeof first, "first.ptx", 0, NULL, NULL));
        printf("add_file_rc %d\n", (int)add_file(st, CU_JIT_INPUT_CUBIN, file, 0, NULL, NULL));
        printf("add_code_rc %d\n", (int)add_data(st, CU_JIT_INPUT_PTX, real_ptx, sizeof real_ptx, "real.ptx", 0, NULL, NULL));
        printf("missing_file_rc %d\n", (int)add_file(st, CU_JIT_INPUT_CUBIN, "/nonexistent/gpupool.cubin", 0, NULL, NULL));
        unlink(file);
        void *image = NULL;
        size_t size = 0;
        printf("complete_rc %d\n", (int)complete(st, &image, &size));
        printf("image_nonempty %d\n", image != NULL && size > 0);
        printf("info_mentions_inputs %d\n", strstr(info_log, "first.ptx: 1 kernels") != NULL &&
               strstr(info_log, "linked 3 inputs") != NULL);
        printf("info_size_matches %d\n", (size_t)(uintptr_t)vals[1] == strlen(info_log) + 1);
        float wall;
        memcpy(&wall, &vals[4], sizeof wall);
        printf("wall_time_set %d\n", wall >= 0.0f && wall < 60000.0f);
        CUmodule m = NULL;
        CUfunction f1 = NULL, f2 = NULL, f3 = NULL;
        printf("load_rc %d\n", (int)load_data(&m, image));
        CUresult got1 = get_fn(&f1, m, "first"), got2 = get_fn(&f2, m, "second");
        printf("functions_rc %d %d %d\n", (int)got1, (int)got2, (int)get_fn(&f3, m, "any"));
        CUresult launched = launch(f2, 4, 1, 1, 32, 1, 1, 0, NULL, NULL, NULL);
        printf("launch_rc %d %d\n", (int)launched, (int)ctx_sync());
        printf("destroy_rc %d\n", (int)destroy(st));
        printf("destroy_again_rc %d\n", (int)destroy(st));
        printf("add_after_destroy_rc %d\n", (int)add_data(st, CU_JIT_INPUT_PTX, first, sizeof first, "x", 0, NULL, NULL));

        /* A kernel defined twice fails the link, and the error log says where. */
        vals[1] = (void *)(uintptr_t)sizeof info_log;
        vals[3] = (void *)(uintptr_t)sizeof error_log;
        CHECK(create(6, opts, vals, &st));
        CUresult add_a = add_data(st, CU_JIT_INPUT_PTX, first, sizeof first, "a.ptx", 0, NULL, NULL);
        CUresult add_b = add_data(st, CU_JIT_INPUT_PTX, first, sizeof first, "b.ptx", 0, NULL, NULL);
        printf("twice_adds %d %d\n", (int)add_a, (int)add_b);
        printf("twice_complete_rc %d\n", (int)complete(st, &image, &size));
        printf("twice_error_named %d\n", strstr(error_log, "first defined in a.ptx and again in b.ptx") != NULL);
        static char broken[] = "gpupool-sim-module 1\nkernel\n";
        printf("malformed_rc %d\n", (int)add_data(st, CU_JIT_INPUT_PTX, broken, sizeof broken, "broken.ptx", 0, NULL, NULL));
        printf("malformed_error_named %d\n", strstr(error_log, "broken.ptx: line 2") != NULL);
        printf("bad_kind_rc %d\n", (int)add_data(st, (CUjitInputType)99, first, sizeof first, "x", 0, NULL, NULL));
        CHECK(destroy(st));
        CUjit_option no_size[] = {CU_JIT_ERROR_LOG_BUFFER};
        printf("buffer_without_size_rc %d\n", (int)create(1, no_size, vals, &st));
        /* Host symbol addresses for the link: a server cannot read them. */
        const char *names[] = {"host_table"};
        static int host_table;
        void *addresses[] = {&host_table};
        CUjit_option pointing[] = {CU_JIT_GLOBAL_SYMBOL_NAMES, CU_JIT_GLOBAL_SYMBOL_ADDRESSES,
                                   CU_JIT_GLOBAL_SYMBOL_COUNT};
        void *pointing_vals[] = {names, addresses, (void *)1};
        CUresult pointing_rc = create(3, pointing, pointing_vals, &st);
        printf("pointing_rc %d\n", (int)pointing_rc);
        if (pointing_rc == CUDA_SUCCESS) destroy(st);
        /* cuModuleLoadDataEx fills the same logs: why an image is refused, nothing when not. */
        FN(load_ex, "cuModuleLoadDataEx", 2010, CUresult (*)(CUmodule *, const void *, unsigned,
           CUjit_option *, void **));
        CUjit_option log_opts[] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
        void *log_vals[] = {error_log, (void *)(uintptr_t)sizeof error_log};
        printf("loadex_bad_rc %d\n", (int)load_ex(&m, broken, 2, log_opts, log_vals));
        printf("loadex_error_logged %d\n", strlen(error_log) > 0 &&
               (size_t)(uintptr_t)log_vals[1] == strlen(error_log) + 1);
        log_vals[1] = (void *)(uintptr_t)sizeof error_log;
        printf("loadex_ok_rc %d\n", (int)load_ex(&m, first, 2, log_opts, log_vals));
        printf("loadex_ok_log_empty %d\n", error_log[0] == 0 && (uintptr_t)log_vals[1] == 1);
        FN(lib_load, "cuLibraryLoadData", 12000, CUresult (*)(CUlibrary *, const void *, CUjit_option *,
           void **, unsigned, CUlibraryOption *, void **, unsigned));
        CUlibrary lib_handle;
        log_vals[1] = (void *)(uintptr_t)sizeof error_log;
        error_log[0] = 'x';
        CUresult lib_rc = lib_load(&lib_handle, broken, log_opts, log_vals, 2, NULL, NULL, 0);
        printf("libload_bad_rc %d\n", (int)lib_rc);
        /* A library a remote client names without waiting is refused where it is used. */
        printf("libload_logged_if_refused %d\n", (lib_rc != CUDA_SUCCESS) == (strlen(error_log) > 0) &&
               (size_t)(uintptr_t)log_vals[1] == strlen(error_log) + 1);
        return 0;
    }

    if (!strcmp(path, "jit_ptx")) {
        /* Real PTX linked by the driver: a kernel calling a function of another input (extern,
         * resolved by the link), loaded and run on 256 integers set to 41. On a real card
         * "computed" counts those that became 42; the simulator runs no code (0). */
        FN(create, "cuLinkCreate", 6050, CUresult (*)(unsigned, CUjit_option *, void **, CUlinkState *));
        FN(add_data, "cuLinkAddData", 6050, CUresult (*)(CUlinkState, CUjitInputType, void *, size_t,
           const char *, unsigned, CUjit_option *, void **));
        FN(complete, "cuLinkComplete", 5050, CUresult (*)(CUlinkState, void **, size_t *));
        FN(destroy, "cuLinkDestroy", 5050, CUresult (*)(CUlinkState));
        FN(load_data, "cuModuleLoadData", 2000, CUresult (*)(CUmodule *, const void *));
        FN(get_fn, "cuModuleGetFunction", 2000, CUresult (*)(CUfunction *, CUmodule, const char *));
        FN(alloc, "cuMemAlloc", 3020, CUresult (*)(CUdeviceptr *, size_t));
        FN(memset32, "cuMemsetD32", 3020, CUresult (*)(CUdeviceptr, unsigned, size_t));
        FN(dtoh, "cuMemcpyDtoH", 3020, CUresult (*)(void *, CUdeviceptr, size_t));
        FN(launch, "cuLaunchKernel", 4000, CUresult (*)(CUfunction, unsigned, unsigned, unsigned,
           unsigned, unsigned, unsigned, unsigned, CUstream, void **, void **));
        FN(ctx_sync, "cuCtxSynchronize", 2000, CUresult (*)(void));
        static char kernel_ptx[] =
    ".version 7.0\n"
    ".target sm_50\n"
    ".address_size 64\n"
    "\n"
    ".extern .func (.param .b32 func_retval0) plus_one(.param .b32 x);\n"
    "\n"
    ".visible .entry add_one(.param .u64 p, .param .u32 n)\n"
    "{\n"
    "    .reg .pred %p<2>;\n"
    "    .reg .b32 %r<8>;\n"
    "    .reg .b64 %rd<5>;\n"
    "\n"
    "    ld.param.u64 %rd1, [p];\n"
    "    ld.param.u32 %r2, [n];\n"
    "    mov.u32 %r3, %ctaid.x;\n"
    "    mov.u32 %r4, %ntid.x;\n"
    "    mov.u32 %r5, %tid.x;\n"
    "    mad.lo.s32 %r1, %r3, %r4, %r5;\n"
    "    setp.ge.u32 %p1, %r1, %r2;\n"
    "    @%p1 bra DONE;\n"
    "    cvta.to.global.u64 %rd2, %rd1;\n"
    "    mul.wide.u32 %rd3, %r1, 4;\n"
    "    add.s64 %rd4, %rd2, %rd3;\n"
    "    ld.global.u32 %r6, [%rd4];\n"
    "    {\n"
    "        .param .b32 param0;\n"
    "        st.param.b32 [param0], %r6;\n"
    "        .param .b32 retval0;\n"
    "        call.uni (retval0), plus_one, (param0);\n"
    "        ld.param.b32 %r7, [retval0];\n"
    "    }\n"
    "    st.global.u32 [%rd4], %r7;\n"
    "DONE:\n"
    "    ret;\n"
    "}\n";
        static char function_ptx[] =
    ".version 7.0\n"
    ".target sm_50\n"
    ".address_size 64\n"
    "\n"
    ".visible .func (.param .b32 func_retval0) plus_one(.param .b32 x)\n"
    "{\n"
    "    .reg .b32 %r<3>;\n"
    "    ld.param.b32 %r1, [x];\n"
    "    add.s32 %r2, %r1, 1;\n"
    "    st.param.b32 [func_retval0], %r2;\n"
    "    ret;\n"
    "}\n";
        static char info_log[4096], error_log[4096];
        CUjit_option opts[] = {CU_JIT_INFO_LOG_BUFFER, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES,
                               CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
        void *vals[] = {info_log, (void *)(uintptr_t)sizeof info_log, error_log,
                        (void *)(uintptr_t)sizeof error_log};
        CUlinkState st;
        CHECK(create(4, opts, vals, &st));
        printf("add_kernel_rc %d\n", (int)add_data(st, CU_JIT_INPUT_PTX, kernel_ptx, sizeof kernel_ptx,
               "add_one.ptx", 0, NULL, NULL));
        printf("add_function_rc %d\n", (int)add_data(st, CU_JIT_INPUT_PTX, function_ptx,
               sizeof function_ptx, "plus_one.ptx", 0, NULL, NULL));
        void *image = NULL;
        size_t size = 0;
        CUresult linked = complete(st, &image, &size);
        printf("complete_rc %d\n", (int)linked);
        if (linked != CUDA_SUCCESS) printf("error_log %s\n", error_log);
        CUmodule m = NULL;
        CUfunction f = NULL;
        printf("load_rc %d\n", linked ? -1 : (int)load_data(&m, image));
        printf("function_rc %d\n", m ? (int)get_fn(&f, m, "add_one") : -1);
        CHECK(destroy(st));
        enum { N = 256 };
        CUdeviceptr d;
        CHECK(alloc(&d, N * sizeof(int)));
        CHECK(memset32(d, 41, N));
        unsigned n = N;
        void *args[] = {&d, &n};
        CUresult launched = f ? launch(f, 1, 1, 1, N, 1, 1, 0, NULL, args, NULL) : CUDA_ERROR_INVALID_HANDLE;
        printf("launch_rc %d\n", (int)launched);
        printf("sync_rc %d\n", (int)ctx_sync());
        int host[N];
        CHECK(dtoh(host, d, sizeof host));
        int computed = 0;
        for (int i = 0; i < N; i++) computed += host[i] == 42;
        printf("computed %d\n", computed);
        return 0;
    }

    if (!strcmp(path, "big_copies")) {
        /* 2D and 3D copies between pitched host memory and the device larger than one message
         * of a remote GPU (32 MiB of rows), plain and captured in a graph replayed with new
         * host data; the gaps between the host's rows stay untouched. */
        FN(alloc_pitch, "cuMemAllocPitch", 3020, CUresult (*)(CUdeviceptr *, size_t *, size_t, size_t, unsigned));
        FN(alloc, "cuMemAlloc", 3020, CUresult (*)(CUdeviceptr *, size_t));
        FN(copy2d, "cuMemcpy2D", 3020, CUresult (*)(const CUDA_MEMCPY2D *));
        FN(copy2d_async, "cuMemcpy2DAsync", 3020, CUresult (*)(const CUDA_MEMCPY2D *, CUstream));
        FN(copy3d, "cuMemcpy3D", 3020, CUresult (*)(const CUDA_MEMCPY3D *));
        FN(stream_create, "cuStreamCreate", 2000, CUresult (*)(CUstream *, unsigned));
        FN(stream_sync, "cuStreamSynchronize", 2000, CUresult (*)(CUstream));
        FN(begin, "cuStreamBeginCapture", 10010, CUresult (*)(CUstream, CUstreamCaptureMode));
        FN(end, "cuStreamEndCapture", 10000, CUresult (*)(CUstream, CUgraph *));
        FN(instantiate, "cuGraphInstantiateWithFlags", 11040, CUresult (*)(CUgraphExec *, CUgraph, unsigned long long));
        FN(graph_launch, "cuGraphLaunch", 10000, CUresult (*)(CUgraphExec, CUstream));
        enum { W = 5000, HP = 5120, HP2 = 5008, H = 8000, H3 = 2000, D3 = 5 };
        /* Enough rows for the 2D copy (H) and the 3D one (D3 slices of H3). */
        const size_t rows = (size_t)H3 * D3 > H ? (size_t)H3 * D3 : H;
        unsigned char *src = malloc((size_t)HP * rows), *back = malloc((size_t)HP2 * H);
        if (!src || !back) { printf("FAIL malloc\n"); return 1; }
        for (size_t y = 0; y < rows; y++)
            for (size_t x = 0; x < HP; x++) src[y * HP + x] = (unsigned char)(x * 7 + y * 13);
        memset(back, 0xee, (size_t)HP2 * H);
        CUdeviceptr d;
        size_t dp = 0;
        CHECK(alloc_pitch(&d, &dp, W, H, 4));
        CUDA_MEMCPY2D up = {0}, down = {0};
        up.srcMemoryType = CU_MEMORYTYPE_HOST; up.srcHost = src; up.srcPitch = HP;
        up.dstMemoryType = CU_MEMORYTYPE_DEVICE; up.dstDevice = d; up.dstPitch = dp;
        up.WidthInBytes = W; up.Height = H;
        down.srcMemoryType = CU_MEMORYTYPE_DEVICE; down.srcDevice = d; down.srcPitch = dp;
        down.dstMemoryType = CU_MEMORYTYPE_HOST; down.dstHost = back; down.dstPitch = HP2;
        down.WidthInBytes = W; down.Height = H;
        CUresult rc_up = copy2d(&up);
        CUresult rc_down = copy2d(&down);
        printf("big_2d_rc %d %d\n", (int)rc_up, (int)rc_down);
        int same = 1;
        for (size_t y = 0; y < H && same; y++)
            for (size_t x = 0; x < HP2; x++)
                if (back[y * HP2 + x] != (x < W ? src[y * HP + x] : 0xee)) { same = 0; break; }
        printf("big_2d_ok %d\n", same);

        /* 3D: five slices of 10 MB from pitched host memory to dense device memory, back
         * densely, rows 100.. of slices 1.. (a first slice and row that are not 0). */
        CUdeviceptr d3;
        CHECK(alloc(&d3, (size_t)W * H3 * D3));
        CUDA_MEMCPY3D up3 = {0}, down3 = {0};
        up3.srcMemoryType = CU_MEMORYTYPE_HOST; up3.srcHost = src; up3.srcPitch = HP; up3.srcHeight = H3;
        up3.dstMemoryType = CU_MEMORYTYPE_DEVICE; up3.dstDevice = d3; up3.dstPitch = W; up3.dstHeight = H3;
        up3.WidthInBytes = W; up3.Height = H3; up3.Depth = D3 - 1;
        up3.srcZ = 1; up3.dstZ = 1;
        unsigned char *dense = calloc((size_t)W * H3 * D3, 1);
        if (!dense) { printf("FAIL calloc\n"); return 1; }
        down3.srcMemoryType = CU_MEMORYTYPE_DEVICE; down3.srcDevice = d3; down3.srcPitch = W; down3.srcHeight = H3;
        down3.dstMemoryType = CU_MEMORYTYPE_HOST; down3.dstHost = dense; down3.dstPitch = W; down3.dstHeight = H3;
        down3.WidthInBytes = W; down3.Height = H3 - 100; down3.Depth = D3 - 1;
        down3.srcY = 100; down3.dstY = 100; down3.srcZ = 1; down3.dstZ = 1;
        CUresult rc_up3 = copy3d(&up3);
        CUresult rc_down3 = copy3d(&down3);
        printf("big_3d_rc %d %d\n", (int)rc_up3, (int)rc_down3);
        same = 1;
        for (size_t z = 0; z < D3 && same; z++)
            for (size_t y = 0; y < H3 && same; y++)
                for (size_t x = 0; x < W; x++) {
                    unsigned char want = z >= 1 && y >= 100 ? src[(z * H3 + y) * HP + x] : 0;
                    if (dense[(z * H3 + y) * W + x] != want) { same = 0; break; }
                }
        printf("big_3d_ok %d\n", same);

        /* Captured: the same 2D copies in a graph, replayed twice with new host data. */
        CUstream st;
        CHECK(stream_create(&st, CU_STREAM_NON_BLOCKING));
        CUgraph g = NULL;
        CUgraphExec ge = NULL;
        CHECK(begin(st, CU_STREAM_CAPTURE_MODE_GLOBAL));
        CUresult rc_cap_up = copy2d_async(&up, st);
        CUresult rc_cap_down = copy2d_async(&down, st);
        CHECK(end(st, &g));
        printf("big_captured_rc %d %d\n", (int)rc_cap_up, (int)rc_cap_down);
        CHECK(instantiate(&ge, g, 0));
        int replays_ok = 1;
        for (int round = 1; round <= 2; round++) {
            for (size_t y = 0; y < H; y++) src[y * HP + (y % W)] = (unsigned char)(round * 31 + y);
            memset(back, 0xee, (size_t)HP2 * H);
            CHECK(graph_launch(ge, st));
            CHECK(stream_sync(st));
            for (size_t y = 0; y < H && replays_ok; y++)
                for (size_t x = 0; x < HP2; x++)
                    if (back[y * HP2 + x] != (x < W ? src[y * HP + x] : 0xee)) { replays_ok = 0; break; }
        }
        printf("big_replays_ok %d\n", replays_ok);
        return 0;
    }

    if (!strncmp(path, "ipc", 3)) return ipc_path(path, argc, argv);
    if (!strncmp(path, "vmm_share", 9)) return vmm_share_path(path, argc, argv);
    if (!strcmp(path, "launch_events")) {
        /* cuLaunchKernelEx with an event attribute: the event is recorded with the launch
         * (launch completion; programmatic), so the time from an event recorded before it
         * covers the 200 us kernel. */
        FN(load_data, "cuModuleLoadData", 2000, CUresult (*)(CUmodule *, const void *));
        FN(get_fn, "cuModuleGetFunction", 2000, CUresult (*)(CUfunction *, CUmodule, const char *));
        FN(launch_ex, "cuLaunchKernelEx", 11060, CUresult (*)(const CUlaunchConfig *, CUfunction, void **, void **));
        FN(event_create, "cuEventCreate", 2000, CUresult (*)(CUevent *, unsigned));
        FN(event_record, "cuEventRecord", 2000, CUresult (*)(CUevent, CUstream));
        FN(event_sync, "cuEventSynchronize", 2000, CUresult (*)(CUevent));
        FN(elapsed, "cuEventElapsedTime", 2000, CUresult (*)(float *, CUevent, CUevent));
        FN(ctx_sync, "cuCtxSynchronize", 2000, CUresult (*)(void));
        static const char image[] = "gpupool-sim-module 1\nkernel busy 200us\n";
        CUmodule m;
        CUfunction f;
        CHECK(load_data(&m, image));
        CHECK(get_fn(&f, m, "busy"));
        CUevent start, done, triggered;
        CHECK(event_create(&start, 0));
        CHECK(event_create(&done, 0));
        CHECK(event_create(&triggered, 0));
        CUlaunchAttribute attrs[2];
        memset(attrs, 0, sizeof attrs);
        attrs[0].id = CU_LAUNCH_ATTRIBUTE_LAUNCH_COMPLETION_EVENT;
        attrs[0].value.launchCompletionEvent.event = done;
        attrs[1].id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_EVENT;
        attrs[1].value.programmaticEvent.event = triggered;
        CUlaunchConfig cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.gridDimX = cfg.gridDimY = cfg.gridDimZ = 1;
        cfg.blockDimX = cfg.blockDimY = cfg.blockDimZ = 1;
        cfg.attrs = attrs;
        cfg.numAttrs = 2;
        CHECK(event_record(start, NULL));
        printf("launch_rc %d\n", (int)launch_ex(&cfg, f, NULL, NULL));
        printf("sync_rc %d\n", (int)event_sync(done));
        float ms_done = 0, ms_triggered = 0;
        CHECK(elapsed(&ms_done, start, done));
        CHECK(elapsed(&ms_triggered, start, triggered));
        printf("completion_covers_kernel %d\n", ms_done >= 0.2f);
        printf("programmatic_covers_kernel %d\n", ms_triggered >= 0.2f);
        printf("ctx_sync_rc %d\n", (int)ctx_sync());
        return 0;
    }

    if (!strcmp(path, "peer")) {
        /* A copy between the memory of two devices (needs two), plain and on a stream. */
        FN(alloc, "cuMemAlloc", 3020, CUresult (*)(CUdeviceptr *, size_t));
        FN(htod, "cuMemcpyHtoD", 3020, CUresult (*)(CUdeviceptr, const void *, size_t));
        FN(dtoh, "cuMemcpyDtoH", 3020, CUresult (*)(void *, CUdeviceptr, size_t));
        FN(peer, "cuMemcpyPeer", 4000, CUresult (*)(CUdeviceptr, CUcontext, CUdeviceptr, CUcontext, size_t));
        FN(peer_async, "cuMemcpyPeerAsync", 4000, CUresult (*)(CUdeviceptr, CUcontext, CUdeviceptr,
           CUcontext, size_t, CUstream));
        FN(sync, "cuCtxSynchronize", 2000, CUresult (*)(void));
        enum { N = 1 << 16 };
        static unsigned char in[N], out[N];
        for (int i = 0; i < N; i++) in[i] = (unsigned char)(i * 7 + 3);
        CUcontext second;
        CUdeviceptr a, b, c;
        CHECK(alloc(&a, N));
        CHECK(htod(a, in, N));
        CHECK(retain(&second, 1));
        CHECK(set_current(second));
        CHECK(alloc(&b, N));
        CHECK(alloc(&c, N));
        printf("peer_rc %d\n", (int)peer(b, second, a, primary, N));
        CHECK(dtoh(out, b, N));
        printf("peer_ok %d\n", !memcmp(in, out, N));
        printf("peer_async_rc %d\n", (int)peer_async(c, second, b, second, N, NULL));
        CHECK(sync());
        memset(out, 0, N);
        CHECK(dtoh(out, c, N));
        printf("peer_async_ok %d\n", !memcmp(in, out, N));
        /* refused at once, or (through a server, like other copies sent without waiting) at
         * the next synchronisation */
        CUresult nowhere = peer(b, second, (CUdeviceptr)0x1000, primary, N);
        printf("peer_from_nowhere_rc %d\n", (int)(nowhere ? nowhere : sync()));
        return 0;
    }

    if (!strcmp(path, "tools_context")) {
        /* What cuBLASLt asks before each matrix product (it refuses the product otherwise):
         * the current context through the tools table (slot 2), then that context's id through
         * the context-identity table (slot 4). */
        FN(get_table, "cuGetExportTable", 3000, CUresult (*)(const void **, const CUuuid *));
        FN(ctx_id, "cuCtxGetId", 12000, CUresult (*)(CUcontext, unsigned long long *));
        static const CUuuid tools = {{0x42, 0xd8, 0x5a, 0x81, 0x23, 0xf6, (char)0xcb, 0x47,
                                      (char)0x82, (char)0x98, (char)0xf6, (char)0xe7,
                                      (char)0x8a, 0x3a, (char)0xec, (char)0xdc}};
        static const CUuuid identity = {{0x21, 0x31, (char)0x8c, 0x60, (char)0x97, 0x14, 0x32,
                                         0x48, (char)0x8c, (char)0xa6, 0x41, (char)0xff, 0x73,
                                         0x24, (char)0xc8, (char)0xf2}};
        const void *const *t = NULL, *const *ident = NULL;
        CHECK(get_table((const void **)&t, &tools));
        CHECK(get_table((const void **)&ident, &identity));
        CUresult (*current)(CUcontext *) = (CUresult (*)(CUcontext *))t[2];
        CUresult (*id_of)(CUcontext, unsigned long long *) =
            (CUresult (*)(CUcontext, unsigned long long *))ident[4];
        CUcontext c = (CUcontext)1;
        printf("tools_current_rc %d\n", (int)current(&c));
        printf("tools_current_is_current %d\n", c == primary);
        unsigned long long via_table = 0, via_api = 0;
        printf("identity_rc %d\n", (int)id_of(c, &via_table));
        CHECK(ctx_id(primary, &via_api));
        printf("identity_matches %d\n", via_table == via_api && via_api != 0);
        return 0;
    }

    if (!strcmp(path, "tensor_maps")) {
        /* Tensor-memory-access descriptors as Hopper GEMM kernels get them: a float matrix in
         * 32 x 32 boxes, the documented rules refused, the address replaced. */
        FN(alloc, "cuMemAlloc", 3020, CUresult (*)(CUdeviceptr *, size_t));
        FN(tiled, "cuTensorMapEncodeTiled", 12000, CUresult (*)(CUtensorMap *, CUtensorMapDataType,
           cuuint32_t, void *, const cuuint64_t *, const cuuint64_t *, const cuuint32_t *,
           const cuuint32_t *, CUtensorMapInterleave, CUtensorMapSwizzle, CUtensorMapL2promotion,
           CUtensorMapFloatOOBfill));
        FN(im2col, "cuTensorMapEncodeIm2col", 12000, CUresult (*)(CUtensorMap *, CUtensorMapDataType,
           cuuint32_t, void *, const cuuint64_t *, const cuuint64_t *, const int *, const int *,
           cuuint32_t, cuuint32_t, const cuuint32_t *, CUtensorMapInterleave, CUtensorMapSwizzle,
           CUtensorMapL2promotion, CUtensorMapFloatOOBfill));
        FN(replace, "cuTensorMapReplaceAddress", 12000, CUresult (*)(CUtensorMap *, void *));
        CUdeviceptr m;
        CHECK(alloc(&m, 4 << 20));
        void *a = (void *)(uintptr_t)m, *b = (void *)(uintptr_t)(m + 65536);
        cuuint64_t dims[2] = {1024, 512}, strides[1] = {4096};
        cuuint32_t box[2] = {32, 32}, wide_box[2] = {36, 32}, es[2] = {1, 1};
        CUtensorMap t1, t2, t3;
        const CUtensorMapDataType f32 = CU_TENSOR_MAP_DATA_TYPE_FLOAT32;
#define TILED(map, addr, rank, strides_, box_) tiled(map, f32, rank, addr, dims, strides_, box_, es, \
        CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_128B, \
        CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE)
        printf("tiled_rc %d\n", (int)TILED(&t1, a, 2, strides, box));
        CHECK(TILED(&t2, a, 2, strides, box));
        printf("same_arguments_same_map %d\n", !memcmp(&t1, &t2, sizeof t1));
        CHECK(TILED(&t3, b, 2, strides, box));
        printf("other_address_other_map %d\n", memcmp(&t1, &t3, sizeof t1) != 0);
        printf("replace_rc %d\n", (int)replace(&t1, b));
        printf("replaced_equals_encoded %d\n", !memcmp(&t1, &t3, sizeof t1));
        printf("replace_misaligned_rc %d\n", (int)replace(&t1, (char *)b + 8));
        printf("misaligned_rc %d\n", (int)TILED(&t2, (char *)a + 8, 2, strides, box));
        printf("rank_6_rc %d\n", (int)TILED(&t2, a, 6, strides, box));
        cuuint64_t odd_stride[1] = {4100};
        printf("odd_stride_rc %d\n", (int)TILED(&t2, a, 2, odd_stride, box));
        printf("wider_than_swizzle_rc %d\n", (int)TILED(&t2, a, 2, strides, wide_box));
        cuuint64_t d4[4] = {64, 32, 32, 8}, s4[3] = {128, 4096, 131072};
        cuuint32_t es4[4] = {1, 1, 1, 1};
        int lower[2] = {-1, -1}, upper[2] = {0, 0};
        printf("im2col_rc %d\n", (int)im2col(&t2, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 4, a, d4, s4,
               lower, upper, 64, 64, es4, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
               CU_TENSOR_MAP_L2_PROMOTION_NONE, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE));
        /* An address of no allocation of this process: a server refuses it, a driver does not
         * look (nothing reads it until a kernel does). */
        printf("foreign_rc %d\n", (int)TILED(&t2, (void *)(uintptr_t)0x100000, 2, strides, box));
        return 0;
    }

    if (!strcmp(path, "capture")) {
        /* Stream capture as torch.cuda.graph uses it: kernels, a set, a host copy and a host
         * function recorded on one stream, a second stream drawn in through an event, the
         * graph replayed; then a capture broken by a synchronisation. */
        FN(load, "cuModuleLoadData", 2000, CUresult (*)(CUmodule *, const void *));
        FN(get_fn, "cuModuleGetFunction", 2000, CUresult (*)(CUfunction *, CUmodule, const char *));
        FN(launch, "cuLaunchKernel", 4000, CUresult (*)(CUfunction, unsigned, unsigned, unsigned,
           unsigned, unsigned, unsigned, unsigned, CUstream, void **, void **));
        FN(stream_create, "cuStreamCreate", 2000, CUresult (*)(CUstream *, unsigned));
        FN(stream_sync, "cuStreamSynchronize", 2000, CUresult (*)(CUstream));
        FN(begin, "cuStreamBeginCapture", 10010, CUresult (*)(CUstream, CUstreamCaptureMode));
        FN(end, "cuStreamEndCapture", 10000, CUresult (*)(CUstream, CUgraph *));
        FN(is_capturing, "cuStreamIsCapturing", 10000, CUresult (*)(CUstream, CUstreamCaptureStatus *));
        FN(capture_info, "cuStreamGetCaptureInfo", 11030, CUresult (*)(CUstream, CUstreamCaptureStatus *,
           cuuint64_t *, CUgraph *, const CUgraphNode **, size_t *));
        FN(alloc, "cuMemAlloc", 3020, CUresult (*)(CUdeviceptr *, size_t));
        FN(set_async, "cuMemsetD32Async", 3020, CUresult (*)(CUdeviceptr, unsigned, size_t, CUstream));
        FN(htod_async, "cuMemcpyHtoDAsync", 3020, CUresult (*)(CUdeviceptr, const void *, size_t, CUstream));
        FN(dtoh, "cuMemcpyDtoH", 3020, CUresult (*)(void *, CUdeviceptr, size_t));
        FN(host_func, "cuLaunchHostFunc", 10000, CUresult (*)(CUstream, CUhostFn, void *));
        FN(event_create, "cuEventCreate", 2000, CUresult (*)(CUevent *, unsigned));
        FN(record, "cuEventRecord", 2000, CUresult (*)(CUevent, CUstream));
        FN(wait_event, "cuStreamWaitEvent", 3020, CUresult (*)(CUstream, CUevent, unsigned));
        FN(elapsed, "cuEventElapsedTime", 2000, CUresult (*)(float *, CUevent, CUevent));
        FN(get_nodes, "cuGraphGetNodes", 10000, CUresult (*)(CUgraph, CUgraphNode *, size_t *));
        FN(node_type, "cuGraphNodeGetType", 10000, CUresult (*)(CUgraphNode, CUgraphNodeType *));
        FN(instantiate, "cuGraphInstantiateWithFlags", 11040, CUresult (*)(CUgraphExec *, CUgraph, unsigned long long));
        FN(graph_launch, "cuGraphLaunch", 10000, CUresult (*)(CUgraphExec, CUstream));
        /* A simulated 2 ms kernel; a real driver takes no such module, and the path runs
         * without kernels there. */
        const char *image = "gpupool-sim-module 1\nkernel busy 2ms\n";
        CUmodule m;
        CUfunction busy = NULL;
        if (load(&m, image) == CUDA_SUCCESS) CHECK(get_fn(&busy, m, "busy"));
        printf("kernels %d\n", busy != NULL);
#define BUSY(stream) do { if (busy) CHECK(launch(busy, 1, 1, 1, 32, 1, 1, 0, stream, NULL, NULL)); } while (0)
        CUstream s, s2;
        CHECK(stream_create(&s, CU_STREAM_NON_BLOCKING));
        CHECK(stream_create(&s2, CU_STREAM_NON_BLOCKING));
        CUevent fork, join, e0, e1;
        CHECK(event_create(&fork, 0));
        CHECK(event_create(&join, 0));
        CHECK(event_create(&e0, 0));
        CHECK(event_create(&e1, 0));
        CUdeviceptr d;
        CHECK(alloc(&d, 4096));
        unsigned zero[8] = {0}, host[4] = {1, 2, 3, 4}, back[8];
        CHECK(htod_async(d, zero, sizeof zero, s));
        CHECK(stream_sync(s));
        int calls = 0;
        CUstreamCaptureStatus st = (CUstreamCaptureStatus)7;
        printf("legacy_stream_rc %d\n", (int)begin(NULL, CU_STREAM_CAPTURE_MODE_GLOBAL));
        CHECK(begin(s, CU_STREAM_CAPTURE_MODE_GLOBAL));
        printf("begin_twice_rc %d\n", (int)begin(s, CU_STREAM_CAPTURE_MODE_GLOBAL));
        CHECK(is_capturing(s, &st));
        printf("status_during %d\n", (int)st);
        cuuint64_t id1 = 0, id1_again = 0, id2 = 0;
        CHECK(capture_info(s, &st, &id1, NULL, NULL, NULL));
        for (int i = 0; i < 3; i++) BUSY(s);
        CHECK(set_async(d, 7, 8, s));
        printf("htod_rc %d\n", (int)htod_async(d, host, sizeof host, s));
        printf("host_func_rc %d\n", (int)host_func(s, host_fn, &calls));
        CHECK(record(fork, s));
        CHECK(wait_event(s2, fork, 0));
        CHECK(is_capturing(s2, &st));
        printf("joined_status %d\n", (int)st);
        CHECK(capture_info(s2, &st, &id1_again, NULL, NULL, NULL));
        BUSY(s2);
        CHECK(record(join, s2));
        CHECK(wait_event(s, join, 0));
        CUgraph g = NULL;
        printf("end_on_joined_rc %d\n", (int)end(s2, &g));
        CHECK(end(s, &g));
        CHECK(is_capturing(s, &st));
        printf("status_after %d\n", (int)st);
        CHECK(is_capturing(s2, &st));
        printf("joined_status_after %d\n", (int)st);
        CHECK(dtoh(back, d, sizeof back));
        printf("nothing_ran %d\n", calls == 0 && back[0] == 0 && back[7] == 0);
        printf("same_id %d\nid_set %d\n", id1 == id1_again, id1 != 0);
        print_nodes(get_nodes, node_type, g);
        CUgraphExec exec;
        CHECK(instantiate(&exec, g, 0));
        host[0] = 5; host[1] = 6; host[2] = 7; host[3] = 8;
        CHECK(record(e0, s));
        CHECK(graph_launch(exec, s));
        CHECK(graph_launch(exec, s));
        CHECK(record(e1, s));
        CHECK(stream_sync(s));
        float ms = 0;
        CHECK(elapsed(&ms, e0, e1));
        CHECK(dtoh(back, d, sizeof back));
        printf("replay_ms %.3f\nhost_calls %d\n", ms, calls);
        printf("data");
        for (int i = 0; i < 8; i++) printf(" %u", back[i]);
        printf("\n");
        /* A synchronisation inside a capture is refused and breaks it. */
        CHECK(begin(s, CU_STREAM_CAPTURE_MODE_RELAXED));
        CHECK(capture_info(s, &st, &id2, NULL, NULL, NULL));
        printf("new_id %d\n", id2 != 0 && id2 != id1);
        BUSY(s);
        printf("sync_in_capture_rc %d\n", (int)stream_sync(s));
        CHECK(is_capturing(s, &st));
        printf("status_broken %d\n", (int)st);
        g = (CUgraph)1;
        CUresult end_rc = end(s, &g);
        printf("end_broken_rc %d\ngraph_null %d\n", (int)end_rc, g == NULL);
        CHECK(is_capturing(s, &st));
        printf("status_end %d\n", (int)st);
        /* Work on the legacy stream while a blocking stream is captured would make the legacy
         * stream wait for the capture: refused, and the capture is broken (through a server
         * the error comes with the next call that waits). Beside a non-blocking stream's
         * capture the legacy stream works. */
        CUstream blocking;
        CHECK(stream_create(&blocking, 0));
        CHECK(begin(blocking, CU_STREAM_CAPTURE_MODE_GLOBAL));
        CUresult legacy_rc = set_async(d, 1, 8, NULL);
        if (legacy_rc == CUDA_SUCCESS) legacy_rc = is_capturing(blocking, &st);
        printf("legacy_work_rc %d\n", (int)legacy_rc);
        CHECK(is_capturing(blocking, &st));
        printf("implicit_status %d\n", (int)st);
        end_rc = end(blocking, &g);
        printf("implicit_end_rc %d\n", (int)end_rc);
        CHECK(begin(s, CU_STREAM_CAPTURE_MODE_GLOBAL));
        legacy_rc = set_async(d, 1, 8, NULL);
        if (legacy_rc == CUDA_SUCCESS) legacy_rc = is_capturing(s, &st);
        printf("legacy_beside_nonblocking_rc %d\n", (int)legacy_rc);
        CHECK(end(s, &g));
        return 0;
    }

    if (!strcmp(path, "graph_nodes")) {
        /* A graph built node by node: a kernel, a set, a copy to host memory, a host function
         * and a child graph of one kernel, launched twice. */
        FN(load, "cuModuleLoadData", 2000, CUresult (*)(CUmodule *, const void *));
        FN(get_fn, "cuModuleGetFunction", 2000, CUresult (*)(CUfunction *, CUmodule, const char *));
        FN(stream_create, "cuStreamCreate", 2000, CUresult (*)(CUstream *, unsigned));
        FN(stream_sync, "cuStreamSynchronize", 2000, CUresult (*)(CUstream));
        FN(alloc, "cuMemAlloc", 3020, CUresult (*)(CUdeviceptr *, size_t));
        FN(graph_create, "cuGraphCreate", 10000, CUresult (*)(CUgraph *, unsigned));
        FN(add_kernel, "cuGraphAddKernelNode", 12000, CUresult (*)(CUgraphNode *, CUgraph,
           const CUgraphNode *, size_t, const CUDA_KERNEL_NODE_PARAMS *));
        FN(add_memset, "cuGraphAddMemsetNode", 10000, CUresult (*)(CUgraphNode *, CUgraph,
           const CUgraphNode *, size_t, const CUDA_MEMSET_NODE_PARAMS *, CUcontext));
        FN(add_memcpy, "cuGraphAddMemcpyNode", 10000, CUresult (*)(CUgraphNode *, CUgraph,
           const CUgraphNode *, size_t, const CUDA_MEMCPY3D *, CUcontext));
        FN(add_host, "cuGraphAddHostNode", 10000, CUresult (*)(CUgraphNode *, CUgraph,
           const CUgraphNode *, size_t, const CUDA_HOST_NODE_PARAMS *));
        FN(add_child, "cuGraphAddChildGraphNode", 10000, CUresult (*)(CUgraphNode *, CUgraph,
           const CUgraphNode *, size_t, CUgraph));
        FN(add_empty, "cuGraphAddEmptyNode", 10000, CUresult (*)(CUgraphNode *, CUgraph,
           const CUgraphNode *, size_t));
        FN(get_nodes, "cuGraphGetNodes", 10000, CUresult (*)(CUgraph, CUgraphNode *, size_t *));
        FN(node_type, "cuGraphNodeGetType", 10000, CUresult (*)(CUgraphNode, CUgraphNodeType *));
        FN(instantiate, "cuGraphInstantiateWithFlags", 11040, CUresult (*)(CUgraphExec *, CUgraph, unsigned long long));
        FN(graph_launch, "cuGraphLaunch", 10000, CUresult (*)(CUgraphExec, CUstream));
        FN(event_create, "cuEventCreate", 2000, CUresult (*)(CUevent *, unsigned));
        FN(record, "cuEventRecord", 2000, CUresult (*)(CUevent, CUstream));
        FN(elapsed, "cuEventElapsedTime", 2000, CUresult (*)(float *, CUevent, CUevent));
        const char *image = "gpupool-sim-module 1\nkernel busy 2ms\n";
        CUmodule m;
        CUfunction busy;
        CHECK(load(&m, image));
        CHECK(get_fn(&busy, m, "busy"));
        CUstream s;
        CHECK(stream_create(&s, CU_STREAM_NON_BLOCKING));
        CUdeviceptr d;
        CHECK(alloc(&d, 4096));
        unsigned back[4] = {0};
        int calls = 0;
        CUgraph g, child;
        CHECK(graph_create(&g, 0));
        CHECK(graph_create(&child, 0));
        CUDA_KERNEL_NODE_PARAMS kp;
        memset(&kp, 0, sizeof kp);
        kp.func = busy;
        kp.gridDimX = kp.gridDimY = kp.gridDimZ = 1;
        kp.blockDimX = 32; kp.blockDimY = kp.blockDimZ = 1;
        CUgraphNode nodes[8], dep;
        CHECK(add_kernel(&nodes[0], g, NULL, 0, &kp));
        CUDA_MEMSET_NODE_PARAMS sp = {d, 0, 0x5a5a5a5a, 4, 4, 1};
        dep = nodes[0];
        CHECK(add_memset(&nodes[1], g, &dep, 1, &sp, primary));
        /* A copy between device buffers: to the second half of d. */
        CUDA_MEMCPY3D dp;
        memset(&dp, 0, sizeof dp);
        dp.srcMemoryType = dp.dstMemoryType = CU_MEMORYTYPE_DEVICE;
        dp.srcDevice = d;
        dp.dstDevice = d + 2048;
        dp.WidthInBytes = 16;
        dp.Height = dp.Depth = 1;
        dep = nodes[1];
        CHECK(add_memcpy(&nodes[7], g, &dep, 1, &dp, primary));
        /* One that reaches past the allocation: refused through a server. */
        CUDA_MEMCPY3D past = dp;
        past.dstDevice = d + 4090;
        CUgraphNode unused;
        CUgraph aside;
        CHECK(graph_create(&aside, 0));
        printf("copy_past_end_rc %d\n", (int)add_memcpy(&unused, aside, NULL, 0, &past, primary));
        CUDA_MEMCPY3D cp;
        memset(&cp, 0, sizeof cp);
        cp.srcMemoryType = CU_MEMORYTYPE_DEVICE;
        cp.srcDevice = d;
        cp.dstMemoryType = CU_MEMORYTYPE_HOST;
        cp.dstHost = back;
        cp.WidthInBytes = sizeof back;
        cp.Height = cp.Depth = 1;
        /* Through a server, host functions are not forwarded. */
        dep = nodes[7];
        CUresult memcpy_rc = add_memcpy(&nodes[2], g, &dep, 1, &cp, primary);
        if (memcpy_rc == CUDA_SUCCESS) dep = nodes[2];
        CUDA_HOST_NODE_PARAMS hp = {host_fn, &calls};
        CUresult host_rc = add_host(&nodes[3], g, &dep, 1, &hp);
        if (host_rc == CUDA_SUCCESS) dep = nodes[3];
        printf("memcpy_node_rc %d\nhost_node_rc %d\n", (int)memcpy_rc, (int)host_rc);
        CUgraphNode inner;
        CHECK(add_kernel(&inner, child, NULL, 0, &kp));
        CHECK(add_child(&nodes[4], g, &dep, 1, child));
        dep = nodes[4];
        CHECK(add_empty(&nodes[5], g, &dep, 1));
        sp.elementSize = 3;
        printf("bad_element_size_rc %d\n", (int)add_memset(&nodes[6], g, NULL, 0, &sp, primary));
        printf("own_child_rc %d\n", (int)add_child(&nodes[6], g, NULL, 0, g));
        print_nodes(get_nodes, node_type, g);
        CUgraphExec exec;
        CHECK(instantiate(&exec, g, 0));
        CUevent e0, e1;
        CHECK(event_create(&e0, 0));
        CHECK(event_create(&e1, 0));
        CHECK(record(e0, s));
        CHECK(graph_launch(exec, s));
        CHECK(graph_launch(exec, s));
        CHECK(record(e1, s));
        CHECK(stream_sync(s));
        float ms = 0;
        CHECK(elapsed(&ms, e0, e1));
        printf("replay_ms %.3f\nhost_calls %d\ncopied_ok %d\n", ms, calls,
               back[0] == 0x5a5a5a5a && back[3] == 0x5a5a5a5a);
        FN(dtoh, "cuMemcpyDtoH", 3020, CUresult (*)(void *, CUdeviceptr, size_t));
        unsigned set[5] = {0}, copied[5] = {0};
        CHECK(dtoh(set, d, sizeof set));
        CHECK(dtoh(copied, d + 2048, sizeof copied));
        printf("device_copy_ok %d\n", copied[0] == 0x5a5a5a5a && copied[3] == 0x5a5a5a5a &&
                                       copied[4] == 0);
        printf("set_ok %d\n", set[0] == 0x5a5a5a5a && set[3] == 0x5a5a5a5a && set[4] == 0);
        return 0;
    }

    if (!strcmp(path, "kernels") || !strcmp(path, "variables")) {
        /* Real GPU code as libraries such as cuBLAS load it: a library of a cubin and its
         * kernels, their attributes and occupancy ("kernels"); cluster occupancy and the
         * library's device variables ("variables"). */
        FN(lib_load, "cuLibraryLoadData", 12000, CUresult (*)(CUlibrary *, const void *, CUjit_option *,
           void **, unsigned, CUlibraryOption *, void **, unsigned));
        FN(lib_kernel, "cuLibraryGetKernel", 12000, CUresult (*)(CUkernel *, CUlibrary, const char *));
        FN(kernel_fn, "cuKernelGetFunction", 12000, CUresult (*)(CUfunction *, CUkernel));
        /* An ELF header whose section table ends the 64-byte file (e_shoff = 64, no sections). */
        static unsigned char cubin[64] = {0x7f, 'E', 'L', 'F', 2, 1, 1, 0x33};
        cubin[0x28] = 64;
        CUlibrary l;
        CHECK(lib_load(&l, cubin, NULL, NULL, 0, NULL, NULL, 0));
        CUkernel k;
        CUfunction f;
        CHECK(lib_kernel(&k, l, "gemm"));
        CHECK(kernel_fn(&f, k));
        if (!strcmp(path, "kernels")) {
            FN(func_attr, "cuFuncGetAttribute", 2020, CUresult (*)(int *, CUfunction_attribute, CUfunction));
            FN(occupancy, "cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags", 7000,
               CUresult (*)(int *, CUfunction, int, size_t, unsigned));
            FN(dyn_smem, "cuOccupancyAvailableDynamicSMemPerBlock", 11000,
               CUresult (*)(size_t *, CUfunction, int, int));
            int threads = 0, blocks = 0;
            size_t smem = 0;
            CHECK(func_attr(&threads, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, f));
            CHECK(occupancy(&blocks, f, 256, 0, 0));
            CHECK(dyn_smem(&smem, f, 2, 128));
            printf("max_threads %d\nblocks_per_sm %d\nsmem_of_2_blocks %zu\n", threads, blocks, smem);
            return 0;
        }
        FN(clusters, "cuOccupancyMaxActiveClusters", 11070, CUresult (*)(int *, CUfunction, const CUlaunchConfig *));
        FN(lib_global, "cuLibraryGetGlobal", 12000, CUresult (*)(CUdeviceptr *, size_t *, CUlibrary, const char *));
        FN(htod, "cuMemcpyHtoD", 3020, CUresult (*)(CUdeviceptr, const void *, size_t));
        FN(dtoh, "cuMemcpyDtoH", 3020, CUresult (*)(void *, CUdeviceptr, size_t));
        int n_clusters = 0;
        CUlaunchAttribute cluster;
        memset(&cluster, 0, sizeof cluster);
        cluster.id = CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
        cluster.value.clusterDim.x = 2;
        cluster.value.clusterDim.y = 1;
        cluster.value.clusterDim.z = 1;
        CUlaunchConfig cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.attrs = &cluster;
        cfg.numAttrs = 1;
        CHECK(clusters(&n_clusters, f, &cfg));
        printf("clusters_of_2 %d\n", n_clusters);
        CUdeviceptr g1, g2;
        size_t gsize = 0;
        CHECK(lib_global(&g1, &gsize, l, "table"));
        CHECK(lib_global(&g2, NULL, l, "table"));
        unsigned v = 0x5eed, back = 0;
        CHECK(htod(g1, &v, sizeof v));
        CHECK(dtoh(&back, g2, sizeof back));
        printf("global_same %d\nglobal_bytes %zu\nglobal_data_ok %d\n", g1 == g2, gsize, back == v);
        /* The same variable through the library's module, read with a unified-address copy. */
        FN(lib_module, "cuLibraryGetModule", 12000, CUresult (*)(CUmodule *, CUlibrary));
        FN(mod_global, "cuModuleGetGlobal", 3020, CUresult (*)(CUdeviceptr *, size_t *, CUmodule, const char *));
        FN(copy, "cuMemcpy", 4000, CUresult (*)(CUdeviceptr, CUdeviceptr, size_t));
        FN(lib_unload, "cuLibraryUnload", 12000, CUresult (*)(CUlibrary));
        CUmodule m;
        CUdeviceptr g3;
        CHECK(lib_module(&m, l));
        CHECK(mod_global(&g3, NULL, m, "table"));
        unsigned again = 0;
        CHECK(copy((CUdeviceptr)(uintptr_t)&again, g3, sizeof again));
        printf("module_global_same %d\nunified_copy_ok %d\n", g3 == g1, again == v);
        /* Unloaded, the library's variables are gone (a copy's error may surface at the next
         * synchronisation, as for any copy the remote client sends without waiting). */
        FN(sync, "cuCtxSynchronize", 2000, CUresult (*)(void));
        CHECK(lib_unload(l));
        CUresult late = htod(g1, &v, sizeof v);
        if (late == CUDA_SUCCESS) late = sync();
        printf("after_unload_rc %d\n", (int)late);
        return 0;
    }

    int n = 0;
    CUresult err = CUDA_SUCCESS;
    if (!strcmp(path, "vmm")) {
        FN(create, "cuMemCreate", 10020, CUresult (*)(CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *, unsigned long long));
        FN(gran, "cuMemGetAllocationGranularity", 10020, CUresult (*)(size_t *, const CUmemAllocationProp *, CUmemAllocationGranularity_flags));
        CUmemAllocationProp prop;
        memset(&prop, 0, sizeof prop);
        prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
        prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
        prop.location.id = 0;
        size_t g = 0;
        CHECK(gran(&g, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
        for (; n < MAXP; n++) if ((err = create(&handles[n], chunk, &prop, 0)) != CUDA_SUCCESS) break;
        if (n > 0) {
            /* map the first handle and move real bytes through it */
            FN(reserve, "cuMemAddressReserve", 10020, CUresult (*)(CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long));
            FN(map, "cuMemMap", 10020, CUresult (*)(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle, unsigned long long));
            FN(access, "cuMemSetAccess", 10020, CUresult (*)(CUdeviceptr, size_t, const CUmemAccessDesc *, size_t));
            FN(unmap, "cuMemUnmap", 10020, CUresult (*)(CUdeviceptr, size_t));
            FN(afree, "cuMemAddressFree", 10020, CUresult (*)(CUdeviceptr, size_t));
            FN(htod, "cuMemcpyHtoD", 3020, CUresult (*)(CUdeviceptr, const void *, size_t));
            FN(dtoh, "cuMemcpyDtoH", 3020, CUresult (*)(void *, CUdeviceptr, size_t));
            CUdeviceptr va;
            CHECK(reserve(&va, chunk, 0, 0, 0));
            CHECK(map(va, chunk, 0, handles[0], 0));
            CUmemAccessDesc ad = { { CU_MEM_LOCATION_TYPE_DEVICE, 0 }, CU_MEM_ACCESS_FLAGS_PROT_READWRITE };
            CHECK(access(va, chunk, &ad, 1));
            char msg[16] = "gpupool vmm ok", back[16] = { 0 };
            CHECK(htod(va + chunk - 16, msg, 16));
            CHECK(dtoh(back, va + chunk - 16, 16));
            printf("vmm_data_ok %d\n", !memcmp(msg, back, 16));
            CHECK(unmap(va, chunk));
            CHECK(afree(va, chunk));
        }
        CHECK(info(&free1, &total));
        FN(release, "cuMemRelease", 10020, CUresult (*)(CUmemGenericAllocationHandle));
        for (int i = 0; i < n; i++) CHECK(release(handles[i]));
    } else if (!strcmp(path, "ctx")) {
        FN(create, "cuCtxCreate", 3020, CUresult (*)(CUcontext *, unsigned, CUdevice));
        FN(destroy, "cuCtxDestroy", 4000, CUresult (*)(CUcontext));
        for (; n < MAXP; n++) if ((err = create(&ctxs[n], 0, 0)) != CUDA_SUCCESS) break;
        CHECK(set_current(primary));
        CHECK(info(&free1, &total));
        for (int i = 0; i < n; i++) CHECK(destroy(ctxs[i]));
        CHECK(set_current(primary));
    } else if (!strcmp(path, "ptsz")) {
        typedef CUresult (*alloc_async_t)(CUdeviceptr *, size_t, CUstream);
        typedef CUresult (*free_async_t)(CUdeviceptr, CUstream);
        alloc_async_t alloc = (alloc_async_t)get("cuMemAllocAsync", 11020, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM);
        free_async_t ffree = (free_async_t)get("cuMemFreeAsync", 11020, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM);
        for (; n < MAXP; n++) if ((err = alloc(&ptrs[n], chunk, CU_STREAM_PER_THREAD)) != CUDA_SUCCESS) break;
        CHECK(info(&free1, &total));
        for (int i = 0; i < n; i++) CHECK(ffree(ptrs[i], CU_STREAM_PER_THREAD));
        /* the pool gives back what was freed into it at the next synchronisation */
        FN(sync, "cuStreamSynchronize", 2000, CUresult (*)(CUstream));
        CHECK(sync(CU_STREAM_PER_THREAD));
    } else if (!strcmp(path, "pool1")) {
        /* a pool on device 1 while device 0's context is current: charged to device 1 */
        FN(pool_create, "cuMemPoolCreate", 11020, CUresult (*)(CUmemoryPool *, const CUmemPoolProps *));
        FN(from_pool, "cuMemAllocFromPoolAsync", 11020, CUresult (*)(CUdeviceptr *, size_t, CUmemoryPool, CUstream));
        FN(free_async, "cuMemFreeAsync", 11020, CUresult (*)(CUdeviceptr, CUstream));
        CUmemPoolProps props;
        memset(&props, 0, sizeof props);
        props.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
        props.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
        props.location.id = 1;
        CUmemoryPool pool;
        CHECK(pool_create(&pool, &props));
        for (; n < MAXP; n++) if ((err = from_pool(&ptrs[n], chunk, pool, 0)) != CUDA_SUCCESS) break;
        CHECK(info(&free1, &total));
        for (int i = 0; i < n; i++) CHECK(free_async(ptrs[i], 0));
    } else if (!strcmp(path, "pool_keep")) {
        /* The device's pool keeps what is freed into it (release threshold: everything). Plain
         * allocations past the limit then make the pool give it back: neither refused nor
         * served beyond the limit. */
        FN(get_pool, "cuDeviceGetMemPool", 11020, CUresult (*)(CUmemoryPool *, CUdevice));
        FN(set_attr, "cuMemPoolSetAttribute", 11020, CUresult (*)(CUmemoryPool, CUmemPool_attribute, void *));
        FN(get_attr, "cuMemPoolGetAttribute", 11020, CUresult (*)(CUmemoryPool, CUmemPool_attribute, void *));
        FN(alloc_async, "cuMemAllocAsync", 11020, CUresult (*)(CUdeviceptr *, size_t, CUstream));
        FN(free_async, "cuMemFreeAsync", 11020, CUresult (*)(CUdeviceptr, CUstream));
        FN(sync, "cuStreamSynchronize", 2000, CUresult (*)(CUstream));
        FN(plain_alloc, "cuMemAlloc", 3020, CUresult (*)(CUdeviceptr *, size_t));
        FN(mfree, "cuMemFree", 3020, CUresult (*)(CUdeviceptr));
        CUmemoryPool pool;
        CHECK(get_pool(&pool, 0));
        cuuint64_t threshold = ~0ull, reserved = 0;
        CHECK(set_attr(pool, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &threshold));
        int pooled = 0, again = 0;
        for (; pooled < MAXP; pooled++) if (alloc_async(&ptrs[pooled], chunk, 0) != CUDA_SUCCESS) break;
        for (int i = 0; i < pooled; i++) CHECK(free_async(ptrs[i], 0));
        CHECK(sync(0));
        CHECK(get_attr(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT, &reserved));
        size_t free_kept = 0;
        CHECK(info(&free_kept, &total));
        printf("pooled %d\nkept_after_sync %llu\nfree_while_kept %zu\n", pooled,
               (unsigned long long)reserved, free_kept);
        /* from the pool again: served from what it keeps */
        for (; again < MAXP; again++) if (alloc_async(&ptrs[again], chunk, 0) != CUDA_SUCCESS) break;
        for (int i = 0; i < again; i++) CHECK(free_async(ptrs[i], 0));
        CHECK(sync(0));
        printf("pooled_again %d\n", again);
        for (; n < MAXP; n++) if ((err = plain_alloc(&ptrs[n], chunk)) != CUDA_SUCCESS) break;
        CHECK(get_attr(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT, &reserved));
        printf("kept_at_limit %llu\n", (unsigned long long)reserved);
        CHECK(info(&free1, &total));
        for (int i = 0; i < n; i++) CHECK(mfree(ptrs[i]));
        /* release threshold 0: what is freed goes back at the next synchronisation */
        threshold = 0;
        CHECK(set_attr(pool, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &threshold));
        int small = 0;
        for (; small < 4; small++) CHECK(alloc_async(&ptrs[small], chunk, 0));
        for (int i = 0; i < small; i++) CHECK(free_async(ptrs[i], 0));
        CHECK(sync(0));
        CHECK(get_attr(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT, &reserved));
        printf("kept_with_threshold_0 %llu\n", (unsigned long long)reserved);
    } else if (!strcmp(path, "pool_release")) {
        /* A pool with release threshold 0 gives back what is freed into it at the next
         * synchronisation: a stream's, the context's, then an event's. After each, the program
         * says "held" and waits for a line on its standard input (memory query-free), so
         * another process can read what the tenant is charged meanwhile. */
        FN(get_pool, "cuDeviceGetMemPool", 11020, CUresult (*)(CUmemoryPool *, CUdevice));
        FN(set_attr, "cuMemPoolSetAttribute", 11020, CUresult (*)(CUmemoryPool, CUmemPool_attribute, void *));
        FN(alloc_async, "cuMemAllocAsync", 11020, CUresult (*)(CUdeviceptr *, size_t, CUstream));
        FN(free_async, "cuMemFreeAsync", 11020, CUresult (*)(CUdeviceptr, CUstream));
        FN(stream_sync, "cuStreamSynchronize", 2000, CUresult (*)(CUstream));
        FN(ctx_sync, "cuCtxSynchronize", 2000, CUresult (*)(void));
        FN(event_create, "cuEventCreate", 2000, CUresult (*)(CUevent *, unsigned));
        FN(event_record, "cuEventRecord", 2000, CUresult (*)(CUevent, CUstream));
        FN(event_sync, "cuEventSynchronize", 2000, CUresult (*)(CUevent));
        CUmemoryPool pool;
        CHECK(get_pool(&pool, 0));
        cuuint64_t threshold = 0;
        CHECK(set_attr(pool, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &threshold));
        CUevent ev;
        CHECK(event_create(&ev, 0));
        char line[16];
        for (int round = 0; round < 3; round++) {
            for (n = 0; n < 4; n++) CHECK(alloc_async(&ptrs[n], chunk, 0));
            for (int i = 0; i < n; i++) CHECK(free_async(ptrs[i], 0));
            if (round == 0) CHECK(stream_sync(0));
            if (round == 1) CHECK(ctx_sync());
            if (round == 2) { CHECK(event_record(ev, 0)); CHECK(event_sync(ev)); }
            printf("held\n");
            fflush(stdout);
            if (!fgets(line, sizeof line, stdin)) return 0;
        }
        CHECK(info(&free1, &total));
        printf("free_after %zu\n", free1);
    } else if (!strcmp(path, "graph_mem")) {
        /* A captured cuMemAllocAsync becomes a graph's allocation node: recording takes no
         * memory, a launch takes it, the device keeps it for later launches (charged), and a
         * launch past the limit is refused. */
        FN(stream_create, "cuStreamCreate", 2000, CUresult (*)(CUstream *, unsigned));
        FN(stream_sync, "cuStreamSynchronize", 2000, CUresult (*)(CUstream));
        FN(begin, "cuStreamBeginCapture", 10010, CUresult (*)(CUstream, CUstreamCaptureMode));
        FN(end, "cuStreamEndCapture", 10000, CUresult (*)(CUstream, CUgraph *));
        FN(alloc_async, "cuMemAllocAsync", 11020, CUresult (*)(CUdeviceptr *, size_t, CUstream));
        FN(free_async, "cuMemFreeAsync", 11020, CUresult (*)(CUdeviceptr, CUstream));
        FN(set_async, "cuMemsetD32Async", 3020, CUresult (*)(CUdeviceptr, unsigned, size_t, CUstream));
        FN(get_nodes, "cuGraphGetNodes", 10000, CUresult (*)(CUgraph, CUgraphNode *, size_t *));
        FN(node_type, "cuGraphNodeGetType", 10000, CUresult (*)(CUgraphNode, CUgraphNodeType *));
        FN(instantiate, "cuGraphInstantiateWithFlags", 11040, CUresult (*)(CUgraphExec *, CUgraph, unsigned long long));
        FN(graph_launch, "cuGraphLaunch", 10000, CUresult (*)(CUgraphExec, CUstream));
        FN(plain_alloc, "cuMemAlloc", 3020, CUresult (*)(CUdeviceptr *, size_t));
        FN(mfree, "cuMemFree", 3020, CUresult (*)(CUdeviceptr));
        /* optional: a remote client does not answer it */
        typedef CUresult (*graph_attr_t)(CUdevice, CUgraphMem_attribute, void *);
        graph_attr_t graph_attr = NULL;
        CUdriverProcAddressQueryResult found;
        if (gpa("cuDeviceGetGraphMemAttribute", (void **)&graph_attr, 11040, 0, &found) != CUDA_SUCCESS) graph_attr = NULL;
#define PRINT_GRAPH_RESERVED(key) do { cuuint64_t v_ = 0; \
        if (graph_attr && graph_attr(0, CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT, &v_) == CUDA_SUCCESS) \
            printf(key " %llu\n", (unsigned long long)v_); } while (0)
        CUstream s;
        CHECK(stream_create(&s, CU_STREAM_NON_BLOCKING));
        const size_t half = (size_t)512 << 20;
        CUdeviceptr g = 0;
        CHECK(begin(s, CU_STREAM_CAPTURE_MODE_GLOBAL));
        CHECK(alloc_async(&g, half, s));
        CHECK(set_async(g, 7, half / 4, s));
        CHECK(free_async(g, s));
        CUgraph graph;
        CHECK(end(s, &graph));
        print_nodes(get_nodes, node_type, graph);
        size_t free_recorded = 0, free_kept = 0;
        CHECK(info(&free_recorded, &total));
        CUgraphExec exec;
        CHECK(instantiate(&exec, graph, 0));
        printf("free_after_recording %zu\nlaunch_rc %d\n", free_recorded, (int)graph_launch(exec, s));
        CHECK(stream_sync(s));
        PRINT_GRAPH_RESERVED("graph_reserved");
        CHECK(info(&free_kept, &total));
        printf("free_while_graph_keeps %zu\n", free_kept);
        for (; n < MAXP; n++) if ((err = plain_alloc(&ptrs[n], chunk)) != CUDA_SUCCESS) break;
        PRINT_GRAPH_RESERVED("graph_reserved_at_limit");
        /* through a server the launch is sent without waiting: its error comes with the sync */
        CUresult at_limit = graph_launch(exec, s), synced = stream_sync(s);
        printf("launch_at_limit_rc %d\nsync_at_limit_rc %d\n", (int)at_limit, (int)synced);
        PRINT_GRAPH_RESERVED("graph_reserved_after_refusal");
        CHECK(info(&free1, &total));
        for (int i = 0; i < n; i++) CHECK(mfree(ptrs[i]));
        printf("launch_after_free_rc %d\n", (int)graph_launch(exec, s));
        CHECK(stream_sync(s));
        /* The same graph built node by node (optional: a remote client does not forward it). */
        typedef CUresult (*add_alloc_t)(CUgraphNode *, CUgraph, const CUgraphNode *, size_t, CUDA_MEM_ALLOC_NODE_PARAMS *);
        typedef CUresult (*add_free_t)(CUgraphNode *, CUgraph, const CUgraphNode *, size_t, CUdeviceptr);
        typedef CUresult (*graph_create_t)(CUgraph *, unsigned);
        add_alloc_t add_alloc = NULL;
        add_free_t add_free = NULL;
        graph_create_t graph_create = NULL;
        if (gpa("cuGraphAddMemAllocNode", (void **)&add_alloc, 11040, 0, &found) != CUDA_SUCCESS) add_alloc = NULL;
        if (gpa("cuGraphAddMemFreeNode", (void **)&add_free, 11040, 0, &found) != CUDA_SUCCESS) add_free = NULL;
        if (gpa("cuGraphCreate", (void **)&graph_create, 10000, 0, &found) != CUDA_SUCCESS) graph_create = NULL;
        if (add_alloc && add_free && graph_create) {
            CUgraph built;
            CUgraphNode a, f;
            CUDA_MEM_ALLOC_NODE_PARAMS ap;
            memset(&ap, 0, sizeof ap);
            ap.poolProps.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
            ap.poolProps.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
            ap.poolProps.location.id = 0;
            ap.bytesize = half;
            CHECK(graph_create(&built, 0));
            CHECK(add_alloc(&a, built, NULL, 0, &ap));
            CHECK(add_free(&f, built, &a, 1, ap.dptr));
            CUgraphExec built_exec;
            CHECK(instantiate(&built_exec, built, 0));
            int held = 0;
            for (; held < MAXP; held++) if (plain_alloc(&ptrs[held], chunk) != CUDA_SUCCESS) break;
            CUresult built_at_limit = graph_launch(built_exec, s), built_synced = stream_sync(s);
            printf("built_dptr_set %d\nbuilt_held %d\nbuilt_launch_at_limit_rc %d\nbuilt_sync_at_limit_rc %d\n",
                   ap.dptr != 0, held, (int)built_at_limit, (int)built_synced);
            for (int i = 0; i < held; i++) CHECK(mfree(ptrs[i]));
            printf("built_launch_rc %d\n", (int)graph_launch(built_exec, s));
            CHECK(stream_sync(s));
        }
        /* Instantiated with the upload flag: the graph's memory is taken at once (optional: a
         * remote client does not forward it). */
        typedef CUresult (*with_params_t)(CUgraphExec *, CUgraph, CUDA_GRAPH_INSTANTIATE_PARAMS *);
        typedef CUresult (*trim_t)(CUdevice);
        with_params_t with_params = NULL;
        trim_t trim = NULL;
        if (gpa("cuGraphInstantiateWithParams", (void **)&with_params, 12000, 0, &found) != CUDA_SUCCESS) with_params = NULL;
        if (gpa("cuDeviceGraphMemTrim", (void **)&trim, 11040, 0, &found) != CUDA_SUCCESS) trim = NULL;
        if (with_params && trim) {
            CHECK(trim(0));
            PRINT_GRAPH_RESERVED("upload_reserved_before");
            int held = 0;
            for (; held < MAXP; held++) if (plain_alloc(&ptrs[held], chunk) != CUDA_SUCCESS) break;
            CUDA_GRAPH_INSTANTIATE_PARAMS ip;
            memset(&ip, 0, sizeof ip);
            ip.flags = CUDA_GRAPH_INSTANTIATE_FLAG_UPLOAD;
            ip.hUploadStream = s;
            CUgraphExec uploaded;
            CUresult upload_at_limit = with_params(&uploaded, graph, &ip), upload_synced = stream_sync(s);
            printf("upload_held %d\nupload_at_limit_rc %d\nupload_sync_at_limit_rc %d\n", held,
                   (int)upload_at_limit, (int)upload_synced);
            PRINT_GRAPH_RESERVED("upload_reserved_at_limit");
            for (int i = 0; i < held; i++) CHECK(mfree(ptrs[i]));
            memset(&ip, 0, sizeof ip);
            ip.flags = CUDA_GRAPH_INSTANTIATE_FLAG_UPLOAD;
            ip.hUploadStream = s;
            ip.result_out = CUDA_GRAPH_INSTANTIATE_ERROR;
            printf("upload_rc %d\n", (int)with_params(&uploaded, graph, &ip));
            printf("upload_result %d\n", (int)ip.result_out);
            CHECK(stream_sync(s));
            PRINT_GRAPH_RESERVED("upload_reserved");
            size_t free_uploaded = 0;
            CHECK(info(&free_uploaded, &total));
            printf("free_after_upload %zu\n", free_uploaded);
            printf("uploaded_launch_rc %d\n", (int)graph_launch(uploaded, s));
            CHECK(stream_sync(s));
        }
    } else if (!strcmp(path, "pitch")) {
        FN(pitch_alloc, "cuMemAllocPitch", 3020, CUresult (*)(CUdeviceptr *, size_t *, size_t, size_t, unsigned));
        FN(mfree, "cuMemFree", 3020, CUresult (*)(CUdeviceptr));
        size_t pitch = 0;
        /* width 1 byte: counted as pitch x height, not width x height */
        for (; n < MAXP; n++) if ((err = pitch_alloc(&ptrs[n], &pitch, 1, chunk / 512, 4)) != CUDA_SUCCESS) break;
        printf("pitch %zu\n", pitch);
        CHECK(info(&free1, &total));
        for (int i = 0; i < n; i++) CHECK(mfree(ptrs[i]));
    } else {
        fprintf(stderr, "unknown path %s\n", path);
        return 2;
    }
    CHECK(info(&free2, &total));
    printf("total %zu\nfree_before %zu\nchunks %d\nallocated %zu\nerror %d\nfree_holding %zu\nfree_after %zu\n",
           total, free0, n, (size_t)n * chunk, (int)err, free1, free2);
    return 0;
}
