#!/usr/bin/env python3
"""PyTorch on the simulated GPU, locally and through a remote GPU server on loopback: the GPU
check's workloads (torchvision ResNet-50 inference, batch 32, eager and replayed from a CUDA
graph, as its remote section runs it;
ResNet-50 training steps and greedy generation with a small transformer, as its overhead
section runs them; random weights), each for SECONDS per run, local and remote alternated
ROUNDS times. Simulated kernels take 5 us each and compute nothing, so the remote / local
ratio measures what forwarding a real program's driver calls costs.

usage: scripts/sim-torch-check PYTHON [SECONDS] [ROUNDS]
  PYTHON: an interpreter with torch and torchvision (e.g. a venv's bin/python)
Prints a table and a JSON line; needs `cargo build --release` first."""
import json
import os
import statistics
import sys
import tempfile

from gpu_check import GENERATE, RESNET_TRAIN
from gpu_check_remote import RESNET, remote_cmd, run_json, start_server

SIM = "1xH100"
# name: (program, its arguments after SECONDS, how a run's milliseconds per step are read
# from its JSON line)
WORKLOADS = {
    "resnet50 inference": (RESNET, [], lambda r: r["ms_per_batch"]),
    "resnet50 inference, graph": (RESNET, ["graph"], lambda r: r["ms_per_batch"]),
    "resnet50 training": (RESNET_TRAIN, [], lambda r: 1000 / r["steps_per_s"]),
    "transformer generation": (GENERATE, [], lambda r: 1000 / r["steps_per_s"]),
}


def main():
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        sys.exit(__doc__)
    python = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    release = os.path.join(root, "target", "release")
    for f in ("gpupool", "libgpupool.so", "libgpupool_simgpu.so", "libgpupool_remote_client.so"):
        if not os.path.isfile(os.path.join(release, f)):
            sys.exit(f"sim-torch-check: {release}/{f} not found (run cargo build --release)")
    gpupool = os.path.join(release, "gpupool")
    results = {}
    with tempfile.TemporaryDirectory(prefix="gpupool-sim-torch-") as tmp:
        env = dict(os.environ, GPUPOOL_LIB_DIR=release, GPUPOOL_SIM_STATE=os.path.join(tmp, "local"))
        server, addr, token_file = start_server(
            release, tmp, ["--sim", SIM, "--state", os.path.join(tmp, "server")])
        try:
            for name, (program, args, ms_of) in WORKLOADS.items():
                work = [python, "-c", program, str(seconds)] + args
                runs = {"local": [], "remote": []}
                for _ in range(rounds):
                    local = [gpupool, "run", "--sim", SIM, "--memory", "24GiB", "--"] + work
                    runs["local"].append(ms_of(run_json(local, env, 600)))
                    remote = remote_cmd(release, addr, token_file, work)
                    runs["remote"].append(ms_of(run_json(remote, env, 600)))
                ms = {k: statistics.median(v) for k, v in runs.items()}
                results[name] = {"ms_per_step_runs": runs, "ms_per_step": ms,
                                 "ratio_remote_over_local": ms["remote"] / ms["local"]}
        finally:
            server.kill()
    print(f"simulated {SIM}, {rounds} x {seconds:g} s per run, medians")
    print(f"{'workload':<24} {'local ms/step':>14} {'remote ms/step':>15} {'remote / local':>15}")
    for name, r in results.items():
        ms = r["ms_per_step"]
        print(f"{name:<24} {ms['local']:>14.2f} {ms['remote']:>15.2f} "
              f"{r['ratio_remote_over_local']:>15.2f}")
    print(json.dumps({"sim": SIM, "seconds": seconds, "rounds": rounds, "workloads": results}))


if __name__ == "__main__":
    main()
