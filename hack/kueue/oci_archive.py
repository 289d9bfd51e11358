"""Write an OCI image archive holding one static binary, for `ctr images import`.

The test cluster has no registry and the machines no Docker engine by default. With
``--base-rootfs`` the binary is a layer over the offline base image's root filesystem
(the Debian rootfs tarball `hack/images.sh` debootstraps, batchdrain's own base);
without it the image is the binary alone, with a passwd entry for its user and a /tmp,
which is all a static Go binary needs. Stdlib only (tarfile, hashlib, json), so the
archive is the same on every machine for the same inputs.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

EPOCH = 0  # fixed mtimes: the same binary gives the same image digest


def _entry(tar: tarfile.TarFile, name: str, data: bytes | None, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.mtime, info.mode = EPOCH, mode
    if data is None:
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    else:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def layer(binary: Path, path: str, uid: int, gid: int, *, alone: bool) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        if alone:  # over a base, its own /etc and /tmp stay
            _entry(tar, "etc", None, 0o755)
            _entry(tar, "etc/passwd", f"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{uid}:{gid}::/home/nonroot:/sbin/nologin\n".encode(), 0o644)
            _entry(tar, "etc/group", f"root:x:0:\nnonroot:x:{gid}:\n".encode(), 0o644)
            _entry(tar, "tmp", None, 0o1777)
        _entry(tar, path.lstrip("/"), binary.read_bytes(), 0o755)
    return raw.getvalue()


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--binary", type=Path, required=True)
    parser.add_argument("--path", required=True, help="where the binary goes in the image, also the entrypoint")
    parser.add_argument("--user", default="65532:65532")
    parser.add_argument("--name", required=True, help="the full image reference containerd lists it as")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--base-rootfs", type=Path, help="an uncompressed rootfs tarball: the image's lower layer")
    args = parser.parse_args()
    uid, gid = (int(x) for x in args.user.split(":"))

    tar_bytes = layer(args.binary, args.path, uid, gid, alone=args.base_rootfs is None)
    gz = gzip.compress(tar_bytes, mtime=EPOCH)
    diff_ids, layers = [], []
    base_digest = None
    if args.base_rootfs is not None:  # an uncompressed layer: its digest is its diff id
        base_digest = _sha256_of(args.base_rootfs)
        diff_ids.append(f"sha256:{base_digest}")
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": f"sha256:{base_digest}",
                       "size": args.base_rootfs.stat().st_size})
    diff_ids.append(f"sha256:{hashlib.sha256(tar_bytes).hexdigest()}")
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                   "digest": f"sha256:{hashlib.sha256(gz).hexdigest()}", "size": len(gz)})
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": [args.path], "User": args.user, "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }, sort_keys=True).encode()
    blobs = {hashlib.sha256(b).hexdigest(): b for b in (gz, config)}
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": f"sha256:{hashlib.sha256(config).hexdigest()}", "size": len(config)},
        "layers": layers,
    }, sort_keys=True).encode()
    blobs[hashlib.sha256(manifest).hexdigest()] = manifest
    index = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": f"sha256:{hashlib.sha256(manifest).hexdigest()}", "size": len(manifest),
                       "annotations": {"io.containerd.image.name": args.name,
                                       "org.opencontainers.image.ref.name": args.name.rsplit(":", 1)[1]}}],
    }, sort_keys=True).encode()

    tmp = args.output.with_suffix(".tmp")
    with tarfile.open(tmp, "w") as out:
        _entry(out, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode(), 0o644)
        _entry(out, "index.json", index, 0o644)
        for digest, blob in blobs.items():
            _entry(out, f"blobs/sha256/{digest}", blob, 0o644)
        if args.base_rootfs is not None:
            info = out.gettarinfo(str(args.base_rootfs), arcname=f"blobs/sha256/{base_digest}")
            info.mtime, info.uid, info.gid, info.uname, info.gname = EPOCH, 0, 0, "", ""
            with args.base_rootfs.open("rb") as f:
                out.addfile(info, f)
    tmp.replace(args.output)


if __name__ == "__main__":
    main()
