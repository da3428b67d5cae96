"""Remote versus local system calls: the dissertation's Figure 3.37 experiment, plus the floor.

    PYTHONPATH=src python benchmarks/bench_sysproxy.py [--calls 10000] [--repeat 7]
                                                       [--copy-calls 2000] [--no-copybench]

1. the floor: a remote null system call (getpid) to a real ``rump_server`` process over a unix
   socket, beside a plain Python round trip of a 16-byte message over a unix socket to an echo
   process -- the least any Python request/reply can cost on this machine at this moment.  The
   two are measured in alternating rounds (``--repeat``, ``--calls`` each) and the medians are
   compared; the CPU time each side spends per call (from /proc) shows where the time goes.
2. ``copybench(npairs, src, dst, 64)`` -- a system call doing ``npairs`` copyin/copyout pairs of
   64 bytes -- for npairs = 0..8: a local client (same process) against a remote client (honest
   round trips, and with the optional piggy-backing of input), time per call (median of 3) and
   the remote/local ratio.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import rumpkernel

SRC = Path(__file__).resolve().parents[1] / "src"
ECHO = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1]); s.listen(1)
print("ready", flush=True)
c, _ = s.accept()
while True:
    d = c.recv(16)
    if not d:
        break
    c.sendall(d)
"""


def per_call_us(fn: Callable[[], object], n: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6


def proc_cpu(pid: int) -> float:
    """CPU seconds the threads of process ``pid`` have used (schedstat: nanoseconds)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass                      # a thread that ended meanwhile
    return total / 1e9


def self_cpu() -> float:
    return time.process_time()


def measure(fn: Callable[[], object], n: int, peer: int) -> tuple[float, float, float]:
    """(wall us, our CPU us, peer's CPU us) per call over ``n`` calls."""
    fn()
    c0, p0, t0 = self_cpu(), proc_cpu(peer), time.perf_counter()
    for _ in range(n):
        fn()
    wall = time.perf_counter() - t0
    return wall / n * 1e6, (self_cpu() - c0) / n * 1e6, (proc_cpu(peer) - p0) / n * 1e6


def copybench(sys_, npairs: int) -> Callable[[], object]:
    src, dst = b"s" * 64, bytearray(64)
    call = sys_.sys_copybench
    return lambda: call(npairs, src, dst, 64)


def start_server(tmp: Path) -> tuple[subprocess.Popen, str]:
    url = f"unix://{tmp}/bench.sock"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    p = subprocess.Popen([sys.executable, "-m", "rumpkernel.apps.rump_server", "-s", "-c", "1",
                          "-l", "kern", url], env=env)
    deadline = time.monotonic() + 30
    while True:
        try:
            rumpkernel.connect(url, autofork=False).close()
            return p, url
        except OSError:
            if time.monotonic() > deadline:
                p.kill()
                raise
            time.sleep(0.05)


def start_echo(tmp: Path) -> tuple[subprocess.Popen, socket.socket]:
    path = str(tmp / "echo.sock")
    p = subprocess.Popen([sys.executable, "-c", ECHO, path], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    return p, s


def echo_roundtrip(s: socket.socket) -> Callable[[], None]:
    msg = b"x" * 16

    def rt() -> None:
        s.sendall(msg)
        got = 0
        while got < 16:
            got += len(s.recv(16 - got))
    return rt


def floor(conn, server: subprocess.Popen, tmp: Path, calls: int, repeat: int) -> None:
    echo, s = start_echo(tmp)
    try:
        rt = echo_roundtrip(s)
        remote, floor_ = [], []
        for _ in range(repeat):                        # alternate: both see the same machine
            remote.append(measure(conn.sys.getpid, calls, server.pid))
            floor_.append(measure(rt, calls, echo.pid))
    finally:
        s.close()
        echo.wait(10)
        if echo.stdout is not None:
            echo.stdout.close()

    def med(rows: list[tuple[float, float, float]], i: int) -> float:
        return statistics.median(r[i] for r in rows)

    r, e = med(remote, 0), med(floor_, 0)
    print(f"null system call (getpid), medians of {repeat} alternating rounds of {calls} calls:")
    print(f"  remote  {r:7.1f} us   client CPU {med(remote, 1):5.1f} us   "
          f"server CPU {med(remote, 2):5.1f} us")
    print(f"  echo    {e:7.1f} us   client CPU {med(floor_, 1):5.1f} us   "
          f"server CPU {med(floor_, 2):5.1f} us")
    print(f"  remote / echo floor = {r / e:.2f}   (rounds: "
          + " ".join(f"{a[0] / b[0]:.2f}" for a, b in zip(remote, floor_)) + ")\n")


def copytable(k, honest, piggy, local_calls: int, remote_calls: int) -> None:
    print(f"copybench: 64-byte copyin/copyout pairs; median of 3 runs of {local_calls} local "
          f"and {remote_calls} remote calls (unix socket, separate server process)\n")
    print(f"{'pairs':>5} {'local us':>10} {'remote us':>10} {'ratio':>7} "
          f"{'piggyback us':>13} {'ratio':>7}")

    def med(fn: Callable[[], object], n: int) -> float:
        return statistics.median(per_call_us(fn, n) for _ in range(3))

    for npairs in range(9):
        lo = med(copybench(k.sys, npairs), local_calls)
        re = med(copybench(honest.sys, npairs), remote_calls)
        pb = med(copybench(piggy.sys, npairs), remote_calls)
        print(f"{npairs:>5} {lo:>10.2f} {re:>10.1f} {re / lo:>7.0f} {pb:>13.1f} "
              f"{pb / lo:>7.0f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=10_000, help="remote null calls per round")
    ap.add_argument("--repeat", type=int, default=7, help="alternating rounds for the floor")
    ap.add_argument("--copy-calls", type=int, default=2_000, help="remote copybench calls")
    ap.add_argument("--no-copybench", action="store_true")
    a = ap.parse_args()
    k = rumpkernel.boot(components=())
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        server, url = start_server(tmp)
        honest = rumpkernel.connect(url, autofork=False)
        piggy = rumpkernel.connect(url, autofork=False, piggyback=True)
        try:
            floor(honest, server, tmp, a.calls, a.repeat)
            if not a.no_copybench:
                copytable(k, honest, piggy, a.copy_calls * 10, a.copy_calls)
        finally:
            honest.close()
            piggy.close()
            server.terminate()
            server.wait(30)
            k.halt()


if __name__ == "__main__":
    main()
