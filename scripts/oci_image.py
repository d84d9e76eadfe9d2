#!/usr/bin/env python3
"""Writes an OCI image layout (one linux/amd64 image, one layer) from a file tree, without a
container engine. Reproducible: entries sorted, owned by root, timestamps from
SOURCE_DATE_EPOCH (default 0). Push it with any OCI tool, e.g.
    skopeo copy oci:OUT:TAG docker://ghcr.io/gpupool/gpupool:TAG
Usage: oci_image.py ROOTFS OUT TAG"""
import gzip, hashlib, io, json, os, sys, tarfile

def blob(out, data, media_type):
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(out, "blobs", "sha256", digest)
    with open(path, "wb") as f:
        f.write(data)
    return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}

def layer_tar(rootfs, mtime):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(rootfs):
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                full = os.path.join(dirpath, name)
                info = tar.gettarinfo(full, arcname=os.path.relpath(full, rootfs))
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                info.mtime = mtime
                if info.isfile():
                    with open(full, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
    return buf.getvalue()

def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    rootfs, out, tag = sys.argv[1:]
    if not os.path.isfile(os.path.join(rootfs, "usr/local/bin/gpupool")):
        sys.exit(f"oci_image.py: {rootfs} has no usr/local/bin/gpupool")
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=False)
    tar = layer_tar(rootfs, mtime)
    gz = gzip.compress(tar, mtime=mtime)
    layer = blob(out, gz, "application/vnd.oci.image.layer.v1.tar+gzip")
    created = "1970-01-01T00:00:00Z" if mtime == 0 else \
        __import__("datetime").datetime.utcfromtimestamp(mtime).strftime("%Y-%m-%dT%H:%M:%SZ")
    config = {
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/bin", "GPUPOOL_LIB_DIR=/usr/local/gpupool/lib"],
            "Entrypoint": ["gpupool"],
            "Cmd": ["--help"],
            "WorkingDir": "/",
            "Labels": {
                "org.opencontainers.image.title": "gpupool",
                "org.opencontainers.image.version": tag,
            },
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]},
        "history": [{"created": created, "created_by": "scripts/build-image"}],
    }
    config_desc = blob(out, json.dumps(config, sort_keys=True).encode(),
                       "application/vnd.oci.image.config.v1+json")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": [layer],
    }
    manifest_desc = blob(out, json.dumps(manifest, sort_keys=True).encode(),
                         "application/vnd.oci.image.manifest.v1+json")
    manifest_desc["annotations"] = {"org.opencontainers.image.ref.name": tag}
    manifest_desc["platform"] = {"architecture": "amd64", "os": "linux"}
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                   "manifests": [manifest_desc]}, f, sort_keys=True)
    with open(os.path.join(out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    print(f"{out} {tag} {manifest_desc['digest']}")

main()
