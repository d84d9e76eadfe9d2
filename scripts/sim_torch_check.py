#!/usr/bin/env python3
"""PyTorch on the simulated GPU, locally and through a remote GPU server on loopback: the
gpu-check's remote workload (torchvision ResNet-50 in eval mode, random weights, batch 32),
for SECONDS per run, alternated ROUNDS times. Simulated kernels take 5 us each and compute nothing, so the
remote / local ratio measures what forwarding a real program's driver calls costs.

usage: scripts/sim-torch-check PYTHON [SECONDS] [ROUNDS]
  PYTHON: an interpreter with torch and torchvision (e.g. a venv's bin/python)
Prints a table and a JSON line; needs `cargo build --release` first."""
import json
import os
import statistics
import subprocess
import sys
import tempfile

from gpu_check_remote import RESNET, remote_cmd, run_json, start_server

SIM = "1xH100"


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
    work = [python, "-c", RESNET, str(seconds)]
    with tempfile.TemporaryDirectory(prefix="gpupool-sim-torch-") as tmp:
        env = dict(os.environ, GPUPOOL_LIB_DIR=release, GPUPOOL_SIM_STATE=os.path.join(tmp, "local"))
        server, addr, token_file = start_server(
            release, tmp, ["--sim", SIM, "--state", os.path.join(tmp, "server")])
        runs = {"local": [], "remote": []}
        try:
            for _ in range(rounds):
                local = [gpupool, "run", "--sim", SIM, "--memory", "24GiB", "--"] + work
                runs["local"].append(run_json(local, env, 600))
                runs["remote"].append(run_json(remote_cmd(release, addr, token_file, work), env, 600))
        finally:
            server.kill()
    ms = {k: statistics.median(r["ms_per_batch"] for r in v) for k, v in runs.items()}
    print(f"{runs['local'][0]['model']}, batch 32, simulated {SIM}, {rounds} x {seconds:g} s each")
    print(f"{'where':<8} {'ms per batch (median)':>22} {'batches per run':>16}")
    for k in ("local", "remote"):
        print(f"{k:<8} {ms[k]:>22.1f} {', '.join(str(r['batches']) for r in runs[k]):>16}")
    print(f"remote / local: {ms['remote'] / ms['local']:.2f}")
    print(json.dumps({"sim": SIM, "runs": runs, "ms_per_batch": ms,
                      "ratio_remote_over_local": ms["remote"] / ms["local"]}))


if __name__ == "__main__":
    main()
