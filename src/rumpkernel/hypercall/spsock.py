"""Host services for sysproxy: sockets, URLs and the few process facilities a remote client needs.

The protocol itself is sans-IO (``client/sysproxy``); this module is the thin host layer under
the client library (``client/remote.py``) and the server (``apps/rump_server.py``).

URLs (dissertation section 3.12.1):
    unix://PATH           relative path; ``unix:///abs/path`` for an absolute one
    tcp://HOST:PORT       ``tcp://0:PORT`` listens on every address; ``[v6addr]`` allowed

Interface:
    parse_url(url) -> ("unix", path) | ("tcp", host, port)           ValueError
    connect(url, timeout=None) -> socket                              OSError
    listen(url, mode=0o600, backlog=128) -> socket                     OSError
    remove_socket(url)       unlink a unix socket file (clean shutdown)
    secret_from_env() -> bytes | None     RUMP_AUTH_FILE (first line of the file) or RUMP_AUTH
    getenv, getpid, monotonic, sleep, allocate_lock, register_at_fork, raise_signal,
    die(msg) -- the host calls the client library uses
"""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

allocate_lock = _thread.allocate_lock
get_ident = _thread.get_ident
getpid = os.getpid
monotonic = time.monotonic
sleep = time.sleep


def random_nonce() -> bytes:
    return os.urandom(32)


def getenv(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, default)


def parse_url(url: str) -> tuple[Any, ...]:
    if url.startswith("unix://"):
        path = url[len("unix://"):]
        if not path:
            raise ValueError(f"{url}: empty socket path")
        return ("unix", path)
    if url.startswith("tcp://"):
        rest = url[len("tcp://"):].rstrip("/")
        if rest.startswith("["):
            host, _, port = rest[1:].partition("]:")
        else:
            host, _, port = rest.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError(f"{url}: expected tcp://HOST:PORT")
        return ("tcp", "0.0.0.0" if host == "0" else host, int(port))
    raise ValueError(f"{url}: unsupported URL (unix://PATH or tcp://HOST:PORT)")


def _tune(s: socket.socket) -> socket.socket:
    if s.family in (socket.AF_INET, socket.AF_INET6):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def connect(url: str, timeout: float | None = None) -> socket.socket:
    u = parse_url(url)
    if u[0] == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(timeout)
            s.connect(u[1])
            s.settimeout(None)
        except OSError:
            s.close()
            raise
        return s
    s = socket.create_connection((u[1], u[2]), timeout=timeout)
    s.settimeout(None)
    return _tune(s)


def listen(url: str, mode: int = 0o600, backlog: int = 128) -> socket.socket:
    """A listening socket for ``url``; a unix socket gets ``mode`` from the start (it is bound
    under a restrictive umask, then chmod'ed), a stale socket file is replaced."""
    u = parse_url(url)
    if u[0] == "unix":
        path = u[1]
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            if _is_socket(path):
                os.unlink(path)
        old = os.umask(0o177)
        try:
            s.bind(path)
        except OSError:
            s.close()
            raise
        finally:
            os.umask(old)
        os.chmod(path, mode)
    else:
        fam = socket.AF_INET6 if ":" in u[1] else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((u[1], u[2]))
        except OSError:
            s.close()
            raise
    s.listen(backlog)
    return s


def _is_socket(path: str) -> bool:
    import stat

    return stat.S_ISSOCK(os.stat(path).st_mode)


def remove_socket(url: str) -> None:
    u = parse_url(url)
    if u[0] == "unix":
        with contextlib.suppress(OSError):
            if _is_socket(u[1]):
                os.unlink(u[1])


def tune_accepted(s: socket.socket) -> socket.socket:
    return _tune(s)


def secret_from_env() -> bytes | None:
    """The shared secret: the first line of $RUMP_AUTH_FILE, else $RUMP_AUTH, else None."""
    path = os.environ.get("RUMP_AUTH_FILE")
    if path:
        with open(path, "rb") as f:
            line = f.readline().rstrip(b"\r\n")
        if not line:
            raise ValueError(f"{path}: empty secret")
        return line
    v = os.environ.get("RUMP_AUTH")
    return os.fsencode(v) if v else None


def register_at_fork(before: Callable[[], None], after_in_child: Callable[[], None],
                     after_in_parent: Callable[[], None]) -> None:
    os.register_at_fork(before=before, after_in_child=after_in_child,
                        after_in_parent=after_in_parent)


def raise_signal(signo: int) -> None:
    signal.raise_signal(signo)


def die(msg: str) -> None:
    """rumpclient's RETRYCONN_DIE: report and end the process at once."""
    sys.stderr.write(msg + "\n")
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


def warn(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()
