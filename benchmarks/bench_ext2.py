"""Benchmarks of the ext2/3/4 driver beside the Linux kernel and mke2fs, measured in the same
run (ratios, medians of several repeats).  Needs root (loop mounts) and e2fsprogs.

    python benchmarks/bench_ext2.py [--repeats 5] [--big-mib 256]
                                                   [--block-size 4096] [--only read,copy,write]

1. read every file of a 1,000-file image: our driver vs a kernel loop mount (fresh mount each
   repeat, so neither side reads from its own file cache; the image file itself is in the host
   page cache for both);
2. copy one 256 MiB file out of an image to a host file: our driver vs kernel mount + ``cp``;
3. write the same 1,000-file tree into an empty image: our newfs + driver vs ``mke2fs -d``;
4. ``--only journal``: 200 fsync'd 4 KiB files and a 64 MiB stream, with our journal, without
   it (``nojournal``) and on a Linux loop mount (ordered data), per file / per MiB.
Our side boots a kernel and goes through the VFS and system calls (``k.mount_image``, ``k.sys``),
as a program using rumpkernel would.
"""

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

CHUNK = 1 << 20
BLOCK_SIZE = 4096


def make_tree(root: Path, nfiles: int = 1000, seed: int = 5) -> int:
    rng = random.Random(seed)
    total = 0
    for i in range(nfiles):
        d = root / f"d{i % 20:02d}" / f"sub{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        size = int(rng.expovariate(1 / 8000))
        (d / f"file{i:04d}").write_bytes(rng.randbytes(size))
        total += size
    return total


def driver_read_all(img: Path) -> int:
    k = rumpkernel.boot()
    k.mount_image(str(img), "/m", readonly=True)
    s = k.sys
    total = 0
    stack = ["/m"]
    while stack:
        d = stack.pop()
        for name in s.listdir(d):
            p = f"{d}/{name}"
            st = s.lstat(p)
            if st.st_mode & 0o170000 == 0o040000:
                stack.append(p)
            elif st.st_mode & 0o170000 == 0o100000:
                fd = s.open(p, os.O_RDONLY)
                while data := s.read(fd, CHUNK):
                    total += len(data)
                s.close(fd)
    k.halt()
    return total


def kernel_read_all(img: Path) -> int:
    with tempfile.TemporaryDirectory() as mnt:
        subprocess.run(["mount", "-o", "loop,ro", str(img), mnt], check=True)
        total = 0
        try:
            for dirpath, _, files in os.walk(mnt):
                for f in files:
                    with open(os.path.join(dirpath, f), "rb") as fh:
                        while data := fh.read(CHUNK):
                            total += len(data)
        finally:
            subprocess.run(["umount", mnt], check=True)
    return total


def driver_copy_out(img: Path, out: Path) -> None:
    k = rumpkernel.boot()
    k.mount_image(str(img), "/m", readonly=True)
    fd = k.sys.open("/m/big", os.O_RDONLY)
    with open(out, "wb") as fh:
        while data := k.sys.read(fd, CHUNK):
            fh.write(data)
    k.sys.close(fd)
    k.halt()


def kernel_copy_out(img: Path, out: Path) -> None:
    with tempfile.TemporaryDirectory() as mnt:
        subprocess.run(["mount", "-o", "loop,ro", str(img), mnt], check=True)
        try:
            subprocess.run(["cp", os.path.join(mnt, "big"), str(out)], check=True)
        finally:
            subprocess.run(["umount", mnt], check=True)


def driver_write_tree(src: Path, img: Path, size: int) -> None:
    with open(img, "wb") as f:
        f.truncate(size)
    k = rumpkernel.boot()
    k.newfs("ext4", str(img), block_size=BLOCK_SIZE)
    k.mount_image(str(img), "/m")
    s = k.sys
    flags = os.O_CREAT | os.O_WRONLY
    for dirpath, dirnames, files in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        base = "/m" if rel == "." else f"/m/{rel}"
        for d in dirnames:
            s.mkdir(f"{base}/{d}", 0o755)
        for f in files:
            with open(os.path.join(dirpath, f), "rb") as fh:
                data = fh.read()
            fd = s.open(f"{base}/{f}", flags, 0o644)
            if data:
                s.write(fd, data)
            s.close(fd)
    k.halt()


def driver_fsync_files(img: Path, n: int, journal: bool) -> None:
    """``n`` files of 4 KiB, each fsync'd (a commit per file with the journal)."""
    k = rumpkernel.boot()
    k.mount_image(str(img), "/m", options=None if journal else "nojournal")
    s = k.sys
    data = os.urandom(4096)
    for i in range(n):
        fd = s.open(f"/m/f{i}", os.O_CREAT | os.O_WRONLY, 0o644)
        s.write(fd, data)
        s.fsync(fd)
        s.close(fd)
    k.halt()


def kernel_fsync_files(img: Path, n: int) -> None:
    with tempfile.TemporaryDirectory() as mnt:
        subprocess.run(["mount", "-o", "loop", str(img), mnt], check=True)
        try:
            data = os.urandom(4096)
            for i in range(n):
                fd = os.open(os.path.join(mnt, f"f{i}"), os.O_CREAT | os.O_WRONLY, 0o644)
                os.write(fd, data)
                os.fsync(fd)
                os.close(fd)
        finally:
            subprocess.run(["umount", mnt], check=True)


def driver_stream(img: Path, mib: int, journal: bool) -> None:
    k = rumpkernel.boot()
    k.mount_image(str(img), "/m", options=None if journal else "nojournal")
    fd = k.sys.open("/m/stream", os.O_CREAT | os.O_WRONLY, 0o644)
    chunk = os.urandom(CHUNK)
    for _ in range(mib):
        k.sys.write(fd, chunk)
    k.sys.fsync(fd)
    k.sys.close(fd)
    k.halt()


def kernel_stream(img: Path, mib: int) -> None:
    with tempfile.TemporaryDirectory() as mnt:
        subprocess.run(["mount", "-o", "loop", str(img), mnt], check=True)
        try:
            chunk = os.urandom(CHUNK)
            with open(os.path.join(mnt, "stream"), "wb") as f:
                for _ in range(mib):
                    f.write(chunk)
                os.fsync(f.fileno())
        finally:
            subprocess.run(["umount", mnt], check=True)


def journal_costs(t: Path, repeats: int, nfiles: int = 200, mib: int = 64) -> None:
    """Journaled writes beside unjournaled ones and beside a Linux loop mount (default
    options: ordered data), each on a fresh empty image."""
    def fresh(name: str) -> Path:
        img = t / name
        subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", *MKE2FS_OPTS, str(img), "256M"],
                       check=True)
        return img

    rows = [("fsync'd 4 KiB files", nfiles,
             [("journal", driver_fsync_files, (nfiles, True)),
              ("nojournal", driver_fsync_files, (nfiles, False)),
              ("linux", kernel_fsync_files, (nfiles,))]),
            (f"{mib} MiB stream + fsync", mib,
             [("journal", driver_stream, (mib, True)), ("nojournal", driver_stream, (mib, False)),
              ("linux", kernel_stream, (mib,))])]
    for title, count, sides in rows:
        times = {}
        for label, fn, extra in sides:
            samples = []
            for r in range(repeats):
                img = fresh(f"j-{label}-{r}.img")
                samples.append(timed(fn, img, *extra))
            times[label] = statistics.median(samples)
        unit = "file" if "files" in title else "MiB"
        print(f"{title:28s} " + "   ".join(
            f"{lab} {v * 1000 / count:7.2f} ms/{unit}" for lab, v in times.items())
              + f"   journal/nojournal {times['journal'] / times['nojournal']:4.2f}x"
              + f"   journal/linux {times['journal'] / times['linux']:4.2f}x", flush=True)


MKE2FS_OPTS: list[str] = []


def mke2fs_tree(src: Path, img: Path, size: int) -> None:
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", *MKE2FS_OPTS, "-d", str(src), str(img),
                    f"{size // 1024}k"], check=True, stdout=subprocess.DEVNULL)


def timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def compare(name: str, ours, theirs, repeats: int) -> tuple[float, float]:
    a = [timed(*ours) for _ in range(repeats)]
    b = [timed(*theirs) for _ in range(repeats)]
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"{name:38s} driver {ma * 1000:9.1f} ms   reference {mb * 1000:9.1f} ms   "
          f"ratio {ma / mb:5.2f}x", flush=True)
    return ma, mb


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--big-mib", type=int, default=256)
    ap.add_argument("--only", default="read,copy,write,journal")
    ap.add_argument("--block-size", type=int, default=4096)
    args = ap.parse_args()
    global BLOCK_SIZE
    BLOCK_SIZE = args.block_size
    MKE2FS_OPTS[:] = ["-b", str(args.block_size)]
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        src = t / "tree"
        total = make_tree(src)
        img = t / "tree.img"
        mke2fs_tree(src, img, 128 << 20)
        print(f"1,000 files, {total / 1e6:.1f} MB; big file {args.big_mib} MiB; "
              f"ext4, {args.block_size}-byte blocks; median of {args.repeats}")
        if "read" in args.only:
            assert driver_read_all(img) == kernel_read_all(img) == total
            compare("read all files of a 1,000-file image", (driver_read_all, img),
                    (kernel_read_all, img), args.repeats)
        if "copy" in args.only:
            bigsrc = t / "bigsrc"
            bigsrc.mkdir()
            with open(bigsrc / "big", "wb") as f:
                for _ in range(args.big_mib):
                    f.write(os.urandom(1 << 20))
            bigimg = t / "big.img"
            mke2fs_tree(bigsrc, bigimg, (args.big_mib + 64) << 20)
            out1, out2 = t / "out1", t / "out2"
            compare(f"copy a {args.big_mib} MiB file out", (driver_copy_out, bigimg, out1),
                    (kernel_copy_out, bigimg, out2), args.repeats)
            assert out1.read_bytes() == out2.read_bytes() == (bigsrc / "big").read_bytes()
        if "write" in args.only:
            compare("write a 1,000-file tree (vs mke2fs -d)",
                    (driver_write_tree, src, t / "w1.img", 128 << 20),
                    (mke2fs_tree, src, t / "w2.img", 128 << 20), args.repeats)
            res = subprocess.run(["e2fsck", "-fn", str(t / "w1.img")], capture_output=True)
            print(f"e2fsck -fn of the driver-written image: rc {res.returncode}")
        if "journal" in args.only:
            journal_costs(t, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
