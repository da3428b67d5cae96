"""A hung FUSE request must cost a test its bound, not the suite 300 s: ``run_bounded`` gives
up, says where everyone is stuck, and unsticks the host (connection aborted, program killed)."""

from __future__ import annotations

import os
import re
import threading
import time
from typing import Any

import pytest

from rumpkernel.client.fuse.proto import Op
from rumpkernel.testing import fusehang
from rumpkernel.testing.plugin import need_root, need_tools
from tests.fuse.conftest import served


def test_a_request_never_answered_is_diagnosed_and_unstuck(tmpfs_kernel: Any) -> None:
    k = tmpfs_kernel
    release = threading.Event()
    with served(k) as m:
        lookup = m.server.handlers[Op.LOOKUP]

        def stuck(req: Any, worker: Any) -> Any:
            if bytes(req.body).startswith(b"stuck\0"):
                release.wait(60)
            return lookup(req, worker)

        m.server.handlers[Op.LOOKUP] = stuck
        try:
            start = time.monotonic()
            with pytest.raises(AssertionError) as e:
                fusehang.run_bounded(["stat", os.path.join(m.mountpoint, "stuck")], 3.0,
                                     m.mountpoint, None, None)
            took = time.monotonic() - start
            report = str(e.value)
            assert "stat did not finish within 3s" in report
            assert re.search(r"FUSE requests unanswered: [1-9]", report), report
            assert " stat state=" in report, report
            assert took < 30
            deadline = time.monotonic() + 30                # aborted: the waiters wake up
            while fusehang.waiting(m.mountpoint) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert fusehang.waiting(m.mountpoint) == 0
        finally:
            release.set()


def test_watchdog_bounds_this_process_own_calls(tmpfs_kernel: Any) -> None:
    k = tmpfs_kernel
    release = threading.Event()
    with served(k) as m:
        lookup = m.server.handlers[Op.LOOKUP]

        def stuck(req: Any, worker: Any) -> Any:
            if bytes(req.body).startswith(b"stuck\0"):
                release.wait(60)
            return lookup(req, worker)

        m.server.handlers[Op.LOOKUP] = stuck
        try:
            with pytest.raises(AssertionError) as e, \
                    fusehang.watchdog(m.mountpoint, 3.0, None, None, "the walk"):
                os.stat(os.path.join(m.mountpoint, "stuck"))    # ECONNABORTED after 3 s
            report = str(e.value)
            assert "the walk did not finish within 3s" in report, report
            assert f"--- {os.getpid()} " in report and "request_wait_answer" in report, report
        finally:
            release.set()
        with fusehang.watchdog(m.mountpoint, 30.0, None, None):
            pass                                                # in time: nothing raised


def _never_answering(m: Any, release: threading.Event) -> None:
    """Every directory request of mount ``m`` waits for ``release`` (a stopped server)."""
    for op in (Op.GETATTR, Op.LOOKUP, Op.OPENDIR, Op.READDIR):
        real = m.server.handlers[op]

        def stuck(req: Any, worker: Any, real: Any = real) -> Any:
            release.wait(120)
            return real(req, worker)

        m.server.handlers[op] = stuck


def test_stress_ng_runs_alone_with_its_mount(tmpfs_kernel: Any) -> None:
    """The hang of test_stress (issue: stress-ng-getdent in D state): getdent walks /tmp and
    /run, so it entered every FUSE mount on the machine and waited forever for one whose
    server did not answer.  ``alone_with`` runs the tool where only its own mount exists."""
    need_tools("stress-ng", "unshare")
    need_root()
    k = tmpfs_kernel
    k.sys.mkdir("/mnt/own", 0o777)
    k.sys.mkdir("/mnt/stopped", 0o777)
    release = threading.Event()
    with served(k, "/mnt/own") as own, served(k, "/mnt/stopped") as stopped:
        _never_answering(stopped, release)
        try:
            cmd = ["stress-ng", "--getdent", "1", "--timeout", "2s", "--temp-path",
                   own.mountpoint]
            r = fusehang.run_bounded(fusehang.alone_with(own.mountpoint, cmd), 90,
                                     own.mountpoint, None, None)
            assert r.returncode == 0, r.stderr
            assert fusehang.mount_device(stopped.mountpoint)     # still mounted out here
        finally:
            release.set()


def test_the_server_finds_its_mount_without_asking_itself(tmpfs_kernel: Any) -> None:
    """rump_mount names its pid and stacks files and sets read-ahead by the mount's device
    number right after mounting, before its run loop: a stat() through the mount there waited
    on the server itself whenever a client request (a panicking mkdir in the test suite) had
    taken the workers first.  The device number now comes from /proc/self/mountinfo."""
    from rumpkernel.apps.rump_mount import pidfile_for, stacks_for
    from rumpkernel.hypercall import fusedev

    k = tmpfs_kernel
    release = threading.Event()
    calls: list[int] = []
    with served(k) as m:
        real = m.server.handlers[Op.GETATTR]

        def stuck(req: Any, worker: Any) -> Any:
            calls.append(1)
            release.wait(30)
            return real(req, worker)

        m.server.handlers[Op.GETATTR] = stuck
        try:
            with fusehang.watchdog(m.mountpoint, 10.0, None, None, "finding the mount"):
                pid_path, stacks_path = pidfile_for(m.mountpoint), stacks_for(m.mountpoint)
                fusedev.set_readahead(m.mountpoint, 1024)
            assert calls == [], calls
            dev = fusedev.mount_dev(m.mountpoint)
            assert dev is not None
            assert pid_path.endswith(f"{os.major(dev)}-{os.minor(dev)}.pid")
            assert stacks_path.endswith(f"{os.major(dev)}-{os.minor(dev)}.stacks")
        finally:
            release.set()
        assert os.stat(m.mountpoint).st_dev == dev              # the same mount, asked the slow way
    assert fusedev.mount_dev(m.mountpoint) is None or fusedev.mount_dev(m.mountpoint) != dev
