"""Native stress and integrity tools against a rump_mount of an ext4 image: stress-ng's file
system class with --verify and fio with --verify=crc32c; afterwards e2fsck -fn must find the image
clean and the Linux kernel (a loop mount) must see exactly what the FUSE mount showed."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import stat
import subprocess
from pathlib import Path

import pytest

from rumpkernel.apps.rump_mount import stacks_for
from rumpkernel.hypercall import fusedev
from rumpkernel.testing.fusehang import alone_with, run_bounded, watchdog
from rumpkernel.testing.plugin import need_tools
from tests.fuse.conftest import host_dir, run
from tests.fuse.test_rump_mount import (  # noqa: F401
    fsck_clean,
    mnt,
    rump_mount,
    rump_umount,
    server_pid,
)

# stressors that test the host kernel or need what FUSE has not (fanotify, FIEMAP, leases,
# bind mounts, file handles, fs-verity, io_uring-ish priorities)
NOT_FUSE = ("bind-mount,binderfs,fanotify,procfs,verity,dnotify,inotify,io,ioprio,iomix,"
            "handle,lease,fiemap,chattr,inode-flags,file-ioctl")
# seconds each tool may take (a healthy run: ~35 s on 2 loaded cores); past that the test fails
# with the server's thread stacks and the stuck programs' kernel stacks, and unsticks them
BOUND = 180.0


def manifest(root: Path) -> dict[str, tuple]:
    """Every name under ``root`` with its type, mode, size and content hash or link target."""
    out: dict[str, tuple] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if rel == "lost+found":
                continue
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                out[rel] = ("f", stat.S_IMODE(st.st_mode), st.st_size,
                            hashlib.sha256(p.read_bytes()).hexdigest(), st.st_nlink)
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", os.readlink(p))
            else:
                out[rel] = ("d" if stat.S_ISDIR(st.st_mode) else "o",
                            stat.S_IMODE(st.st_mode))
    return out


@contextlib.contextmanager
def loop_mounted(img: Path):
    d = host_dir("loop-ro")
    r = run("mount", "-o", "loop,ro", str(img), str(d), check=False)
    if r.returncode != 0:
        d.rmdir()
        pytest.skip(f"no loop mount here: {r.stderr.strip()}")
    try:
        yield d
    finally:
        run("umount", str(d), check=False)
        d.rmdir()


def test_stress_ng_and_fio_then_fsck_and_loop_mount_agree(tmp_path: Path, mnt: Path) -> None:  # noqa: F811
    need_tools("stress-ng", "fio", "e2fsck")
    img = tmp_path / "stress.img"
    run("mke2fs", "-q", "-F", "-t", "ext4", str(img), "256M")
    rump_mount("-o", "allow_other,threads=2", str(img), str(mnt))
    pid, stacks = server_pid(mnt), stacks_for(str(mnt))

    def bounded(*cmd: str) -> subprocess.CompletedProcess:
        # alone with our mount: stress-ng's getdent walks /tmp and /run, and waited forever
        # in any other FUSE mount whose server did not answer (other tests', other users')
        return run_bounded(alone_with(str(mnt), cmd), BOUND, str(mnt), pid, stacks)

    work = mnt / "work"
    work.mkdir(mode=0o777)
    work.chmod(0o777)
    r = bounded("stress-ng", "--class", "filesystem", "--parallel", "1", "--timeout", "6s",
                "--verify", "--temp-path", str(work), "--exclude", NOT_FUSE + ",copy-file")
    assert r.returncode == 0, r.stderr[-3000:]
    fio = mnt / "fio"
    fio.mkdir()
    for rw, bs in (("randwrite", "4k"), ("write", "256k")):
        r = bounded("fio", f"--name={rw}", f"--directory={fio}", f"--rw={rw}", f"--bs={bs}",
                    "--size=16m", "--numjobs=2", "--ioengine=psync", "--verify=crc32c",
                    "--do_verify=1", "--verify_fatal=1", "--unlink=0", "--fsync=64")
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    with watchdog(str(mnt), BOUND, pid, stacks, "the tree and manifest"):
        _mixed_tree(mnt / "tree")
        seen = manifest(mnt)
    assert rump_umount(mnt).returncode == 0
    fsck_clean(img)
    with loop_mounted(img) as lm:
        assert manifest(lm) == seen


def _mixed_tree(top: Path) -> None:
    """Names, links, holes and sizes for the loop mount to agree on."""
    rng = random.Random(14)
    top.mkdir()
    for i in range(60):
        d = top / f"d{i % 7}"
        d.mkdir(exist_ok=True)
        f = d / f"file-{i}"
        with open(f, "wb") as h:
            h.seek(rng.randrange(0, 1 << 20))
            h.write(rng.randbytes(rng.randrange(0, 200_000)))
        f.chmod(0o600 + (i % 0o100))
    os.link(top / "d0" / "file-0", top / "hard")
    os.symlink("d1/file-1", top / "sym")
    os.rename(top / "d2", top / "moved")


def test_fsync_interleaved_writes_then_unlink_leave_fsck_clean(tmp_path: Path,
                                                               mnt: Path) -> None:  # noqa: F811
    """The pattern stress-ng's copy-file stressor makes (found by it): random writes over a
    256 MiB range with an fsync every 5 writes, then unlink.  A kernel-level replay without FUSE
    leaked extent-tree blocks (issue 17 item 4)."""
    img = tmp_path / "leak.img"
    run("mke2fs", "-q", "-F", "-t", "ext4", str(img), "64M")
    rump_mount(str(img), str(mnt))
    rng = random.Random(1)
    fd = os.open(mnt / "f", os.O_CREAT | os.O_RDWR, 0o644)
    for i in range(800):
        os.pwrite(fd, b"y" * rng.randrange(1, 65536), rng.randrange(0, 256 << 20))
        if i % 5 == 0:
            os.fsync(fd)
    os.close(fd)
    os.unlink(mnt / "f")
    assert rump_umount(mnt).returncode == 0
    assert not fusedev.is_mounted(str(mnt))
    fsck_clean(img)
