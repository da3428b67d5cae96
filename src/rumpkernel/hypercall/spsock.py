"""Host services for sysproxy: sockets, URLs, a readiness poller, threads, and the few process
facilities a remote client needs.

The protocol itself is sans-IO (``client/sysproxy``); this module is the thin host layer under
the client library (``client/remote.py``) and the server transport
(``client/sysproxy/transport.py``, driven by ``apps/rump_server.py``).  Interface version 2
(version 1 had no Listener/Channel/Poller: the server used sockets and threads directly).

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

Server side (the transport):
    Listener(url | socket, mode)  .accept() -> (socket, peer) | None (nothing pending;
                                  OSError e.g. EMFILE), .fileno(), .close()
    Channel(socket, peer, idle_s) one accepted connection: .recv() -> bytes (b"" = EOF) or
                                  None when nothing came for ``idle_s`` seconds (SO_RCVTIMEO: one
                                  system call, no poll), .recv_nowait(), .sendall(data),
                                  .send_nowait(data) -> bool, .shutdown(), .close()  -- OSError
    Poller()                      epoll: add(fd, key, oneshot), rearm(fd), remove(fd),
                                  wait(timeout_s | None) -> [key, ...], wake(), close().  A
                                  one-shot fd reports once, then stays quiet until rearm().
    start_thread(fn, name), thread_count(), current_thread_ident
"""

from __future__ import annotations

import _thread
import contextlib
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

allocate_lock = _thread.allocate_lock
get_ident = _thread.get_ident
current_thread_ident = _thread.get_ident
getpid = os.getpid
monotonic = time.monotonic
sleep = time.sleep
# Bytes asked of one recv.  Keep it below malloc's mmap threshold (128 KiB): a bigger request
# makes every recv an mmap + mremap + munmap, about 25 us a call here.
RECV_SIZE = 1 << 16


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


# ---- server side -------------------------------------------------------------------------------
def start_thread(fn: Callable[[], None], name: str) -> threading.Thread:
    t = threading.Thread(target=fn, name=name, daemon=True)
    t.start()
    return t


def thread_count() -> int:
    """Host threads of this process (for statistics)."""
    return threading.active_count()


def _peer(addr: Any) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f" from {addr[0]}:{addr[1]}"
    return ""


class Listener:
    """A listening socket for the transport's IO thread: accept() never blocks."""

    def __init__(self, where: str | socket.socket, mode: int = 0o600, backlog: int = 128) -> None:
        self.sock = listen(where, mode, backlog) if isinstance(where, str) else where
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def accept(self) -> tuple[socket.socket, str] | None:
        try:
            sock, addr = self.sock.accept()
        except BlockingIOError:
            return None
        sock.setblocking(True)
        return _tune(sock), _peer(addr)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class Channel:
    """One accepted connection: a blocking socket whose receives give up after ``idle_s``
    seconds (SO_RCVTIMEO), so a reader thread can wait for the next frame and still notice an
    idle connection with one system call per receive."""

    __slots__ = ("_recv", "fd", "peer", "sendall", "sock")

    def __init__(self, sock: socket.socket, peer: str, idle_s: float) -> None:
        self.sock = sock
        self.peer = peer
        self.fd = sock.fileno()
        sec = int(idle_s)
        usec = round((idle_s - sec) * 1e6) or (0 if sec else 1)   # 0/0 would mean never
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("@ll", sec, usec))
        self._recv = sock.recv
        self.sendall = sock.sendall

    def recv(self) -> bytes | None:
        """Up to RECV_SIZE bytes; b"" at EOF; None if nothing came within the idle time."""
        try:
            return self._recv(RECV_SIZE)
        except BlockingIOError:
            return None

    def recv_nowait(self) -> bytes | None:
        try:
            return self._recv(RECV_SIZE, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return None

    def send_nowait(self, data: bytes) -> bool:
        """Send all of ``data`` now or report False (a peer that does not read)."""
        try:
            return self.sock.send(data, socket.MSG_DONTWAIT) == len(data)
        except OSError:
            return False

    def shutdown(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.sock.close()


class Poller:
    """Readiness of many descriptors for one thread (epoll).  Keys are the caller's objects."""

    def __init__(self) -> None:
        self._ep = select.epoll()
        self._keys: dict[int, Any] = {}
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._ep.register(self._wake_r, select.EPOLLIN)

    def add(self, fd: int, key: Any, oneshot: bool = True) -> None:
        self._keys[fd] = key
        self._ep.register(fd, select.EPOLLIN | (select.EPOLLONESHOT if oneshot else 0))

    def rearm(self, fd: int) -> None:
        with contextlib.suppress(OSError):       # closed meanwhile: nothing to watch
            self._ep.modify(fd, select.EPOLLIN | select.EPOLLONESHOT)

    def remove(self, fd: int) -> None:
        self._keys.pop(fd, None)
        with contextlib.suppress(OSError, ValueError):
            self._ep.unregister(fd)

    def wait(self, timeout: float | None) -> list[Any]:
        try:
            events = self._ep.poll(-1 if timeout is None else max(0.0, timeout))
        except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for safety
            return []
        out = []
        keys = self._keys
        for fd, _ in events:
            if fd == self._wake_r:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 4096)
                continue
            key = keys.get(fd)
            if key is not None:
                out.append(key)
        return out

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"!")

    def close(self) -> None:
        self._ep.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
