"""ext2 (no journal) under a SIGKILL: the image a killed process leaves is a prefix of its
writes in issue order.  A workload is recorded on ext2 and the image rebuilt at every write
(``crashbed``, "in order" states); ``e2fsck -fy`` must never clear a name because its entry
points at a deleted inode ("Entry ... has deleted/unused inode").

Found by the kill tests (#15): the freed inode's record (links 0, dtime) was written back
before the directory block that drops its name, so a kill in between made e2fsck clear the
name -- after a rename over a file the renamed file sat in /lost+found (a rename over a file
was not atomic across a kill); the same for rmdir and the unlink of a last name.  Fixed in
the ext driver: without a journal, an inode that lost its last name is written with the
links count it had until a flush has made the removal durable, and its freed record goes
with the deferred bitmap frees, after that flush.  A kill may now leave an inode with no
name (e2fsck: /lost+found) or a links count to fix, never a name without its inode.

- ``killbed.writer`` (renames over older files, mkdir, rmdir, fsync'd files);
- every removal once, over names made durable first: unlink of a last name and of one of two
  names, rmdir, a directory renamed over an empty one, a file renamed over another across
  directories, and an unlinked file still open across a sync."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import rumpkernel
from rumpkernel.testing import crashbed, killbed

pytestmark = pytest.mark.skipif(not shutil.which("mke2fs"), reason="e2fsprogs")


class _Enough(Exception):
    pass


def _recorded(tmp: Path, workload: Callable[[Any], None]) -> crashbed.Recorder:
    img = tmp / "order.img"
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext2", "-b", "2048", "-I", "256", str(img),
                    "16M"], check=True, capture_output=True)
    recs: list[crashbed.Recorder] = []
    k = rumpkernel.boot()
    try:
        crashbed.install(k, lambda dev: recs.append(crashbed.Recorder(dev)) or recs[-1])
        k.mount_image(str(img), "/m", fstype="ext2")
        workload(k.sys)
    finally:
        k.halt()
    return recs[0]


def _cleared_names(tmp: Path, rec: crashbed.Recorder) -> list[str]:
    """e2fsck's "deleted/unused inode" lines at every in-order crash point."""
    state = tmp / "state.img"
    cleared = []
    for p in crashbed.crash_points(rec.log):
        st = crashbed.CrashState(p, tuple(crashbed._pending(rec.log, p, False, 512)))
        state.write_bytes(st.image(rec.base, rec.log))
        out = subprocess.run(["e2fsck", "-fy", str(state)], capture_output=True,
                             text=True, timeout=120).stdout
        cleared += [f"point {p}: {ln}" for ln in out.splitlines() if "deleted/unused" in ln]
    return cleared


def _writer(s: Any) -> None:
    def report(i: int) -> None:
        if i + 1 >= 8:
            raise _Enough

    try:
        killbed.writer(s, "/m", report)
    except _Enough:
        pass


def _put(s: Any, path: str, data: bytes) -> None:
    fd = s.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
    s.write(fd, data)
    s.close(fd)


def _removals(s: Any) -> None:
    for d in ("/m/gone", "/m/over", "/m/under", "/m/sub"):
        s.mkdir(d)
    for name in ("last", "two", "target", "open"):
        _put(s, f"/m/{name}", name.encode() * 3000)
    _put(s, "/m/sub/new", b"new" * 3000)
    s.link("/m/two", "/m/two2")
    s.sync()                                   # every name durable before it goes
    s.unlink("/m/last")                        # the last name: the inode is freed
    s.unlink("/m/two2")                        # one of two names: a count only
    s.rmdir("/m/gone")
    s.rename("/m/over", "/m/under")            # a directory over an empty one
    s.rename("/m/sub/new", "/m/target")        # across directories, over a file
    fd = s.open("/m/open", os.O_RDONLY)
    s.unlink("/m/open")                        # nameless but open across a sync
    s.sync()
    s.close(fd)
    s.unmount("/m")


@pytest.mark.parametrize("workload", [_writer, _removals], ids=["writer", "removals"])
def test_killed_ext2_keeps_every_name(tmp_path: Path, workload: Callable[[Any], None]) -> None:
    rec = _recorded(tmp_path, workload)
    cleared = _cleared_names(tmp_path, rec)
    assert not cleared, "\n".join(cleared[:10])
