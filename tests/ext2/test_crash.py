"""ext4, ext3 and ext2 on the crash-point test bed (issue #15, ``testing/crashbed.py``):
workloads of create / write / fsync / rename / unlink / truncate / mkdir / rmdir, an
appending log and a tree copy are recorded at the block level, and the image is rebuilt as a
power cut at each point would leave it (everything before the last flush, plus none, all, or
seeded subsets of the unflushed writes in any order; torn multi-sector writes in the soak).

ext3/ext4: after journal replay ``e2fsck -fn`` finds nothing to fix, and every file fsync'd
before the cut reads back exactly -- through our driver (and, for a sample, a Linux mount).
ext2 (no journal): ``e2fsck -fy`` may repair what a crash leaves (leaks, counts, a name
whose inode had not been written) but finds no block claimed twice, and every fsync'd file
reads back exactly after the repair."""

from __future__ import annotations

import random
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from rumpkernel.fs.ext2 import Ext2Type, Ext3Type, Ext4Type
from rumpkernel.kern.errno import KernelError
from rumpkernel.testing import crashbed
from rumpkernel.testing.crashbed import Recorder
from rumpkernel.vfs.bio import MemoryDevice
from rumpkernel.vfs.fstype import MountContext
from rumpkernel.vfs.vattr import S_IFREG, SetAttr

from .kimages import loop_mounted

pytestmark = pytest.mark.oracle
TYPES = {"ext4": Ext4Type, "ext3": Ext3Type, "ext2": Ext2Type}
NOW = 1_800_000_000 * 10**9


def mount(dev: Any, fstype: str, readonly: bool = False) -> Any:
    return TYPES[fstype].mount(MountContext(dev=dev, readonly=readonly, now_ns=lambda: NOW))


_bases: dict[str, bytes] = {}


def base(fstype: str) -> bytes:
    if fstype not in _bases:
        dev = MemoryDevice(12 << 20)
        TYPES[fstype].newfs(dev, timestamp=1_700_000_000, block_size=1024)
        _bases[fstype] = bytes(dev.data)
    return _bases[fstype]


class Session:
    """A workload's view: paths over the driver, on a recorder; fsync makes promises."""

    def __init__(self, fstype: str) -> None:
        self.rec = Recorder(MemoryDevice(bytearray(base(fstype))))
        self.fs = mount(self.rec, fstype)

    def node(self, path: str) -> Any:
        fs = self.fs
        n = fs.vget(fs.root_ino)
        for part in filter(None, path.split("/")):
            n = fs.vget(fs.lookup(n, part.encode()))
        return n

    def parent(self, path: str) -> tuple[Any, bytes]:
        head, _, name = path.rpartition("/")
        return self.node(head), name.encode()

    def create(self, path: str, data: bytes = b"") -> None:
        d, name = self.parent(path)
        n = self.fs.vget(self.fs.create(d, name, S_IFREG | 0o644, 0, 0, 0))
        if data:
            self.fs.write(n, 0, data)

    def append(self, path: str, data: bytes) -> None:
        n = self.node(path)
        self.fs.write(n, n.size, data)

    def fsync(self, path: str, data: bytes, prefix: bool = False) -> None:
        self.fs.fsync(self.node(path), False)
        self.rec.expect(path, data, prefix)

    def mkdir(self, path: str) -> None:
        d, name = self.parent(path)
        self.fs.mkdir(d, name, 0o755, 0, 0)

    def unlink(self, path: str) -> None:
        d, name = self.parent(path)
        n = self.node(path)
        self.fs.unlink(d, name, n)
        self.fs.inactive(n)

    def rmdir(self, path: str) -> None:
        d, name = self.parent(path)
        n = self.node(path)
        self.fs.rmdir(d, name, n)
        self.fs.inactive(n)

    def rename(self, src: str, dst: str, data: bytes | None) -> None:
        if data is not None:
            self.rec.expect(src, None)
            self.rec.expect(f"{src}|{dst}", data)
        sd, sname = self.parent(src)
        td, tname = self.parent(dst)
        s = self.node(src)
        try:
            t = self.fs.vget(self.fs.lookup(td, tname))
        except KernelError:
            t = None
        self.fs.rename(sd, sname, s, td, tname, t)
        if t is not None:
            self.fs.inactive(t)

    def truncate(self, path: str, size: int) -> None:
        self.fs.setattr(self.node(path), SetAttr(size=size))


def workload_files(s: Session) -> None:
    rnd = random.Random(7)
    a = rnd.randbytes(3000)
    s.create("/a.txt", a)
    s.fsync("/a.txt", a)
    s.mkdir("/dir one")
    b = rnd.randbytes(5000)
    s.create("/dir one/b.bin", b)
    s.fsync("/dir one/b.bin", b)
    s.rename("/a.txt", "/dir one/a moved.txt", a)
    s.fs.sync()
    s.rec.expect("/a.txt|/dir one/a moved.txt", None)
    s.rec.expect("/dir one/a moved.txt", a)
    c = rnd.randbytes(9000)
    s.create("/c.dat", c)
    s.fsync("/c.dat", c)
    s.rec.expect("/c.dat", c[:1000], prefix=True)       # the shrink keeps the first 1000
    s.truncate("/c.dat", 1000)
    s.fsync("/c.dat", c[:1000])
    s.rec.expect("/dir one/b.bin", None)
    s.unlink("/dir one/b.bin")
    s.mkdir("/dir two")
    s.mkdir("/dir two/empty")
    s.fs.sync()
    s.rmdir("/dir two/empty")
    d = rnd.randbytes(700)
    s.create("/dir two/d.txt", d)
    s.fsync("/dir two/d.txt", d)
    s.rec.expect("/c.dat", None)
    s.rename("/dir two/d.txt", "/c.dat", d)               # over an existing file
    s.fs.sync()
    s.rec.expect("/dir two/d.txt|/c.dat", None)
    s.rec.expect("/c.dat", d)
    s.fs.unmount()


def workload_log(s: Session) -> None:
    rnd = random.Random(11)
    s.create("/log.txt")
    so_far = b""
    for i in range(12):
        rec = f"record {i:03d} ".encode() + rnd.randbytes(rnd.randrange(100, 900))
        s.append("/log.txt", rec)
        so_far += rec
        s.fsync("/log.txt", so_far, prefix=True)
        if i % 4 == 3:
            s.create(f"/side {i}.bin", rnd.randbytes(2000))
    s.fs.unmount()


def workload_tree(s: Session) -> None:
    rnd = random.Random(13)
    files: dict[str, bytes] = {}
    for d in range(4):
        s.mkdir(f"/tree {d}")
        for f in range(6):
            path = f"/tree {d}/file {f}.bin"
            files[path] = rnd.randbytes(rnd.randrange(0, 4000))
            s.create(path, files[path])
    s.fs.sync()
    for path, data in files.items():
        s.rec.expect(path, data)
    for d in (1, 3):
        for f in range(6):
            path = f"/tree {d}/file {f}.bin"
            s.rec.expect(path, None)
            s.unlink(path)
        s.rmdir(f"/tree {d}")
    s.fs.unmount()


WORKLOADS: dict[str, Callable[[Session], None]] = {
    "files": workload_files, "log": workload_log, "tree": workload_tree}


def recorded(fstype: str, name: str) -> Session:
    s = Session(fstype)
    WORKLOADS[name](s)
    return s


def read_ours(fstype: str) -> Callable[[bytearray, list[str]], dict]:
    def read(img: bytearray, paths: list[str]) -> dict:
        try:
            fs = mount(MemoryDevice(bytearray(img), readonly=True), fstype, readonly=True)
        except KernelError as e:                  # not even mountable: everything is lost
            return {p: OSError(int(e.errno), str(e)) for p in paths}
        out: dict = {}
        try:
            for p in paths:
                try:
                    n = fs.vget(fs.root_ino)
                    for part in filter(None, p.split("/")):
                        n = fs.vget(fs.lookup(n, part.encode()))
                    out[p] = fs.read(n, 0, n.size)
                except KernelError as e:
                    out[p] = OSError(int(e.errno), str(e))
        finally:
            fs.unmount()
        return out
    return read


def e2fsck_repair(img: bytearray) -> tuple[list[str], bytearray]:
    """ext2: ``e2fsck -fy``; problems are only what a crash must never leave (blocks claimed
    twice, an uncorrected file system); returns the repaired image too."""
    out: list[bytearray] = []

    def run(path: str) -> list[str]:
        r = subprocess.run(["e2fsck", "-fy", path], capture_output=True, text=True, timeout=120)
        with open(path, "rb") as f:
            out.append(bytearray(f.read()))
        text = r.stdout
        bad = [ln for ln in text.splitlines() if "ultiply-claimed" in ln or "shared" in ln]
        if r.returncode not in (0, 1):
            bad.append(f"e2fsck exit {r.returncode}")
        return bad

    problems = crashbed._with_file(img, run)
    return problems, out[0]


def judge(s: Session, fstype: str, state: crashbed.CrashState) -> crashbed.Verdict:
    read = read_ours(fstype)
    if fstype != "ext2":
        return crashbed.judge(s.rec, state, crashbed.e2fsck, read)
    repaired: list[bytearray] = []

    def fsck(img: bytearray) -> list[str]:
        problems, fixed = e2fsck_repair(img)
        repaired.append(fixed)
        return problems

    return crashbed.judge(s.rec, state, fsck, lambda img, paths: read(repaired[0], paths))


def verdicts(s: Session, fstype: str, states: list) -> list[crashbed.Verdict]:
    return [v for v in (judge(s, fstype, st) for st in states) if not v.ok]


def report(bad: list[crashbed.Verdict]) -> str:
    return "; ".join(f"point {v.state.point} ({v.state.label}): fsck {v.fsck[:4]} "
                     f"lost {v.lost}" for v in bad[:4])


@pytest.mark.parametrize("name", list(WORKLOADS))
@pytest.mark.parametrize("fstype", list(TYPES))
def test_sampled_crash_points(fstype: str, name: str) -> None:
    s = recorded(fstype, name)
    rng = random.Random(1)
    states = crashbed.sample(crashbed.crash_states(s.rec.log, rng, per_point=2), 40, rng)
    assert len(states) >= 30
    bad = verdicts(s, fstype, states)
    assert not bad, f"{len(bad)} of {len(states)} crash states: {report(bad)}"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(WORKLOADS))
@pytest.mark.parametrize("fstype", list(TYPES))
def test_every_crash_point_and_1000_reorderings(fstype: str, name: str) -> None:
    s = recorded(fstype, name)
    rng = random.Random(2)
    every = list(crashbed.crash_states(s.rec.log, rng, per_point=64, torn=True))
    states = crashbed.sample(every, 1000, rng) if len(every) > 1000 else every
    bad = verdicts(s, fstype, states)
    assert not bad, f"{len(bad)} of {len(states)} crash states: {report(bad)}"


@pytest.mark.root
@pytest.mark.parametrize("fstype", ["ext4", "ext3"])
def test_linux_replays_crash_states(tmp_path, fstype: str) -> None:
    """A sample of crash states mounted by Linux (which replays our journal): every fsync'd
    file reads back exactly there too."""
    s = recorded(fstype, "files")
    rng = random.Random(4)
    states = crashbed.sample(crashbed.crash_states(s.rec.log, rng, per_point=1), 8, rng)
    img = tmp_path / "crash.img"
    for st in states:
        img.write_bytes(st.image(s.rec.base, s.rec.log))
        with loop_mounted(img, readonly=False) as mnt:
            got: dict = {}
            for p in crashbed.expectations_at(s.rec, st.point):
                for path in p.path.split("|"):
                    f = mnt / path.lstrip("/")
                    got[path] = f.read_bytes() if f.is_file() else OSError(2, path)
            for p in crashbed.expectations_at(s.rec, st.point):
                assert crashbed.kept(p, got), (st, p.path)
