#!/usr/bin/env python3
"""Real-GPU memory-isolation checks for gpupool (PyTorch under libgpupool.so).

1. Under a 4 GiB limit: torch.cuda.mem_get_info() reports 4 GiB total; allocating up to the limit
   works; one more allocation raises OutOfMemoryError; nvidia-smi run under the library shows
   the limit; the process's real usage (nvidia-smi from outside) stays within the limit.
2. Two processes sharing one 4 GiB limit cannot exceed it together.

Every CUDA result is checked; a failed check is recorded, not hidden. Writes
<out>/memory-<date>-<card>.json and prints a table.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

GIB = 1 << 30
MIB = 1 << 20

CHILD = r"""
import json, os, sys, time, torch
chunk = int(sys.argv[1]); hold = float(sys.argv[2]); limit_chunks = int(sys.argv[3])
free, total = torch.cuda.mem_get_info()
held, err = [], None
while len(held) < limit_chunks:
    try:
        held.append(torch.empty(chunk, dtype=torch.uint8, device="cuda"))
        torch.cuda.synchronize()
    except torch.cuda.OutOfMemoryError as e:
        err = "OutOfMemoryError"
        break
free2, _ = torch.cuda.mem_get_info()
print(json.dumps({"pid": os.getpid(), "total": total, "free_before": free, "chunks": len(held),
                  "allocated": len(held) * chunk, "stop": err, "free_holding": free2}), flush=True)
time.sleep(hold)
"""


def smi(args, env=None):
    r = subprocess.run(["nvidia-smi"] + args, capture_output=True, text=True, env=env, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"nvidia-smi {args}: {r.stderr.strip()}")
    return r.stdout.strip()


def process_usage():
    """{pid: used bytes} of compute processes, from nvidia-smi without the library."""
    out = smi(["--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"])
    usage = {}
    for line in out.splitlines():
        if line.strip():
            pid, used = [x.strip() for x in line.split(",")]
            usage[int(pid)] = int(used) * MIB
    return usage


def tenant_env(lib, region, limit, ctx):
    env = dict(os.environ)
    env.update({"LD_PRELOAD": lib, "GPUPOOL_MEMORY_LIMIT": limit, "GPUPOOL_REGION": region,
                "GPUPOOL_CONTEXT_MEMORY": str(ctx), "GPUPOOL_LOG": "warn"})
    return env


def start_child(env, chunk, hold, max_chunks):
    return subprocess.Popen([sys.executable, "-c", CHILD, str(chunk), str(hold), str(max_chunks)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_report(p):
    line = p.stdout.readline()
    if not line:
        p.wait(timeout=120)
        raise RuntimeError("child failed: " + p.stderr.read()[-2000:])
    return json.loads(line)


def measure_context():
    """Bytes a bare PyTorch process holds on the card right after CUDA initialisation."""
    p = start_child(dict(os.environ), MIB, 3, 0)
    rep = read_report(p)
    time.sleep(0.5)
    used = process_usage().get(rep["pid"], 0)
    p.wait(timeout=60)
    return used


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", required=True, help="libgpupool.so to preload")
    ap.add_argument("--out", required=True, help="folder for the JSON report")
    ap.add_argument("--limit-gib", type=int, default=4)
    a = ap.parse_args()
    if not os.path.isfile(a.lib):
        sys.exit(f"gpu-check: {a.lib} not found (run scripts/prepare-gpu-carry on the build machine)")
    name, driver, total_mib = [x.strip() for x in smi(["--query-gpu=name,driver_version,memory.total", "--format=csv,noheader,nounits"]).splitlines()[0].split(",")]
    report = {"date": datetime.datetime.utcnow().isoformat() + "Z", "card": name, "driver": driver,
              "card_total_bytes": int(total_mib) * MIB, "checks": {}}
    checks = report["checks"]
    limit = a.limit_gib * GIB
    chunk = 256 * MIB
    ctx = measure_context()
    report["context_bytes"] = ctx
    tmp = tempfile.mkdtemp(prefix="gpupool-gpu-check-")

    # 1. One process under the limit.
    env = tenant_env(a.lib, os.path.join(tmp, "one.region"), f"{a.limit_gib}GiB", ctx)
    p = start_child(env, chunk, 3, 10_000)
    rep = read_report(p)
    time.sleep(0.5)
    real = process_usage().get(rep["pid"], 0)
    smi_view = smi(["--query-gpu=memory.total,memory.used", "--format=csv,noheader,nounits"], env=env).splitlines()[0]
    p.wait(timeout=120)
    smi_total = int(smi_view.split(",")[0]) * MIB
    checks["single"] = {
        **rep, "real_usage_bytes": real, "nvidia_smi_view_total_bytes": smi_total,
        "pass_total_is_limit": rep["total"] == limit,
        "pass_allocated_up_to_limit": rep["allocated"] + ctx + chunk > limit and rep["allocated"] + ctx <= limit,
        "pass_oom_past_limit": rep["stop"] == "OutOfMemoryError",
        "pass_nvidia_smi_shows_limit": smi_total == limit,
        "pass_real_usage_within_limit": real <= limit + 64 * MIB,
    }

    # 2. Two processes sharing one limit.
    region = os.path.join(tmp, "shared.region")
    env = tenant_env(a.lib, region, f"{a.limit_gib}GiB", ctx)
    procs = [start_child(env, chunk, 4, 10_000) for _ in range(2)]
    reps = [read_report(q) for q in procs]
    time.sleep(0.5)
    usage = process_usage()
    real_sum = sum(usage.get(r["pid"], 0) for r in reps)
    for q in procs:
        q.wait(timeout=120)
    checks["shared"] = {
        "processes": reps, "real_usage_sum_bytes": real_sum,
        "pass_sum_within_limit": sum(r["allocated"] for r in reps) + 2 * ctx <= limit,
        "pass_real_usage_within_limit": real_sum <= limit + 2 * 64 * MIB,
        "pass_all_refused_at_the_end": all(r["stop"] == "OutOfMemoryError" for r in reps),
    }

    passed = all(v for c in checks.values() for k, v in c.items() if k.startswith("pass_"))
    report["pass"] = passed
    card = name.replace(" ", "-").replace("/", "-")
    path = os.path.join(a.out, f"memory-{datetime.date.today().isoformat()}-{card}.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    print(f"gpupool gpu-check (memory) on {name}, driver {driver}; context {ctx / MIB:.0f} MiB")
    print(f"{'check':<40} {'result'}")
    for cname, c in checks.items():
        for k, v in c.items():
            if k.startswith("pass_"):
                print(f"{cname + ': ' + k[5:]:<40} {'PASS' if v else 'FAIL'}")
    s = checks["single"]
    print(f"single: sees {s['total'] / GIB:.2f} GiB, allocated {s['allocated'] / GIB:.2f} GiB, real {s['real_usage_bytes'] / GIB:.2f} GiB, smi view {s['nvidia_smi_view_total_bytes'] / GIB:.2f} GiB")
    print(f"report: {path}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
