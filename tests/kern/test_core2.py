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


def test_poll_wakes_only_the_pollers_of_the_object_that_changed(monkeypatch) -> None:
    """1,000 idle pipes watched by 50 pollers (20 each); a write to one pipe wakes exactly one
    poller, which re-checks that one descriptor, not its twenty."""
    import threading

    from rumpkernel.kern.pipe import PipeFile

    k = rumpkernel.boot(components=())
    pipes = [k.sys.pipe() for _ in range(1000)]
    checks: dict[int, int] = {}
    real_poll = PipeFile.poll

    def counting_poll(self, l, events):
        checks[threading.get_ident()] = checks.get(threading.get_ident(), 0) + 1
        return real_poll(self, l, events)

    monkeypatch.setattr(PipeFile, "poll", counting_poll)
    results: dict[int, list] = {}
    wakeups: dict[int, int] = {}
    started = threading.Barrier(51)

    def poller(n: int) -> None:
        fds = [(pipes[i][0], select.POLLIN) for i in range(n * 20, n * 20 + 20)]
        started.wait()
        results[n] = k.sys.poll(fds, 10_000)
        results[n].append(threading.get_ident())
        wakeups[n] = k.host.curlwp_get().pollwaiter.wakeups

    threads = [threading.Thread(target=poller, args=(n,)) for n in range(50)]
    for t in threads:
        t.start()
    started.wait()
    deadline = __import__("time").monotonic() + 10
    while sum(len(s.records) for r, _w in pipes
              for s in [k.proc1.fd.files[r].selinfo]) < 1000:   # everyone registered
        assert __import__("time").monotonic() < deadline
        __import__("time").sleep(0.01)
    k.sys.write(pipes[137][1], b"x")          # pipe 137 belongs to poller 6
    threads[6].join(10)
    assert results[6][:-1] == [(pipes[137][0], select.POLLIN)]
    busy_ident = results[6][-1]
    assert checks[busy_ident] == 21            # 20 on entry, then only the pipe that fired
    assert wakeups == {6: 1}                   # nobody else has returned, or been woken
    others = [l.pollwaiter.wakeups for l in k.all_lwps() if l.pollwaiter is not None]
    assert len(others) == 49 and set(others) == {0}
    for _r, w in pipes:                        # POLLHUP ends the other polls
        k.sys.close(w)
    for t in threads:
        t.join(10)
    assert all(results[n][:-1] for n in range(50))
    for r, _w in pipes:
        k.sys.close(r)
    k.halt()


def test_huge_timeouts_do_not_overflow_the_host() -> None:
    """poll/nanosleep with timeouts no host can time wait like 'forever' (until interrupted)
    instead of panicking the kernel (#17, defect 13)."""
    import threading
    import time

    k = rumpkernel.boot(components=())
    r, w = k.sys.pipe()
    out: list = []
    t = threading.Thread(target=lambda: out.append(k.sys.poll([(r, select.POLLIN)], 2**62)))
    t.start()
    time.sleep(0.2)
    k.sys.write(w, b"!")
    t.join(10)
    assert out == [[(r, select.POLLIN)]]
    def sleeper() -> None:
        with pytest.raises(OSError) as e:
            k.sys.nanosleep(2.0**62)
        out.append(e.value.errno)

    t = threading.Thread(target=sleeper)
    t.start()
    time.sleep(0.2)
    k.halt()                                   # interrupts the sleeper: EINTR, not a panic
    t.join(10)
    assert not t.is_alive() and k.panicked is None
    assert out[-1] in (errno.EINTR, errno.ENXIO)


def test_repeated_poll_keeps_registrations_and_stays_correct(k, monkeypatch) -> None:
    """An event loop's repeated poll of one set re-checks only what fired in between, yet sees
    every change: data arriving, data drained, a descriptor closed and its number reused."""
    from rumpkernel.kern.pipe import PipeFile

    pipes = [k.sys.pipe() for _ in range(50)]
    req = [(r, select.POLLIN) for r, _ in pipes]
    calls = []
    real = PipeFile.poll
    monkeypatch.setattr(PipeFile, "poll", lambda self, l, ev: calls.append(1) or real(self, l, ev))
    assert k.sys.poll(req, 0) == []
    assert len(calls) == 50                    # first call: everything checked once
    calls.clear()
    assert k.sys.poll(req, 0) == []
    assert calls == []                         # nothing fired: nothing re-checked
    k.sys.write(pipes[7][1], b"ab")
    assert k.sys.poll(req, 0) == [(pipes[7][0], select.POLLIN)]
    assert len(calls) == 1
    assert k.sys.poll(req, 0) == [(pipes[7][0], select.POLLIN)]     # still ready, unchanged
    k.sys.read(pipes[7][0], 2)
    assert k.sys.poll(req, 0) == []            # drained: the read notified
    k.sys.close(pipes[9][0])                   # number 9's slot changes what it refers to
    assert k.sys.poll(req, 0) == [(pipes[9][0], select.POLLNVAL)]
    nr, nw = k.sys.pipe()                      # reuses the lowest free numbers
    assert nr == pipes[9][0]
    k.sys.write(nw, b"z")
    assert k.sys.poll(req, 0) == [(nr, select.POLLIN)]
    for r, w in [*pipes[:9], *pipes[10:], (nr, nw)]:
        k.sys.close(r)
        k.sys.close(w)
    k.sys.close(pipes[9][1])
