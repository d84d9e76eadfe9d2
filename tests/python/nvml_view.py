"""Prints what NVIDIA's own NVML client (nvidia-ml-py) shows: one JSON document of devices,
memory (v1 and v2) and compute processes. Used by the integration tests."""
import json

import pynvml

pynvml.nvmlInit()
devices = []
for i in range(pynvml.nvmlDeviceGetCount()):
    h = pynvml.nvmlDeviceGetHandleByIndex(i)
    mem = pynvml.nvmlDeviceGetMemoryInfo(h)
    mem2 = pynvml.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2)
    procs = pynvml.nvmlDeviceGetComputeRunningProcesses(h)
    name = pynvml.nvmlDeviceGetName(h)
    uuid = pynvml.nvmlDeviceGetUUID(h)
    devices.append({
        "name": name.decode() if isinstance(name, bytes) else name,
        "uuid": uuid.decode() if isinstance(uuid, bytes) else uuid,
        "total": mem.total, "free": mem.free, "used": mem.used,
        "total_v2": mem2.total, "free_v2": mem2.free, "used_v2": mem2.used,
        "processes": [{"pid": p.pid, "used": p.usedGpuMemory} for p in procs],
    })
pynvml.nvmlShutdown()
print(json.dumps({"devices": devices}))
