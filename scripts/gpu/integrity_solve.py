#!/usr/bin/env python3
"""Finds which hash input layout reproduces a driver's integrity-check answers recorded by
integrity_probe (see scripts/gpu/integrity_probe.c and docs/simulator.md).

usage: integrity_solve.py PROBE.json [PROBE.json ...]   (the probe's JSON, or a gpu-check report)
Prints, per recorded version, the layouts (out of a few thousand candidates) whose HMAC-MD2
matches the driver's answer."""
import itertools
import json
import struct
import sys

S = [41, 46, 67, 201, 162, 216, 124, 1, 61, 54, 84, 161, 236, 240, 6, 19, 98, 167, 5, 243, 192, 199,
     115, 140, 152, 147, 43, 217, 188, 76, 130, 202, 30, 155, 87, 60, 253, 212, 224, 22, 103, 66,
     111, 24, 138, 23, 229, 18, 190, 78, 196, 214, 218, 158, 222, 73, 160, 251, 245, 142, 187, 47,
     238, 122, 169, 104, 121, 145, 21, 178, 7, 63, 148, 194, 16, 137, 11, 34, 95, 33, 128, 127, 93,
     154, 90, 144, 50, 39, 53, 62, 204, 231, 191, 247, 151, 3, 255, 25, 48, 179, 72, 165, 181, 209,
     215, 94, 146, 42, 172, 86, 170, 198, 79, 184, 56, 210, 150, 164, 125, 182, 118, 252, 107, 226,
     156, 116, 4, 241, 69, 157, 112, 89, 100, 113, 135, 32, 134, 91, 207, 101, 230, 45, 168, 2, 27,
     96, 37, 173, 174, 176, 185, 246, 28, 70, 97, 105, 52, 64, 126, 15, 85, 71, 163, 35, 221, 81,
     175, 58, 195, 92, 249, 206, 186, 197, 234, 38, 44, 83, 13, 110, 133, 40, 132, 9, 211, 223, 205,
     244, 65, 129, 77, 82, 106, 220, 55, 200, 108, 193, 171, 250, 36, 225, 123, 8, 12, 189, 177, 74,
     120, 136, 149, 139, 227, 99, 232, 109, 233, 203, 213, 254, 59, 0, 29, 57, 242, 239, 183, 14,
     102, 88, 208, 228, 166, 119, 114, 248, 235, 117, 75, 10, 49, 68, 80, 180, 143, 237, 31, 26,
     219, 153, 141, 51, 159, 17, 131, 20]
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
