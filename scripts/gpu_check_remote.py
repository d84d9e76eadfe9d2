"""The `remote` section of scripts/gpu-check: a GPU server on this machine (`gpupool serve`,
the tenant's session under libgpupool.so) and clients through the remote client library over
TCP loopback, beside the same programs run locally.

- NVIDIA's runtime 12.9 (tests/c/rt_basic) through the server;
- graphs copying host memory (tests/c/graph_host: captured and built copies, replayed with
  new host data) locally and through the server;
- the JIT linker (tests/c/drv_paths jit_ptx: real PTX with an extern function linked, loaded
  and run) locally and through the server;
- interprocess handles (tests/c/drv_paths ipc: memory and an event opened by a second process;
  a PyTorch CUDA tensor handed to a worker process) locally and through the server;
- PyTorch inference (torchvision ResNet-50 in eval mode, random weights, batch 32; a small
  residual network when torchvision is missing) for RESNET_SECONDS locally and remotely,
  alternated, reporting ms per batch and the remote / local ratio; then the same forward pass
  captured once in a CUDA graph and replayed per batch, as inference servers run it, for
  GRAPH_SECONDS;
- over TLS (when `openssl` is there to make a CA and a certificate): rt_basic, and the
  CUDA-graph pass through a `tls://` server, beside the local runs above.
"""
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys

from gpu_check_values import IPC_EXPECT, key_values

RESNET_SECONDS = 20
# The CUDA-graph pass, an addition to the required eager one, runs shorter.
GRAPH_SECONDS = 10
ROUNDS = 2

RESNET = r"""
import json, sys, time, torch
torch.manual_seed(0)
try:
    import torchvision
    model, name = torchvision.models.resnet50(weights=None), "torchvision resnet50"
except Exception:
    class Block(torch.nn.Module):
        def __init__(s, c):
            super().__init__()
            s.a = torch.nn.Conv2d(c, c, 3, padding=1); s.b = torch.nn.Conv2d(c, c, 3, padding=1)
            s.n = torch.nn.BatchNorm2d(c)
        def forward(s, x):
            return torch.relu(x + s.n(s.b(torch.relu(s.a(x)))))
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 7, stride=2, padding=3), torch.nn.ReLU(),
                                *[Block(64) for _ in range(8)], torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(64, 1000))
    name = "small residual network (torchvision missing)"
mode = sys.argv[2] if len(sys.argv) > 2 else ""
if mode == "backbone":
    model.fc, name = torch.nn.Identity(), name + " backbone"
model = model.cuda().eval()
x = torch.randn(32, 3, 224, 224, device="cuda")
with torch.no_grad():
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(5):
            y = model(x)
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    run = lambda: model(x)
    if mode == "graph":
        # As inference servers do: the whole forward pass captured once, replayed per batch.
        g, name = torch.cuda.CUDAGraph(), name + " (CUDA graph)"
        with torch.cuda.graph(g):
            y = model(x)
        run = lambda: (g.replay(), y)[1]
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < float(sys.argv[1]):
        y = run()
        torch.cuda.synchronize()
        n += 1
    dt = time.perf_counter() - t0
print(json.dumps({"model": name, "batches": n, "seconds": dt, "ms_per_batch": dt * 1000 / n,
                  "checksum": float(y.float().sum())}))
"""


def start_server(carry, tmp, extra=(), listen="127.0.0.1:0"):
    """`gpupool serve` on loopback with one client (`extra`: more arguments, e.g. `--sim`);
    returns (process, address, token file)."""
    token = secrets.token_hex(16)
    clients = os.path.join(tmp, "clients")
    with open(clients, "w") as f:
        f.write(f"gpucheck {token} memory=24GiB\n")
    token_file = os.path.join(tmp, "token")
    with open(token_file, "w") as f:
        f.write(token)
    env = dict(os.environ, GPUPOOL_LIB_DIR=carry)
    p = subprocess.Popen([os.path.join(carry, "gpupool"), "serve", "--listen", listen,
                          "--clients", clients, *extra], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline().strip()
    if not line.startswith("listening on "):
        p.kill()
        raise RuntimeError(f"gpupool serve did not start: {line} {p.stderr.read()[-1500:]}")
    return p, line[len("listening on "):], token_file


def remote_cmd(carry, addr, token_file, cmd, ca=None):
    tls = ["--tls-ca", ca] if ca else []
    return [os.path.join(carry, "gpupool"), "run", "--remote", addr, "--token-file", token_file,
            *tls, "--"] + cmd


def make_certs(d):
    """A CA and a certificate for 127.0.0.1 in `d` (openssl); the CA's path, or None."""
    if not shutil.which("openssl"):
        return None
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    steps = [
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-subj",
         "/CN=gpucheck-ca", "-days", "1", "-out", "ca.crt"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-subj",
         "/CN=gpucheck", "-out", "server.csr"],
        ["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-days", "1", "-extfile", "san.ext", "-out", "server.crt"],
    ]
    for args in steps:
        if subprocess.run(["openssl", *args], cwd=d, capture_output=True).returncode != 0:
            return None
    return os.path.join(d, "ca.crt")


def section_tls(c, env, local_graph_runs):
    """rt_basic and the CUDA-graph ResNet pass through a `tls://` server."""
    d = os.path.join(c.tmp, "tls")
    ca = make_certs(d)
    if ca is None:
        return {"tls_skipped": "no openssl to make a certificate"}
    res = {}
    server, addr, token_file = start_server(
        c.carry, d, ("--tls-cert", os.path.join(d, "server.crt"), "--tls-key",
                     os.path.join(d, "server.key")), listen="tls://127.0.0.1:0")
    try:
        r = subprocess.run(remote_cmd(c.carry, addr, token_file, [c.bin("rt_basic-12.9")], ca),
                           capture_output=True, text=True, env=env, timeout=120)
        fails = [l for l in r.stdout.splitlines() if l.startswith("FAIL")]
        res["tls_rt_basic_12.9"] = {"rc": r.returncode, "fail_lines": fails,
                                    "stderr": r.stderr[-1000:]}
        res["pass_tls_rt_basic_12.9"] = r.returncode == 0 and not fails
        if local_graph_runs:
            local = [sys.executable, "-c", RESNET, str(GRAPH_SECONDS), "graph"]
            runs = [run_json(remote_cmd(c.carry, addr, token_file, local, ca), env, 300)
                    for _ in range(ROUNDS)]
            ms_tls = statistics.median(r["ms_per_batch"] for r in runs)
            ms_local = statistics.median(r["ms_per_batch"] for r in local_graph_runs)
            res["tls_resnet_graph_runs"] = runs
            res["tls_resnet_graph_ms_per_batch"] = ms_tls
            res["tls_resnet_graph_ratio_over_local"] = ms_tls / ms_local
            res["pass_tls_resnet_graph_ran"] = all(r["batches"] > 0 for r in runs)
    except Exception as e:  # recorded; the rest of the section stands
        res["tls_error"] = str(e)[-3000:]
    finally:
        server.kill()
        res["tls_server_stderr"] = server.stderr.read()[-2000:]
    return res


def run_json(cmd, env, timeout):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{cmd[-3:]}: rc {r.returncode} {r.stdout[-800:]} {r.stderr[-1500:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def resnet(c, addr, token_file, env, mode="", key="resnet"):
    """ResNet inference locally and through the server, alternated (`mode`: "" eager, "graph"
    replayed from a CUDA graph); results under `key`_*."""
    res = {}
    runs = {"local": [], "remote": []}
    for _ in range(ROUNDS):
        seconds = GRAPH_SECONDS if mode == "graph" else RESNET_SECONDS
        local = [sys.executable, "-c", RESNET, str(seconds), mode]
        runs["local"].append(run_json(local, dict(os.environ), 300))
        runs["remote"].append(run_json(remote_cmd(c.carry, addr, token_file, local), env, 300))
    res[f"{key}_runs"] = runs
    ms = {k: statistics.median(r["ms_per_batch"] for r in v) for k, v in runs.items()}
    res[f"{key}_model"] = runs["local"][0]["model"]
    res[f"{key}_ms_per_batch"] = ms
    res[f"{key}_ratio_remote_over_local"] = ms["remote"] / ms["local"]
    a, b = runs["local"][0]["checksum"], runs["remote"][0]["checksum"]
    res[f"pass_{key}_same_output"] = abs(a - b) <= 1e-2 * max(1.0, abs(a))
    res[f"pass_{key}_ran"] = all(r["batches"] > 0 for v in runs.values() for r in v)
    return res


GRAPH_HOST_KEYS = ("captured_ok", "built_ok", "child_ok", "broken")


def graph_host(c, addr, token_file, env):
    """tests/c/graph_host locally and through the server: each replay of a graph copying
    host memory sees new host data. Whether all device memory came back (`freed`) is recorded,
    not judged: a real driver may keep memory of its own for graphs."""
    res = {}
    prog = [c.bin("graph_host-12.9")]
    for where, cmd in (("local", prog), ("remote", remote_cmd(c.carry, addr, token_file, prog))):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        kv = key_values(r.stdout)
        res[f"graph_host_{where}"] = {"rc": r.returncode, "values": kv,
                                       "stdout": r.stdout[-1000:], "stderr": r.stderr[-1000:]}
        res[f"pass_graph_host_{where}"] = r.returncode == 0 and all(
            kv.get(k) == "1" for k in GRAPH_HOST_KEYS)
    return res


def drv_path_both(c, addr, token_file, env, path, passes):
    """tests/c/drv_paths PATH locally and through the server; `passes(values)` judges each."""
    res = {}
    prog = [c.bin("drv_paths"), path, "64"]
    for where, cmd in (("local", prog), ("remote", remote_cmd(c.carry, addr, token_file, prog))):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        kv = key_values(r.stdout)
        res[f"{path}_{where}"] = {"rc": r.returncode, "values": kv,
                                   "stdout": r.stdout[-1000:], "stderr": r.stderr[-1000:]}
        res[f"pass_{path}_{where}"] = r.returncode == 0 and passes(kv)
    return res


def jit_ptx(c, addr, token_file, env):
    """The driver's JIT linker links real PTX (a kernel calling an extern function of another
    input), and the linked kernel turns 256 integers from 41 into 42."""
    return drv_path_both(c, addr, token_file, env, "jit_ptx", lambda kv: kv.get("computed") == "256")


def ipc(c, addr, token_file, env):
    """Interprocess handles: a second process (through the server, a second session of the
    same tenant) opens the memory and the event, sees the data and writes into it."""
    return drv_path_both(c, addr, token_file, env, "ipc",
                         lambda kv: all(kv.get(k) == v for k, v in IPC_EXPECT.items()))


# A CUDA tensor handed to a worker process (torch.multiprocessing, spawn): the worker reads
# it and writes into it, the parent sees the write (interprocess memory and event handles).
TORCH_IPC = r"""
import json, sys, torch, torch.multiprocessing as mp
N = 1 << 20


def worker(q, r):
    try:
        t, = q.get(timeout=120)
        saw = bool(torch.equal(t.cpu(), torch.arange(N, dtype=torch.float32)))
        t.copy_(torch.full((N,), 7.0))
        torch.cuda.synchronize()
        r.put({"child_saw_data": saw})
    except Exception as e:
        r.put({"child_error": repr(e)[-500:]})


if __name__ == "__main__":
    mp.set_start_method("spawn")
    t = torch.arange(N, dtype=torch.float32).cuda()
    q, r = mp.Queue(), mp.Queue()
    p = mp.Process(target=worker, args=(q, r))
    p.start()
    q.put((t,))
    out = r.get(timeout=180)
    p.join(timeout=60)
    out["child_exit"] = p.exitcode
    out["parent_sees_child_write"] = bool((t.cpu() == 7.0).all())
    print(json.dumps(out))
"""


def torch_ipc(c, addr, token_file, env):
    """TORCH_IPC locally and through the server (the worker: a second client of the tenant)."""
    res = {}
    # A file, not `-c`: spawned workers import the parent's main module.
    path = os.path.join(c.tmp, "torch_ipc.py")
    with open(path, "w") as f:
        f.write(TORCH_IPC)
    local = [sys.executable, path]
    for where, cmd, e in (("local", local, dict(os.environ)),
                          ("remote", remote_cmd(c.carry, addr, token_file, local), env)):
        try:
            out = run_json(cmd, e, 300)
        except Exception as err:  # recorded; the rest of the section stands
            out = {"error": str(err)[-2000:]}
        res[f"torch_ipc_{where}"] = out
        res[f"pass_torch_ipc_{where}"] = (out.get("child_saw_data") is True
                                          and out.get("parent_sees_child_write") is True)
    return res


def section_remote(c, card):
    res = {}
    server, addr, token_file = start_server(c.carry, c.tmp)
    env = dict(os.environ, GPUPOOL_LIB_DIR=c.carry)
    try:
        r = subprocess.run(remote_cmd(c.carry, addr, token_file, [c.bin("rt_basic-12.9")]),
                           capture_output=True, text=True, env=env, timeout=120)
        fails = [l for l in r.stdout.splitlines() if l.startswith("FAIL")]
        res["rt_basic_12.9"] = {"rc": r.returncode, "fail_lines": fails, "stderr": r.stderr[-1000:]}
        res["pass_rt_basic_12.9"] = r.returncode == 0 and not fails
        res.update(graph_host(c, addr, token_file, env))
        res.update(jit_ptx(c, addr, token_file, env))
        res.update(ipc(c, addr, token_file, env))
        res.update(torch_ipc(c, addr, token_file, env))
        for mode, key in (("", "resnet"), ("graph", "resnet_graph")):
            try:
                res.update(resnet(c, addr, token_file, env, mode, key))
            except Exception as e:  # recorded; the rest of the section stands
                res[f"{key}_error"] = str(e)[-3000:]
                res[f"pass_{key}_ran"] = False
    finally:
        server.kill()
        res["server_stderr"] = server.stderr.read()[-2000:]
    res.update(section_tls(c, env, res.get("resnet_graph_runs", {}).get("local", [])))
    return res
