#!/usr/bin/env python3
"""Helpers for bench/delta.sh (python3 standard library only; deterministic output).

  delta_image.py wheels-tar OUT.tar WHEEL...
      Unpack wheels (zips) into usr/local/lib/python3.11/site-packages/ and write them as
      one layer tar, entries sorted by name, parent directories included, owner 0:0,
      numeric (no user/group names). A file keeps its zip entry's time (taken as UTC) and
      is 0755 if the zip marks it executable, else 0644; directories are 0755 with mtime
      DIR_MTIME. The same wheels always give the same bytes.

  delta_image.py oci-archive OUT.tar NAME LAYER.tar... [--gz-cache DIR]
      Write an OCI image archive (oci-layout, index.json naming the image NAME through
      org.opencontainers.image.ref.name, blobs/sha256/*): each layer tar compressed with
      `gzip -6 -n` (GNU gzip, as registries hold layers), mediaType
      application/vnd.oci.image.layer.v1.tar+gzip; config with rootfs.diff_ids = sha256 of
      each uncompressed tar. With --gz-cache the gzip of a tar is kept there under its
      diffID and reused. Archive members sorted, mtime 0, owner 0:0.

  delta_image.py cdc OLD.tar NEW.tar OUT.bin
      Content-defined chunking (gear rolling hash; min 16 KiB, average 64 KiB, max
      256 KiB) of both files; writes to OUT.bin the bytes of NEW's chunks whose sha256
      is not among OLD's chunks, in order, and prints JSON with the counts.
"""
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import tarfile
import zipfile
import calendar

SITE = "usr/local/lib/python3.11/site-packages"
DIR_MTIME = 1700000000


# ------------------------------------------------------------------ wheels-tar
def wheels_tar(out, wheels):
    files = {}   # path -> (bytes, mode, mtime)
    for whl in wheels:
        with zipfile.ZipFile(whl) as z:
            for info in z.infolist():
                if info.is_dir():
                    continue
                name = info.filename
                if name.startswith("/") or ".." in name.split("/"):
                    raise SystemExit(f"{whl}: unsafe member {name!r}")
                unix = (info.external_attr >> 16) & 0o7777
                mode = 0o755 if unix & 0o111 else 0o644
                mtime = calendar.timegm(info.date_time + (0, 0, -1))
                files[f"{SITE}/{name}"] = (z.read(info), mode, mtime)
    dirs = set()
    for p in files:
        parts = p.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    entries = sorted([(d, None) for d in dirs] + [(p, files[p]) for p in files])
    with open(out, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.GNU_FORMAT) as t:
        for path, meta in entries:
            ti = tarfile.TarInfo("./" + path)
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = ""
            if meta is None:
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
                ti.mtime = DIR_MTIME
                t.addfile(ti)
            else:
                data, mode, mtime = meta
                ti.size = len(data)
                ti.mode = mode
                ti.mtime = mtime
                t.addfile(ti, io.BytesIO(data))


# ------------------------------------------------------------------ oci-archive
def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def dumps(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def oci_archive(out, name, layers, gz_cache):
    blobs = {}   # hex -> path on disk or bytes
    diff_ids, descs = [], []
    tmpdir = gz_cache or os.path.dirname(os.path.abspath(out))
    os.makedirs(tmpdir, exist_ok=True)
    for layer in layers:
        diff = sha256_file(layer)
        gz = os.path.join(tmpdir, f"{diff}.tar.gz")
        if not os.path.exists(gz):
            with open(layer, "rb") as src, open(gz + ".tmp", "wb") as dst:
                subprocess.run(["gzip", "-6", "-n", "-c"], stdin=src, stdout=dst, check=True)
            os.replace(gz + ".tmp", gz)
        dig = sha256_file(gz)
        blobs[dig] = gz
        diff_ids.append("sha256:" + diff)
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                      "digest": "sha256:" + dig, "size": os.path.getsize(gz)})
    config = {
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": ["/bin/bash"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": f"bench/delta_image.py layer {os.path.basename(l)}"} for l in layers],
    }
    cfg = dumps(config)
    cfg_hex = hashlib.sha256(cfg).hexdigest()
    blobs[cfg_hex] = cfg
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": "sha256:" + cfg_hex, "size": len(cfg)},
        "layers": descs,
    }
    man = dumps(manifest)
    man_hex = hashlib.sha256(man).hexdigest()
    blobs[man_hex] = man
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": "sha256:" + man_hex, "size": len(man),
                       "annotations": {"org.opencontainers.image.ref.name": name}}],
    }

    def info(path, size, typ=tarfile.REGTYPE):
        ti = tarfile.TarInfo(path)
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = ""
        ti.mtime = 0
        ti.type = typ
        ti.mode = 0o755 if typ == tarfile.DIRTYPE else 0o644
        ti.size = size
        return ti

    with open(out + ".tmp", "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.GNU_FORMAT) as t:
        for d in ("blobs", "blobs/sha256"):
            t.addfile(info(d, 0, tarfile.DIRTYPE))
        for hx in sorted(blobs):
            b = blobs[hx]
            if isinstance(b, bytes):
                t.addfile(info(f"blobs/sha256/{hx}", len(b)), io.BytesIO(b))
            else:
                with open(b, "rb") as src:
                    t.addfile(info(f"blobs/sha256/{hx}", os.path.getsize(b)), src)
        idx = dumps(index)
        t.addfile(info("index.json", len(idx)), io.BytesIO(idx))
        lay = dumps({"imageLayoutVersion": "1.0.0"})
        t.addfile(info("oci-layout", len(lay)), io.BytesIO(lay))
    os.replace(out + ".tmp", out)
    print(json.dumps({"name": name, "manifest": "sha256:" + man_hex, "config": "sha256:" + cfg_hex,
                      "layers": [d["digest"] for d in descs], "diff_ids": diff_ids}))


# ------------------------------------------------------------------ cdc
MIN_SIZE, AVG_SIZE, MAX_SIZE = 16 << 10, 64 << 10, 256 << 10
# Fixed table (seeded), so chunk boundaries are the same on every run.
_rng = random.Random(0x6765617263646321)
GEAR = [_rng.getrandbits(64) for _ in range(256)]
M64 = (1 << 64) - 1


def chunks(data):
    """Gear CDC: no cut in the first MIN_SIZE bytes of a chunk; after that, cut after
    the byte where the 64-bit gear hash h = (h << 1) + GEAR[b] falls below
    2^64 / (AVG_SIZE - MIN_SIZE) (probability 1/48Ki per byte, so chunks average
    about 16 + 48 = 64 KiB), or at MAX_SIZE. The hash's bits depend only on the last
    64 bytes (older ones are shifted out), so it is a 64-byte rolling window: it is
    primed over the 64 bytes before the first possible cut."""
    n = len(data)
    gear = GEAR
    out = []
    start = 0
    limit = (1 << 64) // (AVG_SIZE - MIN_SIZE)
    mv = memoryview(data)
    while start < n:
        end = min(start + MAX_SIZE, n)
        i = start + MIN_SIZE
        if i >= end:
            out.append((start, end))
            start = end
            continue
        h = 0
        for b in mv[i - 64:i]:
            h = ((h << 1) + gear[b]) & M64
        cut = end
        for j in range(i, end):
            h = ((h << 1) + gear[data[j]]) & M64
            if h < limit:
                cut = j + 1
                break
        out.append((start, cut))
        start = cut
    return out


def cdc(old_path, new_path, out_path):
    old = open(old_path, "rb").read()
    new = open(new_path, "rb").read()
    old_set = {hashlib.sha256(old[a:b]).digest() for a, b in chunks(old)}
    new_chunks = chunks(new)
    missing = 0
    missing_bytes = 0
    with open(out_path, "wb") as f:
        for a, b in new_chunks:
            if hashlib.sha256(new[a:b]).digest() not in old_set:
                f.write(new[a:b])
                missing += 1
                missing_bytes += b - a
    print(json.dumps({"old_chunks": len(old_set), "new_chunks": len(new_chunks),
                      "new_bytes": len(new), "missing_chunks": missing,
                      "missing_bytes": missing_bytes,
                      "avg_chunk": len(new) // max(1, len(new_chunks))}))


def main(argv):
    if len(argv) >= 3 and argv[0] == "wheels-tar":
        wheels_tar(argv[1], argv[2:])
    elif len(argv) >= 4 and argv[0] == "oci-archive":
        args = list(argv[1:])
        gz_cache = None
        if "--gz-cache" in args:
            k = args.index("--gz-cache")
            gz_cache = args[k + 1]
            del args[k:k + 2]
        oci_archive(args[0], args[1], args[2:], gz_cache)
    elif len(argv) == 4 and argv[0] == "cdc":
        cdc(*argv[1:])
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
