#!/usr/bin/env python3
"""Finds which hash input layout reproduces a driver's integrity-check answers recorded by
integrity_probe (see scripts/gpu/integrity_probe.c and docs/simulator.md).

usage: integrity_solve.py PROBE.json [PROBE.json ...]   (the probe's JSON, or a gpu-check report)
Prints, per recorded version, the layouts (out of a few thousand candidates) whose HMAC-MD2
matches the driver's answer."""
import itertools
import json
import os
import re
import struct
import sys

def _pi_subst():
    """RFC 1319's substitution table, read from the simulator's MD2 (one copy in the repo)."""
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "crates",
                       "gpupool-simgpu", "src", "md2.rs")
    text = open(src).read()
    body = text[text.index("[u8; 256] = [") + 13:]
    body = body[:body.index("];")]
    table = [int(x, 0) for x in re.findall(r"0x[0-9a-fA-F]+|\d+", body)]
    assert sorted(table) == list(range(256)), "md2.rs: unexpected table"
    return table


S = _pi_subst()
KEY = bytes([0x14, 0x6a, 0xdd, 0xae, 0x53, 0xa9, 0xa7, 0x52, 0xaa, 0x08, 0x41, 0x36, 0x0b, 0xf5, 0x5a, 0x9f])


def md2(msg):
    n = 16 - len(msg) % 16
    msg = msg + bytes([n]) * n
    c, last = [0] * 16, 0
    for i in range(0, len(msg), 16):
        for j in range(16):
            c[j] ^= S[msg[i + j] ^ last]
            last = c[j]
    msg += bytes(c)
    x = [0] * 48
    for i in range(0, len(msg), 16):
        for j in range(16):
            x[16 + j] = msg[i + j]
            x[32 + j] = x[16 + j] ^ x[j]
        t = 0
        for j in range(18):
            for k in range(48):
                x[k] ^= S[t]
                t = x[k]
            t = (t + j) % 256
    return bytes(x[:16])


def hmac_md2(key, msg):
    key = key.ljust(16, b"\0")
    inner = md2(bytes(k ^ 0x36 for k in key) + msg)
    return md2(bytes(k ^ 0x5c for k in key) + inner)


def candidates(p, version, time):
    """(description, message) for every layout tried."""
    tabs = p["tables"]
    cudart = tabs["cudart_interface"]["ptr"]
    integ = tabs["integrity"]["ptr"]
    integ1 = tabs["integrity"]["slots"][1]
    devs_full = b"".join(bytes.fromhex(d["uuid"]) + struct.pack("<iii", d["pci_domain"], d["pci_bus"], d["pci_device"]) for d in p["devices"])
    devs_uuid = b"".join(bytes.fromhex(d["uuid"]) for d in p["devices"])
    drivers = {"drv": p["driver_version"], "ver": version, "none": None, "11080": 11080}
    tids = {"tid32": struct.pack("<I", p["pthread_self"] & 0xffffffff), "tid64": struct.pack("<Q", p["pthread_self"]), "notid": b"", "gettid": struct.pack("<I", p.get("gettid", 0))}
    pids = {"pid": struct.pack("<I", p["pid"]), "nopid": b""}
    times = {"t64": struct.pack("<Q", time), "t32": struct.pack("<I", time & 0xffffffff), "not": b""}
    ptrsets = {"3ptr": struct.pack("<QQQ", cudart, integ, integ1), "2ptr": struct.pack("<QQ", integ, integ1),
               "cudart+integ": struct.pack("<QQ", cudart, integ), "1ptr": struct.pack("<Q", integ),
               "noptr": b""}
    devsets = {"devs": devs_full, "uuids": devs_uuid, "nodevs": b""}
    for (dn, dv), (tn, tv), (pn, pv), (xn, xv), (qn, qv), (vn, vv) in itertools.product(
            drivers.items(), tids.items(), pids.items(), times.items(), ptrsets.items(), devsets.items()):
        head = b"" if dv is None else struct.pack("<I", dv)
        for vers_first in (True, False):
            vb = struct.pack("<I", version)
            hdr = (head + vb) if vers_first else (vb + head)
            yield (f"{dn} {'ver' if vers_first else 'ver-first'} {pn} {tn} {qn} {xn} {vn}",
                   hdr + pv + tv + qv + xv + vv)


def main():
    for path in sys.argv[1:]:
        p = json.load(open(path))
        if "sections" in p:
            p = p["sections"]["integrity"]
        for a in p["answers"]:
            want = struct.pack("<QQ", *a["out"])
            hits = [d for d, m in candidates(p, a["version"], a["time"]) if hmac_md2(KEY, m) == want]
            print(f"{a['version']} t={a['time']}: {hits[:6] if hits else 'no layout matches'}")


if __name__ == "__main__":
    main()
