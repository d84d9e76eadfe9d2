/* NVML through its oldest entry points, as old tools call it.
 * usage: nvml_v1 list                 every device: "device I UUID BUSID" (NVML 2 calls)
 *        nvml_v1 view UUID BUSID      what a tenant sees: counts and handles of NVML 1, a hidden
 *                                     card looked up by UUID and by PCI bus id, and the process
 *                                     lists of its devices
 * Prints "key value" lines. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void *dev_t_;
typedef struct { unsigned pid; unsigned long long used; } proc_v1;
typedef struct { unsigned pid; unsigned long long used; unsigned gi, ci; } proc_v2;
typedef struct {
    char busIdLegacy[16];
    unsigned domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} pci_t;

static void *lib;
static void *sym(const char *name) {
    void *p = dlsym(lib, name);
    if (!p) { printf("FAIL dlsym %s\n", name); exit(1); }
    return p;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s list | view UUID BUSID\n", argv[0]); return 2; }
    lib = dlopen("libnvidia-ml.so.1", RTLD_NOW);
    if (!lib) { printf("FAIL dlopen\n"); return 1; }
    int (*init)(void) = sym("nvmlInit_v2");
    int (*uuid)(dev_t_, char *, unsigned) = sym("nvmlDeviceGetUUID");
    if (init()) { printf("FAIL init\n"); return 1; }
    char u[96];
    if (!strcmp(argv[1], "list")) {
        int (*count2)(unsigned *) = sym("nvmlDeviceGetCount_v2");
        int (*handle2)(unsigned, dev_t_ *) = sym("nvmlDeviceGetHandleByIndex_v2");
        int (*pci)(dev_t_, pci_t *) = sym("nvmlDeviceGetPciInfo_v3");
        unsigned n = 0;
        count2(&n);
        for (unsigned i = 0; i < n; i++) {
            dev_t_ h;
            pci_t p;
            if (handle2(i, &h) || uuid(h, u, sizeof u) || pci(h, &p)) { printf("FAIL device %u\n", i); return 1; }
            printf("device %u %s %s\n", i, u, p.busId);
        }
        return 0;
    }
    if (argc != 4) { fprintf(stderr, "usage: %s view UUID BUSID\n", argv[0]); return 2; }
    int (*count1)(unsigned *) = sym("nvmlDeviceGetCount");
    int (*handle1)(unsigned, dev_t_ *) = sym("nvmlDeviceGetHandleByIndex");
    int (*by_uuid)(const char *, dev_t_ *) = sym("nvmlDeviceGetHandleByUUID");
    int (*by_pci)(const char *, dev_t_ *) = sym("nvmlDeviceGetHandleByPciBusId_v2");
    int (*procs1)(dev_t_, unsigned *, proc_v1 *) = sym("nvmlDeviceGetComputeRunningProcesses");
    int (*procs3)(dev_t_, unsigned *, proc_v2 *) = sym("nvmlDeviceGetComputeRunningProcesses_v3");
    unsigned n = 0;
    int count_rc = count1(&n);
    printf("count_v1_rc %d\ncount_v1 %u\n", count_rc, n);
    unsigned listed = 0;
    for (unsigned i = 0; i <= n; i++) {
        dev_t_ h;
        int rc = handle1(i, &h);
        printf("handle_v1_%u_rc %d\n", i, rc);
        if (rc) continue;
        uuid(h, u, sizeof u);
        printf("handle_v1_%u %s\n", i, u);
        proc_v1 p1[64];
        proc_v2 p3[64];
        unsigned c1 = 64, c3 = 64;
        int rc1 = procs1(h, &c1, p1), rc3 = procs3(h, &c3, p3);
        printf("procs_v1_%u_rc %d\nprocs_v3_%u_rc %d\n", i, rc1, i, rc3);
        printf("procs_v1_%u %u\nprocs_v3_%u %u\n", i, c1, i, c3);
        listed += c1;
    }
    dev_t_ h;
    printf("hidden_by_uuid_rc %d\n", by_uuid(argv[2], &h));
    printf("hidden_by_pci_rc %d\n", by_pci(argv[3], &h));
    printf("listed %u\n", listed);
    return 0;
}
