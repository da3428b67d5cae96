"""Every fsu message names the path and the reason (issue #16 item 4): the kernel's detail
without ``-v``, the file a failed copy was writing, the link ``ln`` could not make, honest
``put -v`` counts, and which of blocks or inodes ran out."""

from __future__ import annotations

from pathlib import Path

from tests.fsu.conftest import fsu, need, ok, run


def _tiny_ext2(tmp_path: Path, *extra: str) -> Path:
    need("mke2fs")
    img = tmp_path / "tiny.img"
    run("mke2fs", "-q", "-F", "-t", "ext2", *extra, img, "1M")
    return img


def test_enospc_names_the_file_and_the_reason(tmp_path: Path) -> None:
    img = _tiny_ext2(tmp_path)
    small = tmp_path / "small"
    small.write_text("fits\n")
    big = tmp_path / "big"
    big.write_bytes(b"x" * (3 << 20))
    res = fsu("put", "-v", img, small, big, "/")
    assert res.returncode == 1
    assert "fsu put: /big: No space left on device (ext: no free blocks)" in res.stderr
    # only the file that arrived is counted, and the failure is too
    assert "copied 1 file (5 bytes); 1 failed" in res.stderr
    assert ok(fsu("ls", img, "/")).split() == ["lost+found", "small"]


def test_inode_exhaustion_is_named(tmp_path: Path) -> None:
    img = _tiny_ext2(tmp_path, "-N", "16")
    script = "".join(f"mkdir /d{i}\n" for i in range(12))
    res = fsu(img, "--batch", input=script)
    assert res.returncode == 1
    assert "No space left on device" in res.stderr and "inode" in res.stderr, res.stderr


def test_kernel_detail_without_verbose(tmp_path: Path, fat_img: Path) -> None:
    res = fsu("ln", "-s", fat_img, "/vmlinuz", "/vm")
    assert res.returncode == 1
    assert "'/vm'" in res.stderr and "msdos has no symbolic links" in res.stderr, res.stderr


def test_detail_that_repeats_the_name_is_dropped(ext4_img: Path) -> None:
    res = fsu("ls", ext4_img, "/nope")
    assert res.stderr.strip() == "fsu ls: /nope: No such file or directory"
    res = fsu("rmdir", ext4_img, "/")
    assert "Invalid argument (" in res.stderr  # "cannot remove '.'": more than the errno says


def test_hard_link_to_missing_target_names_the_target(ext4_img: Path) -> None:
    res = fsu("ln", ext4_img, "/missing", "/new")
    assert res.returncode == 1
    assert res.stderr.startswith("fsu ln: /missing: No such file or directory"), res.stderr
