"""``fsu put --sync`` (``Copier(sync=True)``): when a file is reported done it is durable.  The
copy runs over a recorder (``testing/crashbed.py``); at each report, the image a power cut
right then would leave -- only what was written before the last flush -- must hold the file
with its contents, on ext4 (after journal replay) and FAT32.  Without ``sync`` the same check
finds files reported but not yet durable (which is why fsu promises nothing then)."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

import rumpkernel
from rumpkernel.client.files.copy import Copier, HostSide, KernelSide
from rumpkernel.testing import crashbed
from rumpkernel.testing.killbed import kernel_type

pytestmark = pytest.mark.skipif(not (shutil.which("mke2fs") and shutil.which("mkfs.fat")),
                                reason="e2fsprogs and dosfstools")


def _image(path: Path, fstype: str) -> Path:
    if fstype == "fat32":
        subprocess.run(["mkfs.fat", "-C", "-F", "32", str(path), "40000"], check=True,
                       capture_output=True)
    else:
        subprocess.run(["mke2fs", "-q", "-F", "-t", fstype, str(path), "16M"], check=True,
                       capture_output=True)
    return path


def _copy(tmp: Path, fstype: str, sync: bool) -> tuple[crashbed.Recorder, list, dict]:
    src = tmp / "tree"
    rnd = random.Random(3)
    files = {}
    for i in range(12):
        rel = f"d{i % 3}/file{i}"
        files[rel] = rnd.randbytes(rnd.randrange(1, 9000))
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(files[rel])
    img = _image(tmp / f"{fstype}.img", fstype)
    recs: list[crashbed.Recorder] = []
    k = rumpkernel.boot()
    try:
        crashbed.install(k, lambda dev: recs.append(crashbed.Recorder(dev)) or recs[-1])
        k.mount_image(str(img), "/m", fstype=kernel_type(fstype))
        points: list = []
        Copier(HostSide(), KernelSide(k.sys), recursive=True, sync=sync,
               done=lambda dst: points.append((len(recs[0].log), dst))).copy(str(src), "/m/c")
        k.sys.unmount("/m")
    finally:
        k.halt()
    return recs[0], points, files


def _lost(tmp: Path, fstype: str, sync: bool) -> list[str]:
    rec, points, files = _copy(tmp, fstype, sync)
    assert len(points) == len(files)
    lost = []
    for at, dst in points:
        img = crashbed.CrashState(at, ()).image(rec.base, rec.log)   # none of the unflushed
        want = files[dst.removeprefix("/m/c/")]
        got = crashbed.read_back(img, [dst.removeprefix("/m")], kernel_type(fstype))
        if got[dst.removeprefix("/m")] != want:
            lost.append(dst)
    return lost


@pytest.mark.parametrize("fstype", ["ext4", "fat32"])
def test_sync_copy_reports_only_durable_files(tmp_path: Path, fstype: str) -> None:
    assert _lost(tmp_path, fstype, sync=True) == []


@pytest.mark.parametrize("fstype", ["ext4", "fat32"])
def test_without_sync_reported_files_may_not_be_durable(tmp_path: Path, fstype: str) -> None:
    assert _lost(tmp_path, fstype, sync=False)
