"""Longer runs of the mutant and model tests (``-m slow``)."""

from __future__ import annotations

import random

import pytest

from rumpkernel.fs.msdos import MsdosType
from rumpkernel.testing.hostdev import HostFileDevice

from . import test_hostile as hostile
from .helpers import HAVE_TOOLS, MiniVfs, fsck, mount_dev
from .test_model import Model, _check, _step

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not HAVE_TOOLS, reason="dosfstools")]
images = hostile.images


@pytest.mark.parametrize("bits", [12, 16, 32])
def test_many_mutants(images, bits):
    image = images[bits]
    ranges = hostile._meta_ranges(image)
    for s in range(2000):
        hostile._run_mutant(image, ranges, 555_000 + s, write=s % 3 == 0)


@pytest.mark.oracle
@pytest.mark.parametrize("fat_type,seed", [(12, 11), (16, 12), (32, 13), (32, 14)])
def test_long_model_run(tmp_path, fat_type, seed):
    img = tmp_path / "img"
    with open(img, "wb") as f:
        f.truncate({12: 3 << 20, 16: 24 << 20, 32: 48 << 20}[fat_type])
    with HostFileDevice(img) as dev:
        MsdosType.newfs(dev, fat_type=fat_type, sectors_per_cluster=1 if fat_type == 32 else 0)
    rnd = random.Random(seed)
    m = Model()
    for _ in range(20):
        with HostFileDevice(img) as dev:
            fs = mount_dev(dev)
            vfs = MiniVfs(fs)
            _check(vfs, m)
            for _ in range(300):
                _make_room(fs, vfs, m, rnd)
                _step(rnd, m, vfs)
            fs.unmount()
        assert fsck(img).returncode == 0


def _make_room(fs, vfs: MiniVfs, m: Model, rnd: random.Random) -> None:
    """Keep the volume under ~60 % full: the model does not predict ENOSPC."""
    total = fs.statfs().blocks
    while fs.statfs().bfree < total * 0.4:
        files = [p for p, v in m.tree.items() if v is not None]
        if not files:
            return
        p = rnd.choice(files)
        vfs.unlink(p)
        del m.tree[p]
