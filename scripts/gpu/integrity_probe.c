/* Records a real driver's answers to the runtime integrity check (private export table
 * d4082055-bde6-704b-8d34-ba123c66e1f2, slot 1) together with every input the hash may cover,
 * so that the simulator's answer for older runtimes (11.x) can be derived offline.
 * Prints one JSON object. Loads libcuda.so.1 with dlopen; needs no CUDA headers.
 * usage: integrity_probe */
#include <dlfcn.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef int (*init_fn)(unsigned);
typedef int (*int_fn)(int *);
typedef int (*dev_get_fn)(int *, int);
typedef int (*uuid_fn)(unsigned char *, int);
typedef int (*attr_fn)(int *, int, int);
typedef int (*table_fn)(const void **, const unsigned char *);
typedef int (*integrity_fn)(uint32_t, uint64_t, uint64_t *);

static const unsigned char INTEGRITY[16] = {0xd4, 0x08, 0x20, 0x55, 0xbd, 0xe6, 0x70, 0x4b,
                                            0x8d, 0x34, 0xba, 0x12, 0x3c, 0x66, 0xe1, 0xf2};
static const unsigned char TABLES[][16] = {
    {0x6b, 0xd5, 0xfb, 0x6c, 0x5b, 0xf4, 0xe7, 0x4a, 0x89, 0x87, 0xd9, 0x39, 0x12, 0xfd, 0x9d, 0xf9},
    {0xa0, 0x94, 0x79, 0x8c, 0x2e, 0x74, 0x2e, 0x74, 0x93, 0xf2, 0x08, 0x00, 0x20, 0x0c, 0x0a, 0x66},
    {0x42, 0xd8, 0x5a, 0x81, 0x23, 0xf6, 0xcb, 0x47, 0x82, 0x98, 0xf6, 0xe7, 0x8a, 0x3a, 0xec, 0xdc},
    {0xc6, 0x93, 0x33, 0x6e, 0x11, 0x21, 0xdf, 0x11, 0xa8, 0xc3, 0x68, 0xf3, 0x55, 0xd8, 0x95, 0x93},
    {0x26, 0x3e, 0x88, 0x60, 0x7c, 0xd2, 0x61, 0x43, 0x92, 0xf6, 0xbb, 0xd5, 0x00, 0x6d, 0xfa, 0x7e},
    {0xd4, 0x08, 0x20, 0x55, 0xbd, 0xe6, 0x70, 0x4b, 0x8d, 0x34, 0xba, 0x12, 0x3c, 0x66, 0xe1, 0xf2},
};
static const char *TABLE_NAMES[] = {"cudart_interface", "callback_hooks", "tools_tls",
                                    "context_local_storage", "context_checks", "integrity"};
static const uint32_t VERSIONS[] = {11080, 11081, 11082, 11083, 11040, 11042, 11072,
                                    12000, 12002, 12090, 12091, 12092, 13000, 13002};
static integrity_fn check;
static uint64_t thread_out[2];
static uint64_t thread_self;
static int thread_rc;

static void *other_thread(void *arg) {
    (void)arg;
    thread_self = (uint64_t)pthread_self();
    thread_rc = check(11082, 1700000000ull, thread_out);
    return NULL;
}

int main(void) {
    void *lib = dlopen("libcuda.so.1", RTLD_NOW);
    if (!lib) { printf("{\"error\": \"dlopen libcuda.so.1\"}\n"); return 1; }
    init_fn cuInit = (init_fn)dlsym(lib, "cuInit");
    int_fn cuDriverGetVersion = (int_fn)dlsym(lib, "cuDriverGetVersion");
    int_fn cuDeviceGetCount = (int_fn)dlsym(lib, "cuDeviceGetCount");
    dev_get_fn cuDeviceGet = (dev_get_fn)dlsym(lib, "cuDeviceGet");
    uuid_fn cuDeviceGetUuid = (uuid_fn)dlsym(lib, "cuDeviceGetUuid");
    attr_fn cuDeviceGetAttribute = (attr_fn)dlsym(lib, "cuDeviceGetAttribute");
    table_fn cuGetExportTable = (table_fn)dlsym(lib, "cuGetExportTable");
    if (!cuInit || !cuDriverGetVersion || !cuDeviceGetCount || !cuDeviceGet || !cuDeviceGetUuid ||
        !cuDeviceGetAttribute || !cuGetExportTable) {
        printf("{\"error\": \"dlsym\"}\n");
        return 1;
    }
    int rc = cuInit(0);
    int driver = 0, count = 0;
    cuDriverGetVersion(&driver);
    cuDeviceGetCount(&count);
    printf("{\"init\": %d, \"driver_version\": %d, \"pid\": %d, \"gettid\": %ld, \"pthread_self\": %" PRIu64
           ", \"device_count\": %d,\n \"devices\": [", rc, driver, (int)getpid(), (long)syscall(SYS_gettid),
           (uint64_t)pthread_self(), count);
    for (int i = 0; i < count; i++) {
        int dev = 0, dom = -1, bus = -1, slot = -1;
        unsigned char u[16] = {0};
        cuDeviceGet(&dev, i);
        cuDeviceGetUuid(u, dev);
        cuDeviceGetAttribute(&dom, 50, dev);
        cuDeviceGetAttribute(&bus, 33, dev);
        cuDeviceGetAttribute(&slot, 34, dev);
        printf("%s{\"uuid\": \"", i ? ", " : "");
        for (int k = 0; k < 16; k++) printf("%02x", u[k]);
        printf("\", \"pci_domain\": %d, \"pci_bus\": %d, \"pci_device\": %d}", dom, bus, slot);
    }
    printf("],\n \"tables\": {");
    const void *integrity = NULL;
    for (unsigned t = 0; t < sizeof TABLES / sizeof TABLES[0]; t++) {
        const void *tab = NULL;
        int trc = cuGetExportTable(&tab, TABLES[t]);
        printf("%s\"%s\": {\"rc\": %d, \"ptr\": %" PRIu64 ", \"slots\": [", t ? ", " : "",
               TABLE_NAMES[t], trc, (uint64_t)(uintptr_t)tab);
        for (int k = 0; tab && k < 8; k++)
            printf("%s%" PRIu64, k ? ", " : "", (uint64_t)((const uintptr_t *)tab)[k]);
        printf("]}");
        if (t == 5) integrity = tab;
    }
    printf("},\n");
    int irc = cuGetExportTable(&integrity, INTEGRITY);
    if (irc || !integrity) { printf(" \"error\": \"integrity table %d\"}\n", irc); return 1; }
    check = (integrity_fn)((const uintptr_t *)integrity)[1];
    printf(" \"answers\": [");
    int first = 1;
    for (unsigned v = 0; v < sizeof VERSIONS / sizeof VERSIONS[0]; v++) {
        const uint64_t times[] = {1700000000ull, 1700000001ull, 0ull};
        for (unsigned k = 0; k < 3; k++) {
            uint64_t out[2] = {0, 0};
            int crc = check(VERSIONS[v], times[k], out);
            printf("%s\n  {\"version\": %u, \"time\": %" PRIu64 ", \"rc\": %d, \"out\": [%" PRIu64
                   ", %" PRIu64 "]}", first ? "" : ",", VERSIONS[v], times[k], crc, out[0], out[1]);
            first = 0;
        }
    }
    pthread_t th;
    pthread_create(&th, NULL, other_thread, NULL);
    pthread_join(th, NULL);
    printf("],\n \"other_thread\": {\"pthread_self\": %" PRIu64 ", \"version\": 11082, \"time\": "
           "1700000000, \"rc\": %d, \"out\": [%" PRIu64 ", %" PRIu64 "]}}\n",
           thread_self, thread_rc, thread_out[0], thread_out[1]);
    return 0;
}
