"""Kernel sockets with the standard library's ``socket`` interface: ``k.socket`` (and
``conn.socket`` on a ``rumpkernel.connect()`` connection).

    s = k.socket.socket(k.socket.AF_INET, k.socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 5353)); data, addr = s.recvfrom(2048)
    with k.socket.create_connection(("10.0.0.2", 80), timeout=5) as c: ...

Interface (``SocketModule(sys)``): ``socket(family, type, proto, fileno)``, ``socketpair``,
``create_connection``, ``create_server``, ``getaddrinfo`` (numeric addresses, "localhost",
the kernel's own /etc/hosts, then DNS through its /etc/resolv.conf: client/resolver.py),
``gethostbyname``, ``gethostname`` (kern.hostname),
``inet_aton/ntoa/pton/ntop``, ``htons`` & co., ``getdefaulttimeout/setdefaulttimeout``,
``fromfd``, ``selector()`` (a ``selectors`` selector over kernel poll), ``config`` (a
``NetConfig``: interfaces, routes, ARP), the constants (AF_*, SOCK_*, SOL_SOCKET, SO_*,
IPPROTO_*, IP_*, TCP_*, MSG_*, SHUT_*, SCM_RIGHTS, SOMAXCONN, INADDR_*) with the *host's*
values, and ``error``/``timeout``/``gaierror``/``herror``.
``KernelSocket`` has the methods of ``socket.socket`` (bind, listen, accept, connect,
connect_ex, send, sendall, sendto, sendmsg, recv, recv_into, recvfrom, recvfrom_into, recvmsg,
recvmsg_into, shutdown, getsockname, getpeername, setsockopt, getsockopt, settimeout,
gettimeout, setblocking, getblocking, makefile, fileno, dup, detach, close, context manager);
``fileno()`` is the *kernel* descriptor.

Errors are the host's OSError subclasses (ConnectionRefusedError, BlockingIOError,
TimeoutError ...); ``gaierror`` is a subclass of OSError of this module.  Timeouts follow the
standard library: a socket with a timeout is non-blocking in the kernel and waits in kernel
poll, measured by the kernel's clock.
"""

from __future__ import annotations

import array
import errno
from collections.abc import Iterable
from typing import Any

from rumpkernel.client import abi as H
from rumpkernel.client.socket_config import NetConfig
from rumpkernel.hypercall import hostio
from rumpkernel.kern import abi as K
from rumpkernel.kern.errno import Errno
from rumpkernel.kern.syscall import structs as S
from rumpkernel.net.wire import ipv6

_DEFAULT = object()
ADDR_BUF = S.SOCKADDR_MAX
EAI_NONAME, EAI_SERVICE, EAI_FAMILY, EAI_AGAIN = -2, -8, -6, -3


class gaierror(OSError):
    pass


class herror(OSError):
    pass


_CONST = H.socket_constants()
_HAF_INET = _CONST["AF_INET"]
_HAF_INET6 = _CONST["AF_INET6"]
_HAF_UNIX = _CONST["AF_UNIX"]
_HSOCK_STREAM = _CONST["SOCK_STREAM"]
_HSOCK_DGRAM = _CONST["SOCK_DGRAM"]
_HSOL_SOCKET = _CONST["SOL_SOCKET"]
_HSCM_RIGHTS = _CONST.get("SCM_RIGHTS", 1)


# ---- addresses ----------------------------------------------------------------------------------
def inet_aton(text: str) -> bytes:
    parts = text.split(".")
    try:
        if not 1 <= len(parts) <= 4 or any(not p for p in parts):
            raise ValueError
        nums = [int(p, 0) for p in parts]
    except ValueError:
        raise OSError("illegal IP address string passed to inet_aton") from None
    last = nums.pop()
    if any(not 0 <= n <= 255 for n in nums) or not 0 <= last < 256 ** (4 - len(nums)):
        raise OSError("illegal IP address string passed to inet_aton")
    return bytes(nums) + last.to_bytes(4 - len(nums), "big")


def inet_pton4(text: str) -> bytes:
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 and int(p) <= 255
                                  for p in parts):
        raise OSError(errno.EINVAL, "illegal IP address string passed to inet_pton")
    return bytes(int(p) for p in parts)


def inet_ntoa(packed: bytes) -> str:
    if len(packed) != 4:
        raise OSError("packed IP wrong length for inet_ntoa")
    return ".".join(str(b) for b in packed)


def _is_numeric(host: str) -> bool:
    try:
        inet_pton4(host)
    except OSError:
        return False
    return True


def inet_pton6(text: str) -> bytes:
    try:
        return ipv6.ip6(text)
    except Exception:
        raise OSError(errno.EINVAL, "illegal IP address string passed to inet_pton") from None


def _is_numeric6(host: str) -> bool:
    try:
        ipv6.ip6(host.partition("%")[0])
    except Exception:
        return False
    return True


class SocketModule:
    """The ``socket`` module of one kernel (local or remote); see the module docstring."""

    error = OSError
    timeout = TimeoutError
    gaierror = gaierror
    herror = herror
    INADDR_ANY = 0
    INADDR_BROADCAST = 0xFFFFFFFF
    INADDR_LOOPBACK = 0x7F000001
    SOMAXCONN = K.SOMAXCONN
    has_ipv6 = True

    def __init__(self, sys: Any) -> None:
        self._sys = sys
        self._default_timeout: float | None = None
        self.config = NetConfig(sys)
        for name, value in _CONST.items():
            setattr(self, name, value)
        self.SocketType = KernelSocket

    # ---- construction --------------------------------------------------------------------
    def socket(self, family: int = -1, type: int = -1, proto: int = -1,
               fileno: int | None = None) -> KernelSocket:
        if fileno is not None:
            return self._wrap(fileno)
        family = _HAF_INET if family == -1 else family
        type = _HSOCK_STREAM if type == -1 else type
        proto = 0 if proto == -1 else proto
        try:
            kfam = H.af_to_kernel(family)
        except ValueError:
            raise H.oserror(Errno.EAFNOSUPPORT, f"address family {family}") from None
        ktype = H.socktype_to_kernel(type) | K.SOCK_CLOEXEC
        fd = self._sys.sys_socket(kfam, ktype, proto)
        return KernelSocket(self, family, type & ~_flags_mask(), proto, fd)

    def _wrap(self, fd: int) -> KernelSocket:
        s = KernelSocket(self, 0, 0, 0, fd)
        s.family = H.af_to_host(s._getint(K.SOL_SOCKET, K.SO_DOMAIN))
        s.type = H.socktype_to_host(s._getint(K.SOL_SOCKET, K.SO_TYPE))
        s.proto = s._getint(K.SOL_SOCKET, K.SO_PROTOCOL)
        return s

    def fromfd(self, fd: int, family: int, type: int, proto: int = 0
               ) -> KernelSocket:
        return self._wrap(self._sys.dup(fd))

    def socketpair(self, family: int | None = None, type: int = -1,
                   proto: int = 0) -> tuple[KernelSocket, KernelSocket]:
        family = _HAF_UNIX if family is None else family
        type = _HSOCK_STREAM if type == -1 else type
        ktype = H.socktype_to_kernel(type) | K.SOCK_CLOEXEC
        a, b = self._sys.sys_socketpair(H.af_to_kernel(family), ktype, proto)
        return (KernelSocket(self, family, type & ~_flags_mask(), proto, a),
                KernelSocket(self, family, type & ~_flags_mask(), proto, b))

    def create_connection(self, address: tuple[str, int], timeout: Any = _DEFAULT,
                          source_address: tuple[str, int] | None = None, *,
                          all_errors: bool = False) -> KernelSocket:
        host, port = address
        errors: list[OSError] = []
        for fam, typ, proto, _c, sa in self.getaddrinfo(host, port, 0, _HSOCK_STREAM):
            sock = None
            try:
                sock = self.socket(fam, typ, proto)
                if timeout is not _DEFAULT:
                    sock.settimeout(timeout)
                if source_address:
                    sock.bind(source_address)
                sock.connect(sa)
                return sock
            except OSError as e:
                errors.append(e)
                if sock is not None:
                    sock.close()
        if not errors:
            raise OSError("getaddrinfo returns an empty list")
        if all_errors:
            raise ExceptionGroup("create_connection failed", errors)
        raise errors[0]

    def create_server(self, address: tuple[str, int], *, family: int | None = None,
                      backlog: int | None = None, reuse_port: bool = False,
                      dualstack_ipv6: bool = False) -> KernelSocket:
        fam = _HAF_INET if family is None else family
        if dualstack_ipv6 and fam != _HAF_INET6:
            raise ValueError("dualstack_ipv6 requires AF_INET6 family")
        sock = self.socket(fam, _HSOCK_STREAM)
        try:
            sock.setsockopt(_HSOL_SOCKET, _CONST["SO_REUSEADDR"], 1)
            if fam == _HAF_INET6:
                sock.setsockopt(_CONST["IPPROTO_IPV6"], _CONST["IPV6_V6ONLY"],
                                0 if dualstack_ipv6 else 1)
            if reuse_port:
                sock.setsockopt(_HSOL_SOCKET, _CONST["SO_REUSEPORT"], 1)
            sock.bind(address)
            sock.listen(backlog) if backlog is not None else sock.listen()
        except BaseException:
            sock.close()
            raise
        return sock

    # ---- names ---------------------------------------------------------------------------------
    def gethostname(self) -> str:
        return str(self._sys.sysctl("kern.hostname"))

    def _hosts_all(self) -> dict[str, list[str]]:
        """The kernel's /etc/hosts (name -> addresses, IPv4 and IPv6), when it has one."""
        try:
            fd = self._sys.open("/etc/hosts", H.open_flags_to_host(K.O_RDONLY))
        except OSError:
            return {}
        try:
            raw = b""
            while len(raw) < 1 << 20:
                chunk = self._sys.read(fd, 65536)
                if not chunk:
                    break
                raw += chunk
        finally:
            self._sys.close(fd)
        out: dict[str, list[str]] = {}
        for line in raw.decode("utf-8", "replace").splitlines():
            fields = line.split("#", 1)[0].split()
            if len(fields) >= 2 and (_is_numeric(fields[0]) or _is_numeric6(fields[0])):
                for name in fields[1:]:
                    out.setdefault(name.lower(), []).append(fields[0])
        return out

    def _hosts(self) -> dict[str, str]:
        """Name -> first IPv4 address of the kernel's /etc/hosts."""
        out: dict[str, str] = {}
        for name, addrs in self._hosts_all().items():
            v4 = [a for a in addrs if _is_numeric(a)]
            if v4:
                out[name] = v4[0]
        return out

    def gethostbyname(self, name: str) -> str:
        if name in ("", "0.0.0.0"):
            return "0.0.0.0"
        if name == "<broadcast>":
            return "255.255.255.255"
        if _is_numeric(name):
            return name
        addr = self._hosts().get(name.lower())
        if addr is None and name.lower() in ("localhost", "localhost.localdomain"):
            addr = "127.0.0.1"
        if addr is None:
            addr = self._dns(name)
        return addr

    def _dns(self, name: str) -> str:
        """DNS through the kernel's /etc/resolv.conf (client/resolver.py)."""
        from rumpkernel.client import resolver  # only programs that resolve names pay

        r = resolver.lookup(self, name)
        if r is not None and r.addresses:
            return inet_ntoa(r.addresses[0][1])
        if r is not None and r.error in ("again", "fail"):
            raise gaierror(EAI_AGAIN, "Temporary failure in name resolution")
        raise gaierror(EAI_NONAME, "Name or service not known")

    def _resolve(self, host: str, families: tuple[int, ...]) -> list[tuple[int, str]]:
        """(host family, address text) for ``host``: numeric, the kernel's /etc/hosts,
        "localhost", then DNS (A before AAAA).  gaierror when nothing is found."""
        want4, want6 = _HAF_INET in families, _HAF_INET6 in families
        if _is_numeric(host):
            if not want4:
                raise gaierror(EAI_NONAME, "Name or service not known")
            return [(_HAF_INET, host)]
        if _is_numeric6(host):
            if not want6:
                raise gaierror(EAI_NONAME, "Name or service not known")
            return [(_HAF_INET6, host)]
        found = self._hosts_all().get(host.lower())
        if found is None and host.lower() in ("localhost", "localhost.localdomain"):
            found = ["127.0.0.1", "::1"]
        if found is not None:
            out = [(_HAF_INET, a) for a in found if want4 and _is_numeric(a)]
            out += [(_HAF_INET6, a) for a in found if want6 and _is_numeric6(a)]
            if out:
                return out
        from rumpkernel.client import resolver  # only programs that resolve names pay

        kfams = tuple(f for f, w in ((resolver.AF_INET, want4), (resolver.AF_INET6, want6))
                      if w)
        r = resolver.lookup(self, host, kfams)
        if r is not None and r.addresses:
            return [(_HAF_INET, inet_ntoa(a)) if f == resolver.AF_INET
                    else (_HAF_INET6, ipv6.ip6str(a)) for f, a in r.addresses]
        if r is not None and r.error in ("again", "fail"):
            raise gaierror(EAI_AGAIN, "Temporary failure in name resolution")
        raise gaierror(EAI_NONAME, "Name or service not known")

    def getaddrinfo(self, host: str | bytes | None, port: Any, family: int = 0,
                    type: int = 0, proto: int = 0, flags: int = 0
                    ) -> list[tuple[int, int, int, str, tuple]]:
        if family not in (0, _HAF_INET, _HAF_INET6):
            raise gaierror(EAI_FAMILY, "ai_family not supported")
        if isinstance(host, bytes):
            host = host.decode("idna")
        if port is None:
            p = 0
        elif isinstance(port, int):
            p = port
        else:
            port = port.decode() if isinstance(port, bytes) else str(port)
            if not port.isdigit():
                raise gaierror(EAI_SERVICE, "Servname not supported for ai_socktype")
            p = int(port)
        families = (family,) if family else (_HAF_INET, _HAF_INET6)
        if host:
            addrs = self._resolve(host, families)
        else:
            passive = flags & _CONST.get("AI_PASSIVE", 1)
            addrs = [(f, ("0.0.0.0" if passive else "127.0.0.1") if f == _HAF_INET
                      else ("::" if passive else "::1")) for f in families]
        kinds = [(_HSOCK_STREAM, _CONST["IPPROTO_TCP"]), (_HSOCK_DGRAM, _CONST["IPPROTO_UDP"]),
                 (_CONST["SOCK_RAW"], 0)]
        out: list[tuple[int, int, int, str, tuple]] = []
        for fam, text in addrs:
            sa: tuple = (text, p) if fam == _HAF_INET else self._sa6(text, p)
            out += [(fam, t, pr, "", sa) for t, pr in kinds
                    if (not type or t == type) and (not proto or pr == proto)]
        if not out:
            raise gaierror(EAI_SERVICE, "ai_socktype not supported")
        return out

    def _sa6(self, text: str, port: int) -> tuple[str, int, int, int]:
        _addr, _, zone = text.partition("%")
        return (text, port, 0, self._zone(zone) if zone else 0)

    def _zone(self, zone: str) -> int:
        return int(zone) if zone.isdigit() else self.if_nametoindex(zone)

    def if_nametoindex(self, name: str) -> int:
        try:
            return self.config.index(name)
        except OSError:
            raise OSError(errno.ENXIO, f"no interface {name}") from None

    def if_indextoname(self, index: int) -> str:
        for i in self.config.interfaces():
            if i["index"] == index:
                return str(i["name"])
        raise OSError(errno.ENXIO, f"no interface with index {index}")

    def if_nameindex(self) -> list[tuple[int, str]]:
        return [(i["index"], i["name"]) for i in self.config.interfaces()]

    # ---- helpers the standard module has --------------------------------------------------------
    inet_aton = staticmethod(inet_aton)
    inet_ntoa = staticmethod(inet_ntoa)

    @staticmethod
    def inet_pton(family: int, text: str) -> bytes:
        if family == _HAF_INET6:
            return inet_pton6(text)
        if family != _HAF_INET:
            raise OSError(errno.EAFNOSUPPORT, "address family not supported")
        return inet_pton4(text)

    @staticmethod
    def inet_ntop(family: int, packed: bytes) -> str:
        if family == _HAF_INET6:
            if len(packed) != 16:
                raise ValueError("invalid length of packed IP address string")
            return ipv6.ip6str(bytes(packed))
        if family != _HAF_INET:
            raise ValueError("unknown address family")
        if len(packed) != 4:
            raise ValueError("invalid length of packed IP address string")
        return inet_ntoa(packed)

    @staticmethod
    def htons(x: int) -> int:
        return int.from_bytes(x.to_bytes(2, "big"), "little")

    ntohs = htons

    @staticmethod
    def htonl(x: int) -> int:
        return int.from_bytes(x.to_bytes(4, "big"), "little")

    ntohl = htonl

    def getdefaulttimeout(self) -> float | None:
        return self._default_timeout

    def setdefaulttimeout(self, timeout: float | None) -> None:
        self._default_timeout = _check_timeout(timeout)

    def selector(self) -> Any:
        from rumpkernel.client.socket_selector import KernelSelector

        return KernelSelector(self._sys)

    # ---- address conversion ------------------------------------------------------------------
    def to_sockaddr(self, family: int, address: Any) -> bytes:
        if family == _HAF_INET:
            if not isinstance(address, tuple) or len(address) != 2:
                raise TypeError("AF_INET address must be a pair (host, port)")
            host, port = address
            if not isinstance(port, int):
                raise TypeError(f"'{type(port).__name__}' object cannot be interpreted as an "
                                "integer")
            if not 0 <= port <= 0xFFFF:
                raise OverflowError("port must be 0-65535.")
            if isinstance(host, bytes):
                host = host.decode()
            return S.pack_sockaddr_in(inet_pton4(self.gethostbyname(host)), port)
        if family == _HAF_INET6:
            return self._sockaddr6(address)
        if family == _HAF_UNIX:
            path = address if isinstance(address, bytes) else H.fsencode(H.fspath(address))
            if len(path) > S.SOCKADDR_UN_PATH_MAX:
                raise OSError(errno.EINVAL, "AF_UNIX path too long")
            return S.pack_sockaddr_un(path)
        raise OSError(errno.EAFNOSUPPORT, "address family not supported by the kernel")

    def _sockaddr6(self, address: Any) -> bytes:
        if not isinstance(address, tuple) or not 2 <= len(address) <= 4:
            raise TypeError("AF_INET6 address must be a tuple (host, port[, flowinfo[, "
                            "scopeid]])")
        host, port = address[0], address[1]
        flow = address[2] if len(address) > 2 else 0
        scope = address[3] if len(address) > 3 else 0
        if not isinstance(port, int):
            raise TypeError(f"'{type(port).__name__}' object cannot be interpreted as an "
                            "integer")
        if not 0 <= port <= 0xFFFF:
            raise OverflowError("port must be 0-65535.")
        if not 0 <= flow <= 0xFFFFF:
            raise OverflowError("flowinfo must be 0-1048575.")
        if isinstance(host, bytes):
            host = host.decode()
        if not host:
            host = "::"
        if not _is_numeric6(host):
            host = self._resolve(host, (_HAF_INET6,))[0][1]
        text, _, zone = host.partition("%")
        if zone and not scope:
            scope = self._zone(zone)
        return S.pack_sockaddr_in6(inet_pton6(text), port, flow, scope)

    def from_sockaddr(self, raw: bytes) -> Any:
        if len(raw) < 2:
            return None
        a = S.unpack_sockaddr(raw)
        if a[0] == K.AF_INET:
            return (inet_ntoa(a[1]), a[2])
        if a[0] == K.AF_INET6:
            text = ipv6.ip6str(a[1])
            if a[4] and ipv6.is_linklocal(a[1]):
                try:
                    text += "%" + self.if_indextoname(a[4])
                except OSError:
                    text += f"%{a[4]}"
            return (text, a[2], a[3], a[4])
        if a[0] == K.AF_LOCAL:
            path = a[1]
            return path if path.startswith(b"\0") else H.fsdecode(path)
        if a[0] == K.AF_UNSPEC:
            return None
        return a


def _flags_mask() -> int:
    return _CONST.get("SOCK_NONBLOCK", 0) | _CONST.get("SOCK_CLOEXEC", 0)


def _check_timeout(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    t = float(timeout)
    if t < 0:
        raise ValueError("Timeout value out of range")
    return t


class KernelSocket:
    """One kernel socket with ``socket.socket``'s methods (see the module docstring)."""

    def __init__(self, mod: SocketModule, family: int, type: int,
                 proto: int, fd: int) -> None:
        self._mod = mod
        self._sys = mod._sys
        self._fd = fd
        self.family = family
        self.type = type
        self.proto = proto
        self._timeout: float | None = None
        self._io_refs = 0
        self._closed = False
        if mod._default_timeout is not None:
            self.settimeout(mod._default_timeout)

    def __repr__(self) -> str:
        return (f"<rumpkernel socket fd={self._fd}, family={self.family}, type={self.type}, "
                f"proto={self.proto}>")

    def __enter__(self) -> KernelSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> Any:
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")

    # ---- descriptor ---------------------------------------------------------------------------
    def fileno(self) -> int:
        return self._fd

    def _checked(self) -> int:
        if self._fd < 0:
            raise OSError(errno.EBADF, "Bad file descriptor")
        return self._fd

    def close(self) -> None:
        self._closed = True
        if self._io_refs <= 0:
            self._real_close()

    def _real_close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            self._sys.close(fd)

    def _decref_socketios(self) -> None:
        if self._io_refs > 0:
            self._io_refs -= 1
        if self._closed:
            self.close()

    def detach(self) -> int:
        fd, self._fd = self._fd, -1
        return fd

    def dup(self) -> KernelSocket:
        s = KernelSocket(self._mod, self.family, self.type, self.proto,
                         self._sys.dup(self._checked()))
        s.settimeout(self._timeout)
        return s

    # ---- timeouts -------------------------------------------------------------------------------
    def settimeout(self, timeout: float | None) -> None:
        t = _check_timeout(timeout)
        self._timeout = t
        self._sys.set_blocking(self._checked(), t is None)

    def gettimeout(self) -> float | None:
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        self.settimeout(None if flag else 0.0)

    def getblocking(self) -> bool:
        return self._timeout != 0.0

    def _wait(self, op: Any, events: int) -> Any:
        """Run ``op``; with a timeout, retry it after kernel poll says ready."""
        t = self._timeout
        if not t:
            return op()
        clock = self._sys.clock_gettime
        deadline = clock(H.CLOCK_MONOTONIC) + t
        while True:
            try:
                return op()
            except BlockingIOError:
                pass
            left = deadline - clock(H.CLOCK_MONOTONIC)
            if left <= 0 or not self._sys.poll([(self._fd, events)], max(1, int(left * 1000)
                                                                         + 1)):
                raise TimeoutError("timed out") from None

    # ---- addresses and connections ------------------------------------------------------------
    def bind(self, address: Any) -> None:
        raw = self._mod.to_sockaddr(self.family, address)
        self._sys.sys_bind(self._checked(), raw, len(raw))

    def listen(self, backlog: int = K.SOMAXCONN) -> None:
        self._sys.sys_listen(self._checked(), min(max(backlog, 0), K.SOMAXCONN))

    def accept(self) -> tuple[KernelSocket, Any]:
        buf = bytearray(ADDR_BUF)

        def op() -> Any:
            return self._sys.sys_accept4(self._checked(), buf, len(buf), K.SOCK_CLOEXEC)

        fd, n = self._wait(op, H.POLLIN)
        s = KernelSocket(self._mod, self.family, self.type, self.proto, fd)
        if self._mod._default_timeout is None and self._timeout is not None:
            s.setblocking(True)
        return s, self._mod.from_sockaddr(bytes(buf[: min(n, len(buf))]))

    def connect(self, address: Any) -> None:
        raw = self._mod.to_sockaddr(self.family, address)
        fd = self._checked()
        try:
            self._sys.sys_connect(fd, raw, len(raw))
            return
        except BlockingIOError:
            if not self._timeout:
                raise
        if not self._sys.poll([(fd, H.POLLOUT)], max(1, int(self._timeout * 1000))):
            raise TimeoutError("timed out")
        err = self._getint(K.SOL_SOCKET, K.SO_ERROR)
        if err:
            raise H.oserror(err)

    def connect_ex(self, address: Any) -> int:
        try:
            self.connect(address)
        except OSError as e:
            if e.errno is None:
                raise
            return e.errno
        return 0

    def shutdown(self, how: int) -> None:
        self._sys.sys_shutdown(self._checked(), H.shut_to_kernel(how))

    def getsockname(self) -> Any:
        buf = bytearray(ADDR_BUF)
        n = self._sys.sys_getsockname(self._checked(), buf, len(buf))
        return self._mod.from_sockaddr(bytes(buf[: min(n, len(buf))]))

    def getpeername(self) -> Any:
        buf = bytearray(ADDR_BUF)
        n = self._sys.sys_getpeername(self._checked(), buf, len(buf))
        return self._mod.from_sockaddr(bytes(buf[: min(n, len(buf))]))

    # ---- data --------------------------------------------------------------------------------
    def send(self, data: Any, flags: int = 0) -> int:
        mv = memoryview(data)
        kf = H.msg_to_kernel(flags)
        return self._wait(lambda: self._sys.sys_sendto(self._checked(), mv, mv.nbytes, kf,
                                                       None, 0), H.POLLOUT)

    def sendall(self, data: Any, flags: int = 0) -> None:
        mv = memoryview(data).cast("B")
        while mv:
            n = self.send(mv, flags)
            mv = mv[n:]

    def sendto(self, data: Any, flags_or_addr: Any, addr: Any = None) -> int:
        if addr is None:
            flags, addr = 0, flags_or_addr
        else:
            flags = flags_or_addr
        raw = self._mod.to_sockaddr(self.family, addr)
        mv = memoryview(data)
        kf = H.msg_to_kernel(flags)
        return self._wait(lambda: self._sys.sys_sendto(self._checked(), mv, mv.nbytes, kf, raw,
                                                       len(raw)), H.POLLOUT)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        buf = bytearray(bufsize)
        n = self.recv_into(buf, bufsize, flags)
        return bytes(buf[: min(n, bufsize)])

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        mv = memoryview(buffer).cast("B")
        n = nbytes or mv.nbytes
        if n < 0 or n > mv.nbytes:
            raise ValueError("buffer too small for requested bytes")
        kf = H.msg_to_kernel(flags)
        got, _ = self._wait(lambda: self._sys.sys_recvfrom(self._checked(), mv[:n], n, kf,
                                                           None, 0), H.POLLIN)
        return got

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, Any]:
        buf = bytearray(bufsize)
        n, addr = self.recvfrom_into(buf, bufsize, flags)
        return bytes(buf[: min(n, bufsize)]), addr

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, Any]:
        mv = memoryview(buffer).cast("B")
        n = nbytes or mv.nbytes
        abuf = bytearray(ADDR_BUF)
        kf = H.msg_to_kernel(flags)
        got, alen = self._wait(lambda: self._sys.sys_recvfrom(self._checked(), mv[:n], n, kf,
                                                              abuf, len(abuf)), H.POLLIN)
        addr = self._mod.from_sockaddr(bytes(abuf[: min(alen, len(abuf))])) if alen else None
        return got, addr

    def sendmsg(self, buffers: Iterable[Any], ancdata: Iterable[tuple[int, int, Any]] = (),
                flags: int = 0, address: Any = None) -> int:
        iov = [(b, memoryview(b).nbytes) for b in buffers]
        raw = self._mod.to_sockaddr(self.family, address) if address is not None else None
        msgs = []
        for level, ctype, data in ancdata:
            klevel = H.level_to_kernel(level)
            ktype = H.scm_to_kernel(ctype) if level == _HSOL_SOCKET else ctype
            payload = bytes(data)
            if level == _HSOL_SOCKET and ctype == _HSCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(payload[: len(payload) // fds.itemsize * fds.itemsize])
                payload = b"".join(fd.to_bytes(4, "little", signed=True) for fd in fds)
            msgs.append((klevel, ktype, payload))
        ctl = S.pack_cmsgs(msgs)
        kf = H.msg_to_kernel(flags)
        return self._wait(lambda: self._sys.sys_sendmsg(
            self._checked(), iov, raw, len(raw or b""), ctl or None, len(ctl), kf), H.POLLOUT)

    def recvmsg(self, bufsize: int, ancbufsize: int = 0, flags: int = 0
                ) -> tuple[bytes, list[tuple[int, int, bytes]], int, Any]:
        buf = bytearray(bufsize)
        n, anc, mflags, addr = self.recvmsg_into([buf], ancbufsize, flags)
        return bytes(buf[: min(n, bufsize)]), anc, mflags, addr

    def recvmsg_into(self, buffers: Iterable[Any], ancbufsize: int = 0, flags: int = 0
                     ) -> tuple[int, list[tuple[int, int, bytes]], int, Any]:
        iov = [(b, memoryview(b).nbytes) for b in buffers]
        abuf = bytearray(ADDR_BUF)
        cbuf = bytearray(ancbufsize) if ancbufsize else None
        info = bytearray(S.MSGINFO.size)
        kf = H.msg_to_kernel(flags)
        n = self._wait(lambda: self._sys.sys_recvmsg(
            self._checked(), iov, abuf, len(abuf), cbuf, ancbufsize, kf, info), H.POLLIN)
        alen, clen, mflags = S.MSGINFO.unpack(info)
        anc = []
        for level, ctype, data in S.iter_cmsgs(bytes(cbuf[:clen]) if cbuf else b""):
            hlevel = H.level_to_host(level)
            if level == K.SOL_SOCKET:
                htype = H.scm_to_host(ctype)
                if ctype == K.SCM_RIGHTS:
                    fds = array.array("i", (int.from_bytes(data[i : i + 4], "little",
                                                           signed=True)
                                            for i in range(0, len(data), 4)))
                    data = fds.tobytes()
            else:
                htype = ctype
            anc.append((hlevel, htype, data))
        addr = self._mod.from_sockaddr(bytes(abuf[: min(alen, len(abuf))])) if alen else None
        return n, anc, H.msg_to_host(mflags), addr

    # ---- options --------------------------------------------------------------------------------
    def _getint(self, klevel: int, kname: int) -> int:
        buf = bytearray(4)
        self._sys.sys_getsockopt(self._checked(), klevel, kname, buf, 4)
        return int.from_bytes(buf, "little", signed=True)

    def setsockopt(self, level: int, optname: int, value: Any, optlen: int | None = None
                   ) -> None:
        klevel = H.level_to_kernel(level)
        kname = H.sockopt_to_kernel(klevel, optname)
        if value is None:
            if optlen is None:
                raise TypeError("setsockopt() takes an optlen with a None value")
            raw = bytes(optlen)
        elif isinstance(value, int):
            raw = int(value).to_bytes(4, "little", signed=True)
        else:
            raw = bytes(value)
        self._sys.sys_setsockopt(self._checked(), klevel, kname, raw, len(raw))

    def getsockopt(self, level: int, optname: int, buflen: int | None = None) -> Any:
        klevel = H.level_to_kernel(level)
        kname = H.sockopt_to_kernel(klevel, optname)
        if buflen is None:
            v = self._getint(klevel, kname)
            if klevel == K.SOL_SOCKET:
                if kname == K.SO_ERROR:
                    return H.host_errno(v) if v else 0
                if kname == K.SO_TYPE:
                    return H.socktype_to_host(v)
                if kname == K.SO_DOMAIN:
                    return H.af_to_host(v)
            return v
        if not 0 <= buflen <= 1024:
            raise OSError(errno.EINVAL, "getsockopt buflen out of range")
        buf = bytearray(buflen)
        n = self._sys.sys_getsockopt(self._checked(), klevel, kname, buf, buflen)
        return bytes(buf[: min(n, buflen)])

    # ---- files ---------------------------------------------------------------------------------
    def makefile(self, mode: str = "r", buffering: int | None = None, *,
                 encoding: str | None = None, errors: str | None = None,
                 newline: str | None = None) -> Any:
        if not set(mode) <= {"r", "w", "b"}:
            raise ValueError(f"invalid mode {mode!r} (only r, w, b)")
        reading, writing = "r" in mode, "w" in mode
        if reading == writing:
            raise ValueError("makefile: one of 'r' or 'w' (no read-write pair)")
        raw = SocketIO(self, "r" if reading else "w")
        self._io_refs += 1
        if buffering is None:
            buffering = -1
        if buffering < 0:
            buffering = hostio.DEFAULT_BUFFER_SIZE
        if buffering == 0:
            if "b" not in mode:
                raise ValueError("unbuffered streams must be binary")
            return raw
        buf = hostio.BufferedReader(raw, buffering) if reading else \
            hostio.BufferedWriter(raw, buffering)
        if "b" in mode:
            return buf
        text = hostio.TextIOWrapper(buf, hostio.text_encoding(encoding), errors, newline)
        text.mode = mode
        return text


class SocketIO(hostio.RawIOBase):
    """Raw I/O over a kernel socket (what ``makefile`` buffers)."""

    def __init__(self, sock: KernelSocket, mode: str) -> None:
        super().__init__()
        self._sock = sock
        self._mode = mode

    def readable(self) -> bool:
        return self._mode == "r"

    def writable(self) -> bool:
        return self._mode == "w"

    def readinto(self, b: Any) -> int:
        return self._sock.recv_into(b)

    def write(self, b: Any) -> int:
        return self._sock.send(b)

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        self._sock._decref_socketios()
