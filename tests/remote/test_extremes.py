"""No argument value of any system call may panic a served kernel or kill rump_server (issue #17,
defect 13, the remote half): every system call in the master table, called through a real
``rump_server`` process with extreme integers (0, -1, 2**31, 2**63-1, 2**64) and random bytes
for pointers, gives a value or an ``OSError`` -- never another exception -- and the server stays
up.  A call that blocks (a huge timeout) is cut off by closing its connection, which must work
too (the server interrupts the call).  ``RUMP_EXTREMES_SEED=x`` draws another matrix."""

from __future__ import annotations

import contextlib
import os
import random
import struct
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from rumpkernel.kern.syscall.master import SYSCALLS
from tests.remote.harness import ServerProcess

EXTREMES = (0, -1, 2**31, 2**63 - 1, 2**64)
DEADLINE_S = 0.25              # a call still running after this is blocked: cut it off
NOT_CALLED = {"reboot": "ends the server on purpose (rump.halt)"}
# system calls known to panic the kernel for some of these values (strict xfail, with the issue)
KNOWN_PANICS: dict[str, str] = {}
SEED = os.environ.get("RUMP_EXTREMES_SEED", "extremes")   # another seed: another matrix


class Served:
    """One rump_server for the module, restarted if a call killed it (so one panic does not
    hide the next)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.n = 0
        self.srv = self._start()

    def _start(self) -> ServerProcess:
        self.n += 1
        return ServerProcess(f"unix://{self.tmp}/s{self.n}", "-c", "2")

    def alive(self) -> bool:
        return self.srv.proc.poll() is None

    def restart(self) -> str:
        """The dead server's stderr (for the failure message); a fresh server from now on."""
        self.srv.close()
        why = self.srv.stderr
        self.srv = self._start()
        return why


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    box = Served(tmp_path_factory.mktemp("extremes"))
    yield box
    box.srv.close()


# pointer contents: random bytes, or records made of extreme words (a timespec of 2**63-1
# seconds, an rlimit of -1 ...), which random bytes would rarely spell
WORDS = tuple(struct.pack("<q", v) for v in (0, -1, 2**31, 2**63 - 1, -(2**63), 999_999_999))


def _pointer(kind: str, rng: random.Random) -> Any:
    if rng.random() < 0.15:
        return None
    if rng.random() < 0.4:
        data = b"".join(rng.choice(WORDS) for _ in range(rng.choice((1, 2, 3, 4, 8))))
    else:
        data = rng.randbytes(rng.choice((0, 1, 8, 16, 64, 300)))
    if kind in ("vin", "vout"):
        buf = bytearray(data) if kind == "vout" else data
        return [(buf, rng.choice((*EXTREMES, len(data))))]
    if kind in ("out", "inout") and rng.random() < 0.7:
        return bytearray(data)                    # writable: copyout gets exercised
    return data


def argument_sets(kinds: list[str], rng: random.Random) -> list[list[Any]]:
    """Every integer argument at each extreme together (input records made of the same
    extreme: a timespec of 2**63-1 s), then each one alone (the others 0, random pointers),
    then a few seeded mixtures."""
    ints = [i for i, k in enumerate(kinds) if k == "int"]

    def base() -> list[Any]:
        return [0 if k == "int" else _pointer(k, rng) for k in kinds]

    out = []
    for v in EXTREMES:                 # the extreme in every integer and every input record
        rec = (struct.pack("<Q", v % 2**64) + struct.pack("<q", 999_999_999)) * 2   # timespecs
        a = [v if k == "int" else
             [(rec, 32)] if k == "vin" else
             [(bytearray(32), 32)] if k == "vout" else
             bytearray(32) if k == "out" else rec for k in kinds]
        out.append(a)
    for i in ints:
        for v in EXTREMES:
            a = base()
            a[i] = v
            out.append(a)
    for _ in range(4 if ints else 6):
        a = base()
        for i in ints:
            a[i] = rng.choice((*EXTREMES, 1, 2, 3, 4096, -100))
        out.append(a)
    return out


def _call(conn: Any, num: int, args: list[Any]) -> tuple[str, Any] | None:
    """(outcome, value) of one call, or None if it was still running at the deadline (its
    connection is then closed, which must end it)."""
    got: list[tuple[str, Any]] = []

    def run() -> None:
        try:
            got.append(("value", conn._call(num, tuple(args))))
        except OSError as e:
            got.append(("oserror", e))
        except BaseException as e:               # KernelPanic, TypeError, ...: a failure
            got.append(("bad", e))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(DEADLINE_S)
    if not t.is_alive():
        return got[0]
    conn.close()
    t.join(15)
    assert not t.is_alive(), "closing the connection did not end a blocked call"
    assert got and got[0][0] == "oserror", got
    return None


def _cases() -> list[Any]:
    out = []
    for sc in SYSCALLS:
        if sc.name in NOT_CALLED:
            continue
        marks = [pytest.mark.xfail(strict=True, reason=KNOWN_PANICS[sc.name])] \
            if sc.name in KNOWN_PANICS else []
        out.append(pytest.param(sc, id=sc.name, marks=marks))
    return out


@pytest.mark.parametrize("sc", _cases())
def test_extreme_arguments_remotely(served: Served, sc: Any) -> None:
    rng = random.Random(f"{SEED}-{sc.name}")
    kinds = [k for _, k in sc.args]
    conn = served.srv.connect()
    bad: list[str] = []
    blocked = 0
    try:
        for args in argument_sets(kinds, rng):
            what = f"{sc.name}{tuple(_short(a) for a in args)}"
            outcome = _call(conn, sc.num, args)
            if outcome is None:
                blocked += 1
            elif outcome[0] == "bad":
                bad.append(f"{what}: {type(outcome[1]).__name__}: {outcome[1]}")
            conn = _after_call(served, conn, what, outcome, bad)
        assert conn.sys.getpid() == conn.pid            # the server still serves
    finally:
        conn.close()
    assert not bad, "\n".join(bad)
    assert blocked <= 12, f"{blocked} calls of {sc.name} blocked"


def _after_call(served: Served, conn: Any, what: str, outcome: Any, bad: list[str]) -> Any:
    """The connection to use next: a panicked or dead server is recorded and replaced (so the
    next system call is still tried); a connection we cut off or that broke is renewed."""
    from rumpkernel import KernelPanic

    panicked = outcome is not None and isinstance(outcome[1], KernelPanic)
    if panicked or not served.alive() or conn._broken is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            served.srv.proc.wait(15 if panicked else 0.5)
        if not served.alive():
            bad.append(f"{what} killed the server (exit {served.srv.proc.returncode}):\n"
                       + served.restart()[-3000:])
        conn.close()
        return served.srv.connect()
    return conn


def _short(a: Any) -> Any:
    if isinstance(a, (bytes, bytearray)):
        return f"<{len(a)} bytes>"
    if isinstance(a, list):
        return [(_short(b), n) for b, n in a]
    return a


def test_the_matrix_covers_the_table() -> None:
    called = {p.values[0].name for p in _cases()}
    assert called | set(NOT_CALLED) == {sc.name for sc in SYSCALLS}
    sets = argument_sets(["int", "in", "int"], random.Random(1))
    assert [2**64, 2**64] in [[a[0], a[2]] for a in sets]           # together
    assert [0, 2**63 - 1] in [[a[0], a[2]] for a in sets]           # and alone
