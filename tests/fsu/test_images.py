"""What fsu says about the image itself (issue #16 item 6, #17 defect 18 and "Also"): a FIFO
or device refused before it is opened, containers and compressed images named with how to
convert them, partitioned disks pointed at ``%N``, and why a read-write mount came up
read-only."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import pytest

from tests.fsu.conftest import fsu, need, run


def test_fifo_as_image_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.img"
    os.mkfifo(fifo)
    res = fsu("ls", fifo, "/", timeout=30)
    assert res.returncode == 2
    assert "FIFO" in res.stderr and "not an image file" in res.stderr
    res = fsu("put", fifo, "/etc/hostname", "/x", timeout=30)
    assert res.returncode == 2 and "FIFO" in res.stderr


def test_character_device_is_refused() -> None:
    res = fsu("ls", "/dev/null", "/", timeout=30)
    assert res.returncode == 2 and "character device" in res.stderr


@pytest.mark.parametrize("magic,word,tool", [
    (b"QFI\xfb\x00\x00\x00\x03" + bytes(504), "qcow2", "qemu-img convert"),
    (b"KDMV" + bytes(508), "VMDK", "qemu-img convert"),
    (b"conectix" + bytes(504), "VHD", "qemu-img convert"),
    (b"vhdxfile" + bytes(504), "VHDX", "qemu-img convert"),
])
def test_disk_containers_are_named(tmp_path: Path, magic: bytes, word: str, tool: str) -> None:
    img = tmp_path / "vm.disk"
    img.write_bytes(magic + bytes(64 * 1024))
    res = fsu("ls", img, "/")
    assert res.returncode == 2
    assert word in res.stderr and tool in res.stderr and "use -t" not in res.stderr


def test_compressed_image_is_named(tmp_path: Path, ext4_master: Path) -> None:
    gz = tmp_path / "disk.img.gz"
    with open(ext4_master, "rb") as f, gzip.open(gz, "wb") as g:
        shutil.copyfileobj(f, g)
    res = fsu("ls", gz, "/")
    assert res.returncode == 2
    assert "gzip-compressed" in res.stderr and "gunzip" in res.stderr


def test_identify_mountable(ext4_master: Path, fat_master: Path) -> None:
    from rumpkernel.client.files.sniff import identify

    assert identify(str(ext4_master)).kind == "ext"
    assert identify(str(fat_master)).kind == "fat"


def test_readonly_fallback_says_why(tmp_path: Path) -> None:
    need("mke2fs")
    img = tmp_path / "quota.img"
    run("mke2fs", "-q", "-F", "-t", "ext4", "-O", "quota", img, "8M")
    res = fsu("mkdir", img, "/new")
    assert res.returncode == 1
    assert "Read-only file system" in res.stderr
    assert "mounted read-only: features not supported for writing: quota" in res.stderr
    res = fsu(img, "--batch", input="mkdir /a\n")
    assert "quota" in res.stderr


def test_truncated_image_best_effort(tmp_path: Path, ext4_master: Path) -> None:
    img = tmp_path / "head.img"
    data = ext4_master.read_bytes()
    img.write_bytes(data[:len(data) // 2])  # head -c 8M
    res = fsu("ls", img, "/")
    assert res.returncode == 2
    assert "truncated" in res.stderr and "--best-effort" in res.stderr
    res = fsu("--best-effort", "ls", img, "/etc")
    assert res.returncode == 0, res.stderr
    assert "hostname" in res.stdout.split()
    assert "best effort" in res.stderr
    assert fsu("--best-effort", "cat", img, "/etc/hostname").stdout == "imagehost\n"
    assert img.stat().st_size == len(data) // 2  # the image itself is never written
    assert not list(Path("/tmp").glob("fsu-best-effort-*"))
