"""A chain of kernel processes joined by shmif buses, forwarding between them (the
dissertation's linear cluster, Figure 4.15).

    with Chain(16, "/tmp/dir") as ch:      # 16 rump_server processes, 15 buses
        rtts = ch.ping(count=3)            # from the first kernel to the last

Kernel i has shmif0 on bus i-1 (its address .2 there) and shmif1 on bus i (.1); bus j is the
/24 10.(100 + j // 200).(j % 200).0.  Every kernel forwards; routes send traffic for the last
kernel's network right and for the first kernel's network left.

Interface:
    Chain(n, workdir, python=sys.executable, boot_timeout=...)   start, configure
    .conns        remote connections, one per kernel
    .ping(count, timeout) -> [rtt seconds | None]               kernel 0 -> kernel n-1
    .boot_seconds / .config_seconds                             how long starting took
    .close()      stop every server (always, also on errors)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from rumpkernel.client.remote import connect


def _addr(bus: int, host: int) -> str:
    """Bus j is the /24 10.(100 + j // 200).(j % 200).0: room for 30,000 buses."""
    return f"10.{100 + bus // 200}.{bus % 200}.{host}"


class Chain:
    def __init__(self, n: int, workdir: str, python: str = sys.executable,
                 boot_timeout: float = 120.0, components: tuple[str, ...] = ()) -> None:
        if not 2 <= n <= 1000:
            raise ValueError("a chain has 2 to 1,000 kernels")
        self.n = n
        self.workdir = workdir
        self.procs: list[subprocess.Popen] = []
        self.conns: list[Any] = []
        t0 = time.monotonic()
        try:
            self._start(python, boot_timeout, components)
            self.boot_seconds = time.monotonic() - t0
            t1 = time.monotonic()
            self._configure()
            self.config_seconds = time.monotonic() - t1
        except BaseException:
            self.close()
            raise

    def url(self, i: int) -> str:
        return f"unix://{self.workdir}/chain{i}.sock"

    def _start(self, python: str, timeout: float, components: tuple[str, ...]) -> None:
        args = [a for c in components for a in ("-l", c)]
        env = dict(os.environ)
        for i in range(self.n):
            self.procs.append(subprocess.Popen(
                [python, "-m", "rumpkernel.apps.rump_server", "-s", "-c", "1", *args,
                 self.url(i)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + timeout
        for i in range(self.n):
            while True:
                try:
                    self.conns.append(connect(self.url(i), autofork=False, timeout=60))
                    break
                except (FileNotFoundError, ConnectionRefusedError, TimeoutError):
                    if self.procs[i].poll() is not None:
                        raise RuntimeError(f"chain kernel {i} exited "
                                           f"{self.procs[i].returncode}") from None
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)

    def _configure(self) -> None:
        last = self.n - 1
        for i, c in enumerate(self.conns):
            cfg = c.socket.config
            if i > 0:
                cfg.ifconfig("shmif0", create=True, linkstr=self._bus(i - 1),
                             inet=_addr(i - 1, 2) + "/24")
            if i < last:
                cfg.ifconfig("shmif1", create=True, linkstr=self._bus(i),
                             inet=_addr(i, 1) + "/24")
            c.sys.sysctl("net.inet.ip.forwarding", 1)
            c.sys.sysctl("net.inet.ip.ttl", 255)      # as the dissertation had to, for 255 hops
            if i < last - 1:                  # the last kernel's network lies to the right
                cfg.route_add(_addr(last - 1, 0) + "/24", gateway=_addr(i, 2))
            if i > 1:                         # the first kernel's network lies to the left
                cfg.route_add(_addr(0, 0) + "/24", gateway=_addr(i - 1, 1))

    def _bus(self, j: int) -> str:
        return os.path.join(self.workdir, f"bus{j}")

    @property
    def first_addr(self) -> str:
        return _addr(0, 1)

    @property
    def last_addr(self) -> str:
        return _addr(self.n - 2, 2)

    def ping(self, count: int = 1, timeout: float = 10.0, size: int = 56) -> list[float | None]:
        from rumpkernel.net.wire import icmp

        S = self.conns[0].socket
        out: list[float | None] = []
        with S.socket(S.AF_INET, S.SOCK_RAW, S.IPPROTO_ICMP) as s:
            s.settimeout(timeout)
            for seq in range(count):
                t0 = time.monotonic()
                s.sendto(icmp.echo(icmp.ECHO, 0xC4A1, seq, bytes(size)).emit(),
                         (self.last_addr, 0))
                rtt = None
                try:
                    while rtt is None:
                        data, _ = s.recvfrom(2048)
                        m = icmp.parse(data[(data[0] & 0xF) * 4 :])
                        if m.type == icmp.ECHO_REPLY and m.ident == 0xC4A1 and m.seq == seq:
                            rtt = time.monotonic() - t0
                except TimeoutError:
                    pass
                out.append(rtt)
        return out

    def close(self) -> None:
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
        self.conns = []
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 30
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []

    def __enter__(self) -> Chain:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
