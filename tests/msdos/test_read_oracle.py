"""Images made by mkfs.fat + mcopy (the oracle) read back through the driver, byte-exact."""

from __future__ import annotations

import pytest

from rumpkernel.testing.hostdev import HostFileDevice

from .helpers import HAVE_TOOLS, MiniVfs, host_tree, make_tree, mount_dev, mtools_image

pytestmark = [pytest.mark.oracle, pytest.mark.skipif(not HAVE_TOOLS, reason="dosfstools/mtools")]

CASES = [  # (id, mkfs args, size KiB, cluster bytes, offset sectors)
    ("fat12-floppy", ["-F", "12"], 1440, 512, 0),
    ("fat12-s4", ["-F", "12", "-s", "4"], 4096, 2048, 0),
    ("fat16", ["-F", "16"], 32768, 2048, 0),
    ("fat16-S1024", ["-F", "16", "-S", "1024", "-s", "2"], 32768, 2048, 0),
    ("fat16-S4096", ["-F", "16", "-S", "4096", "-s", "1"], 65536, 4096, 0),
    ("fat32", ["-F", "32"], 65536, 512, 0),
    ("fat32-S2048", ["-F", "32", "-S", "2048", "-s", "1"], 262144, 2048, 0),
    ("fat32-s8", ["-F", "32", "-s", "8"], 300000, 4096, 0),
    ("fat12-s128", ["-F", "12", "-s", "128"], 16384, 65536, 0),
    ("fat16-s64", ["-F", "16", "-s", "64"], 140000, 32768, 0),
    ("fat16-partition", ["-F", "16"], 16384, 2048, 2048),
    ("fat32-partition", ["-F", "32"], 65536, 512, 63),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_read_mtools_tree(tmp_path, case):
    _, args, size, cluster, offset = case
    tree = tmp_path / "tree"
    make_tree(tree, cluster, big_dir=40 if cluster > 4096 else 60)
    img = tmp_path / "img"
    mtools_image(img, tree, args, size, offset)
    log: list[str] = []
    with HostFileDevice(img, readonly=True) as dev:
        fs = mount_dev(dev, readonly=True, log=log)
        vfs = MiniVfs(fs)
        got = vfs.walk()
        want = host_tree(tree)
        assert sorted(got) == sorted(want)
        for path, data in want.items():
            assert got[path] == data, path
        for p in tree.rglob("*"):
            if p.is_file():
                rel = p.relative_to(tree).as_posix()
                st = fs.getattr(vfs.node(rel))
                assert abs(st.mtime_ns // 10**9 - int(p.stat().st_mtime)) <= 2, rel
        fs.unmount()
    assert log == []


def test_big_directory_spans_clusters(tmp_path):
    tree = tmp_path / "tree"
    make_tree(tree, 512, big_dir=300, depth=1)
    img = tmp_path / "img"
    mtools_image(img, tree, ["-F", "32"], 65536)
    with HostFileDevice(img, readonly=True) as dev:
        fs = mount_dev(dev, readonly=True)
        vfs = MiniVfs(fs)
        d = vfs.node("big dir")
        assert len(fs.dir_of(d).clusters) > 1
        names = vfs.listdir("big dir")
        assert sorted(names) == sorted(p.name for p in (tree / "big dir").iterdir())
        assert vfs.read("big dir/entry number 00299 with a long name.dat") == (
            tree / "big dir/entry number 00299 with a long name.dat").read_bytes()


def test_lookup_is_case_insensitive_and_finds_short_names(tmp_path):
    tree = tmp_path / "tree"
    make_tree(tree, 512, big_dir=3, depth=1)
    img = tmp_path / "img"
    mtools_image(img, tree, ["-F", "12"], 1440)
    with HostFileDevice(img, readonly=True) as dev:
        fs = mount_dev(dev, readonly=True)
        vfs = MiniVfs(fs)
        a = vfs.node("Mixed Case.Name")
        assert vfs.node("MIXED CASE.NAME") is a
        assert vfs.node("mixedc~1.nam") is a
        assert vfs.read("README.TXT") == (tree / "readme.txt").read_bytes()
