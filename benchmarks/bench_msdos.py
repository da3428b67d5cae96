"""Benchmark: a 1,000-small-file tree written into an empty FAT32 image and read back through a
booted kernel (newfs, mount_image, then system calls through the VFS), beside mkfs.fat +
mcopy -s and mcopy out.  Both sides write the read-back files to host files.

Run:  python benchmarks/bench_msdos.py [--files 1000] [--repeat 5]
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

import rumpkernel

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


def ours_write(img: Path, files) -> float:
    if img.exists():
        img.unlink()
    t0 = time.perf_counter()
    with open(img, "wb") as f:
        f.truncate(SIZE_KIB * 1024)
    k = rumpkernel.boot()
    k.newfs("msdos", str(img), fat_type=32)
    k.mount_image(str(img), "/fat", fstype="msdos")
    s = k.sys
    made: set[str] = set()
    flags = os.O_CREAT | os.O_WRONLY
    for name, data in files:
        dname = name.partition("/")[0]
        if dname not in made:
            s.mkdir(f"/fat/{dname}", 0o755)
            made.add(dname)
        fd = s.open(f"/fat/{name}", flags, 0o644)
        s.write(fd, data)
        s.close(fd)
    k.halt()
    return time.perf_counter() - t0


def ours_read(img: Path, files, out: Path) -> float:
    subprocess.run(["rm", "-rf", str(out)], check=True)
    out.mkdir()
    t0 = time.perf_counter()
    k = rumpkernel.boot()
    k.mount_image(str(img), "/fat", readonly=True)
    s = k.sys
    total = 0
    for d in s.listdir("/fat"):
        (out / d).mkdir()
        for f in s.listdir(f"/fat/{d}"):
            fd = s.open(f"/fat/{d}/{f}", os.O_RDONLY)
            data = s.read(fd, 1 << 20)
            s.close(fd)
            (out / d / f).write_bytes(data)
            total += len(data)
    k.halt()
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
            res["or"].append(ours_read(t / "ours.img", files, t / "out2"))
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
