"""Host side of sockin: the host's own TCP/IP sockets, for a kernel whose AF_INET/AF_INET6
socket calls are served by them (``net/sockin.py``; the dissertation's rumpcomp sockin hypercalls).

Every host socket is non-blocking: no call here waits for the network.  Readiness comes from
one epoll set per companion object (one per kernel) with *one-shot* interest: the kernel arms a
socket for reading and/or writing, one ``wait()`` reports it once, and the kernel re-arms it
when it wants more.  A single kernel thread blocked in ``wait()`` thus serves every socket of
the kernel, and a report cannot be lost between a report and a re-arm (an armed socket that is
already ready is reported at once).

Interface (``host.companion("hostsock", 1)`` -> ``HostSockets``):
    socket(family, kind) -> HostSock   family "inet" | "inet6", kind "stream" | "dgram"
    arm(hs, read, write)               one-shot interest (errors and hang-ups are always reported)
    wait(timeout_ns | None) -> list[(token, events)] | None    events: READ | WRITE | ERROR |
                                       HUP bits; [] on timeout; None once close() was called
    close()                            wakes wait() for good; release() then frees the epoll set
                                       and every socket still open
    drain(hs, data, timeout_s)         blocking send of what a closed socket still had to send
                                       (halt), then nothing
HostSock (``token``: whatever the kernel wants reported with its events):
    bind(addr) / listen(backlog) / connect(addr) -> bool (True: connected, False: in progress)
    connect_error() -> str | None      the errno name a finished non-blocking connect got
    accept() -> (HostSock, addr) | None (None: nobody waiting)
    send(data) -> int / sendto(data, addr) -> int / recv(n) -> bytes / recvfrom(n) -> (bytes,
    addr)                              EAGAIN when the host cannot take or give anything now
    shutdown(how)                      "rd" | "wr" | "rdwr"
    sockname() / peername() -> addr
    setopt(level, name, value) / getopt(level, name, size=0) -> int | bytes   symbolic names
                                       ("IPPROTO_TCP", "TCP_NODELAY"); ``value`` an int or the
                                       option's bytes; ``size`` > 0 reads that many bytes
                                       (TCP_INFO); ENOPROTOOPT for a name the host lacks
    set_linger(onoff, seconds) / close() / fileno()
Addresses are ``(packed_ip, port)`` for inet and ``(packed_ip, port, flowinfo, scope_id)`` for
inet6 (packed_ip: 4 or 16 bytes).  Errors are ``HostError`` with the host errno's name.

The host primitives are the C ones (``_socket.socket``) and those bound at import (epoll,
select): a hijacked program in the same process (``rumpkernel.hijack --sockin``) replaces the
``socket`` and ``select`` module attributes, and the kernel's host side must not go through them.
"""

from __future__ import annotations

import _socket
import errno as _errno
import os
import select
import socket
import struct
import time
from select import select as _select
from typing import Any

from rumpkernel.hypercall.interface import HostError

VERSION = 1
HOSTS = ("posix",)
READ, WRITE, ERROR, HUP = 1, 2, 4, 8
FAMILIES = {"inet": socket.AF_INET, "inet6": socket.AF_INET6}
KINDS = {"stream": socket.SOCK_STREAM, "dgram": socket.SOCK_DGRAM}
LEVELS = {"SOL_SOCKET": socket.SOL_SOCKET, "IPPROTO_IP": socket.IPPROTO_IP,
          "IPPROTO_TCP": socket.IPPROTO_TCP, "IPPROTO_IPV6": socket.IPPROTO_IPV6}
SHUT = {"rd": socket.SHUT_RD, "wr": socket.SHUT_WR, "rdwr": socket.SHUT_RDWR}
NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)
MAX_DGRAM = 65536
_EP = getattr(select, "EPOLLIN", 1), getattr(select, "EPOLLOUT", 4)
_Epoll = getattr(select, "epoll", None)
_HostSocket = _socket.socket                  # the C type: never replaced by a hijack


def _err(e: OSError, what: str) -> HostError:
    name = _errno.errorcode.get(e.errno or 0, "EIO")
    if name == "EWOULDBLOCK":
        name = "EAGAIN"
    return HostError(name, f"host socket {what}: {e.strerror or name}")


def _to_host(family: int, addr: tuple) -> tuple:
    if family == socket.AF_INET:
        return socket.inet_ntop(family, addr[0]), addr[1]
    return socket.inet_ntop(family, addr[0]), addr[1], addr[2], addr[3]


def _from_host(family: int, addr: Any) -> tuple:
    if family == socket.AF_INET:
        return socket.inet_pton(family, addr[0]), addr[1]
    host = addr[0].split("%", 1)[0]
    return socket.inet_pton(family, host), addr[1], addr[2], addr[3]


class HostSock:
    """One non-blocking host socket; see the module docstring."""

    __slots__ = ("family", "owner", "registered", "sock", "token")

    def __init__(self, owner: HostSockets, sock: _socket.socket) -> None:
        self.owner = owner
        self.sock = sock
        self.family = sock.family
        self.token: Any = None
        self.registered = False
        sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def _addr(self, addr: tuple, what: str) -> tuple:
        try:
            return _to_host(self.family, addr)
        except (ValueError, OSError, IndexError) as e:
            raise HostError("EINVAL", f"host socket {what}: bad address: {e}") from None

    def bind(self, addr: tuple) -> None:
        try:
            self.sock.bind(self._addr(addr, "bind"))
        except OSError as e:
            raise _err(e, "bind") from None

    def listen(self, backlog: int) -> None:
        try:
            self.sock.listen(backlog)
        except OSError as e:
            raise _err(e, "listen") from None

    def connect(self, addr: tuple) -> bool:
        try:
            err = self.sock.connect_ex(self._addr(addr, "connect"))
        except OSError as e:
            raise _err(e, "connect") from None
        if err in (0, _errno.EISCONN):
            return True
        if err in (_errno.EINPROGRESS, _errno.EALREADY, _errno.EAGAIN):
            return False
        raise HostError(_errno.errorcode.get(err, "EIO"), f"host socket connect: "
                        f"{os.strerror(err)}")

    def connect_error(self) -> str | None:
        try:
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        except OSError as e:
            err = e.errno or _errno.EIO
        return _errno.errorcode.get(err, "EIO") if err else None

    def accept(self) -> tuple[HostSock, tuple] | None:
        try:
            fd, addr = self.sock._accept()
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as e:
            raise _err(e, "accept") from None
        s = _HostSocket(self.family, self.sock.type, self.sock.proto, fileno=fd)
        return HostSock(self.owner, s), _from_host(self.family, addr)

    def send(self, data: Any) -> int:
        try:
            return self.sock.send(data, NOSIGNAL)
        except OSError as e:
            raise _err(e, "send") from None

    def sendto(self, data: Any, addr: tuple) -> int:
        try:
            return self.sock.sendto(data, NOSIGNAL, self._addr(addr, "sendto"))
        except OSError as e:
            raise _err(e, "sendto") from None

    def recv(self, n: int) -> bytes:
        try:
            return self.sock.recv(n)
        except OSError as e:
            raise _err(e, "recv") from None

    def recvfrom(self, n: int = MAX_DGRAM) -> tuple[bytes, tuple]:
        try:
            data, addr = self.sock.recvfrom(n)
        except OSError as e:
            raise _err(e, "recvfrom") from None
        return data, _from_host(self.family, addr)

    def shutdown(self, how: str) -> None:
        try:
            self.sock.shutdown(SHUT[how])
        except OSError as e:
            raise _err(e, "shutdown") from None

    def sockname(self) -> tuple:
        try:
            return _from_host(self.family, self.sock.getsockname())
        except OSError as e:
            raise _err(e, "getsockname") from None

    def peername(self) -> tuple:
        try:
            return _from_host(self.family, self.sock.getpeername())
        except OSError as e:
            raise _err(e, "getpeername") from None

    @staticmethod
    def _opt(level: str, name: str) -> tuple[int, int]:
        lv = LEVELS.get(level)
        num = getattr(socket, name, None) if name.isupper() else None
        if lv is None or not isinstance(num, int):
            raise HostError("ENOPROTOOPT", f"host socket option {level}/{name}")
        return lv, num

    def setopt(self, level: str, name: str, value: int | bytes) -> None:
        try:
            self.sock.setsockopt(*self._opt(level, name), value)
        except OSError as e:
            raise _err(e, f"setsockopt {name}") from None

    def getopt(self, level: str, name: str, size: int = 0) -> int | bytes:
        try:
            if size:
                return self.sock.getsockopt(*self._opt(level, name), min(size, 1024))
            return self.sock.getsockopt(*self._opt(level, name))
        except OSError as e:
            raise _err(e, f"getsockopt {name}") from None

    def set_linger(self, onoff: bool, seconds: int) -> None:
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                 struct.pack("ii", int(onoff), seconds))
        except OSError as e:
            raise _err(e, "SO_LINGER") from None

    def close(self) -> None:
        self.owner.forget(self)
        self.sock.close()


class HostSockets:
    """The sockets of one kernel and their one epoll set; see the module docstring."""

    def __init__(self) -> None:
        if _Epoll is None:
            raise HostError("ENODEV", "hostsock needs epoll (Linux)")
        self.ep = _Epoll()
        self.wake_r, self.wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.ep.register(self.wake_r, select.EPOLLIN)
        self.socks: dict[int, HostSock] = {}
        self.closed = False

    def socket(self, family: str, kind: str) -> HostSock:
        try:
            s = _HostSocket(FAMILIES[family], KINDS[kind])
        except KeyError:
            raise HostError("EAFNOSUPPORT", f"hostsock: {family}/{kind}") from None
        except OSError as e:
            raise _err(e, "socket") from None
        return self.adopt(HostSock(self, s))

    def adopt(self, hs: HostSock) -> HostSock:
        """Count ``hs`` as one of ours (epoll learns of it at the first ``arm``: a fresh TCP
        socket would report a hang-up at once)."""
        self.socks[hs.fileno()] = hs
        return hs

    def forget(self, hs: HostSock) -> None:
        fd = hs.sock.fileno()
        if fd >= 0 and self.socks.get(fd) is hs:
            del self.socks[fd]
            if hs.registered:
                hs.registered = False
                try:
                    self.ep.unregister(fd)
                except (OSError, ValueError):
                    pass

    def arm(self, hs: HostSock, read: bool, write: bool) -> None:
        mask = select.EPOLLONESHOT | (_EP[0] if read else 0) | (_EP[1] if write else 0)
        fd = hs.sock.fileno()
        if fd < 0:
            return                                # closed meanwhile: nothing to report
        try:
            if hs.registered:
                self.ep.modify(fd, mask)
            else:
                self.ep.register(fd, mask)
                hs.registered = True
        except (OSError, ValueError):
            pass

    def wait(self, timeout_ns: int | None) -> list[tuple[Any, int]] | None:
        t = -1 if timeout_ns is None else timeout_ns / 1e9
        while True:
            if self.closed:
                return None
            try:
                ready = self.ep.poll(t)
            except InterruptedError:
                continue
            except (OSError, ValueError):
                return None                       # the set was closed under us
            out = []
            for fd, ev in ready:
                if fd == self.wake_r:
                    continue
                hs = self.socks.get(fd)
                if hs is None:
                    continue
                bits = (READ if ev & (select.EPOLLIN | select.EPOLLPRI) else 0) | \
                    (WRITE if ev & select.EPOLLOUT else 0) | \
                    (ERROR if ev & select.EPOLLERR else 0) | (HUP if ev & select.EPOLLHUP else 0)
                out.append((hs.token, bits))
            if out or not ready or self.closed:
                return None if self.closed else out

    def drain(self, hs: HostSock, data: bytes, timeout_s: float) -> None:
        """Send ``data`` on a socket nobody will read from again, waiting at most
        ``timeout_s`` seconds (at halt: what closed sockets still had to send)."""
        deadline = time.monotonic() + timeout_s
        view = memoryview(data)
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                n = hs.sock.send(view, NOSIGNAL)
            except BlockingIOError:
                _select([], [hs.sock], [hs.sock], min(left, 0.5))
                continue
            except OSError:
                return
            view = view[n:]

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                os.write(self.wake_w, b"x")
            except OSError:
                pass

    def release(self) -> None:
        self.close()
        for hs in list(self.socks.values()):
            hs.close()
        self.ep.close()
        for fd in (self.wake_r, self.wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def info(self) -> dict[str, Any]:
        return {"sockets": len(self.socks)}


def companion(host: Any) -> HostSockets:
    return HostSockets()
