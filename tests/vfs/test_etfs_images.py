"""etfs, block devices over host files, mount_image (probing, partitions, offsets), newfs,
devices, memory limits and the vnode cache limit."""

from __future__ import annotations

import errno
import os
import struct
import subprocess
from pathlib import Path

import pytest

import rumpkernel
from rumpkernel.testing.plugin import halt_report


@pytest.fixture
def k():
    k = rumpkernel.boot()
    yield k
    if not k.dead:
        k.halt()
        assert not halt_report(k)


def test_etfs_regular_file(k, tmp_path: Path) -> None:
    host = tmp_path / "hostfile"
    host.write_bytes(b"from the host")
    k.etfs_register("/etc/config", str(host), "reg")
    fd = k.sys.open("/etc/config", os.O_RDWR)
    assert k.sys.read(fd, 100) == b"from the host"
    k.sys.pwrite(fd, b"HOST", 9)
    k.sys.close(fd)
    assert host.read_bytes() == b"from the HOST"             # writes reach the host file
    assert k.sys.stat("/etc/config").st_size == 13
    with pytest.raises(OSError):
        k.etfs_register("/etc/config", str(host), "reg")       # key taken
    k.etfs_remove("/etc/config")
    assert not k.sys.access("/etc/config", os.F_OK)


def test_etfs_errors(k, tmp_path: Path) -> None:
    with pytest.raises(OSError) as ei:
        k.etfs_register("/x", str(tmp_path / "missing"), "reg")
    assert ei.value.errno == errno.ENOENT
    with pytest.raises(OSError):
        k.etfs_register("/x", str(tmp_path), "reg")            # a directory as a file
    with pytest.raises(OSError):
        k.etfs_register("relative", str(tmp_path), "dir")
    with pytest.raises(OSError):
        k.etfs_register("/x", str(tmp_path), "socket")


def test_etfs_directory_mapping(k, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"A")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_bytes(b"B")
    k.etfs_register("/host", str(tmp_path), "dir")
    k.etfs_register("/deep", str(tmp_path), "dir_subdirs")
    assert sorted(k.sys.listdir("/host")) == ["a.txt"]         # files only
    fd = k.sys.open("/deep/sub/b.txt", os.O_RDONLY)
    assert k.sys.read(fd, 10) == b"B"
    k.sys.close(fd)
    assert sorted(k.sys.listdir("/deep")) == ["a.txt", "sub"]


def test_etfs_block_device_raw_access(k, tmp_path: Path) -> None:
    img = tmp_path / "disk"
    img.write_bytes(bytes(range(256)) * 16)
    k.etfs_register("/dev/disk0", str(img), "blk", offset=512, size=2048)
    st = k.sys.stat("/dev/disk0")
    assert st.st_mode & 0o170000 == 0o060000
    fd = k.sys.open("/dev/disk0", os.O_RDWR)
    assert k.sys.pread(fd, 4, 0) == bytes([0, 1, 2, 3])       # byte 512 of the host file
    assert k.sys.pread(fd, 10, 2046) == bytes([254, 255])      # the window ends at 2048
    k.sys.pwrite(fd, b"\xff\xee", 1)
    k.sys.close(fd)
    data = img.read_bytes()
    assert data[513:515] == b"\xff\xee" and data[:512] == (bytes(range(256)) * 2)


def test_mount_image_probes_and_names_the_types_tried(k, tmp_path: Path) -> None:
    junk = tmp_path / "junk.img"
    junk.write_bytes(os.urandom(1 << 20))
    with pytest.raises(OSError) as ei:
        k.mount_image(str(junk), "/mnt")
    msg = str(ei.value)
    assert "no file system recognised" in msg and "ext2" in msg and "msdos" in msg
    assert k.vfs.api.etfs == {}                                 # nothing left behind


def test_mount_image_missing_file(k, tmp_path: Path) -> None:
    with pytest.raises(OSError) as ei:
        k.mount_image(str(tmp_path / "nope.img"), "/mnt")
    assert ei.value.errno == errno.ENOENT


def _mbr(parts: list[tuple[int, int, int]]) -> bytes:
    sector = bytearray(512)
    for i, (ptype, lba, count) in enumerate(parts):
        struct.pack_into("<B3xB3xII", sector, 446 + 16 * i, 0, ptype, lba, count)
    sector[510:512] = b"\x55\xaa"
    return bytes(sector)


def test_mount_image_partition_and_offset(k, tmp_path: Path) -> None:
    fsimg = tmp_path / "part.img"
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", str(fsimg), "8M"], check=True)
    k2 = rumpkernel.boot()
    k2.mount_image(str(fsimg), "/m")
    fd = k2.sys.open("/m/marker", os.O_CREAT | os.O_WRONLY, 0o644)
    k2.sys.write(fd, b"in partition 2")
    k2.sys.close(fd)
    k2.halt()
    disk = tmp_path / "disk.img"
    body = fsimg.read_bytes()
    start = 4096  # sectors
    with disk.open("wb") as f:
        f.write(_mbr([(0x0C, 2048, 2048), (0x83, start, len(body) // 512)]))
        f.seek(start * 512)
        f.write(body)
    assert k.mount_image(str(disk), "/p", partition=2) == "ext2"
    fd = k.sys.open("/p/marker", os.O_RDONLY)
    assert k.sys.read(fd, 100) == b"in partition 2"
    k.sys.close(fd)
    k.sys.unmount("/p")
    k.mount_image(str(disk), "/o", offset=start * 512, readonly=True)
    assert "marker" in k.sys.listdir("/o")
    with pytest.raises(OSError) as ei:
        k.mount_image(str(disk), "/q", partition=3)
    assert "no partition 3" in str(ei.value)
    with pytest.raises(OSError) as ei:                         # the whole disk: no fs there
        k.mount_image(str(disk), "/r")
    msg = str(ei.value)
    assert ei.value.errno == errno.EINVAL and f"{disk}:" in msg and "/dev/img" not in msg
    assert "partitions 1, 2" in msg and "partition=N" in msg


def test_newfs_then_mount(k, tmp_path: Path) -> None:
    img = tmp_path / "new.img"
    img.write_bytes(bytes(16 << 20))
    k.newfs("ext4", str(img), label="fresh")
    k.mount_image(str(img), "/n")
    assert k.sys.listdir("/n") == ["lost+found"] or "lost+found" in k.sys.listdir("/n")
    k.sys.unmount("/n")
    r = subprocess.run(["e2fsck", "-fn", str(img)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_devices(k) -> None:
    s = k.sys
    fd = s.open("/dev/zero", os.O_RDONLY)
    assert s.read(fd, 5) == bytes(5)
    s.close(fd)
    fd = s.open("/dev/urandom", os.O_RDONLY)
    a, b = s.read(fd, 16), s.read(fd, 16)
    assert len(a) == 16 and a != b
    s.close(fd)
    fd = s.open("/dev/full", os.O_WRONLY)
    with pytest.raises(OSError) as ei:
        s.write(fd, b"x")
    assert ei.value.errno == errno.ENOSPC
    s.close(fd)


def test_memory_limit_makes_tmpfs_full_not_the_kernel_crash() -> None:
    k = rumpkernel.boot(memlimit=4 << 20)
    s = k.sys
    s.mkdir("/t")
    s.mount("tmpfs", "/t")
    fd = s.open("/t/big", os.O_CREAT | os.O_WRONLY, 0o644)
    written = 0
    with pytest.raises(OSError) as ei:
        while True:
            written += s.write(fd, b"x" * 65536)
    assert ei.value.errno == errno.ENOSPC
    assert 2 << 20 < written <= 4 << 20
    s.close(fd)
    assert k.statistics()["memory"]["in_use"] <= 4 << 20
    s.unlink("/t/big")
    fd = s.open("/t/small", os.O_CREAT | os.O_WRONLY, 0o644)  # space is back
    s.write(fd, b"y" * 65536)
    s.close(fd)
    s.unmount("/t")
    k.halt()
    assert not halt_report(k)


def test_vnode_cache_limit_reclaims(k) -> None:
    s = k.sys
    s.sysctl("vfs.maxvnodes", 32)
    s.mkdir("/t")
    s.mount("tmpfs", "/t")
    for i in range(200):
        s.close(s.open(f"/t/f{i}", os.O_CREAT | os.O_WRONLY, 0o644))
    st = k.statistics()["vnodes"]
    assert st["free"] <= 40 and st["reclaims"] >= 150
    for i in range(200):                                       # reclaimed files come back
        assert s.stat(f"/t/f{i}").st_size == 0
    s.unmount("/t")


def test_kernel_object_api_raises_oserror_only(tmp_path: Path) -> None:
    """Everything the client API raises is an OSError with the host's errno (#17 defect 17):
    the VFS faction's kernel-object calls included, and without the faction EOPNOTSUPP."""
    k = rumpkernel.boot()
    try:
        for call in (lambda: k.mount_image(str(tmp_path), "/m"),          # a directory
                     lambda: k.etfs_register("relative", str(tmp_path), "dir"),
                     lambda: k.newfs("nosuchfs", str(tmp_path / "x")),
                     lambda: k.etfs_remove("/never")):
            with pytest.raises(OSError) as ei:
                call()
            assert not isinstance(ei.value, rumpkernel.KernelError)
            assert ei.value.errno in errno.errorcode
    finally:
        k.halt()
    bare = rumpkernel.boot(components=())
    with pytest.raises(OSError) as ei:
        bare.mount_image(str(tmp_path / "x.img"), "/m")
    assert ei.value.errno == errno.EOPNOTSUPP
    bare.halt()


EXIT_SCRIPT = """
import os, sys, rumpkernel
k = rumpkernel.boot()
k.mount_image(sys.argv[1], "/m")
fd = k.sys.open("/m/forgotten", os.O_CREAT | os.O_WRONLY, 0o644)
k.sys.write(fd, b"written, never halted")
k.sys.close(fd)
# no k.halt(): the interpreter exits with the data still in the kernel's buffer cache
"""


def test_unhalted_kernel_writes_back_at_exit(tmp_path: Path) -> None:
    """Forgetting k.halt() loses nothing (#16 item 7): the exit hook halts the kernel."""
    import sys

    img = tmp_path / "fs.img"
    img.write_bytes(bytes(8 << 20))
    k = rumpkernel.boot()
    k.newfs("ext4", str(img))
    k.halt()
    r = subprocess.run([sys.executable, "-c", EXIT_SCRIPT, str(img)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    k = rumpkernel.boot()
    k.mount_image(str(img), "/m", readonly=True)
    with k.open("/m/forgotten", "rb") as f:
        assert f.read() == b"written, never halted"
    k.halt()
    fsck = subprocess.run(["e2fsck", "-fn", str(img)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout


def test_collected_unhalted_kernel_warns_and_syncs(tmp_path: Path) -> None:
    import gc

    img = tmp_path / "fs.img"
    img.write_bytes(bytes(8 << 20))
    k = rumpkernel.boot()
    k.newfs("ext4", str(img))
    k.mount_image(str(img), "/m")
    with k.open("/m/f", "wb") as f:
        f.write(b"collected")
    with pytest.warns(ResourceWarning, match="without halt"):
        del k, f
        gc.collect()
    k = rumpkernel.boot()
    k.mount_image(str(img), "/m", readonly=True)
    assert k.path("/m/f").read_bytes() == b"collected"
    k.halt()
