#!/usr/bin/env python3
"""Writes a deterministic two-layer test image as a `docker save` archive (docker-archive).

Each layer is a tar of a few large files of pseudo-random (incompressible) bytes plus a few
hundred small text files in nested directories, a symlink and a hard link; the second layer also
overwrites a file of the first and deletes another with a whiteout. Everything (bytes, names,
mtimes, owners) comes from a seeded PRNG, so the same arguments give a byte-identical archive and
therefore the same image ID on every run.

Layouts:
  legacy  (default) what Docker < 25 writes: manifest.json, <config-hex>.json,
          <layer-dir>/layer.tar, repositories
  oci     what Docker 25+ writes: blobs/sha256/<hex> for config and layers, plus manifest.json,
          index.json and oci-layout

Usage: gen_image.py OUT.tar [--layer-mb 100] [--seed 1] [--tag bench/loadsave:latest] [--layout legacy|oci]
"""

import argparse
import hashlib
import io
import json
import platform
import random
import sys
import tarfile

MTIME = 1_700_000_000  # fixed, so the archive is reproducible
BIG_FILES = 4  # large incompressible files per layer
SMALL_FILES = 300  # small files per layer


def arch():
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(m, m)


def add_dir(tar, name, mode=0o755):
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE
    ti.mode = mode
    ti.mtime = MTIME
    tar.addfile(ti)


def add_file(tar, name, data, mode=0o644, uid=0, gid=0):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = mode
    ti.mtime = MTIME
    ti.uid, ti.gid = uid, gid
    tar.addfile(ti, io.BytesIO(data))


def add_link(tar, name, target, kind):
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.linkname = target
    ti.mode = 0o777 if kind == tarfile.SYMTYPE else 0o644
    ti.mtime = MTIME
    tar.addfile(ti)


def text(rng, n):
    words = ["berth", "layer", "image", "docker", "bench", "tar", "blob", "digest", "save", "load"]
    out, size = [], 0
    while size < n:
        w = rng.choice(words)
        out.append(w)
        size += len(w) + 1
    return (" ".join(out)[:n] + "\n").encode()


def make_layer(rng, index, size_mb):
    """Returns the bytes of one uncompressed layer tar of roughly size_mb MiB."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        top = f"opt/bench{index}"
        for d in ["opt", top, f"{top}/data", f"{top}/etc", "usr", "usr/share", f"usr/share/bench{index}"]:
            add_dir(tar, d)
        # Small files: configs, scripts, docs in nested directories.
        small_total = 0
        for i in range(SMALL_FILES):
            sub = f"usr/share/bench{index}/d{i // 50:02d}"
            if i % 50 == 0:
                add_dir(tar, sub)
            data = text(rng, rng.randint(64, 8192))
            small_total += len(data)
            add_file(tar, f"{sub}/f{i:04d}.txt", data, mode=rng.choice([0o644, 0o600, 0o755]),
                     uid=rng.choice([0, 0, 1000]), gid=rng.choice([0, 0, 1000]))
        add_file(tar, f"{top}/etc/config.json", json.dumps({"layer": index, "seed": rng.random()}).encode())
        add_link(tar, f"{top}/current", "data", tarfile.SYMTYPE)
        add_link(tar, f"{top}/etc/config-hardlink.json", f"{top}/etc/config.json", tarfile.LNKTYPE)
        if index == 2:
            # Overwrite a file of layer 1 and delete another (whiteout).
            add_dir(tar, "opt/bench1")
            add_dir(tar, "opt/bench1/etc")
            add_file(tar, "opt/bench1/etc/config.json", b'{"overridden": true}\n')
            add_dir(tar, "usr/share/bench1")
            add_dir(tar, "usr/share/bench1/d00")
            add_file(tar, "usr/share/bench1/d00/.wh.f0001.txt", b"")
        # Large incompressible files fill the rest.
        remaining = size_mb * (1 << 20) - small_total
        for i in range(BIG_FILES):
            n = remaining // (BIG_FILES - i)
            remaining -= n
            add_file(tar, f"{top}/data/blob{i}.bin", rng.randbytes(n))
    return buf.getvalue()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--layer-mb", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tag", default="bench/loadsave:latest")
    ap.add_argument("--layout", choices=["legacy", "oci"], default="legacy")
    a = ap.parse_args()

    rng = random.Random(a.seed)
    layers = [make_layer(rng, i + 1, a.layer_mb) for i in range(2)]
    diff_ids = ["sha256:" + hashlib.sha256(l).hexdigest() for l in layers]
    config = {
        "architecture": arch(),
        "os": "linux",
        "created": "2023-11-14T22:13:20Z",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "WorkingDir": "/opt/bench2",
            "Labels": {"org.berth.bench": "load-save", "seed": str(a.seed)},
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created": "2023-11-14T22:13:20Z", "created_by": f"bench layer {i + 1}"} for i in range(2)
        ],
    }
    config_bytes = json.dumps(config, separators=(",", ":")).encode()
    config_hex = hashlib.sha256(config_bytes).hexdigest()
    layer_hex = [d.split(":", 1)[1] for d in diff_ids]

    with tarfile.open(a.out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        if a.layout == "legacy":
            layer_paths = [f"{h}/layer.tar" for h in layer_hex]
            config_path = f"{config_hex}.json"
            for h, path, data in zip(layer_hex, layer_paths, layers):
                add_dir(tar, h)
                add_file(tar, f"{h}/VERSION", b"1.0")
                add_file(tar, path, data)
            add_file(tar, config_path, config_bytes)
            repo, tag = a.tag.rsplit(":", 1)
            add_file(tar, "repositories", json.dumps({repo: {tag: layer_hex[-1]}}).encode())
        else:
            layer_paths = [f"blobs/sha256/{h}" for h in layer_hex]
            config_path = f"blobs/sha256/{config_hex}"
            add_dir(tar, "blobs")
            add_dir(tar, "blobs/sha256")
            for path, data in zip(layer_paths, layers):
                add_file(tar, path, data)
            add_file(tar, config_path, config_bytes)
            manifest = json.dumps({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": "sha256:" + config_hex, "size": len(config_bytes)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                            "digest": d, "size": len(l)} for d, l in zip(diff_ids, layers)],
            }, separators=(",", ":")).encode()
            manifest_hex = hashlib.sha256(manifest).hexdigest()
            add_file(tar, f"blobs/sha256/{manifest_hex}", manifest)
            index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                     "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                    "digest": "sha256:" + manifest_hex, "size": len(manifest),
                                    "annotations": {"io.containerd.image.name": "docker.io/" + a.tag
                                                    if a.tag.count("/") < 2 else a.tag,
                                                    "org.opencontainers.image.ref.name": a.tag.rsplit(":", 1)[1]}}]}
            add_file(tar, "index.json", json.dumps(index).encode())
            add_file(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add_file(tar, "manifest.json", json.dumps(
            [{"Config": config_path, "RepoTags": [a.tag], "Layers": layer_paths}]).encode())

    print(f"sha256:{config_hex}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
