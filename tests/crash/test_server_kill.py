"""Whole-process crashes (issue #15): a ``rump_server`` serving an image (``-d``) to a remote
client (sysproxy) that mounts it and writes and fsyncs files (``killbed.writer``: churn of
unsynced files, renames over older ones, mkdirs, then ``f{i}`` fsync'd and reported).

- SIGKILL the *server* at a seeded random moment: after replay the image is consistent (the
  rules of ``killbed.judge``: ext3/4 clean after e2fsck's replay and after ours, ext2 only
  leaks and counts for ``e2fsck -fy``, FAT only leaks, counts and the dirty bit -- never two
  names sharing a chain: the writer's renames stay in one directory and the driver does them
  by one sector write), and every file the client saw fsync() return for reads back exactly
  through our driver -- and, for a sample of the ext kills, through a Linux loop mount.
- SIGKILL the *client*: the server lives on, a new client reads every fsync'd file back, and
  a SIGTERM then shuts the server down cleanly: the image needs nothing at all (``e2fsck -fn``
  clean without a replay, ``fsck.fat -n`` without even the dirty bit).

2 server kills and 1 client kill per file system by default; 60 and 20 behind ``-m slow``.
"""

from __future__ import annotations

import collections
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rumpkernel.testing import killbed
from rumpkernel.testing.remote import ServerProcess

FSTYPES = ("ext4", "ext3", "ext2", "fat32")
pytestmark = pytest.mark.skipif(not all(shutil.which(t) for t in ("mke2fs", "e2fsck",
                                                                  "mkfs.fat", "fsck.fat")),
                                reason="e2fsprogs and dosfstools")
STATS: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
IMAGES: dict[str, bytes] = {}


def _image(fstype: str, path: Path) -> Path:
    if fstype not in IMAGES:
        if fstype == "fat32":
            subprocess.run(["mkfs.fat", "-C", "-F", "32", str(path), "40000"], check=True,
                           capture_output=True)
        else:
            block = {"ext4": "1024", "ext3": "4096", "ext2": "2048"}[fstype]
            subprocess.run(["mke2fs", "-q", "-F", "-t", fstype, "-b", block, "-I", "256", "-E",
                            "lazy_itable_init=0", str(path), "32M"], check=True,
                           capture_output=True)
        IMAGES[fstype] = path.read_bytes()
    path.write_bytes(IMAGES[fstype])
    return path


class Run:
    """One served image and its writing client."""

    def __init__(self, tmp: Path, fstype: str, n: int) -> None:
        self.fstype = fstype
        self.img = _image(fstype, tmp / f"served-{os.getpid()}-{n}.img")
        url = f"unix://{tmp}/killtest-{os.getpid()}-{n}.sock"
        self.srv = ServerProcess(url, "-d", f"key=/dk,hostpath={self.img},size=host")
        self.client = subprocess.Popen(
            [sys.executable, "-m", "rumpkernel.testing.killbed", "remote", url,
             killbed.kernel_type(fstype), "/dk"], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=killbed.python_env(), text=True)
        try:
            self.first = killbed.first_line(self.client, 60)    # mounted, writing
        except BaseException:
            self.close()
            raise

    def synced(self, timeout: float = 30) -> int:
        """The last index the client reported fsync'd (it ends when the server is gone)."""
        try:
            out, _ = self.client.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.client.kill()
            out, _ = self.client.communicate()
        nums = [int(x) for x in (self.first + out).split()]
        return nums[-1] if nums else -1

    def close(self) -> None:
        for p in (self.client, self.srv.proc):
            if p.poll() is None:
                p.kill()
            p.wait(30)
        self.client.communicate(timeout=30)         # closes its pipes
        self.srv.close()
        for f in (self.img, Path(self.srv.url[len("unix://"):])):
            f.unlink(missing_ok=True)


def _linux(img: Path, synced: int, tmp: Path) -> list[str]:
    from tests.ext2.kimages import loop_mounted

    copy = tmp / f"linux-{os.getpid()}.img"
    shutil.copyfile(img, copy)
    try:
        with loop_mounted(copy, readonly=False) as mnt:
            got = {p: (mnt / p[1:]).read_bytes() for p in killbed.promised(synced)
                   if (mnt / p[1:]).exists()}
    finally:
        copy.unlink()
    return killbed.broken_promises(got, synced, "Linux")


def kill_server(tmp: Path, fstype: str, delay: float, n: int, linux: bool) -> list[str]:
    r = Run(tmp, fstype, n)
    try:
        time.sleep(delay)
        alive = r.srv.proc.poll() is None
        r.srv.proc.send_signal(signal.SIGKILL)
        r.srv.proc.wait(30)
        synced = r.synced()
        problems = [] if alive else [f"the server ended by itself: {r.srv.stderr[-500:]}"]
        j = killbed.judge(r.img, fstype, tmp)    # FAT: no rename window (one-sector renames)
        problems += j.problems
        problems += killbed.broken_promises(killbed.read_tree(j.readable or r.img, fstype),
                                            synced, "ours")
        if linux and fstype != "fat32" and os.geteuid() == 0:
            problems += _linux(j.readable or r.img, synced, tmp)
        _count(fstype, "server kills", synced, j, problems)
        return [f"server kill {n} ({fstype}, {delay:.2f} s, f0..f{synced} fsync'd): {p}"
                for p in problems]
    finally:
        r.close()


def kill_client(tmp: Path, fstype: str, delay: float, n: int) -> list[str]:
    r = Run(tmp, fstype, n)
    try:
        time.sleep(delay)
        r.client.send_signal(signal.SIGKILL)
        synced = r.synced()
        problems = [] if r.srv.proc.poll() is None else ["the server died with its client"]
        if not problems:
            with r.srv.connect() as c:                 # still serving, the files are there
                got = {p: _read(c.sys, "/m" + p) for p in killbed.promised(synced)}
            problems += killbed.broken_promises(got, synced, "live, through the server")
            rc = r.srv.stop(signal.SIGTERM)
            if rc != 0:
                problems.append(f"rump_server exit {rc} at SIGTERM: {r.srv.stderr[-500:]}")
        problems += _clean(r.img, fstype)
        problems += killbed.broken_promises(killbed.read_tree(r.img, fstype), synced, "ours")
        _count(fstype, "client kills", synced, None, problems)
        return [f"client kill {n} ({fstype}, {delay:.2f} s, f0..f{synced} fsync'd): {p}"
                for p in problems]
    finally:
        r.close()


def _read(s, path: str) -> bytes | OSError:
    try:
        fd = s.open(path, os.O_RDONLY)
    except OSError as e:
        return e
    try:
        parts = []
        while chunk := s.read(fd, 1 << 20):
            parts.append(chunk)
        return b"".join(parts)
    finally:
        s.close(fd)


def _clean(img: Path, fstype: str) -> list[str]:
    """After a clean shutdown the image needs nothing: no replay, no repair, no dirty bit."""
    if fstype == "fat32":
        r = subprocess.run(["fsck.fat", "-n", str(img)], capture_output=True, text=True,
                           timeout=120, env=killbed.python_env())
        lines = [ln for ln in (r.stdout + r.stderr).splitlines()
                 if ln.strip() and not ln.startswith(("fsck.fat ", str(img)))]
        return [f"fsck.fat -n after shutdown: {ln}" for ln in lines][:10]
    r = subprocess.run(["e2fsck", "-fn", str(img)], capture_output=True, text=True,
                       timeout=120)
    if r.returncode == 0:
        return []
    return [f"e2fsck -fn after shutdown (no replay) exit {r.returncode}",
            *r.stdout.splitlines()[:20]]


def _count(fstype: str, kind: str, synced: int, j: killbed.Judged | None,
           problems: list[str]) -> None:
    c = STATS[fstype]
    c[kind] += 1
    c[f"fsync'd files checked ({kind})"] += synced + 1
    c["kills with allowed repairs"] += bool(j and j.repairs)
    c["failed kills"] += bool(problems)
    for kind in killbed.repair_kinds(j) if j else ():
        c[f"repair: {kind}"] += 1


def run_kills(tmp: Path, fstype: str, servers: int, clients: int, seed: int) -> list[str]:
    rnd = random.Random(seed)
    problems = []
    for n in range(servers):
        problems += kill_server(tmp, fstype, rnd.uniform(0.0, 1.5), n, linux=n % 3 == 0)
    for n in range(clients):
        problems += kill_client(tmp, fstype, rnd.uniform(0.0, 1.5), servers + n)
    return problems


@pytest.mark.parametrize("fstype", FSTYPES)
def test_server_and_client_killed(tmp_path: Path, fstype: str) -> None:
    problems = run_kills(tmp_path, fstype, 2, 1, seed=1)
    assert not problems, "\n".join(problems[:30])


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("fstype", FSTYPES)
def test_server_killed_sixty_times(tmp_path: Path, fstype: str) -> None:
    problems = run_kills(tmp_path, fstype, 60, 20, seed=2)
    print(f"\n{fstype}: {dict(STATS[fstype])}")
    assert not problems, "\n".join(problems[:30])
