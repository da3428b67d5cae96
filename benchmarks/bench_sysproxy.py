"""Remote versus local system calls: the dissertation's Figure 3.37 experiment, plus the floor.

    PYTHONPATH=src python benchmarks/bench_sysproxy.py [--local-calls 100000]
                                                       [--remote-calls 10000]

1. ``copybench(npairs, src, dst, 64)`` -- a system call doing ``npairs`` copyin/copyout pairs of
   64 bytes -- for npairs = 0..8: a local client (same process) against a remote client of a
   real ``rump_server`` process over a unix socket (honest round trips, and with the optional
   piggy-backing of input), time per call and the remote/local ratio.  The dissertation ran
   100,000 calls; the remote side defaults to 10,000 here because each call costs a few hundred
   microseconds in Python (``--remote-calls 100000`` reproduces the full count).
2. the floor: a remote null system call (getpid) beside a plain Python round trip of a 16-byte
   message over a unix socket to an echo process, measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
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


def per_call_us(fn, n: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6


def copybench(sys_, npairs: int):
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


def echo_rtt_us(tmp: Path, n: int) -> float:
    path = str(tmp / "echo.sock")
    p = subprocess.Popen([sys.executable, "-c", ECHO, path], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        msg = b"x" * 16

        def rt() -> None:
            s.sendall(msg)
            got = 0
            while got < 16:
                got += len(s.recv(16 - got))
        us = per_call_us(rt, n)
        s.close()
        return us
    finally:
        p.wait(10)
        p.stdout.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--local-calls", type=int, default=100_000)
    ap.add_argument("--remote-calls", type=int, default=10_000)
    a = ap.parse_args()
    k = rumpkernel.boot(components=())
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        server, url = start_server(tmp)
        honest = rumpkernel.connect(url, autofork=False)
        piggy = rumpkernel.connect(url, autofork=False, piggyback=True)
        try:
            print(f"copybench: 64-byte copyin/copyout pairs; local {a.local_calls} calls, "
                  f"remote {a.remote_calls} calls (unix socket, separate server process)\n")
            print(f"{'pairs':>5} {'local us':>10} {'remote us':>10} {'ratio':>7} "
                  f"{'piggyback us':>13} {'ratio':>7}")
            for npairs in range(9):
                lo = per_call_us(copybench(k.sys, npairs), a.local_calls)
                re = per_call_us(copybench(honest.sys, npairs), a.remote_calls)
                pb = per_call_us(copybench(piggy.sys, npairs), a.remote_calls)
                print(f"{npairs:>5} {lo:>10.2f} {re:>10.1f} {re / lo:>7.0f} {pb:>13.1f} "
                      f"{pb / lo:>7.0f}")
            null_local = per_call_us(k.sys.getpid, a.local_calls)
            null_remote = per_call_us(honest.sys.getpid, a.remote_calls)
            echo = echo_rtt_us(tmp, a.remote_calls)
            print(f"\nnull syscall (getpid): local {null_local:.2f} us, remote {null_remote:.1f} "
                  f"us; Python unix-socket echo round trip {echo:.1f} us "
                  f"(remote / echo = {null_remote / echo:.1f})")
        finally:
            honest.close()
            piggy.close()
            server.terminate()
            server.wait(30)
            k.halt()


if __name__ == "__main__":
    main()
