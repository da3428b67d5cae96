"""Helpers for remote-mode tests: real rump_server processes, in-process servers, and a view of
a served kernel that looks like a local one to tests written for ``k.sys``."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import rumpkernel
from rumpkernel.apps.rump_server import Server
from rumpkernel.client.remote import RemoteClient, connect
from rumpkernel.client.sys import Sys

SRC = Path(__file__).resolve().parents[2] / "src"


def env(**extra: str) -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(SRC) + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("RUMP_AUTH", None)
    e.pop("RUMP_AUTH_FILE", None)
    e.update(extra)
    return e


def wait_connectable(url: str, proc: subprocess.Popen | None = None, timeout: float = 30.0,
                     **kw: Any) -> RemoteClient:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return connect(url, autofork=False, **kw)
        except (FileNotFoundError, ConnectionRefusedError):
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"rump_server exited {proc.returncode}: "
                                   f"{proc.stderr.read() if proc.stderr else ''}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class ServerProcess:
    """``python -m rumpkernel.apps.rump_server -s ... URL`` as a child process."""

    def __init__(self, url: str, *args: str, extra_env: dict[str, str] | None = None,
                 secret: bytes | None = None) -> None:
        self.url = url
        self.secret = secret
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rumpkernel.apps.rump_server", "-s", *args, url],
            env=env(**(extra_env or {})), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        self._stderr: str | None = None
        c = wait_connectable(url, self.proc, secret=secret)
        c.close()

    def connect(self, **kw: Any) -> RemoteClient:
        kw.setdefault("autofork", False)
        kw.setdefault("secret", self.secret)
        return connect(self.url, **kw)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            if self.proc.poll() is not None:
                _ = self.stderr
        return self.proc.returncode

    @property
    def stderr(self) -> str:
        if self._stderr is None:
            self.proc.wait(60)
            self._stderr = self.proc.stderr.read() if self.proc.stderr else ""
            if self.proc.stderr:
                self.proc.stderr.close()
        return self._stderr

    def close(self) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.stop(timeout=15)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        _ = self.stderr


def stat(conn: RemoteClient, name: str) -> int:
    """A kernel statistic, read remotely (kern.stat.<name> sysctl)."""
    return int(conn.sys.sysctl(f"kern.stat.{name}"))


def wait_for(pred: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return bool(pred())


class RemoteLwproc:
    """What tests written for local kernels use of rump_lwproc(3), done the remote way: rfork
    opens a new connection (a new process, child of pid 1, root) and release closes it."""

    def __init__(self, view: RemoteView) -> None:
        self.view = view
        self.stack: list[RemoteClient] = []

    def rfork(self, flags: int = 0) -> int:
        self.stack.append(self.view.conn)
        self.view.conn = connect(self.view.url, autofork=False)
        return self.view.conn.pid

    def release(self) -> None:
        self.view.conn.close()
        self.view.conn = self.stack.pop()


class RemoteView:
    """A served kernel seen through a remote connection: ``.sys`` follows the current
    connection (as ``k.sys`` follows the thread's lwp), everything else is the kernel's."""

    def __init__(self, k: Any, tmp: Path) -> None:
        self.k = k
        self.url = f"unix://{tmp}/k.sock"
        self.server = Server(k, self.url).start()
        self.conn = connect(self.url, autofork=False)
        self.sys = Sys(lambda num, args: self.conn._call(num, args))
        self.lwproc = RemoteLwproc(self)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.k, name)

    def close(self) -> None:
        while self.lwproc.stack:
            self.lwproc.release()
        self.conn.close()
        self.server.stop(halt=False)

    def halt(self) -> None:
        self.close()
        self.k.halt()


@contextlib.contextmanager
def served(tmp: Path, **boot: Any) -> Iterator[RemoteView]:
    k = rumpkernel.boot(**boot)
    view = RemoteView(k, tmp)
    try:
        yield view
    finally:
        if not k.dead:
            view.halt()
