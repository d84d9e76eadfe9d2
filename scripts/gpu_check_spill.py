"""The `spill` section of scripts/gpu-check: PyTorch training whose memory needs 1.5x the
tenant's device quota finishes with the rest spilled to host memory (`GPUPOOL_MEMORY_SPILL`),
and the process never holds more device memory than its quota.

1. The loop runs bare once to learn its peak memory (`torch.cuda.max_memory_allocated`, plus
   the caching allocator's reserve) and its step time.
2. It runs under the library with a device limit of peak / 1.5 (plus the context) and a spill
   allowance of the peak, while `nvidia-smi` samples the process's device memory.
3. Reports: completed steps, the slowdown (step time spilled / bare), the most device memory
   nvidia-smi saw for the process against the limit.
"""
import json
import os
import subprocess
import sys
import threading
import time

MIB = 1 << 20

SPILL_TRAIN = r"""
import json, sys, time, torch
torch.manual_seed(0)
width = int(sys.argv[1]); steps = int(sys.argv[2])
m = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(8)]).cuda()
opt = torch.optim.Adam(m.parameters(), lr=1e-4)
x = torch.randn(256, width, device="cuda")
def step():
    opt.zero_grad(); loss = m(x).pow(2).mean(); loss.backward(); opt.step(); return loss
step(); torch.cuda.synchronize()
t0 = time.perf_counter()
for _ in range(steps): loss = step()
torch.cuda.synchronize()
print(json.dumps({"pid": __import__("os").getpid(), "steps": steps,
                  "step_ms": (time.perf_counter() - t0) * 1000 / steps,
                  "peak_bytes": torch.cuda.max_memory_reserved(), "loss": float(loss)}), flush=True)
"""

WIDTH = 8192
STEPS = 20


def sample_device_memory(stop, seen):
    """Device memory of each compute process nvidia-smi shows, every 200 ms (the spilled run
    is the only one on the card while it is sampled)."""
    while not stop.is_set():
        r = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory",
                            "--format=csv,noheader,nounits"], capture_output=True, text=True)
        for line in r.stdout.splitlines():
            parts = [p.strip() for p in line.split(",")]
            if len(parts) == 2 and parts[1].isdigit():
                seen.append(int(parts[1]) * MIB)
        time.sleep(0.2)


def run(cmd, env, timeout=600):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"rc {r.returncode}: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def section_spill(c, card):
    res = {}
    train = [sys.executable, "-c", SPILL_TRAIN, str(WIDTH), str(STEPS)]
    bare = run(train, dict(os.environ))
    res["bare"] = bare
    ctx = 512 * MIB
    limit = int(bare["peak_bytes"] / 1.5) + ctx
    limit -= limit % MIB
    env = c.env(f"{limit // MIB}MiB", ctx)
    env["GPUPOOL_MEMORY_SPILL"] = f"{bare['peak_bytes'] // MIB + 64}MiB"
    stop, seen = threading.Event(), []
    sampler = threading.Thread(target=sample_device_memory, args=(stop, seen))
    sampler.start()
    try:
        spilled = run(train, env)
    finally:
        stop.set()
        sampler.join()
    res["spilled"] = spilled
    res["device_limit_bytes"] = limit
    res["max_device_memory_seen_bytes"] = max(seen) if seen else None
    res["slowdown"] = spilled["step_ms"] / bare["step_ms"]
    res["pass_finished"] = spilled["steps"] == STEPS
    res["pass_never_past_the_device_limit"] = bool(seen) and max(seen) <= limit + 64 * MIB
    return res
