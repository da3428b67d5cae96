"""A kernel bug is a panic: stack dump, that kernel stops, everything else keeps running."""

from __future__ import annotations

import pytest

import rumpkernel
from rumpkernel import KernelPanic, SimHost

TEST_SYSCALL = 500


def buggy(l, x):
    return {"a": 1}[x]  # KeyError for anything but "a": a bug, not an errno


def test_bug_in_syscall_panics_only_that_kernel(capfd) -> None:
    victim = rumpkernel.boot(components=(), hostname="victim")
    bystander = rumpkernel.boot(components=(), hostname="bystander")
    victim.install_syscall(TEST_SYSCALL, buggy)
    assert victim.sys._call(TEST_SYSCALL, ("a",)) == 1
    with pytest.raises(KernelPanic) as ei:
        victim.sys._call(TEST_SYSCALL, ("b",))
    assert "KeyError" in ei.value.message
    assert "buggy" in ei.value.stacks and "Traceback" in ei.value.stacks
    err = capfd.readouterr().err
    assert "panic:" in err and "[victim]" in err          # dumped on the console
    with pytest.raises(KernelPanic):                       # the kernel stays stopped
        victim.sys.getpid()
    assert victim.dead
    r, w = bystander.sys.pipe()                             # the other kernel is fine
    bystander.sys.write(w, b"ok")
    assert bystander.sys.read(r, 2) == b"ok"
    bystander.sys.close(r)
    bystander.sys.close(w)
    bystander.halt()


def test_panic_wakes_blocked_threads_sim() -> None:
    import threading
    import time
    k = rumpkernel.boot(SimHost(9), components=())
    k.install_syscall(TEST_SYSCALL, buggy)
    r, _w = k.sys.pipe()
    result: list[BaseException] = []

    def reader() -> None:
        try:
            k.sys.read(r, 1)
        except BaseException as e:
            result.append(e)

    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.05)
    with pytest.raises(KernelPanic):
        k.sys._call(TEST_SYSCALL, ("zzz",))
    t.join(5)
    assert not t.is_alive()
    assert result and isinstance(result[0], (OSError, KernelPanic))


def test_kernel_error_is_not_a_panic() -> None:
    k = rumpkernel.boot(components=())
    from rumpkernel import Errno, KernelError

    def fails(l):
        raise KernelError(Errno.EDQUOT, "quota")

    k.install_syscall(TEST_SYSCALL, fails)
    with pytest.raises(OSError) as ei:
        k.sys._call(TEST_SYSCALL, ())
    import errno
    assert ei.value.errno == errno.EDQUOT and "quota" in ei.value.strerror
    assert not k.dead
    k.halt()
