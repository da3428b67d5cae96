"""System calls of the kern faction, through the local client facade."""

from __future__ import annotations

import errno
import os
import select
import threading
import time

import pytest

import rumpkernel
from rumpkernel import SimHost


@pytest.fixture(params=["local", "remote"])
def k(request, tmp_path):
    """The kernel under test, called locally or through a sysproxy connection (the remote
    kernel runs on the posix host, so tests that need the sim's virtual clock are local_only)."""
    if request.param == "remote":
        if request.node.get_closest_marker("local_only"):
            pytest.skip("local client only")
        from tests.remote.harness import RemoteView

        view = RemoteView(rumpkernel.boot(components=(), ncpu=1), tmp_path)
        yield view
        if not view.k.dead:
            assert view.k.statistics()["open_files"] == 0, "test leaked descriptors"
            view.halt()
        return
    k = rumpkernel.boot(SimHost(7), components=())
    yield k
    if not k.dead:
        assert k.statistics()["open_files"] == 0, "test leaked descriptors"
        k.halt()


@pytest.mark.local_only
def test_ids_and_credentials(k) -> None:
    assert (k.sys.getpid(), k.sys.getppid(), k.sys.getuid(), k.sys.geteuid()) == (1, 0, 0, 0)
    k.lwproc.rfork()
    try:
        assert k.sys.getppid() == 1
        k.sys.setgroups([5, 6])
        assert k.sys.getgroups() == [5, 6]
        k.sys.setgid(100)
        k.sys.setuid(1000)
        assert (k.sys.getuid(), k.sys.geteuid(), k.sys.getgid()) == (1000, 1000, 100)
        with pytest.raises(PermissionError):
            k.sys.setuid(0)
        with pytest.raises(PermissionError):
            k.sys.setgroups([0])
        k.sys.setuid(1000)  # own uid is allowed
    finally:
        k.lwproc.release()
    assert k.sys.getuid() == 0  # implicit thread is back in pid 1, root


def test_umask(k) -> None:
    old = k.sys.umask(0o077)
    assert old == 0o022
    assert k.sys.umask(old) == 0o077


def test_pipe_roundtrip_and_eof(k) -> None:
    r, w = k.sys.pipe()
    assert k.sys.write(w, b"abc") == 3
    assert k.sys.writev(w, [b"de", bytearray(b"f")]) == 3
    bufs = [bytearray(2), bytearray(10)]
    assert k.sys.readv(r, bufs) == 6
    assert bytes(bufs[0]) == b"ab" and bytes(bufs[1][:4]) == b"cdef"
    k.sys.close(w)
    assert k.sys.read(r, 10) == b""  # EOF once the writer is gone
    k.sys.close(r)


def test_pipe_errors(k) -> None:
    r, w = k.sys.pipe()
    with pytest.raises(OSError) as ei:
        k.sys.write(r, b"x")
    assert ei.value.errno == errno.EBADF
    with pytest.raises(OSError) as ei:
        k.sys.pread(r, 1, 0)
    assert ei.value.errno == errno.ESPIPE
    with pytest.raises(OSError) as ei:
        k.sys.lseek(r, 0, os.SEEK_SET)
    assert ei.value.errno == errno.ESPIPE
    k.sys.close(r)
    with pytest.raises(BrokenPipeError):
        k.sys.write(w, b"x")
    k.sys.close(w)
    with pytest.raises(OSError) as ei:
        k.sys.close(w)
    assert ei.value.errno == errno.EBADF


def test_nonblocking_pipe(k) -> None:
    r, w = k.sys.pipe2(os.O_NONBLOCK)
    with pytest.raises(BlockingIOError):
        k.sys.read(r, 1)
    assert k.sys.fcntl(r, __import__("fcntl").F_GETFL) & os.O_NONBLOCK
    total = 0
    with pytest.raises(BlockingIOError):
        while True:
            total += k.sys.write(w, b"x" * 4096)
    assert total == 65536
    k.sys.set_blocking(r, True)
    assert not k.sys.fcntl(r, __import__("fcntl").F_GETFL) & os.O_NONBLOCK
    k.sys.close(r)
    k.sys.close(w)


def test_dup_dup2_fcntl(k) -> None:
    import fcntl
    r, w = k.sys.pipe()
    d = k.sys.dup(w)
    assert d == 2
    assert k.sys.dup2(r, 7) == 7
    assert k.sys.fcntl(7, fcntl.F_GETFD) == 0
    assert k.sys.dup2(r, 8, inheritable=False) == 8
    assert k.sys.fcntl(8, fcntl.F_GETFD) == fcntl.FD_CLOEXEC
    assert k.sys.fcntl(w, fcntl.F_DUPFD, 20) == 20
    k.sys.write(d, b"via dup")
    assert k.sys.read(7, 100) == b"via dup"
    for fd in (r, w, d, 7, 8, 20):
        k.sys.close(fd)
    with pytest.raises(OSError) as ei:
        k.sys.dup(99)
    assert ei.value.errno == errno.EBADF


def test_fstat_on_pipe(k) -> None:
    import stat
    r, w = k.sys.pipe()
    k.sys.write(w, b"12345")
    st = k.sys.fstat(r)
    assert stat.S_ISFIFO(st.st_mode) and st.st_size == 5
    k.sys.close(r)
    k.sys.close(w)


def test_emfile(k) -> None:
    fds = []
    with pytest.raises(OSError) as ei:
        while True:
            fds.extend(k.sys.pipe())
    assert ei.value.errno == errno.EMFILE
    assert len(fds) >= 1000
    for fd in fds:
        k.sys.close(fd)


@pytest.mark.local_only
def test_poll_timeout_uses_kernel_clock(k) -> None:
    r, w = k.sys.pipe()
    t0 = k.sys.clock_gettime_ns(time.CLOCK_MONOTONIC)
    wall0 = time.monotonic()
    assert k.sys.poll([(r, select.POLLIN)], 5000) == []
    t1 = k.sys.clock_gettime_ns(time.CLOCK_MONOTONIC)
    assert t1 - t0 >= 5_000_000_000        # five virtual seconds passed in the kernel
    assert time.monotonic() - wall0 < 2.0  # ... in much less real time (sim clock)
    k.sys.write(w, b"x")
    assert k.sys.poll([(r, select.POLLIN), (w, select.POLLOUT)], 5000) == [
        (r, select.POLLIN), (w, select.POLLOUT)]
    k.sys.close(w)
    assert k.sys.poll([(r, select.POLLIN)], 0) == [(r, select.POLLIN | select.POLLHUP)]
    assert k.sys.poll([(99, select.POLLIN)], 0) == [(99, select.POLLNVAL)]
    k.sys.close(r)


@pytest.mark.local_only
def test_nanosleep_virtual_time(k) -> None:
    t0 = k.sys.clock_gettime(time.CLOCK_MONOTONIC)
    k.sys.nanosleep(3.5)
    assert k.sys.clock_gettime(time.CLOCK_MONOTONIC) - t0 == pytest.approx(3.5, abs=1e-6)
    with pytest.raises(ValueError):
        k.sys.nanosleep(-1)


def test_clock_realtime_tracks_host_on_posix() -> None:
    k = rumpkernel.boot(components=())
    assert abs(k.sys.clock_gettime(time.CLOCK_REALTIME) - time.time()) < 5
    k.halt()


def test_sysctl(k) -> None:
    assert k.sys.sysctl("kern.ostype") == "RumpKernel"
    assert isinstance(k.sys.sysctl("kern.osrelease"), str)
    assert k.sys.sysctl("hw.ncpu") == 1
    assert k.sys.sysctl("kern.hostname", "newname").startswith("rump-")
    assert k.sys.sysctl("kern.hostname") == "newname"
    with pytest.raises(PermissionError):
        k.sys.sysctl("kern.ostype", "x")
    with pytest.raises(FileNotFoundError):
        k.sys.sysctl("kern.nosuch")
    k.lwproc.rfork()
    k.sys.setuid(5)
    with pytest.raises(PermissionError):
        k.sys.sysctl("kern.hostname", "evil")
    with pytest.raises(PermissionError):
        k.sys.reboot()
    k.lwproc.release()


def test_copyin_copyout_faults(k) -> None:
    r, w = k.sys.pipe()
    k.sys.write(w, b"data")
    with pytest.raises(OSError) as ei:
        k.sys.sys_read(r, b"immutable", 4)      # bytes cannot be written to
    assert ei.value.errno == errno.EFAULT
    with pytest.raises(OSError) as ei:
        k.sys.sys_write(w, b"ab", 10)           # length beyond the buffer
    assert ei.value.errno == errno.EFAULT
    with pytest.raises(OSError) as ei:
        k.sys.sys_write(w, 12345, 1)            # not a buffer at all
    assert ei.value.errno == errno.EFAULT
    k.sys.close(r)
    k.sys.close(w)


def test_unknown_syscall_number(k) -> None:
    with pytest.raises(OSError) as ei:
        k.sys._call(9999, ())
    assert ei.value.errno == errno.ENOSYS
    with pytest.raises(OSError) as ei:
        k.sys._call(-1, ())
    assert ei.value.errno == errno.ENOSYS


def test_blocked_reader_is_woken_by_writer_posix() -> None:
    """A reader blocked on an empty pipe does not hold the (only) vCPU: another thread runs
    kernel code and wakes it with a write."""
    k = rumpkernel.boot(components=(), ncpu=1)
    r, w = k.sys.pipe()
    got: list[bytes] = []
    t = threading.Thread(target=lambda: got.append(k.sys.read(r, 10)))
    t.start()
    deadline = time.monotonic() + 5
    while k.sched.slow == 0 and time.monotonic() < deadline and not got:
        # wait until the reader is blocked inside the kernel
        if k.sched.busy == 0 and t.is_alive():
            break
        time.sleep(0.001)
    time.sleep(0.05)
    assert not got and t.is_alive()
    assert k.sched.busy == 0              # the blocked reader gave its vCPU back
    assert k.sys.getpid() == 1            # so this thread can run kernel code
    k.sys.write(w, b"wake")
    t.join(5)
    assert got == [b"wake"]
    k.sys.close(r)
    k.sys.close(w)
    k.halt()


def test_blocked_reader_sim() -> None:
    k = rumpkernel.boot(SimHost(11), components=())
    r, w = k.sys.pipe()
    got: list[bytes] = []
    t = threading.Thread(target=lambda: got.append(k.sys.read(r, 10)))
    t.start()
    deadline = time.monotonic() + 10
    while not any(l.wchan is not None for l in k.all_lwps()):   # the reader is blocked
        assert time.monotonic() < deadline and t.is_alive()
        time.sleep(0.005)
    assert not got
    k.sys.write(w, b"wake")
    t.join(5)
    assert got == [b"wake"]
    k.sys.close(r)
    k.sys.close(w)
    k.halt()
