"""Benchmark: a 1,000-small-file tree written into an empty FAT32 image and read back, through
our driver (FileSystem object driven directly) beside mkfs.fat + mcopy -s and mcopy out.

Run:  PYTHONPATH=src python benchmarks/bench_msdos.py [--files 1000] [--repeat 5]
Prints medians and the ratio ours/reference measured in the same run (lower is better)."""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rumpkernel.fs.msdos import MsdosType
from rumpkernel.testing.hostdev import HostFileDevice
from rumpkernel.vfs.fstype import MountContext
from rumpkernel.vfs.vattr import S_IFREG

ENV = dict(os.environ, MTOOLS_SKIP_CHECK="1", LC_ALL="C.UTF-8")
SIZE_KIB = 65536


def make_tree(root: Path, nfiles: int) -> list[tuple[str, bytes]]:
    rnd = random.Random(42)
    files = []
    for i in range(nfiles):
        d = f"dir {i // 100:02d}"
        name = f"{d}/small file number {i:04d}.txt"
        files.append((name, rnd.randbytes(rnd.randrange(100, 4000))))
    for name, data in files:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return files


def _mount(img: Path):
    dev = HostFileDevice(img)
    ctx = MountContext(dev=dev, options={}, now_ns=lambda: 1_700_000_000 * 10**9)
    return dev, MsdosType.mount(ctx)


def ours_write(img: Path, files) -> float:
    if img.exists():
        img.unlink()
    t0 = time.perf_counter()
    with open(img, "wb") as f:
        f.truncate(SIZE_KIB * 1024)
    dev = HostFileDevice(img)
    MsdosType.newfs(dev, fat_type=32)
    dev.close()
    dev, fs = _mount(img)
    root = fs.vget(fs.root_ino)
    dirs: dict[str, object] = {}
    for name, data in files:
        dname, _, fname = name.partition("/")
        d = dirs.get(dname)
        if d is None:
            d = dirs[dname] = fs.vget(fs.mkdir(root, dname.encode(), 0o755, 0, 0))
        n = fs.vget(fs.create(d, fname.encode(), S_IFREG | 0o644, 0, 0, 0))
        fs.write(n, 0, data)
    fs.unmount()
    dev.close()
    return time.perf_counter() - t0


def ours_read(img: Path, files) -> float:
    t0 = time.perf_counter()
    dev, fs = _mount(img)
    root = fs.vget(fs.root_ino)
    total = 0
    for e in fs.readdir(root, 0):
        if e.name in (b".", b".."):
            continue
        d = fs.vget(e.ino)
        cookie = 0
        while batch := fs.readdir(d, cookie):
            cookie = batch[-1].cookie
            for f in batch:
                if f.name in (b".", b".."):
                    continue
                n = fs.vget(fs.lookup(d, f.name))
                total += len(fs.read(n, 0, fs.getattr(n).size))
    fs.unmount()
    dev.close()
    assert total == sum(len(d) for _, d in files)
    return time.perf_counter() - t0


def ref_write(img: Path, src: Path) -> float:
    if img.exists():
        img.unlink()
    t0 = time.perf_counter()
    subprocess.run(["mkfs.fat", "-C", "-F", "32", str(img), str(SIZE_KIB)], env=ENV,
                   check=True, capture_output=True)
    subprocess.run(["mcopy", "-s", "-i", str(img), *map(str, sorted(src.iterdir())), "::/"],
                   env=ENV, check=True, capture_output=True)
    return time.perf_counter() - t0


def ref_read(img: Path, out: Path) -> float:
    subprocess.run(["rm", "-rf", str(out)], check=True)
    out.mkdir()
    t0 = time.perf_counter()
    subprocess.run(["mcopy", "-s", "-n", "-i", str(img), "::/*", str(out)], env=ENV,
                   check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        files = make_tree(t / "src", args.files)
        res: dict[str, list[float]] = {k: [] for k in ("ow", "rw", "or", "rr")}
        for _ in range(args.repeat):
            res["rw"].append(ref_write(t / "ref.img", t / "src"))
            res["ow"].append(ours_write(t / "ours.img", files))
            res["rr"].append(ref_read(t / "ref.img", t / "out"))
            res["or"].append(ours_read(t / "ours.img", files))
        fsck = subprocess.run(["fsck.fat", "-n", str(t / "ours.img")], capture_output=True)
        med = {k: statistics.median(v) for k, v in res.items()}
        print(f"{args.files} files, median of {args.repeat}; fsck.fat on our image: "
              f"rc={fsck.returncode}")
        print(f"write: ours {med['ow']*1000:8.1f} ms   mkfs.fat+mcopy -s {med['rw']*1000:8.1f} ms"
              f"   ratio {med['ow']/med['rw']:.2f}")
        print(f"read:  ours {med['or']*1000:8.1f} ms   mcopy -s out      {med['rr']*1000:8.1f} ms"
              f"   ratio {med['or']/med['rr']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
