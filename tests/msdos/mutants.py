"""Write sessions on slightly damaged images, judged by ``fsck.fat -n`` before and after (#17
defect 19).

A clean image made by mkfs.fat + mcopy is mutated (1-12 byte changes in its metadata: boot
region, FATs, directories), ``fsck.fat -n`` lists what is wrong with it, the driver runs a write
session on it (create, write, mkdir, rename, truncate, unlink, then unmount), and ``fsck.fat -n``
looks again.  The session made the image *worse* when fsck reports a problem it did not report
before (messages compared with numbers blanked, so "Free cluster summary wrong (N vs. really M)"
counts once whatever the numbers; the dirty bit, which a session that found damage leaves set,
is a request to check, not damage).  A session that the driver refuses (a KernelError at mount or
on the first write) leaves the image as it was and is never worse.

    python -m tests.msdos.mutants [COUNT] [BITS]     -- print the counts (the issue's measurement)
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from rumpkernel.kern.errno import KernelError
from rumpkernel.vfs.bio import MemoryDevice
from rumpkernel.vfs.vattr import S_ISDIR

from .helpers import ENV, make_tree, mount_dev, mtools_image
from .test_hostile import _meta_ranges, _mutate

_NUM = re.compile(r"\d+")
_IGNORED = ("fsck.fat", "Leaving filesystem unchanged", "Checking", "Starting check",
            "Performing changes", "  Auto-correcting", "Boot sector contents",
            "Reclaiming unconnected clusters", "Free cluster summary uninitialized",
            # a session that found damage leaves the volume marked dirty: a request to check
            "Dirty bit is set", "Automatically removing dirty bit")


def base_image(workdir: Path, bits: int) -> bytes:
    tree = workdir / f"tree{bits}"
    make_tree(tree, 512, big_dir=20, depth=3)
    img = workdir / f"base{bits}.img"
    size = {12: 1440, 16: 8192, 32: 40000}[bits]
    mtools_image(img, tree, ["-F", str(bits), "-s", "1"], size)
    return img.read_bytes()


def problems(img: Path) -> set[str]:
    """What ``fsck.fat -n`` finds wrong, numbers blanked; {"<fsck rc N>"} when it gives up."""
    r = subprocess.run(["fsck.fat", "-n", str(img)], env=ENV, capture_output=True, timeout=60)
    lines = (r.stdout + r.stderr).decode("utf-8", "replace").splitlines()
    out = set()
    for line in lines:
        text = line.strip()
        if not text or text.startswith(_IGNORED) or re.match(r"^\S+: \d+ files", line):
            continue
        out.add(_NUM.sub("N", line.strip()))
    if r.returncode not in (0, 1):
        out.add(f"<fsck rc {r.returncode}>")
    return out


def session(fs, rnd: random.Random) -> int:
    """A write session; returns how many operations succeeded."""
    root = fs.vget(fs.root_ino)
    names = [e.name for e in fs.readdir(root, 0) if e.name not in (b".", b"..")]
    done = 0
    for i in range(6):
        for op in _ops(fs, root, names, i, rnd):
            try:
                op()
                done += 1
            except KernelError:
                pass
    return done


def _ops(fs, root, names, i: int, rnd: random.Random):
    state: dict = {}

    def create():
        state["n"] = fs.vget(fs.create(root, f"new file {i}.txt".encode(), 0o100644, 0, 0, 0))
        fs.write(state["n"], rnd.randrange(0, 3000), rnd.randbytes(rnd.randrange(1, 9000)))

    def mkdir():
        state["d"] = fs.vget(fs.mkdir(root, f"new dir {i}".encode(), 0o755, 0, 0))
        fs.create(state["d"], b"inner", 0o100644, 0, 0, 0)

    def touch_old():
        victim = rnd.choice(names)
        vn = fs.vget(fs.lookup(root, victim))
        if S_ISDIR(fs.getattr(vn).mode):
            return
        fs.write(vn, rnd.randrange(0, 2000), b"overwrite" * rnd.randrange(1, 300))
        if "d" in state:
            fs.rename(root, victim, vn, state["d"], b"moved", None)
        else:
            _unlink(fs, root, victim, vn)

    def truncate_new():
        from rumpkernel.vfs.vattr import SetAttr

        size = rnd.randrange(0, 4000)
        if "n" in state:
            fs.setattr(state["n"], SetAttr(size=size))

    def unlink_old():
        victim = rnd.choice(names)
        vn = fs.vget(fs.lookup(root, victim))
        if not S_ISDIR(fs.getattr(vn).mode):
            _unlink(fs, root, victim, vn)

    old = [touch_old] + ([unlink_old] if i % 2 else []) if names else []
    return [create, mkdir, truncate_new, *old]


def _unlink(fs, dnode, name: bytes, node) -> None:
    fs.unlink(dnode, name, node)
    fs.inactive(node)
    fs.reclaim(node)


def run_one(base: bytes, ranges, seed: int, img: Path) -> tuple[str, set[str]]:
    """("refused" | "worse" | "same", new problems) for mutant ``seed``."""
    rnd = random.Random(seed)
    data = _mutate(base, ranges, rnd)
    img.write_bytes(data)
    before = problems(img)
    dev = MemoryDevice(bytearray(data))
    try:
        fs = mount_dev(dev)
    except KernelError:
        return "refused", set()
    try:
        session(fs, rnd)
        fs.unmount()
    except KernelError:
        try:
            fs.unmount()
        except KernelError:
            pass
    img.write_bytes(bytes(dev.data))
    new = problems(img) - before
    return ("worse" if new else "same"), new


def measure(count: int, bits: int = 32, seed0: int = 0) -> tuple[Counter, Counter]:
    with tempfile.TemporaryDirectory(prefix="fat-mutants-") as tmp:
        work = Path(tmp)
        base = base_image(work, bits)
        ranges = _meta_ranges(base)
        outcomes: Counter = Counter()
        kinds: Counter = Counter()
        for s in range(seed0, seed0 + count):
            outcome, new = run_one(base, ranges, s, work / "m.img")
            outcomes[outcome] += 1
            kinds.update(new)
        return outcomes, kinds


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 600
    b = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    res, why = measure(n, b)
    print(f"{n} FAT{b} mutants: {dict(res)}")
    for k, v in why.most_common(15):
        print(f"  {v:4d}  {k}")
