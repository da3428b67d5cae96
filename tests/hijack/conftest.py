"""Fixtures for the hijacked-network tests: an in-process hijack over a local kernel (``hj``),
and helpers to run unmodified programs under ``python -m rumpkernel.hijack``."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import rumpkernel
from rumpkernel.apps.hijack import Hijack, Policy
from tests.remote.harness import env


class InProcess:
    """A hijack installed in this process: ``k`` the kernel, ``off`` the descriptor offset."""

    def __init__(self, k: Any, hj: Hijack) -> None:
        self.k = k
        self.hj = hj
        self.off = hj.off


@contextlib.contextmanager
def hijacked(policy: str, components: list[str] | None = None) -> Iterator[InProcess]:
    k = rumpkernel.boot(components=components)
    hj = Hijack(k.sys, Policy(policy))
    hj.install()
    try:
        yield InProcess(k, hj)
    finally:
        hj.uninstall()
        k.halt()


@pytest.fixture
def hj() -> Iterator[InProcess]:
    """Every socket family routed to a local kernel (its own stack: UDP, local sockets)."""
    with hijacked("socket=all") as h:
        yield h


def hijack_cmd(mode: str, *args: str, policy: str | None = None) -> list[str]:
    """``mode``: "local", "sockin" or a server URL."""
    pre = {"local": ["--local"], "sockin": ["--sockin"]}.get(mode, ["-u", mode])
    if policy is not None:
        pre += ["-p", policy]
    return [sys.executable, "-m", "rumpkernel.hijack", *pre, *args]


def run_hijacked(mode: str, *args: str, cwd: Path, policy: str | None = None,
                 timeout: float = 60) -> subprocess.CompletedProcess:
    r = subprocess.run(hijack_cmd(mode, *args, policy=policy), cwd=cwd, env=env(),
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


@contextlib.contextmanager
def background(mode: str, *args: str, cwd: Path, policy: str | None = None
               ) -> Iterator[subprocess.Popen]:
    """A hijacked program running while the body runs; killed (and reaped) after."""
    p = subprocess.Popen(hijack_cmd(mode, *args, policy=policy), cwd=cwd, env=env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield p
    finally:
        if p.poll() is None:
            p.terminate()
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        for f in (p.stdout, p.stderr):
            if f is not None:
                f.close()


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 30) -> None:
    """Until something accepts on 127.0.0.1:``port`` (from this thread's namespace)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"exited {proc.returncode}: {proc.stderr.read()}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def port_owner(port: int) -> int | None:
    """The pid of the process holding the listening TCP socket on ``port`` (this namespace)."""
    inode = None
    for name in ("tcp", "tcp6"):
        with open(f"/proc/thread-self/net/{name}") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                    inode = fields[9]
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                        return int(pid)
    return None
