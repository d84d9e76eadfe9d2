"""The `checkpoint` section of scripts/gpu-check: an idle tenant is checkpointed to make room
on a full card for another one, and restored at its next CUDA call with its data intact
(`gpupool checkpointer`, `GPUPOOL_ROOM_WAIT`; driver 550 or later).

1. `gpupool checkpointer --idle-after 2s` watches a tenants folder.
2. A low-priority tenant allocates a quarter of the card, fills it with 0x5a and goes idle.
3. A second tenant asks for what the card has free plus half of the idle one's memory, with a
   60 s room wait: it gets it once the idle tenant was checkpointed.
4. The second tenant exits; the idle one copies its memory back to the host: it must be
   restored (its call returns) with every byte still 0x5a.
Reports the wait, NVML's memory of the idle process before and while checkpointed, and
the checkpointer's log.
"""
import ctypes
import json
import os
import subprocess
import sys
import time

MIB = 1 << 20

# A tenant through the driver API (ctypes): `hold BYTES` allocates, fills with 0x5a, says
# "held", waits for a line, then copies 1 MiB back and checks it; `want BYTES` allocates and
# reports how long that took.
TENANT = r"""
import ctypes, json, sys, time
cu = ctypes.CDLL("libcuda.so.1")
def ok(rc, what):
    if rc != 0:
        print(json.dumps({"error": what, "rc": rc}), flush=True); sys.exit(1)
mode, n = sys.argv[1], int(sys.argv[2])
ok(cu.cuInit(0), "cuInit")
ctx = ctypes.c_void_p()
ok(cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), 0), "cuDevicePrimaryCtxRetain")
ok(cu.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
p = ctypes.c_uint64()
t = time.monotonic()
ok(cu.cuMemAlloc_v2(ctypes.byref(p), ctypes.c_size_t(n)), "cuMemAlloc")
if mode == "want":
    print(json.dumps({"wait_s": time.monotonic() - t}), flush=True); sys.exit(0)
ok(cu.cuMemsetD8_v2(p, ctypes.c_ubyte(0x5a), ctypes.c_size_t(n)), "cuMemsetD8")
ok(cu.cuCtxSynchronize(), "cuCtxSynchronize")
print("held", flush=True)
sys.stdin.readline()
buf = (ctypes.c_ubyte * MIB)()
t = time.monotonic()
ok(cu.cuMemcpyDtoH_v2(buf, ctypes.c_uint64(p.value + n - MIB), ctypes.c_size_t(MIB)), "cuMemcpyDtoH")
print(json.dumps({"resumed_after_s": time.monotonic() - t,
                  "intact": all(b == 0x5a for b in buf)}), flush=True)
""".replace("MIB", str(MIB))


class Nvml:
    """Card 0 through NVML (ctypes): the driver's version, memory, and processes' memory."""

    class Memory(ctypes.Structure):
        _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong),
                    ("used", ctypes.c_ulonglong)]

    class Process(ctypes.Structure):
        _fields_ = [("pid", ctypes.c_uint), ("used", ctypes.c_ulonglong),
                    ("gi", ctypes.c_uint), ("ci", ctypes.c_uint)]

    def __init__(self):
        self.lib = ctypes.CDLL("libnvidia-ml.so.1")
        if self.lib.nvmlInit_v2() != 0:
            raise RuntimeError("nvmlInit_v2 failed")
        self.dev = ctypes.c_void_p()
        if self.lib.nvmlDeviceGetHandleByIndex_v2(0, ctypes.byref(self.dev)) != 0:
            raise RuntimeError("no card 0")

    def driver(self):
        buf = ctypes.create_string_buffer(80)
        self.lib.nvmlSystemGetDriverVersion(buf, 80)
        return buf.value.decode()

    def memory(self):
        m = Nvml.Memory()
        if self.lib.nvmlDeviceGetMemoryInfo(self.dev, ctypes.byref(m)) != 0:
            raise RuntimeError("nvmlDeviceGetMemoryInfo failed")
        return m

    def process_memory(self, pid):
        n = ctypes.c_uint(64)
        procs = (Nvml.Process * 64)()
        self.lib.nvmlDeviceGetComputeRunningProcesses_v3(self.dev, ctypes.byref(n), procs)
        return sum(p.used for p in procs[:n.value] if p.pid == pid)


def section_checkpoint(c, card):
    nvml = Nvml()
    res = {"driver": nvml.driver()}
    major = int(res["driver"].split(".")[0]) if res["driver"][:1].isdigit() else 0
    if major and major < 550:
        res["skipped"] = "driver older than 550: no process checkpointing"
        return res
    tenants = os.path.join(c.tmp, "ckpt-tenants")
    os.makedirs(tenants, exist_ok=True)
    log_path = os.path.join(c.tmp, "checkpointer.log")
    gpupool = os.path.join(c.carry, "gpupool")
    total = nvml.memory().total
    idle_bytes = (total // 4) // MIB * MIB

    def env(name, extra):
        os.makedirs(os.path.join(tenants, name), exist_ok=True)
        e = c.env(f"{total // MIB}MiB", 0, region=os.path.join(tenants, name, "region"))
        e.update(extra)
        return e

    with open(log_path, "w") as log:
        ctl = subprocess.Popen([gpupool, "checkpointer", "--tenants", tenants,
                                "--idle-after", "2s", "--interval", "100ms"], stderr=log)
    idle = subprocess.Popen([sys.executable, "-c", TENANT, "hold", str(idle_bytes)],
                            env=env("idle", {"GPUPOOL_PRIORITY": "low"}),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = idle.stdout.readline().strip()
        if line != "held":
            raise RuntimeError(f"the idle tenant could not allocate: {line}")
        res["idle_memory_before_bytes"] = nvml.process_memory(idle.pid)
        time.sleep(4)
        want = nvml.memory().free + idle_bytes // 2
        res["waiter_wants_bytes"] = want
        t = time.monotonic()
        waiter = subprocess.Popen([sys.executable, "-c", TENANT, "want", str(want)],
                                  env=env("waiter", {"GPUPOOL_ROOM_WAIT": "60s"}),
                                  stdout=subprocess.PIPE, text=True)
        out, _ = waiter.communicate(timeout=120)
        res["waiter"] = json.loads(out.strip().splitlines()[-1])
        res["waiter_total_s"] = time.monotonic() - t
        res["idle_memory_checkpointed_bytes"] = nvml.process_memory(idle.pid)
        idle.stdin.write("go\n")
        idle.stdin.flush()
        res["idle"] = json.loads(idle.stdout.readline().strip())
        idle.wait(timeout=60)
    finally:
        for p in (idle, ctl):
            if p.poll() is None:
                p.kill()
    with open(log_path) as f:
        res["checkpointer_log"] = f.read()[-3000:]
    res["pass_waiter_got_room"] = "wait_s" in res.get("waiter", {})
    res["pass_idle_restored_intact"] = res.get("idle", {}).get("intact") is True
    res["pass_checkpoint_freed_the_card"] = (
        res.get("idle_memory_checkpointed_bytes", 1) < res.get("idle_memory_before_bytes", 0) // 2)
    return res
