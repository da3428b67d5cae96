"""Targets for the packetdrill runner: the small interface and the engine-only target.

The interface (what the runner needs from a system under test):
    target.local_ip, target.remote_ip  -- the kernel's address and the script's peer address
    target.now                         -- virtual time in seconds
    target.ports() -> (local, remote)  -- ports of the script's connection (for inbound packets)
    target.inject(seg)                 -- deliver a TcpSegment from the script's peer
    target.advance(until, stop_on_output=False) -- run the kernel's clock to ``until``; with
                                          ``stop_on_output`` stop at the first sent segment
    target.collect() -> [(time, TcpSegment)]    -- segments the kernel sent, drained
    target.syscall(name, args) -> Outcome       -- run a call (args as parsed: ints, symbol
                                          strings, lists, dicts, Ellipsis); Outcome.pending
                                          when a blocking call blocks
    target.completions() -> [(time, handle, Outcome)] -- blocked calls that finished
    target.sysctl(name, value)         -- ``net.inet.tcp.NAME=VALUE`` from a backtick command
    target.close()

EngineTarget drives a TcpStack directly through a minimal socket-like adapter (fds from 3,
blocking and O_NONBLOCK, the options the scripts use) on a virtual clock: deterministic and a
few milliseconds per script.  The network faction's socket layer provides the kernel target.
Symbols in arguments use Linux names (SOL_SOCKET, TCP_NODELAY, MSG_PEEK, POLLIN, ...); results
compare against script values by name (errno names, TCP_* states) or number.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.net.inet import tcp_engine
from rumpkernel.net.inet.tcp_config import TcpConfig
from rumpkernel.net.inet.tcp_engine import TcpConnection
from rumpkernel.net.inet.tcp_listener import TcpListener
from rumpkernel.net.inet.tcp_stack import TcpStack
from rumpkernel.net.wire.tcp import TcpSegment, emit_for, parse_for

LOCAL_IP = bytes([192, 168, 0, 1])
REMOTE_IP = bytes([192, 0, 2, 1])
SCRIPT_PORT = 8080          # bind(...) port and connect(...) destination
REMOTE_PORT = 40000         # the script peer's port for passive opens
EPHEMERAL_PORT = 49152

POLL_BITS = {"POLLIN": 0x1, "POLLPRI": 0x2, "POLLOUT": 0x4, "POLLERR": 0x8, "POLLHUP": 0x10,
             "POLLNVAL": 0x20, "POLLRDHUP": 0x2000}
_EV_TO_POLL = ((tcp_engine.EV_READABLE, 0x1), (tcp_engine.EV_URGENT, 0x2),
               (tcp_engine.EV_WRITABLE, 0x4), (tcp_engine.EV_ERROR, 0x8),
               (tcp_engine.EV_HANGUP, 0x10), (tcp_engine.EV_RDHUP, 0x2000))
MSG_BITS = {"MSG_OOB": 0x1, "MSG_PEEK": 0x2, "MSG_DONTWAIT": 0x40, "MSG_WAITALL": 0x100}
SHUT = {"SHUT_RD": 0, "SHUT_WR": 1, "SHUT_RDWR": 2}
TCP_STATES = {  # Linux numbering, as packetdrill scripts spell them
    "ESTABLISHED": "TCP_ESTABLISHED", "SYN_SENT": "TCP_SYN_SENT",
    "SYN_RECEIVED": "TCP_SYN_RECV", "FIN_WAIT_1": "TCP_FIN_WAIT1", "FIN_WAIT_2": "TCP_FIN_WAIT2",
    "TIME_WAIT": "TCP_TIME_WAIT", "CLOSED": "TCP_CLOSE", "CLOSE_WAIT": "TCP_CLOSE_WAIT",
    "LAST_ACK": "TCP_LAST_ACK", "LISTEN": "TCP_LISTEN", "CLOSING": "TCP_CLOSING"}


@dataclass(slots=True)
class Outcome:
    value: object = 0            # return value (int) or -1
    errno: str | None = None     # errno name when value == -1
    out: object = None           # output argument (getsockopt value, poll fds)
    pending: bool = False
    handle: int = 0


class WouldBlock(Exception):
    """A blocking call that cannot finish yet; ``retry()`` re-attempts it."""

    def __init__(self, retry) -> None:
        super().__init__("would block")
        self.retry = retry


class _Sock:
    __slots__ = ("conn", "fd", "listener", "nonblock", "opts", "port")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.conn: TcpConnection | None = None
        self.listener: TcpListener | None = None
        self.nonblock = False
        self.port: int | None = None
        self.opts: dict = {}


def _int(value) -> int:
    if isinstance(value, list) and value:
        value = value[0]
    if not isinstance(value, int):
        raise KernelError(Errno.EINVAL, f"expected a number, got {value!r}")
    return value


def _bits(value, table: dict) -> int:
    names = value.names if hasattr(value, "names") else (value,)
    out = 0
    for n in names:
        if isinstance(n, int):
            out |= n
        elif n in table:
            out |= table[n]
        elif n not in ("O_RDWR", "O_RDONLY", "O_WRONLY"):
            raise KernelError(Errno.EINVAL, f"unknown flag {n}")
    return out


class EngineTarget:
    """The engine-only target (see module docstring)."""

    def __init__(self, seed: int = 1, config: TcpConfig | None = None) -> None:
        self.rng = random.Random(seed)
        self.stack = TcpStack(self.rng.randbytes(32), config or TcpConfig())
        self.local_ip, self.remote_ip = LOCAL_IP, REMOTE_IP
        self.now = 0.0
        self.socks: dict[int, _Sock] = {}
        self.sent: list[tuple[float, TcpSegment]] = []
        self.pending: dict[int, tuple] = {}
        self.done: list = []
        self._handles = 0
        self._ports = (SCRIPT_PORT, REMOTE_PORT)
        self._next_port = EPHEMERAL_PORT

    # --- the runner interface ----------------------------------------------------------------

    def ports(self) -> tuple[int, int]:
        return self._ports

    def inject(self, seg: TcpSegment) -> None:
        raw = emit_for(seg, self.remote_ip, self.local_ip)
        self.stack.input_bytes(self.remote_ip, self.local_ip, raw, self.now)
        self._after()

    def advance(self, until: float, stop_on_output: bool = False) -> None:
        while True:
            if stop_on_output and self.sent:
                return
            d = self.stack.deadline
            wake = self._next_poll_timeout()
            if wake is not None and (d is None or wake < d):
                d = wake
            if d is None or d > until:
                self.now = max(self.now, until)
                self._after()
                return
            self.now = max(self.now, d)
            self.stack.timeout(self.now)
            self._after()

    def collect(self) -> list[tuple[float, TcpSegment]]:
        out, self.sent = self.sent, []
        return out

    def completions(self) -> list:
        out, self.done = self.done, []
        return out

    def sysctl(self, name: str, value: str) -> None:
        prefix = "net.inet.tcp."
        if not name.startswith(prefix):
            raise ValueError(f"unknown sysctl {name}")
        self.stack.config.set(name[len(prefix):], value)

    def close(self) -> None:
        for s in list(self.socks.values()):
            self._close(s)

    def syscall(self, name: str, args: tuple) -> Outcome:
        fn = getattr(self, "sys_" + name, None)
        if fn is None:
            return Outcome(-1, "ENOSYS")
        try:
            out = fn(*args)
        except WouldBlock as wb:
            self._handles += 1
            self.pending[self._handles] = (name, wb.retry)
            return Outcome(pending=True, handle=self._handles)
        except KernelError as e:
            return Outcome(-1, Errno(e.errno).name)
        finally:
            self._after(retry=False)
        return out if isinstance(out, Outcome) else Outcome(out)

    # --- plumbing ----------------------------------------------------------------------------

    def _after(self, retry: bool = True) -> None:
        for src, dst, seg in self.stack.take_output():
            raw = emit_for(seg, src, dst)
            self.sent.append((self.now, parse_for(raw, src, dst)))
        if retry and self.pending:
            for h, (_name, fn) in list(self.pending.items()):
                try:
                    out = fn()
                except WouldBlock as wb:
                    self.pending[h] = (_name, wb.retry)
                    continue
                except KernelError as e:
                    out = Outcome(-1, Errno(e.errno).name)
                del self.pending[h]
                self.done.append((self.now, h, out if isinstance(out, Outcome) else Outcome(out)))
            for src, dst, seg in self.stack.take_output():
                raw = emit_for(seg, src, dst)
                self.sent.append((self.now, parse_for(raw, src, dst)))

    def _next_poll_timeout(self) -> float | None:
        times = [fn.deadline for _, fn in self.pending.values() if hasattr(fn, "deadline")]
        return min(times) if times else None

    def _sock(self, fd) -> _Sock:
        s = self.socks.get(fd)
        if s is None:
            raise KernelError(Errno.EBADF)
        return s

    def _new_fd(self) -> _Sock:
        fd = 3
        while fd in self.socks:
            fd += 1
        s = _Sock(fd)
        self.socks[fd] = s
        return s

    def _blocking(self, s: _Sock, attempt, nonblock: bool = False):
        """Run ``attempt``; EAGAIN blocks (retried later) unless the socket is non-blocking."""
        try:
            return attempt()
        except KernelError as e:
            if e.errno != Errno.EAGAIN or s.nonblock or nonblock:
                raise
        raise WouldBlock(lambda: self._blocking(s, attempt))

    def _apply(self, s: _Sock, conn: TcpConnection) -> None:
        o = s.opts
        conn.nodelay = bool(o.get("nodelay", conn.nodelay))
        conn.set_keepalive(self.now, bool(o.get("keepalive", conn.keepalive)),
                           o.get("keepidle"), o.get("keepintvl"), o.get("keepcnt"))
        if "rcvbuf" in o:
            conn.set_rcvbuf(o["rcvbuf"])
        if "sndbuf" in o:
            conn.set_sndbuf(o["sndbuf"])
        if "cc" in o:
            conn.set_congestion(o["cc"])
        if o.get("linger") == 0:
            conn.linger_zero = True

    # --- system calls ------------------------------------------------------------------------

    def sys_socket(self, domain, type_, proto) -> int:
        return self._new_fd().fd

    def sys_bind(self, fd, addr=..., addrlen=...) -> int:
        s = self._sock(fd)
        if any(x.port == SCRIPT_PORT and x.listener for x in self.socks.values()) and \
                not s.opts.get("reuseaddr"):
            raise KernelError(Errno.EADDRINUSE)
        s.port = SCRIPT_PORT
        return 0

    def sys_listen(self, fd, backlog) -> int:
        s = self._sock(fd)
        s.port = s.port or SCRIPT_PORT
        s.listener = self.stack.listen(self.local_ip, s.port, _int(backlog), cc=s.opts.get("cc"),
                                       mss_clamp=s.opts.get("maxseg"))
        self._ports = (s.port, REMOTE_PORT)
        return 0

    def sys_accept(self, fd, addr=..., addrlen=..., flags=0) -> int:
        s = self._sock(fd)
        if s.listener is None:
            raise KernelError(Errno.EINVAL)

        def attempt() -> int:
            conn = s.listener.accept()
            if conn is None:
                raise KernelError(Errno.EAGAIN)
            ns = self._new_fd()
            ns.conn = conn
            ns.opts = dict(s.opts)
            self._apply(ns, conn)
            return ns.fd
        return self._blocking(s, attempt)

    sys_accept4 = sys_accept

    def sys_connect(self, fd, addr=..., addrlen=...) -> Outcome | int:
        s = self._sock(fd)
        if s.conn is not None:
            if s.conn.connected:
                raise KernelError(Errno.EISCONN)
            raise KernelError(Errno.EALREADY)
        port = self._next_port
        self._next_port += 1
        self._ports = (port, SCRIPT_PORT)
        s.conn = self.stack.connect(self.local_ip, port, self.remote_ip, SCRIPT_PORT, self.now,
                                    cc=s.opts.get("cc"), mss_clamp=s.opts.get("maxseg"),
                                    setup=lambda c: self._apply(s, c))
        if s.nonblock:
            raise KernelError(Errno.EINPROGRESS)
        conn = s.conn

        def attempt() -> int:
            if conn.connected:
                return 0
            if conn.so_error is not None:
                raise KernelError(conn.take_error())
            raise KernelError(Errno.EAGAIN)
        return self._blocking(s, attempt)

    def _conn(self, s: _Sock) -> TcpConnection:
        if s.conn is None:
            raise KernelError(Errno.ENOTCONN)
        return s.conn

    def sys_write(self, fd, buf, count) -> int:
        return self.sys_send(fd, buf, count, 0)

    def sys_send(self, fd, buf, count, flags=0) -> int:
        s = self._sock(fd)
        conn = self._conn(s)
        fl = _bits(flags, MSG_BITS)
        count = _int(count)
        data = bytes(buf) if isinstance(buf, bytes) else bytes(count)
        done = [0]

        def attempt() -> int:
            while done[0] < count:
                try:
                    done[0] += conn.send(data[done[0]:count], self.now, oob=bool(fl & 1))
                except KernelError:
                    if done[0] and (s.nonblock or fl & 0x40):
                        return done[0]
                    raise
                if s.nonblock or fl & 0x40:
                    return done[0]
            return done[0]
        return self._blocking(s, attempt, nonblock=bool(fl & 0x40))

    def sys_read(self, fd, buf, count) -> int:
        return self.sys_recv(fd, buf, count, 0)

    def sys_recv(self, fd, buf, count, flags=0) -> int:
        s = self._sock(fd)
        conn = self._conn(s)
        fl = _bits(flags, MSG_BITS)

        def attempt() -> int:
            return len(conn.recv(_int(count), self.now, peek=bool(fl & 2)))
        return self._blocking(s, attempt, nonblock=bool(fl & 0x40))

    def sys_shutdown(self, fd, how) -> int:
        s = self._sock(fd)
        self._conn(s).shutdown(SHUT[how] if isinstance(how, str) else how, self.now)
        return 0

    def sys_close(self, fd) -> int:
        s = self._sock(fd)
        self._close(s)
        return 0

    def _close(self, s: _Sock) -> None:
        if s.listener is not None:
            self.stack.unlisten(s.listener, self.now)
        if s.conn is not None:
            s.conn.close(self.now)
        del self.socks[s.fd]

    def sys_fcntl(self, fd, cmd, arg=0) -> int:
        s = self._sock(fd)
        if cmd == "F_SETFL":
            s.nonblock = "O_NONBLOCK" in (arg.names if hasattr(arg, "names") else (arg,))
            return 0
        if cmd == "F_GETFL":
            return 0x802 if s.nonblock else 0x2
        raise KernelError(Errno.EINVAL)

    _SOCKOPTS = {"SO_REUSEADDR": "reuseaddr", "SO_KEEPALIVE": "keepalive",
                 "TCP_NODELAY": "nodelay", "TCP_KEEPIDLE": "keepidle",
                 "TCP_KEEPINTVL": "keepintvl", "TCP_KEEPCNT": "keepcnt",
                 "SO_RCVBUF": "rcvbuf", "SO_SNDBUF": "sndbuf", "TCP_MAXSEG": "maxseg"}

    def sys_setsockopt(self, fd, level, name, value, length=...) -> int:
        s = self._sock(fd)
        if name == "SO_LINGER":
            s.opts["linger"] = value.get("linger") if value.get("onoff") else None
        elif name == "TCP_CONGESTION":
            cc = value.decode() if isinstance(value, bytes) else str(value)
            try:
                from rumpkernel.net.inet import tcp_cc
                tcp_cc.create(cc, 1000)
            except KeyError:
                raise KernelError(Errno.ENOENT) from None
            s.opts["cc"] = cc
        elif name in self._SOCKOPTS:
            s.opts[self._SOCKOPTS[name]] = _int(value)
        else:
            raise KernelError(Errno.ENOPROTOOPT)
        if s.conn is not None:
            self._apply(s, s.conn)
        return 0

    def sys_getsockopt(self, fd, level, name, value=..., length=...) -> Outcome:
        s = self._sock(fd)
        if name == "SO_ERROR":
            err = s.conn.take_error() if s.conn is not None else None
            return Outcome(0, out=[Errno(err).name if err else 0])
        if name == "TCP_INFO":
            return Outcome(0, out=self._tcp_info(self._conn(s)))
        if name in self._SOCKOPTS:
            key = self._SOCKOPTS[name]
            if s.conn is not None and key in ("nodelay", "keepalive"):
                return Outcome(0, out=[int(getattr(s.conn, key))])
            return Outcome(0, out=[s.opts.get(key, 0)])
        raise KernelError(Errno.ENOPROTOOPT)

    def _tcp_info(self, conn: TcpConnection) -> dict:
        i = conn.info()
        mss = max(i.snd_mss, 1)
        return {"tcpi_state": TCP_STATES[i.state], "tcpi_snd_cwnd": i.cwnd // mss,
                "tcpi_snd_ssthresh": min(i.ssthresh // mss, 0x7FFFFFFF),
                "tcpi_rto": round(i.rto * 1e6), "tcpi_retransmits": i.retransmits,
                "tcpi_total_retrans": i.total_retrans, "tcpi_snd_mss": i.snd_mss,
                "tcpi_rcv_mss": i.rcv_mss, "tcpi_backoff": i.backoff,
                "tcpi_rtt": round((i.srtt or 0) * 1e6),
                "tcpi_rttvar": round((i.rttvar or 0) * 1e6),
                "tcpi_unacked": -(-i.unacked // mss), "tcpi_snd_wscale": i.snd_wscale,
                "tcpi_rcv_wscale": i.rcv_wscale, "tcpi_ca_state": i.in_recovery or "open",
                "tcpi_sacked": -(-i.sacked // mss)}

    def sys_ioctl(self, fd, request, arg=...) -> Outcome:
        s = self._sock(fd)
        if request == "SIOCATMARK":
            return Outcome(0, out=[int(self._conn(s).at_mark)])
        if request == "FIONREAD":
            return Outcome(0, out=[self._conn(s).rcvbuf.readable])
        raise KernelError(Errno.ENOTTY)

    def sys_poll(self, fds, nfds, timeout) -> Outcome:
        entries = [dict(e) for e in fds]
        deadline = None if _int(timeout) < 0 else self.now + _int(timeout) / 1000.0

        def attempt() -> Outcome:
            ready = 0
            for e in entries:
                s = self.socks.get(e["fd"])
                e["events"] = _bits(e.get("events", 0), POLL_BITS)
                mask = e["events"] | 0x8 | 0x10  # POLLERR and POLLHUP are always reported
                rev = (self._revents(s) & mask) if s else POLL_BITS["POLLNVAL"]
                e["revents"] = rev
                ready += bool(rev)
            if ready or (deadline is not None and self.now >= deadline):
                return Outcome(ready, out=entries)
            raise KernelError(Errno.EAGAIN)
        try:
            return attempt()
        except KernelError:
            pass

        def retry():
            try:
                return attempt()
            except KernelError:
                raise WouldBlock(retry) from None
        retry.deadline = deadline
        raise WouldBlock(retry)

    def _revents(self, s: _Sock) -> int:
        if s.listener is not None:
            return 0x1 if s.listener.readable else 0
        if s.conn is None:
            return 0x4 | 0x10
        ev = s.conn.events
        return sum(bit for flag, bit in _EV_TO_POLL if ev & flag)
