"""Prints what NVIDIA's own NVML client (nvidia-ml-py) shows: one JSON document of devices,
memory (v1 and v2), compute processes, the lookup by PCI bus id, NVLink and the GPU fabric.
Used by the integration tests."""
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
    bus = pynvml.nvmlDeviceGetPciInfo(h).busId
    bus = bus.decode() if isinstance(bus, bytes) else bus
    # The same device by its bus id, spelled with a 4-digit domain as lspci does.
    short = bus.split(":", 1)[1] if bus.count(":") == 2 else bus
    by_pci = pynvml.nvmlDeviceGetHandleByPciBusId(("0000:" + short).encode())
    try:
        nvlink = str(pynvml.nvmlDeviceGetNvLinkRemoteDeviceType(h, 0))
    except pynvml.NVMLError as e:
        nvlink = str(e)
    fabric = pynvml.c_nvmlGpuFabricInfo_v3_t()
    fabric.version = pynvml.nvmlGpuFabricInfo_v3
    pynvml.nvmlDeviceGetGpuFabricInfoV(h, pynvml.byref(fabric))
    devices.append({
        "name": name.decode() if isinstance(name, bytes) else name,
        "uuid": uuid.decode() if isinstance(uuid, bytes) else uuid,
        "total": mem.total, "free": mem.free, "used": mem.used,
        "total_v2": mem2.total, "free_v2": mem2.free, "used_v2": mem2.used,
        "processes": [{"pid": p.pid, "used": p.usedGpuMemory} for p in procs],
        "pci_bus_id": bus,
        "found_by_pci": pynvml.nvmlDeviceGetUUID(by_pci) == pynvml.nvmlDeviceGetUUID(h),
        "nvlink_remote_type": nvlink,
        "fabric_state": fabric.state,
    })
pynvml.nvmlShutdown()
print(json.dumps({"devices": devices}))
