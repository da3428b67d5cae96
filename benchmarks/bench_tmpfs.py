"""tmpfs through the VFS: metadata (create/stat/unlink 10,000 files) and a large file written
and read in 1 MiB pieces, each beside the same work done through the host's ``os`` on the
host's /dev/shm, as a ratio (median of repeats).

    python benchmarks/bench_tmpfs.py [--files 10000] [--mib 256] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median_time, row

import rumpkernel


def metadata(sysmod, root: str, n: int) -> None:
    flags = os.O_CREAT | os.O_WRONLY
    for i in range(n):
        sysmod.close(sysmod.open(f"{root}/f{i}", flags, 0o644))
    for i in range(n):
        sysmod.stat(f"{root}/f{i}")
    for i in range(n):
        sysmod.unlink(f"{root}/f{i}")


def bigfile(sysmod, path: str, mib: int) -> None:
    chunk = os.urandom(1 << 20)
    fd = sysmod.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    for _ in range(mib):
        sysmod.write(fd, chunk)
    sysmod.close(fd)
    fd = sysmod.open(path, os.O_RDONLY)
    while sysmod.read(fd, 1 << 20):
        pass
    sysmod.close(fd)
    sysmod.unlink(path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    k = rumpkernel.boot()
    k.sys.mkdir("/tmp")
    k.sys.mount("tmpfs", "/tmp")
    host = tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    try:
        ours = median_time(lambda: metadata(k.sys, "/tmp", a.files), a.repeat)
        ref = median_time(lambda: metadata(os, host, a.files), a.repeat)
        print(row(f"create+stat+unlink {a.files} files", ours, ref))
        print(f"{'':44} ours {ours / a.files / 3 * 1e6:8.1f} us/op  "
              f"host {ref / a.files / 3 * 1e6:8.1f} us/op")
        ours = median_time(lambda: bigfile(k.sys, "/tmp/big", a.mib), a.repeat)
        ref = median_time(lambda: bigfile(os, f"{host}/big", a.mib), a.repeat)
        print(row(f"write+read {a.mib} MiB file (1 MiB I/O)", ours, ref))
        print(f"{'':44} ours {2 * a.mib / ours:8.0f} MiB/s  host {2 * a.mib / ref:8.0f} MiB/s")
    finally:
        shutil.rmtree(host)
        k.halt()


if __name__ == "__main__":
    main()
