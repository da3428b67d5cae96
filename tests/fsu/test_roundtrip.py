"""put -r -p then get -r -p gives the tree back: bytes, modes, mtimes, symlinks, hard links,
owners -- into images made by mke2fs, by the kernel's newfs and by mkfs.fat."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

import rumpkernel
from tests.fsu.conftest import e2fsck_clean, fsck_fat_clean, fsu, ok, run, snapshot, stamp_tree


def generated_tree(root: Path, seed: int, *, fat: bool) -> Path:
    """A random tree: nested directories, files of many sizes (empty to 1 MiB), names with
    spaces and non-ASCII, and (not for FAT) symlinks, hard links, odd modes."""
    rnd = random.Random(seed)
    root.mkdir()
    dirs = [root]
    files: list[Path] = []
    for i in range(60):
        parent = rnd.choice(dirs)
        if rnd.random() < 0.2:
            d = parent / f"dir {i}" if i % 3 == 0 else parent / f"d{i}é"
            d.mkdir()
            dirs.append(d)
            continue
        f = parent / f"file-{i}.{rnd.choice(['txt', 'bin', 'dat'])}"
        size = rnd.choice([0, 1, 511, 512, 4095, 4096, 4097, 70000, 1 << 20])
        f.write_bytes(rnd.randbytes(size))
        files.append(f)
        if not fat:
            os.chmod(f, rnd.choice([0o644, 0o600, 0o755, 0o444, 0o2755]))
    if not fat:
        for j, f in enumerate(rnd.sample(files, 5)):
            os.symlink(os.path.relpath(f, root), root / f"link{j}")
        os.symlink("/absolute/target", root / "abs")
        for j, f in enumerate(rnd.sample(files, 3)):
            os.link(f, f.parent / f"hard{j}")
        os.chmod(dirs[-1], 0o750)
    stamp_tree(root)
    return root


def roundtrip(img: Path, src: Path, out: Path, *, fat: bool) -> None:
    ok(fsu("put", img, "-r", "-p", src, "/tree"))
    ok(fsu("get", img, "-r", "-p", "/tree", out))
    want = snapshot(src, modes=not fat, links=not fat, owners=not fat)
    got = snapshot(out, modes=not fat, links=not fat, owners=not fat)
    assert got == want
    res = fsu("diff", img, "--meta" if not fat else "-q", "/tree", src)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("seed", [1, 2])
def test_roundtrip_ext4_mke2fs(tmp_path: Path, seed: int) -> None:
    img = tmp_path / "e.img"
    run("mke2fs", "-q", "-F", "-t", "ext4", img, "32M")
    src = generated_tree(tmp_path / "src", seed, fat=False)
    roundtrip(img, src, tmp_path / "out", fat=False)
    e2fsck_clean(img)


def test_roundtrip_ext2_kernel_newfs(tmp_path: Path) -> None:
    img = tmp_path / "n.img"
    with open(img, "wb") as f:
        f.truncate(32 << 20)
    k = rumpkernel.boot()
    try:
        k.newfs("ext2", str(img))
    finally:
        k.halt()
    src = generated_tree(tmp_path / "src", 3, fat=False)
    roundtrip(img, src, tmp_path / "out", fat=False)
    e2fsck_clean(img)


def test_roundtrip_fat(tmp_path: Path) -> None:
    img = tmp_path / "f.img"
    run("mkfs.fat", "-C", img, str(32 * 1024))
    src = generated_tree(tmp_path / "src", 4, fat=True)
    roundtrip(img, src, tmp_path / "out", fat=True)
    fsck_fat_clean(img)


def test_get_into_existing_dir_and_preserve(tmp_path: Path, ext4_img: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    ok(fsu("get", ext4_img, "-rp", "/etc", "/bin", out))
    assert os.readlink(out / "etc" / "alias") == "hostname"
    assert (out / "bin" / "suid").stat().st_mode & 0o4000
    assert (out / "etc" / "hostname").stat().st_mtime_ns % 10**9 == 0
