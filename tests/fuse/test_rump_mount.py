"""rump_mount / rump_umount as a user runs them: background mounts of real images, options,
errors, SIGTERM, a killed or panicking server (ENOTCONN, nothing worse), privilege dropping, and
a remote kernel served to the host."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rumpkernel.hypercall import fusedev
from tests.fuse.conftest import host_dir, need_fuse, run
from tests.remote.harness import env as child_env

UMOUNT = "import sys; from rumpkernel.apps.rump_mount import umount_main; sys.exit(umount_main())"


def rump_mount(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "rumpkernel.apps.rump_mount", *args],
                       capture_output=True, text=True, timeout=120, env=child_env())
    if check:
        assert r.returncode == 0, r.stderr
    return r


def rump_umount(mnt: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", UMOUNT, str(mnt)], capture_output=True,
                          text=True, timeout=180, env=child_env())


def server_pid(mnt: Path) -> int | None:
    from rumpkernel.apps.rump_mount import pidfile_for

    with contextlib.suppress(OSError, ValueError):
        return int(Path(pidfile_for(str(mnt))).read_text())
    return None


def stat_errno(path: Path) -> int:
    """0, or the errno of stat(path); a request caught in flight by the server's death ends
    ECONNABORTED, later ones find no server (ENOTCONN)."""
    try:
        os.stat(path)
    except OSError as e:
        return e.errno or 0
    return 0


def alive(pid: int) -> bool:
    """Any thread of ``pid`` still running (a zombie leader may wait for its threads)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for t in tasks:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/task/{t}/stat").read_text().rsplit(")", 1)[1].split()[0] \
                    != "Z":
                return True
    return False


@pytest.fixture
def mnt() -> Iterator[Path]:
    """A mount point; whatever a test leaves there is unmounted and its server killed."""
    need_fuse()
    d = host_dir("rump-mount")
    pids: list[int] = []
    try:
        yield d
    finally:
        pid = server_pid(d) if fusedev.is_mounted(str(d)) else None
        pids += [pid] if pid else []
        if fusedev.is_mounted(str(d)):
            with contextlib.suppress(OSError):
                fusedev.unmount(str(d), lazy=True)
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        shutil.rmtree(d, ignore_errors=True)


def fsck_clean(img: Path) -> None:
    r = run("e2fsck", "-fn", str(img), check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def ext4(tmp: Path, size: str = "32M", *extra: str) -> Path:
    img = tmp / "disk.img"
    run("mke2fs", "-q", "-F", "-t", "ext4", *extra, str(img), size)
    return img


def test_background_mount_write_umount_flushes(tmp_path: Path, mnt: Path) -> None:
    img = ext4(tmp_path)
    rump_mount(str(img), str(mnt))
    assert fusedev.is_mounted(str(mnt))
    pid = server_pid(mnt)
    assert pid and alive(pid)
    (mnt / "dir").mkdir()
    (mnt / "dir" / "file").write_bytes(b"through the server\n" * 1000)
    os.symlink("dir/file", mnt / "link")
    os.link(mnt / "dir" / "file", mnt / "hard")
    assert os.stat(mnt / "hard").st_nlink == 2
    r = rump_umount(mnt)
    assert r.returncode == 0, r.stderr
    assert not fusedev.is_mounted(str(mnt)) and not alive(pid)   # flushed before it returned
    fsck_clean(img)
    out = run("debugfs", "-R", "cat /dir/file", str(img)).stdout
    assert out == "through the server\n" * 1000


def test_readonly_option(tmp_path: Path, mnt: Path) -> None:
    img = ext4(tmp_path)
    before = img.read_bytes()
    rump_mount("-o", "ro", str(img), str(mnt))
    assert err_of(lambda: (mnt / "x").write_bytes(b"no")) == errno.EROFS
    assert os.listdir(mnt) == ["lost+found"]
    assert rump_umount(mnt).returncode == 0
    assert img.read_bytes() == before


def test_image_at_offset(tmp_path: Path, mnt: Path) -> None:
    img = tmp_path / "off.img"
    run("mke2fs", "-q", "-F", "-t", "ext4", "-E", "offset=1048576", str(img), "16M")
    rump_mount(f"{img}@1m", str(mnt))
    (mnt / "f").write_text("at an offset")
    assert rump_umount(mnt).returncode == 0
    assert run("debugfs", "-R", "cat /f", f"{img}?offset=1048576").stdout == "at an offset"


def test_fat_owner_options_go_to_the_driver(tmp_path: Path, mnt: Path) -> None:
    if shutil.which("mkfs.fat") is None:
        pytest.skip("no mkfs.fat")
    img = tmp_path / "fat.img"
    run("mkfs.fat", "-C", "-F", "32", str(img), "65536")
    rump_mount("-o", "uid=1234,gid=5678,umask=027", str(img), str(mnt))
    (mnt / "d").mkdir()
    (mnt / "d" / "f.txt").write_bytes(b"fat data")
    st = os.stat(mnt / "d" / "f.txt")
    assert (st.st_uid, st.st_gid, stat_mode(st)) == (1234, 5678, 0o750)   # as vfat shows
    assert stat_mode(os.stat(mnt / "d")) == 0o750
    assert rump_umount(mnt).returncode == 0
    assert run("fsck.fat", "-n", str(img), check=False).returncode == 0
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    assert run("mtype", "-i", str(img), "::/d/f.txt", env=env).stdout == "fat data"


def stat_mode(st: os.stat_result) -> int:
    return st.st_mode & 0o7777


def err_of(fn) -> int:
    with pytest.raises(OSError) as ei:
        fn()
    return ei.value.errno


def test_errors_are_one_line(tmp_path: Path, mnt: Path) -> None:
    junk = tmp_path / "junk.img"
    junk.write_bytes(b"\xa5" * 65536)
    r = rump_mount(str(junk), str(mnt), check=False)
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "junk.img" in r.stderr and "no file system recognised" in r.stderr
    r = rump_mount(str(tmp_path / "missing.img"), str(mnt), check=False)
    assert r.returncode == 1 and "missing.img" in r.stderr and r.stderr.count("\n") == 1
    img = ext4(tmp_path)
    r = rump_mount(str(img), str(tmp_path / "nodir"), check=False)
    assert r.returncode == 1 and "nodir" in r.stderr and r.stderr.count("\n") == 1
    r = rump_mount("-o", "threads=lots", str(img), str(mnt), check=False)
    assert r.returncode == 2 and "threads" in r.stderr
    assert not fusedev.is_mounted(str(mnt))


def test_sigterm_unmounts_and_flushes(tmp_path: Path, mnt: Path) -> None:
    img = ext4(tmp_path)
    rump_mount(str(img), str(mnt))
    pid = server_pid(mnt)
    (mnt / "f").write_bytes(b"before SIGTERM")
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not alive(pid))
    assert not fusedev.is_mounted(str(mnt))
    fsck_clean(img)
    assert run("debugfs", "-R", "cat /f", str(img)).stdout == "before SIGTERM"


def test_sigusr1_dumps_every_server_thread(tmp_path: Path, mnt: Path) -> None:
    """A hang's diagnosis: SIGUSR1 appends every thread's stack to the stacks file beside the
    pid file; the server keeps serving, and the file goes with the server."""
    from rumpkernel.apps.rump_mount import stacks_for
    from rumpkernel.testing.fusehang import server_stacks

    img = ext4(tmp_path)
    rump_mount("-o", "threads=3", str(img), str(mnt))
    pid = server_pid(mnt)
    path = stacks_for(str(mnt))
    first = server_stacks(path, pid)
    assert first.count("in _loop") == 3 and "in receive" in first, first   # the workers
    assert "rump_mount.py" in first, first                                 # main thread
    second = server_stacks(path, pid)                   # again: appended, still serving
    assert second.count("in _loop") == 3 and alive(pid)
    (mnt / "f").write_bytes(b"still serving")
    assert rump_umount(mnt).returncode == 0
    assert not os.path.exists(path)


def wait_for(cond, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_killed_server_leaves_enotconn_and_fsynced_data(tmp_path: Path, mnt: Path) -> None:
    img = ext4(tmp_path)
    rump_mount(str(img), str(mnt))
    pid = server_pid(mnt)
    fd = os.open(mnt / "durable", os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, b"fsync'd before the kill")
    os.fsync(fd)
    os.close(fd)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: stat_errno(mnt) == errno.ENOTCONN)    # once the device is closed
    assert fusedev.is_mounted(str(mnt))
    fusedev.unmount(str(mnt))
    assert not fusedev.is_mounted(str(mnt))
    # an fsync commits to the journal (the kernel's promise): replay it, as a mount would,
    # before reading with debugfs (which reads blocks in place)
    run("e2fsck", "-E", "journal_only", "-y", str(img), check=False)
    fsck_clean(img)
    assert run("debugfs", "-R", "cat /durable", str(img)).stdout == "fsync'd before the kill"


PANIC = """
import sys
from rumpkernel.client.fuse import server
from rumpkernel.kern.errno import KernelPanic
real = server.FuseServer.mkdir
def mkdir(self, req, worker):
    raise KernelPanic("injected driver panic")
server.FuseServer.mkdir = mkdir
from rumpkernel.apps.rump_mount import main
sys.exit(main(sys.argv[1:]))
"""


def test_panicking_server_leaves_enotconn(tmp_path: Path, mnt: Path) -> None:
    img = ext4(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", PANIC, "-f", str(img), str(mnt)],
                            stderr=subprocess.PIPE, text=True, env=child_env())
    try:
        wait_for(lambda: fusedev.is_mounted(str(mnt)) and server_pid(mnt) is not None)
        (mnt / "f").write_bytes(b"x")
        # the request in flight when the server died is aborted; later ones find no server
        assert err_of(lambda: os.mkdir(mnt / "boom")) in (errno.ECONNABORTED, errno.ENOTCONN)
        _out, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 70 and "injected driver panic" in stderr
        wait_for(lambda: stat_errno(mnt) == errno.ENOTCONN)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    fusedev.unmount(str(mnt))
    r = run("e2fsck", "-fn", str(img), check=False)
    assert r.returncode in (0, 4), r.stdout        # never worse than an unclean unmount


def test_privileges_dropped_and_memory_limited(tmp_path: Path, mnt: Path) -> None:
    img = ext4(tmp_path)
    rump_mount("-o", "user=nobody,memlimit=1500m,allow_other", str(img), str(mnt))
    pid = server_pid(mnt)
    status = Path(f"/proc/{pid}/status").read_text()
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    assert set(uids) == {"65534"}
    limits = Path(f"/proc/{pid}/limits").read_text()
    line = next(x for x in limits.splitlines() if x.startswith("Max address space"))
    assert str(1500 << 20) in line
    (mnt / "f").write_bytes(b"served by nobody")
    assert os.stat(mnt / "f").st_uid == 0            # the caller's file, not the server's
    r = rump_umount(mnt)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: not alive(pid))
    fsck_clean(img)


def test_remote_kernel_served_to_the_host(tmp_path: Path, mnt: Path) -> None:
    from tests.fuse.hostsys import host_user
    from tests.remote.harness import ServerProcess

    url = f"unix://{tmp_path}/rump.sock"
    srv = ServerProcess(url)
    try:
        with srv.connect() as c:
            c.sys.mkdir("/srv", 0o755)
            c.sys.mount("tmpfs", "/srv", 0, {"mode": "777"})
        rump_mount("-u", url, "-o", "allow_other", "/srv", str(mnt))
        (mnt / "root-file").write_bytes(b"from the host")
        with host_user(1000, 1000, ()):
            (mnt / "user-file").write_bytes(b"mine")
            assert err_of(lambda: (mnt / "root-file").write_bytes(b"x")) == errno.EACCES
        with srv.connect() as c:
            assert sorted(c.sys.listdir("/srv")) == ["root-file", "user-file"]
            assert c.sys.stat("/srv/user-file").st_uid == 1000
            fd = c.sys.open("/srv/root-file", os.O_RDONLY)
            assert c.sys.read(fd, 100) == b"from the host"
            c.sys.close(fd)
        assert rump_umount(mnt).returncode == 0
    finally:
        srv.stop()
