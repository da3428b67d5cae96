"""makefs on the trees users have (issue #16 items 2, 3, 9; #17 defects 8, 12 and holes):
NetBSD's -M/-m, inode headroom and mke2fs's density with -s, any number of directories, a
FAT directory that cannot hold its entries, and sparse files that stay sparse."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fsu.conftest import e2fsck_clean, fsu, need, ok
from tests.fsu.test_makefs import makefs

pytestmark = pytest.mark.oracle


def _small_tree(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("box\n")
    return root


def _inodes(img: Path) -> tuple[int, int]:
    """(total, free) inodes from fsu df -i."""
    row = ok(fsu("df", "-i", img)).splitlines()[1].split()
    return int(row[1]), int(row[3])


def test_minimum_and_maximum_are_netbsd_letters(tmp_path: Path) -> None:
    tree = _small_tree(tmp_path / "t")
    img = tmp_path / "a.img"
    ok(makefs("-M", "24m", img, tree))
    assert img.stat().st_size == 24 << 20
    ok(makefs("-m", "24m", img, tree))
    assert img.stat().st_size < 24 << 20
    help_text = ok(makefs("--help"))
    assert "-M MINSIZE" in help_text and "-m MAXSIZE" in help_text


def test_sized_image_gets_mke2fs_inode_density(tmp_path: Path) -> None:
    tree = _small_tree(tmp_path / "t")
    img = tmp_path / "i.img"
    ok(makefs("-t", "ext4", "-s", "32m", img, tree))
    total, _free = _inodes(img)
    assert total == 8192  # 32 MiB / 4096, as mke2fs -d gives
    script = "".join(f"mkdir /d{i}\n" for i in range(500))
    ok(fsu(img, "--batch", input=script))
    e2fsck_clean(img)


def test_fitted_image_leaves_inode_headroom(tmp_path: Path) -> None:
    tree = _small_tree(tmp_path / "t")
    img = tmp_path / "f.img"
    ok(makefs("-t", "ext4", img, tree))
    _total, free = _inodes(img)
    assert free >= 128
    assert "25% more" in ok(makefs("--help"))


def test_options_are_listed_in_help() -> None:
    text = ok(makefs("--help"))
    for name in ("block_size", "inode_ratio", "journal_blocks", "fat_type", "cluster_size",
                 "keep-owner"):
        assert name in text
    assert "see fsu makefs --help" not in text


def test_more_directories_than_descriptors(tmp_path: Path) -> None:
    tree = tmp_path / "many"
    for i in range(1100):
        (tree / f"d{i:04d}").mkdir(parents=True)
        (tree / f"d{i:04d}" / "f").write_text(str(i))
    img = tmp_path / "many.img"
    ok(makefs("-t", "ext4", img, tree))
    e2fsck_clean(img)
    assert ok(fsu("cat", img, "/d1099/f")) == "1099"


def test_writer_keeps_few_directories_open(tmp_path: Path) -> None:
    """The descriptor cache is bounded whatever the kernel's limit is."""
    import rumpkernel
    from rumpkernel.apps.fsu.makefs import Writer
    from rumpkernel.apps.fsu.tree_scan import scan

    tree = tmp_path / "t"
    for i in range(200):
        (tree / f"d{i:03d}").mkdir(parents=True)
        (tree / f"d{i:03d}" / "f").write_text("x")
    k = rumpkernel.boot()
    try:
        k.sys.mkdir("/w")
        k.sys.mount("tmpfs", "/w")
        k.sys.chroot("/w")
        peak = [0]
        real_open = k.sys.open

        def counting_open(*a: object, **kw: object) -> int:
            fd = real_open(*a, **kw)
            peak[0] = max(peak[0], k.statistics()["open_files"])
            return fd

        w = Writer(k.sys, scan(str(tree)), fat=False)
        w.sys = type("S", (), {"__getattr__": lambda self, n: getattr(k.sys, n),
                               "open": staticmethod(counting_open)})()
        w.write()
        assert peak[0] <= Writer.DIRFDS + 4
        assert k.sys.listdir("/d199") == ["f"]
    finally:
        k.halt()


def test_fat_directory_too_full_fails_at_once(tmp_path: Path) -> None:
    tree = tmp_path / "full"
    (tree / "big").mkdir(parents=True)
    for i in range(14000):
        (tree / "big" / f"a rather long file name number {i:05d}.txt").touch()
    img = tmp_path / "full.img"
    res = makefs("-t", "fat", img, tree, timeout=60)
    assert res.returncode == 1
    assert f"{tree / 'big'}:" in res.stderr and "65536" in res.stderr
    assert "too small" not in res.stderr
    assert not img.exists()


def _sparse(path: Path, size: int, pieces: dict[int, bytes]) -> None:
    with open(path, "wb") as f:
        f.truncate(size)
        for off, data in pieces.items():
            f.seek(off)
            f.write(data)


def test_holes_stay_holes(tmp_path: Path) -> None:
    need("debugfs")
    tree = tmp_path / "sp"
    tree.mkdir()
    _sparse(tree / "sparse", 64 << 20, {0: b"head", 40 << 20: b"middle"})
    _sparse(tree / "tailhole", 8 << 20, {4096: b"x" * 100})
    img = tmp_path / "sp.img"
    ok(makefs("-t", "ext4", img, tree))
    e2fsck_clean(img)
    assert img.stat().st_size < 32 << 20  # sized for the data, not the apparent size
    for name in ("sparse", "tailhole"):
        size, blocks = ok(fsu("stat", "-c", "%s %b", img, f"/{name}")).split()
        assert int(size) == (tree / name).stat().st_size
        assert int(blocks) <= 64, name  # a few 4 KiB blocks, not megabytes
        out = tmp_path / f"{name}.out"
        ok(fsu("get", img, f"/{name}", out))
        assert out.read_bytes() == (tree / name).read_bytes()
