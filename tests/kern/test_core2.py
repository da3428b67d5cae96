"""Kernel core foundations: descriptor limits, per-request credentials, the vCPU helper,
host failures translated at one point, and the ABI table's translations."""

from __future__ import annotations

import errno
import os
import resource
import select

import pytest

import rumpkernel
from rumpkernel import SimHost
from rumpkernel.client import abi as H
from rumpkernel.hypercall.interface import HostError
from rumpkernel.kern import abi as K
from rumpkernel.kern.errno import Errno, KernelError


@pytest.fixture
def k():
    k = rumpkernel.boot(SimHost(11))
    yield k
    if not k.dead:
        k.halt()


def test_descriptor_limit_default_and_raise(k) -> None:
    assert k.sys.getrlimit(resource.RLIMIT_NOFILE) == (4096, 65536)
    fds = [k.sys.open("/dev/null", os.O_RDONLY) for _ in range(4096)]
    assert fds == list(range(4096))
    with pytest.raises(OSError) as e:
        k.sys.open("/dev/null", os.O_RDONLY)
    assert e.value.errno == errno.EMFILE
    k.sys.setrlimit(resource.RLIMIT_NOFILE, (5000, 65536))
    fds.append(k.sys.open("/dev/null", os.O_RDONLY))
    assert fds[-1] == 4096
    with pytest.raises(OSError) as e:                    # soft above hard
        k.sys.setrlimit(resource.RLIMIT_NOFILE, (70000, 70000))
    assert e.value.errno == errno.EINVAL
    for fd in fds:
        k.sys.close(fd)


def test_lowest_free_descriptor_after_closes(k) -> None:
    fds = [k.sys.open("/dev/null", os.O_RDONLY) for _ in range(100)]
    for fd in (70, 3, 50):
        k.sys.close(fd)
    assert [k.sys.open("/dev/null", os.O_RDONLY) for _ in range(4)] == [3, 50, 70, 100]
    k.sys.dup2(fds[0], 200)                              # a gap 101..199 opens below 200
    assert k.sys.open("/dev/null", os.O_RDONLY) == 101
    for fd in [*range(102), 200]:
        k.sys.close(fd)
    assert k.statistics()["open_files"] == 0


def test_hard_limit_raise_needs_root(k) -> None:
    k.lwproc.rfork()
    try:
        k.sys.setrlimit(resource.RLIMIT_NOFILE, (100, 1000))
        k.sys.setuid(1000)
        with pytest.raises(PermissionError):
            k.sys.setrlimit(resource.RLIMIT_NOFILE, (100, 2000))
        k.sys.setrlimit(resource.RLIMIT_NOFILE, (1000, 1000))   # up to the hard limit: fine
    finally:
        k.lwproc.release()


def test_credcache_runs_calls_with_the_callers_ids(k) -> None:
    k.sys.mkdir("/priv", 0o700)
    fd = k.sys.open("/priv/f", os.O_CREAT | os.O_RDWR, 0o600)
    creds = k.lwproc.credcache()
    with creds.use(1000, 100, (100, 7)):
        assert (k.sys.getuid(), k.sys.getgid(), k.sys.getgroups()) == (1000, 100, [100, 7])
        with pytest.raises(PermissionError):
            k.sys.stat("/priv/f")
        assert k.sys.write(fd, b"shared table") == 12    # descriptors are the base process's
        nfd = k.sys.open("/dev/null", os.O_RDONLY)
    assert k.sys.getuid() == 0
    k.sys.close(nfd)                                      # ... both ways
    with creds.use(1000, 100, (100, 7)) as l1:
        pass
    with creds.use(1000, 100, (100, 7)) as l2:
        pass
    assert l1 is l2                                       # cached, not made per call
    assert k.statistics()["processes"] == 3
    creds.close()
    assert k.statistics()["processes"] == 2
    k.sys.close(fd)


def test_credcache_evicts_idle_credentials(k) -> None:
    creds = k.lwproc.credcache(limit=4)
    for uid in range(1, 10):
        with creds.use(uid, uid):
            assert k.sys.geteuid() == uid
    assert len(creds.procs) == 4
    assert k.statistics()["processes"] == 2 + 4
    creds.close()
    assert k.statistics()["processes"] == 2


def test_unscheduled_gives_the_vcpu_back(k) -> None:
    with k.entered() as l:
        assert l.cpu is not None
        with k.unscheduled():
            assert l.cpu is None and k.sched.busy == 0
        assert l.cpu is not None


def test_host_errors_translate_at_one_point(k) -> None:
    def failing() -> None:
        raise HostError("ENOSPC", "host disk full")

    with k.entered(), pytest.raises(KernelError) as e:
        k.hostcall(failing)
    assert e.value.errno == Errno.ENOSPC
    assert "host disk full" in str(e.value)

    def unknown() -> None:
        raise HostError("EWEIRDNESS")

    with k.entered(), pytest.raises(KernelError) as e:
        k.hostcall(unknown)
    assert e.value.errno == Errno.EIO


def test_poll_bits_translate_both_ways(k) -> None:
    r, w = k.sys.pipe()
    assert H.poll_to_kernel(select.POLLWRNORM) == K.POLLWRNORM == K.POLLOUT
    got = dict(k.sys.poll([(w, select.POLLWRNORM)], 0))
    assert got == {w: select.POLLWRNORM}                 # host bits back, only those asked
    k.sys.write(w, b"x")
    got = dict(k.sys.poll([(r, select.POLLIN | select.POLLRDNORM)], 0))
    assert got == {r: select.POLLIN | select.POLLRDNORM}
    k.sys.close(r)
    k.sys.close(w)


def test_open_flags_round_trip_for_every_host_flag() -> None:
    for name in K.GROUPS["open"].members:
        hv = getattr(os, name, None)
        if hv is None:
            continue
        kv = H.open_flags_to_kernel(hv | os.O_RDWR)
        assert kv & K.O_ACCMODE == K.O_RDWR
        assert kv & getattr(K, name) == getattr(K, name), name
        assert H.open_flags_to_host(kv) & hv == hv, name
    with pytest.raises(ValueError):
        H.open_flags_to_kernel(1 << 30)


def test_makedev_is_one_encoding_everywhere() -> None:
    for major, minor in ((0, 0), (8, 1), (253, 4095), (4095, 1 << 19), (1 << 20, 1 << 20)):
        dev = K.makedev(major, minor)
        assert (K.major(dev), K.minor(dev)) == (major, minor)
        assert dev == os.makedev(major, minor)           # the host's (glibc) layout
