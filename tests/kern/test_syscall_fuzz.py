"""No argument value of any system call may panic the kernel (#17, defect 13).

Every system call of the master table is called with extreme integers (0, -1, 2**31, 2**63-1,
2**64, -2**63) and random bytes for pointer arguments, in a fresh process of a kernel with every
component; only ``OSError`` (or a result) may come back, and the kernel must stay alive.  A call
that legitimately blocks (a sleep of 2**63 seconds) is interrupted by ending its process after a
short while.  ``reboot`` is left out: halting the kernel is its job.
"""

from __future__ import annotations

import os
import random
import threading
import time

import pytest

import rumpkernel
from rumpkernel.kern.syscall.master import SYSCALLS

INTS = (0, -1, 1, 2**31, 2**63 - 1, 2**64, -(2**63))
SKIP = {"reboot"}
PATHS = (b"/", b"/f", b"/d", b"/d/g", b"/dev/null", b"/d/../f", b"/tmp", b"/nonexistent/x")


def _arg(kind: str, rng: random.Random, n: int) -> object:
    if kind == "int":
        r = rng.random()
        if r < 0.6:
            return INTS[n % len(INTS)]
        return rng.randrange(0, 8) if r < 0.85 else rng.randrange(-5, 70000)   # real fds too
    if kind == "str":
        if rng.random() < 0.6:
            return rng.choice(PATHS)
        return rng.randbytes(rng.randrange(0, 64)).replace(b"\0", b"/")
    if kind == "in":
        return rng.randbytes(rng.choice((0, 1, 8, 16, 100, 4096)))
    if kind in ("out", "inout"):
        return bytearray(rng.randbytes(rng.choice((0, 1, 8, 16, 100, 4096))))
    if kind == "vin":
        return [(rng.randbytes(8), INTS[n % len(INTS)] if rng.random() < 0.5 else 8)
                for _ in range(rng.randrange(0, 3))]
    if kind == "vout":
        return [(bytearray(8), INTS[n % len(INTS)] if rng.random() < 0.5 else 8)
                for _ in range(rng.randrange(0, 3))]
    raise AssertionError(kind)


def _call_in_own_process(k: rumpkernel.Kernel, num: int, args: tuple) -> BaseException | None:
    """Run one call in a fresh process on its own thread; end the process if it blocks."""
    box: list[BaseException | None] = []
    lwps: list = []

    def run() -> None:
        k.lwproc.rfork()                    # RFFDG: a copy of pid 1's descriptors
        lwps.append(k.lwproc.curlwp())
        try:
            k.sys._call(num, args)
            box.append(None)
        except BaseException as e:
            box.append(e)
        finally:
            k.lwproc.release()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(0.5)
    if t.is_alive() and lwps:
        with k.entered():
            k.procs.exit(lwps[0].proc)      # a blocked call ends with EINTR
        t.join(10)
    assert not t.is_alive(), f"syscall {num} still blocked after its process ended"
    return box[0] if box else None


@pytest.mark.parametrize("seed", range(3))
def test_every_syscall_with_extreme_arguments(seed: int) -> None:
    rng = random.Random(seed)
    k = rumpkernel.boot()
    k.sys.mkdir("/d", 0o755)
    k.sys.mkdir("/tmp", 0o1777)
    k.sys.mount("tmpfs", "/tmp")
    for path in ("/f", "/d/g", "/tmp/h"):
        with k.open(path, "wb") as f:
            f.write(b"data" * 100)
    held = [k.sys.open("/f", os.O_RDWR), k.sys.open("/d", os.O_RDONLY), *k.sys.pipe(),
            k.sys.open("/dev/null", os.O_RDWR), k.sys.open("/tmp/h", os.O_RDWR)]
    try:
        for sc in SYSCALLS:
            if sc.name in SKIP:
                continue
            for n in range(len(INTS)):
                args = tuple(_arg(kind, rng, n + i) for i, (_, kind) in enumerate(sc.args))
                err = _call_in_own_process(k, sc.num, args)
                assert k.panicked is None, f"{sc.name}{args!r} panicked the kernel:\n" \
                    f"{k.panicked.stacks if k.panicked else ''}"
                assert err is None or isinstance(err, OSError), \
                    f"{sc.name}{args!r} raised {type(err).__name__}: {err}"
        for fd in held:
            k.sys.close(fd)
    finally:
        deadline = time.monotonic() + 10
        while not k.dead and time.monotonic() < deadline:
            k.halt()
