"""Hijacked networking (the socket half of rumphijack, dissertation section 3.12.6): an
unmodified program's sockets, select, poll, epoll -- and so ``selectors``, ``socketserver``,
``http.server``, ``urllib`` and ``asyncio`` -- routed to a kernel by the policy's ``socket=``
families.

``NetHijack(hijack)`` installs (``install``/``uninstall``, through ``hijack._set``):

* ``socket.socket`` -> ``HijackSocket``, a *subclass* of the real ``socket.socket`` (isinstance
  checks hold).  A socket of a routed family is a kernel socket: its ``fileno()`` is the kernel
  descriptor plus the policy's offset (so the hijacked ``os.read``/``os.close``/``fstat`` and the
  pollers below find it), and every method goes to the kernel through the client library's
  ``KernelSocket``.  Other families, and descriptors below the offset, are host sockets with the
  real methods.  The C object under a kernel socket holds the program-visible number but is
  never used on the host: it is detached on close.
* ``socket.socketpair``, ``socket.fromfd``, ``socket.dup``, ``socket.close`` by family or
  descriptor; ``create_connection``/``create_server`` follow from ``socket.socket``.
* ``select.select``, ``select.poll``, ``select.epoll`` (and the classes ``selectors`` bound at
  import: ``SelectSelector``, ``PollSelector``, ``EpollSelector``, so ``DefaultSelector`` and
  asyncio's loops).  Kernel descriptors alone wait in kernel poll; host descriptors alone in the
  host's call; a mix is the dissertation's dual-kernel wait: both sides are checked without
  waiting first, and then a helper thread waits on the host side (plus a host pipe) while this
  thread waits in kernel poll (plus a kernel pipe); whichever returns first wakes the other.
* TLS (``ssl``) over a kernel socket is refused with EOPNOTSUPP (the ``_ssl`` module would use
  the descriptor on the host).

The client library's own host sockets are protected (the dissertation's rumpclient descriptors):
every ``rumpkernel.hypercall`` module (the sysproxy transport, the host companions) keeps
snapshots of the unpatched ``socket`` and ``select`` modules, so a reconnect, a forked child's
new connection or an in-process kernel's host side never lands in the kernel it serves.

Names (``getaddrinfo``, ``gethostbyname``, ``getfqdn``) resolve on the host; the resulting
addresses are used in the kernel.  ``select.epoll`` on kernel descriptors is level-triggered
(EPOLLET is ignored; EPOLLONESHOT works).
"""

from __future__ import annotations

import errno
import os
import select
import selectors
import socket as _s
import sys
import threading
import types
from typing import Any

from rumpkernel.client import abi as H
from rumpkernel.client.socket import KernelSocket, SocketModule
from rumpkernel.kern import abi as K

_RealSocket = _s.socket
_CSocket = _s.SocketType                   # _socket.socket, the C type
_real_select = select.select
_RealPoll = select.poll
_RealEpoll = getattr(select, "epoll", None)
_real_socketpair = _s.socketpair
_real_fromfd = _s.fromfd
_real_dup = _s.dup
_real_close = _s.close
NONBLOCK = getattr(_s, "SOCK_NONBLOCK", 0)
POLL_EVENTS = select.POLLIN | select.POLLPRI | select.POLLOUT
FAMILIES = {"inet": _s.AF_INET, "inet6": _s.AF_INET6, "local": _s.AF_UNIX,
            "unix": _s.AF_UNIX}
for _name in ("AF_PACKET", "AF_NETLINK", "AF_ROUTE", "AF_LINK"):
    if hasattr(_s, _name):
        FAMILIES.setdefault(_name[3:].lower(), getattr(_s, _name))


def parse_families(text: str) -> tuple[bool, frozenset[int]]:
    """``socket=`` value -> (all families?, the exceptions or the listed ones).  ValueError for
    an unknown family; ``all`` must come first, then ``no<family>`` exclusions."""
    items = [x for x in text.split(":") if x]
    every = bool(items) and items[0] == "all"
    if every:
        items = items[1:]
    out = set()
    for item in items:
        neg = item.startswith("no")
        name = item[2:] if neg else item
        if name not in FAMILIES or neg != every:
            raise ValueError(f"RUMPHIJACK: socket={text}: {item!r} (families: all, then "
                             f"no<family>; or a list of {', '.join(sorted(FAMILIES))})")
        out.add(FAMILIES[name])
    return every, frozenset(out)


class HijackSocketModule(SocketModule):
    """The client socket module with the host's name resolution and default timeout."""

    @property
    def _default_timeout(self) -> float | None:  # type: ignore[override]
        return _s.getdefaulttimeout()

    @_default_timeout.setter
    def _default_timeout(self, value: Any) -> None:
        return None

    def to_sockaddr(self, family: int, address: Any) -> bytes:
        if family in (_s.AF_INET, _s.AF_INET6) and isinstance(address, tuple) and address \
                and isinstance(address[0], (str, bytes)):
            host = address[0].decode() if isinstance(address[0], bytes) else address[0]
            address = (_resolve(host, family), *address[1:])
        return super().to_sockaddr(family, address)


def _resolve(host: str, family: int) -> str:
    if host in ("", None):
        return "0.0.0.0" if family == _s.AF_INET else "::"
    if host == "<broadcast>" and family == _s.AF_INET:
        return "255.255.255.255"
    try:
        _s.inet_pton(family, host)
        return host
    except OSError:
        pass
    infos = _s.getaddrinfo(host, None, family)
    return infos[0][4][0]


# ---- sockets ---------------------------------------------------------------------------------
class HijackSocket(_RealSocket):
    """``socket.socket`` for a hijacked program (see the module docstring)."""

    __slots__ = ("_k", "_kmeta")          # kernel socket; (family, type, proto, fdoff)
    _net: NetHijack | None = None

    def __init__(self, family: int = -1, type: int = -1, proto: int = -1,
                 fileno: int | None = None) -> None:
        net = HijackSocket._net
        self._k: KernelSocket | None = None
        self._kmeta: tuple[int, int, int, int] | None = None
        if net is not None and fileno is not None and net.hj.is_k(fileno):
            self._adopt(net.kmod._wrap(fileno - net.off))
            return
        if net is not None and fileno is None:
            fam = _s.AF_INET if family == -1 else family
            if net.routes(fam):
                self._adopt(net.kmod.socket(fam, type, proto))
                return
        super().__init__(family, type, proto, fileno)
        if net is not None and super().fileno() >= net.off:
            super().close()
            raise OSError(errno.ENFILE, "host descriptor collides with the kernel's range")

    def _adopt(self, ks: KernelSocket) -> None:
        """Become kernel socket ``ks``.  The C part is left uninitialised (descriptor -1): a
        C-level call that bypasses this class fails with EBADF instead of touching a host
        descriptor."""
        net = HijackSocket._net
        assert net is not None
        self._k = ks
        self._kmeta = (ks.family, ks.type & ~(NONBLOCK | getattr(_s, "SOCK_CLOEXEC", 0)),
                       ks.proto, net.off)
        self._io_refs = 0
        self._closed = False

    @classmethod
    def _from_kernel(cls, ks: KernelSocket) -> HijackSocket:
        obj = cls.__new__(cls)
        obj._adopt(ks)
        return obj

    def fileno(self) -> int:
        ks = self._k
        if ks is None:
            return -1 if self._kmeta is not None else super().fileno()
        fd = ks.fileno()
        return -1 if fd < 0 else fd + self._kmeta[3]         # type: ignore[index]

    @property
    def family(self) -> Any:  # type: ignore[override]
        meta = self._kmeta
        return _RealSocket.family.fget(self) if meta is None else _s.AddressFamily(meta[0])

    @property
    def type(self) -> Any:  # type: ignore[override]
        meta = self._kmeta
        return _RealSocket.type.fget(self) if meta is None else _s.SocketKind(meta[1])

    @property
    def proto(self) -> int:  # type: ignore[override]
        meta = self._kmeta
        return _CSocket.proto.__get__(self) if meta is None else meta[2]

    # ---- what differs from the host's -------------------------------------------------------
    @property
    def timeout(self) -> float | None:  # type: ignore[override]
        return self.gettimeout()

    def accept(self) -> tuple[Any, Any]:
        if self._k is None:
            fd, addr = self._accept()
            net = HijackSocket._net
            if net is not None and fd >= net.off:
                os.close(fd)
                raise OSError(errno.ENFILE, "host descriptor collides with the kernel's range")
            sock = HijackSocket(self.family, self.type, self.proto, fileno=fd)
            if _s.getdefaulttimeout() is None and self.gettimeout():
                sock.setblocking(True)
            return sock, addr
        ks, addr = self._k.accept()
        return HijackSocket._from_kernel(ks), addr

    def dup(self) -> Any:
        if self._k is None:
            return super().dup()
        return HijackSocket._from_kernel(self._k.dup())

    def _real_close(self, _ss: Any = _CSocket) -> None:
        ks = self._k
        if ks is None:
            if self._kmeta is None:
                _ss.close(self)
            return
        self._k = None
        ks.close()

    def detach(self) -> int:
        ks = self._k
        if ks is None:
            return -1 if self._kmeta is not None else super().detach()
        fd = self.fileno()
        self._k = None
        self._closed = True
        ks.detach()
        return fd

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        if self._k is None:
            return super().sendfile(file, offset, count)
        return self._sendfile_use_send(file, offset, count)

    def sendmsg_afalg(self, *args: Any, **kw: Any) -> int:
        if self._k is None:
            return super().sendmsg_afalg(*args, **kw)
        raise OSError(errno.EAFNOSUPPORT, "AF_ALG is the host's")

    def __del__(self) -> None:
        if getattr(self, "_k", None) is None:
            if getattr(self, "_kmeta", None) is None:
                _CSocket.__del__(self)               # the host's finalizer (unclosed: warn)
            return
        try:
            self._real_close()
        except Exception:
            pass


def _routed(name: str) -> Any:
    host = getattr(_RealSocket, name)

    def method(self: HijackSocket, *args: Any, **kw: Any) -> Any:
        ks = self._k
        if ks is None:
            return host(self, *args, **kw)
        return getattr(ks, name)(*args, **kw)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = host.__doc__
    return method


ROUTED = ("bind", "listen", "connect", "connect_ex", "send", "sendall", "sendto", "sendmsg",
          "recv", "recv_into", "recvfrom", "recvfrom_into", "recvmsg", "recvmsg_into",
          "shutdown", "getsockname", "getpeername", "setsockopt", "getsockopt", "settimeout",
          "gettimeout", "setblocking", "getblocking")
for _name in ROUTED:
    setattr(HijackSocket, _name, _routed(_name))


# ---- waiting on both kernels ------------------------------------------------------------------
class _Helper:
    """A thread that runs one host wait at a time for the dual-kernel wait, with its host and
    kernel wake-up pipes."""

    def __init__(self, ksys: Any, off: int) -> None:
        self.ksys = ksys
        self.hr, self.hw = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        flags = H.open_flags_to_host(K.O_NONBLOCK | K.O_CLOEXEC)
        self.kr, self.kw = ksys.pipe2(flags)
        self.cv = threading.Condition()
        self.job: Any = None
        self.result: Any = None
        self.done = True
        self.stopping = False
        self.kwrote = False
        threading.Thread(target=self._loop, name="rumphijack-poll", daemon=True).start()

    def _loop(self) -> None:
        while True:
            with self.cv:
                while self.job is None:
                    self.cv.wait()
                job, self.job = self.job, None
            try:
                res: Any = job(self.hr)
            except BaseException as e:          # handed to the waiting thread
                res = e
            if not self.stopping:
                self.kwrote = True
                try:
                    self.ksys.write(self.kw, b"x")
                except OSError:
                    pass
            with self.cv:
                self.result = res
                self.done = True
                self.cv.notify_all()

    def start(self, job: Any) -> None:
        with self.cv:
            self.done = self.stopping = self.kwrote = False
            self.result = None
            self.job = job
            self.cv.notify_all()

    def finish(self) -> Any:
        self.stopping = True
        os.write(self.hw, b"x")
        with self.cv:
            while not self.done:
                self.cv.wait()
        _drain(lambda: os.read(self.hr, 512))
        if self.kwrote:
            _drain(lambda: self.ksys.read(self.kr, 512))
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


def _drain(read: Any) -> None:
    try:
        while read():
            pass
    except (BlockingIOError, InterruptedError):
        pass


class DualWait:
    """Waits on kernel and host descriptors together (one per hijack; helpers pooled)."""

    def __init__(self, ksys: Any, off: int) -> None:
        self.ksys = ksys
        self.off = off
        self.free: list[_Helper] = []
        self.lock = threading.Lock()

    def kpoll(self, kfds: list[tuple[int, int]], timeout_s: float | None) -> list:
        ms = -1 if timeout_s is None else (0 if timeout_s <= 0 else
                                           max(1, int(timeout_s * 1000 + 0.999)))
        try:
            return self.ksys.poll(kfds, ms)
        except InterruptedError:
            return []

    def wait(self, kfds: list[tuple[int, int]], host_wait: Any, timeout_s: float | None
             ) -> tuple[list, Any]:
        """Kernel poll results and ``host_wait(wake_fd | None, timeout_s)``'s result; the host
        wait must return when ``wake_fd`` is readable."""
        kready = self.kpoll(kfds, 0)
        hready = host_wait(None, 0)
        if kready or hready or timeout_s == 0:
            return kready, hready
        with self.lock:
            helper = self.free.pop() if self.free else None
        if helper is None:
            helper = _Helper(self.ksys, self.off)
        try:
            helper.start(lambda wake: host_wait(wake, None))
            try:
                kready = self.kpoll([*kfds, (helper.kr, select.POLLIN)], timeout_s)
            finally:
                hready = helper.finish()
            kready = [(fd, ev) for fd, ev in kready if fd != helper.kr]
        finally:
            with self.lock:
                self.free.append(helper)
        return kready, hready


def _fd(obj: Any) -> int:
    if isinstance(obj, int):
        fd = obj
    else:
        try:
            fd = obj.fileno()
        except AttributeError:
            raise TypeError("argument must be an int, or have a fileno() method.") from None
        if not isinstance(fd, int):
            raise TypeError("fileno() returned a non-integer")
    if fd < 0:
        raise ValueError(f"file descriptor cannot be a negative integer ({fd})")
    return fd


def _check_nval(kready: list, off: int) -> None:
    for fd, ev in kready:
        if ev & select.POLLNVAL:
            raise OSError(errno.EBADF, f"Bad file descriptor ({fd + off})")


class HijackPoll:
    """``select.poll()`` over kernel and host descriptors."""

    def __init__(self, net: NetHijack) -> None:
        self._net = net
        self._host = _RealPoll()
        self._nhost = 0
        self._k: dict[int, int] = {}

    def register(self, fd: Any, eventmask: int = POLL_EVENTS) -> None:
        fd = _fd(fd)
        if self._net.hj.is_k(fd):
            self._k[fd] = eventmask & 0xFFFF
            return
        self._host.register(fd, eventmask)
        self._nhost += 1

    def modify(self, fd: Any, eventmask: int) -> None:
        fd = _fd(fd)
        if self._net.hj.is_k(fd):
            if fd not in self._k:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))
            self._k[fd] = eventmask & 0xFFFF
            return
        self._host.modify(fd, eventmask)

    def unregister(self, fd: Any) -> None:
        fd = _fd(fd)
        if self._net.hj.is_k(fd):
            del self._k[fd]
            return
        self._host.unregister(fd)
        self._nhost -= 1

    def poll(self, timeout: float | None = None) -> list[tuple[int, int]]:
        if timeout is not None:
            timeout = float(timeout)
        if not self._k:
            return self._host.poll(timeout)
        off = self._net.off
        t = None if timeout is None or timeout < 0 else timeout / 1000
        kfds = [(fd - off, ev) for fd, ev in self._k.items()]
        if not self._nhost:
            kready = self._net.dual.kpoll(kfds, t)
            hready: list = []
        else:
            kready, hready = self._net.dual.wait(kfds, self._host_wait, t)
        _check_nval(kready, off)
        return [(fd + off, ev) for fd, ev in kready] + list(hready)

    def _host_wait(self, wake: int | None, timeout: float | None) -> list:
        if wake is None:
            return self._host.poll(0 if timeout == 0 else None)
        self._host.register(wake, select.POLLIN)
        try:
            return [(fd, ev) for fd, ev in self._host.poll() if fd != wake]
        finally:
            self._host.unregister(wake)


class HijackEpoll:
    """``select.epoll()`` over kernel and host descriptors (a real epoll holds the host ones;
    ``fileno()`` is its descriptor)."""

    def __init__(self, sizehint: int = -1, flags: int = 0, *, _real: Any = None) -> None:
        assert _RealEpoll is not None
        self._real = _real if _real is not None else _RealEpoll(sizehint, flags)
        self._nhost = 0
        self._k: dict[int, int] = {}
        self._net = HijackSocket._net

    @classmethod
    def fromfd(cls, fd: int) -> HijackEpoll:
        assert _RealEpoll is not None
        return cls(_real=_RealEpoll.fromfd(fd))

    @property
    def closed(self) -> bool:
        return self._real.closed

    def fileno(self) -> int:
        return self._real.fileno()

    def close(self) -> None:
        self._k.clear()
        self._real.close()

    def __enter__(self) -> HijackEpoll:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _is_k(self, fd: int) -> bool:
        return self._net is not None and self._net.hj.is_k(fd)

    def register(self, fd: Any, eventmask: int = POLL_EVENTS) -> None:
        fd = _fd(fd)
        if self._is_k(fd):
            if fd in self._k:
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST))
            self._k[fd] = eventmask
            return
        self._real.register(fd, eventmask)
        self._nhost += 1

    def modify(self, fd: Any, eventmask: int) -> None:
        fd = _fd(fd)
        if self._is_k(fd):
            if fd not in self._k:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))
            self._k[fd] = eventmask
            return
        self._real.modify(fd, eventmask)

    def unregister(self, fd: Any) -> None:
        fd = _fd(fd)
        if self._is_k(fd):
            if self._k.pop(fd, None) is None:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))
            return
        self._real.unregister(fd)
        self._nhost -= 1

    def poll(self, timeout: float | None = None, maxevents: int = -1) -> list[tuple[int, int]]:
        net = self._net
        kfds = [(fd - net.off, ev & POLL_EVENTS) for fd, ev in self._k.items()
                if ev & POLL_EVENTS] if net is not None else []
        if not kfds:
            return self._real.poll(-1 if timeout is None else timeout, maxevents)
        t = None if timeout is None or timeout < 0 else timeout
        if not self._nhost:
            kready = net.dual.kpoll(kfds, t)
            hready: list = []
        else:
            kready, hready = net.dual.wait(kfds, self._host_wait, t)
        _check_nval(kready, net.off)
        out = []
        for fd, ev in kready:
            pfd = fd + net.off
            mask = self._k.get(pfd)
            if mask is None:
                continue
            if mask & select.EPOLLONESHOT:
                self._k[pfd] = select.EPOLLONESHOT          # disabled until modify
            out.append((pfd, ev))
        out += hready
        return out if maxevents is None or maxevents < 0 else out[:maxevents]

    def _host_wait(self, wake: int | None, timeout: float | None) -> list:
        if wake is None:
            return self._real.poll(0 if timeout == 0 else -1)
        self._real.register(wake, select.EPOLLIN)
        try:
            return [(fd, ev) for fd, ev in self._real.poll(-1) if fd != wake]
        finally:
            self._real.unregister(wake)


def _snapshot(mod: types.ModuleType) -> types.ModuleType:
    snap = types.ModuleType(mod.__name__, mod.__doc__)
    snap.__dict__.update({k: v for k, v in vars(mod).items() if not k.startswith("__")})
    return snap


# ---- the hijack's socket side ----------------------------------------------------------------
class NetHijack:
    """The socket half of a ``Hijack`` (apps/hijack.py)."""

    def __init__(self, hj: Any, every: bool, families: frozenset[int]) -> None:
        self.hj = hj
        self.off = hj.off
        self.every = every
        self.families = families
        self.kmod = HijackSocketModule(hj.k)
        self.dual = DualWait(hj.k, hj.off)

    def routes(self, family: int) -> bool:
        return (family not in self.families) if self.every else (family in self.families)

    def install(self) -> None:
        hj = self.hj
        self._protect_host_side()
        HijackSocket._net = self
        hj._set(_s, "socket", HijackSocket)
        for name, fn in (("socketpair", self.socketpair), ("fromfd", self.fromfd),
                         ("dup", self.dup), ("close", self.close)):
            hj._set(_s, name, fn)
        hj._set(select, "select", self.select)
        hj._set(select, "poll", self.poll)
        if _RealEpoll is not None:
            hj._set(select, "epoll", HijackEpoll)
            hj._set(selectors.EpollSelector, "_selector_cls", HijackEpoll)
        hj._set(selectors.PollSelector, "_selector_cls", self.poll)
        hj._set(selectors.SelectSelector, "_select", staticmethod(self.select))
        self._guard_ssl()

    def uninstall(self) -> None:
        HijackSocket._net = None

    def _protect_host_side(self) -> None:
        """Give the hypercall layer (the sysproxy transport, the companions) the host's own
        socket and select modules (snapshots taken before the hijack replaces anything)."""
        import importlib

        from rumpkernel.hypercall.dev import COMPANIONS

        for name in ("rumpkernel.hypercall.spsock", *COMPANIONS.values()):
            importlib.import_module(name)
        snapshots = {id(_s): _snapshot(_s), id(select): _snapshot(select)}
        for name, mod in list(sys.modules.items()):
            if mod is None or not name.startswith("rumpkernel.hypercall"):
                continue
            for attr, value in list(vars(mod).items()):
                snap = snapshots.get(id(value))
                if snap is not None and value in (_s, select):
                    self.hj._set(mod, attr, snap)

    def _guard_ssl(self) -> None:
        try:
            import ssl
        except ImportError:  # pragma: no cover - Python without ssl
            return
        real = ssl.SSLSocket._create

        def _create(cls: Any, sock: Any, *args: Any, **kw: Any) -> Any:
            if isinstance(sock, HijackSocket) and sock._k is not None:
                raise OSError(errno.EOPNOTSUPP, "TLS over a kernel socket is not supported by "
                              "the hijack (the ssl module would use the descriptor on the host)")
            return real.__func__(cls, sock, *args, **kw)

        self.hj._set(ssl.SSLSocket, "_create", classmethod(_create))

    # ---- socket module functions ----
    def socketpair(self, family: int | None = None, type: int = _s.SOCK_STREAM,
                   proto: int = 0) -> tuple[Any, Any]:
        fam = _s.AF_UNIX if family is None else family
        if not self.routes(fam):
            a, b = _real_socketpair(fam, type, proto)
            pair = []
            for s in (a, b):
                pair.append(HijackSocket(s.family, s.type, s.proto, fileno=s.detach()))
            return pair[0], pair[1]
        ka, kb = self.kmod.socketpair(fam, type, proto)
        return HijackSocket._from_kernel(ka), HijackSocket._from_kernel(kb)

    def fromfd(self, fd: int, family: int, type: int, proto: int = 0) -> Any:
        return HijackSocket(family, type, proto, fileno=self.dup(fd))

    def dup(self, fd: int) -> int:
        if self.hj.is_k(fd):
            return self.hj.k.dup(fd - self.off) + self.off
        return _real_dup(fd)

    def close(self, fd: int) -> None:
        if self.hj.is_k(fd):
            self.hj.k.close(fd - self.off)
        else:
            _real_close(fd)

    def poll(self) -> HijackPoll:
        return HijackPoll(self)

    # ---- select.select ----
    def select(self, rlist: Any, wlist: Any, xlist: Any, timeout: float | None = None
               ) -> tuple[list, list, list]:
        lists = [list(rlist), list(wlist), list(xlist)]
        if timeout is not None:
            timeout = float(timeout)
            if timeout < 0:
                raise ValueError("timeout must be non-negative")
        fds = [[_fd(o) for o in lst] for lst in lists]
        is_k = self.hj.is_k
        kev: dict[int, int] = {}
        hsets: list[list] = [[], [], []]
        for i, bit in enumerate((select.POLLIN, select.POLLOUT, select.POLLPRI)):
            for obj, fd in zip(lists[i], fds[i]):
                if is_k(fd):
                    kev[fd - self.off] = kev.get(fd - self.off, 0) | bit
                else:
                    hsets[i].append(obj)
        if not kev:
            return _real_select(*lists, timeout)
        host = any(hsets)

        def host_wait(wake: int | None, t: float | None) -> tuple | None:
            if wake is None:
                got = _real_select(*hsets, 0) if host else ([], [], [])
                return got if any(got) else None
            r, w, x = _real_select([*hsets[0], wake], hsets[1], hsets[2])
            return [o for o in r if o is not wake], w, x

        if host:
            kready, hready = self.dual.wait(list(kev.items()), host_wait, timeout)
        else:
            kready, hready = self.dual.kpoll(list(kev.items()), timeout), None
        _check_nval(kready, self.off)
        rev = {fd + self.off: ev for fd, ev in kready}
        out: list[list] = [[], [], []]
        want = ((select.POLLIN | select.POLLHUP | select.POLLERR),
                (select.POLLOUT | select.POLLERR), select.POLLPRI)
        for i in range(3):
            for obj, fd in zip(lists[i], fds[i]):
                if fd in rev and rev[fd] & want[i]:
                    out[i].append(obj)
            if hready:
                out[i] += hready[i]
        return out[0], out[1], out[2]
