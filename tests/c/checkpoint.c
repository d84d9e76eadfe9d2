/* Drives another process's checkpoint as NVIDIA's cuda-checkpoint does (driver API).
 * Usage: checkpoint PID ACTION...   (ACTION: lock, checkpoint, restore, unlock)
 * Runs the actions in order; prints "ACTION RC" for each, then "state S" (CUprocessState:
 * 0 running, 1 locked, 2 checkpointed). */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int (*StateFn)(int, unsigned *);
typedef int (*ActionFn)(int, void *);

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s PID ACTION...\n", argv[0]); return 2; }
    int pid = atoi(argv[1]);
    void *lib = dlopen("libcuda.so.1", RTLD_NOW);
    if (!lib) { printf("FAIL dlopen\n"); return 1; }
    int (*init)(unsigned) = (int (*)(unsigned))dlsym(lib, "cuInit");
    StateFn get_state = (StateFn)dlsym(lib, "cuCheckpointProcessGetState");
    if (!init || !get_state) { printf("FAIL dlsym\n"); return 1; }
    if (init(0) != 0) { printf("FAIL cuInit\n"); return 1; }
    for (int i = 2; i < argc; i++) {
        char name[64];
        snprintf(name, sizeof name, "cuCheckpointProcess%c%s", argv[i][0] - 32, argv[i] + 1);
        ActionFn f = (ActionFn)dlsym(lib, name);
        if (!f) { printf("FAIL dlsym %s\n", name); return 1; }
        unsigned long long args[8] = {0};
        printf("%s %d\n", argv[i], f(pid, args));
    }
    unsigned state = 99;
    int rc = get_state(pid, &state);
    printf("state %d\nstate_rc %d\n", rc == 0 ? (int)state : -1, rc);
    return 0;
}
