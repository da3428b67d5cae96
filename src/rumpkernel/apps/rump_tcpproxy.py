"""rump_tcpproxy: terminate TCP from an untrusted network in a rump kernel and relay each
connection to a host address through the host's own sockets (the seed's Figure 3).

    rump_tcpproxy --tap TAP (--addr A.B.C.D/LEN [--gateway G] | --dhcp) [--mtu N]
                  --listen [ADDR:]PORT=HOST:PORT [--listen ...]
                  [--max-conns N] [--idle-timeout S] [--connect-timeout S] [--buffer BYTES]
                  [--stats S] [-v]

The kernel gets interface ``virt0`` on the host TAP device ``TAP`` (opened, or created, in the
proxy's network namespace; the host side of the TAP is configured by the operator) and
listens on kernel TCP sockets; the peers on the TAP talk TCP only to the kernel.  Each
accepted connection is relayed to HOST:PORT through a host socket, both ways, and a
half-close (FIN) is passed on in each direction.

Policies:
    connection limit  ``--max-conns`` connections at once (default 256); one more is accepted
                      and reset at once (RST, SO_LINGER 0), so its client sees
                      ECONNRESET instead of waiting in a backlog; counted as "refused"
    idle timeout      ``--idle-timeout`` seconds (default 300, 0 = none) without a byte in
                      either direction reset both sides
    errors            a reset on one side resets the other; a host connect that fails or
                      takes longer than ``--connect-timeout`` resets the client
    memory            at most ``--buffer`` bytes (default 256 KiB) wait per direction and
                      connection; a full buffer stops reading that side (backpressure)

Statistics -- totals, and one line per open connection with its bytes each way and age --
go to stdout on SIGUSR1, every ``--stats`` seconds, and at exit.  ``-v`` also logs each
connection as it closes.  SIGTERM/SIGINT close every connection, halt the kernel and exit 0.
Arguments that cannot be satisfied -- bad syntax or address, a host name that does not
resolve, a TAP that cannot be opened, a port in use -- exit 2 with ``rump_tcpproxy: why`` (one
line); no DHCP lease in time or a failure while running exits 1.

How: one kernel thread polls every kernel socket (the kernel's poll, through
``k.socket.selector()``); the main thread runs a host ``selectors`` loop over the host sockets;
each direction of a connection is one bounded buffer between them, and each loop wakes the
other through a socket pair of its own kind when a buffer fills or drains.  Two threads in
all, however many connections.  Library use (tests): ``Proxy(k, mappings, opts)``.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import ipaddress
import selectors
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

PROG = "rump_tcpproxy"
CHUNK = 64 * 1024
LINGER_RST = struct.pack("ii", 1, 0)


class Usage(Exception):
    """A bad argument: exit 2 with a one-line message."""


@dataclass(frozen=True, slots=True)
class Mapping:
    listen_addr: str                  # kernel address (IPv4 dotted) to listen on
    listen_port: int
    host: str                         # where to connect on the host (name or address)
    host_port: int

    def __str__(self) -> str:
        return f"{self.listen_addr}:{self.listen_port} -> {self.host}:{self.host_port}"


def _port(text: str, what: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise Usage(f"{what}: bad port {text!r}")
    return int(text)


def _ipv4(text: str, what: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise Usage(f"{what}: bad IPv4 address {text!r}") from None


def parse_mapping(text: str) -> Mapping:
    """``[ADDR:]PORT=HOST:PORT`` (HOST may be ``[v6addr]``)."""
    left, sep, right = text.partition("=")
    if not sep:
        raise Usage(f"--listen {text}: expected [ADDR:]PORT=HOST:PORT")
    laddr, _, lport = left.rpartition(":")
    laddr = _ipv4(laddr, f"--listen {text}") if laddr else "0.0.0.0"
    host, _, hport = right.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise Usage(f"--listen {text}: expected [ADDR:]PORT=HOST:PORT")
    return Mapping(laddr, _port(lport, f"--listen {text}"), host,
                   _port(hport, f"--listen {text}"))


def _cidr(text: str) -> str:
    try:
        iface = ipaddress.IPv4Interface(text)
    except ValueError:
        raise Usage(f"--addr: bad address {text!r} (A.B.C.D/LEN)") from None
    if "/" not in text:
        raise Usage(f"--addr: {text!r} needs a prefix length (A.B.C.D/LEN)")
    return str(iface)


# ---- one connection ------------------------------------------------------------------------------
class Conn:
    """Both halves of one relayed connection.  ``k2h``: client bytes on their way to the host
    (the kernel thread appends, the host thread drains); ``h2k`` the other way.  Fields are
    changed under ``Proxy.lock``; each socket is used by its own thread only."""

    __slots__ = ("id", "mapping", "peer", "ks", "hs", "k2h", "h2k", "k_eof", "h_eof",
                 "k_shut", "h_shut", "connected", "abort", "k_closed", "h_closed", "started",
                 "last", "bytes_in", "bytes_out", "deadline")

    def __init__(self, cid: int, mapping: Mapping, peer: str, ks: Any, now: float,
                 connect_timeout: float) -> None:
        self.id = cid
        self.mapping = mapping
        self.peer = peer
        self.ks = ks                      # kernel socket (kernel thread)
        self.hs: socket.socket | None = None   # host socket (host thread)
        self.k2h = bytearray()
        self.h2k = bytearray()
        self.k_eof = self.h_eof = False   # FIN seen from the client / from the host
        self.k_shut = self.h_shut = False  # FIN passed on to the client / to the host
        self.connected = False
        self.abort: str | None = None     # why both sides are being reset
        self.k_closed = self.h_closed = False
        self.started = self.last = now
        self.bytes_in = self.bytes_out = 0   # client->host, host->client
        self.deadline = now + connect_timeout

    def k_done(self) -> bool:
        return self.abort is not None or (self.k_eof and self.k_shut)

    def h_done(self) -> bool:
        return self.abort is not None or (self.h_eof and self.h_shut)

    def describe(self, now: float) -> str:
        state = "connecting" if not self.connected else "open"
        if self.k_eof or self.h_eof:
            state = "half-closed"
        return (f"#{self.id} {self.peer} -> {self.mapping.host}:{self.mapping.host_port} "
                f"{state} in {self.bytes_in} out {self.bytes_out} "
                f"buffered {len(self.k2h)}+{len(self.h2k)} age {now - self.started:.1f}s "
                f"idle {now - self.last:.1f}s")


@dataclass(slots=True)
class Options:
    max_conns: int = 256
    idle_timeout: float = 300.0
    connect_timeout: float = 10.0
    buffer: int = 256 * 1024
    verbose: bool = False
    stats_interval: float = 0.0       # print statistics every so many seconds (0: never)


class Totals:
    __slots__ = ("accepted", "refused", "failed", "idle", "reset", "closed", "peak",
                 "bytes_in", "bytes_out")

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)


def _sync(sel: selectors.BaseSelector, obj: Any, events: int, data: Any) -> None:
    """Make ``obj``'s registration in ``sel`` be ``events`` (0: not registered)."""
    try:
        key = sel.get_key(obj)
    except KeyError:
        if events:
            sel.register(obj, events, data)
        return
    if not events:
        sel.unregister(obj)
    elif key.events != events:
        sel.modify(obj, events, data)


def _rst_close(sock: Any, level: int, opt: int) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(level, opt, LINGER_RST)
    with contextlib.suppress(OSError):
        sock.close()


class Proxy:
    """The relay.  ``k``: a booted kernel with its interface configured; ``run()`` serves in
    the calling thread (the host loop) until ``stop()``, then closes everything."""

    def __init__(self, k: Any, mappings: list[Mapping], opts: Options,
                 out: TextIO = sys.stdout, log: Callable[[str], None] | None = None) -> None:
        self.k = k
        self.S = k.socket
        self.mappings = mappings
        self.opts = opts
        self.out = out
        self.log = log or (lambda msg: print(f"{PROG}: {msg}", file=sys.stderr, flush=True))
        self.lock = threading.Lock()
        self.conns: dict[int, Conn] = {}
        self.pending: list[Conn] = []      # accepted, no host socket yet
        self.totals = Totals()
        self.next_id = 1
        self.stopping = False
        self.stats_requested = False
        self.listeners: list[tuple[Any, Mapping]] = []
        self.kw_r, self.kw_w = self.S.socketpair()      # wakes the kernel loop
        self.hw_r, self.hw_w = socket.socketpair()      # wakes the host loop
        for s in (self.kw_r, self.kw_w, self.hw_r, self.hw_w):
            s.setblocking(False)
        self.kwake = False
        self.targets: dict[Mapping, tuple[int, Any]] = {}
        self.kthread: threading.Thread | None = None
        self.kerror: BaseException | None = None

    # ---- setup --------------------------------------------------------------------------------
    def resolve(self) -> None:
        """Look every host target up once (Usage for a name the host cannot resolve)."""
        for m in self.mappings:
            try:
                infos = socket.getaddrinfo(m.host, m.host_port, type=socket.SOCK_STREAM)
            except OSError as e:
                raise Usage(f"--listen {m}: cannot resolve {m.host!r}: {e.strerror or e}") \
                    from None
            self.targets[m] = (infos[0][0], infos[0][4])

    def listen(self) -> None:
        """Bind every mapping's kernel socket; OSError (EADDRINUSE ...) names the address."""
        S = self.S
        for m in self.mappings:
            ls = S.socket(S.AF_INET, S.SOCK_STREAM)
            try:
                ls.setsockopt(S.SOL_SOCKET, S.SO_REUSEADDR, 1)
                ls.bind((m.listen_addr, m.listen_port))
                ls.listen(128)
                ls.setblocking(False)
            except OSError as e:
                ls.close()
                raise OSError(e.errno, f"listen on {m.listen_addr}:{m.listen_port}: "
                              f"{e.strerror or e}") from None
            self.listeners.append((ls, m))

    def close(self) -> None:
        """Close what ``__init__`` and ``listen`` opened, when ``run`` is never called."""
        for s in (self.hw_r, self.hw_w, self.kw_r, self.kw_w, *(ls for ls, _ in self.listeners)):
            with contextlib.suppress(OSError):
                s.close()

    # ---- wake-ups -----------------------------------------------------------------------------
    def wake_kernel(self) -> None:
        """From the host thread: the kernel loop must look at its connections again (one
        byte in flight at most: the flag is cleared after the kernel loop drained it)."""
        if self.kwake:
            return
        self.kwake = True
        with contextlib.suppress(OSError):
            self.kw_w.send(b"k")

    def wake_host(self) -> None:
        with contextlib.suppress(OSError):
            self.hw_w.send(b"h")

    def stop(self) -> None:
        """Ask both loops to finish (signal handlers, other threads)."""
        self.stopping = True
        self.wake_host()

    def request_stats(self) -> None:
        self.stats_requested = True
        self.wake_host()

    # ---- kernel side --------------------------------------------------------------------------
    def _kernel_loop(self) -> None:
        sel = self.S.selector()
        sel.register(self.kw_r, selectors.EVENT_READ, None)
        for ls, m in self.listeners:
            sel.register(ls, selectors.EVENT_READ, m)
        try:
            while not self.stopping:
                timeout = self._kernel_prepare(sel)
                for key, ev in sel.select(timeout):
                    self._kernel_event(key, ev)
        except BaseException as e:        # a kernel panic or a bug here: stop the proxy
            self.kerror = e
            self.stop()
        finally:
            sel.close()
            self._kernel_teardown()

    def _kernel_prepare(self, sel: selectors.BaseSelector) -> float:
        """Pass FINs on, close finished kernel sockets, expire idle connections; register
        what each connection can do now; the poll timeout."""
        now = time.monotonic()
        timeout = 1.0
        idle = self.opts.idle_timeout
        with self.lock:
            conns = [c for c in self.conns.values() if not c.k_closed]
        for c in conns:
            self._kernel_step(c, now)
            if c.k_done():
                with contextlib.suppress(KeyError):
                    sel.unregister(c.ks)
                self._close_kernel(c)
                continue
            ev = 0
            if not c.k_eof and len(c.k2h) < self.opts.buffer:
                ev |= selectors.EVENT_READ
            if c.h2k:
                ev |= selectors.EVENT_WRITE
            _sync(sel, c.ks, ev, c)
            if idle > 0:
                timeout = min(timeout, max(0.0, c.last + idle - now))
            if not c.connected:
                timeout = min(timeout, max(0.0, c.deadline - now))
        return timeout

    def _kernel_step(self, c: Conn, now: float) -> None:
        with self.lock:
            if c.abort is None:
                if self.opts.idle_timeout > 0 and now - c.last > self.opts.idle_timeout:
                    self._abort(c, "idle")
                elif not c.connected and now > c.deadline:
                    self._abort(c, "connect timeout")
            shut = c.abort is None and c.h_eof and not c.h2k and not c.k_shut
            if shut:
                c.k_shut = True
        if shut:
            try:
                c.ks.shutdown(self.S.SHUT_WR)
            except OSError as e:
                if e.errno != errno.ENOTCONN:
                    with self.lock:
                        self._abort(c, f"client: {e.strerror or e}")
        if c.abort is not None and not c.h_closed:
            self.wake_host()

    def _close_kernel(self, c: Conn) -> None:
        if c.abort is not None:
            _rst_close(c.ks, self.S.SOL_SOCKET, self.S.SO_LINGER)
        else:
            with contextlib.suppress(OSError):
                c.ks.close()
        with self.lock:
            c.k_closed = True
            self._maybe_forget(c)

    def _kernel_event(self, key: selectors.SelectorKey, ev: int) -> None:
        if key.fileobj is self.kw_r:
            with contextlib.suppress(OSError):
                while self.kw_r.recv(4096):
                    pass
            self.kwake = False
            return
        if isinstance(key.data, Mapping):
            self._accept(key.fileobj, key.data)
            return
        c: Conn = key.data
        if ev & selectors.EVENT_READ:
            self._kernel_read(c)
        if ev & selectors.EVENT_WRITE and c.abort is None:
            self._kernel_write(c)

    def _accept(self, ls: Any, m: Mapping) -> None:
        for _ in range(64):
            try:
                ks, addr = ls.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self.log(f"accept on {m.listen_addr}:{m.listen_port}: {e.strerror or e}")
                return
            peer = f"{addr[0]}:{addr[1]}"
            with self.lock:
                full = len(self.conns) >= self.opts.max_conns
                if full:
                    self.totals.refused += 1
                else:
                    self.totals.accepted += 1
                    c = Conn(self.next_id, m, peer, ks, time.monotonic(),
                             self.opts.connect_timeout)
                    self.next_id += 1
                    self.conns[c.id] = c
                    self.totals.peak = max(self.totals.peak, len(self.conns))
                    self.pending.append(c)
            if full:
                if self.opts.verbose:
                    self.log(f"{peer}: refused (limit {self.opts.max_conns} connections)")
                _rst_close(ks, self.S.SOL_SOCKET, self.S.SO_LINGER)
                continue
            ks.setblocking(False)
            with contextlib.suppress(OSError):
                ks.setsockopt(self.S.IPPROTO_TCP, self.S.TCP_NODELAY, 1)
            self.wake_host()

    def _kernel_read(self, c: Conn) -> None:
        room = self.opts.buffer - len(c.k2h)
        if room <= 0 or c.k_eof:
            return
        try:
            data = c.ks.recv(min(room, CHUNK))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            with self.lock:
                self._abort(c, f"client: {e.strerror or e}")
            self.wake_host()
            return
        with self.lock:
            if data:
                c.k2h += data
                c.bytes_in += len(data)
                c.last = time.monotonic()
            else:
                c.k_eof = True
        self.wake_host()

    def _kernel_write(self, c: Conn) -> None:
        with self.lock:
            chunk = bytes(c.h2k[:CHUNK])
        if not chunk:
            return
        try:
            n = c.ks.send(chunk)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            with self.lock:
                self._abort(c, f"client: {e.strerror or e}")
            self.wake_host()
            return
        with self.lock:
            was_full = len(c.h2k) >= self.opts.buffer
            del c.h2k[:n]
            c.bytes_out += n
            c.last = time.monotonic()
        if was_full or not c.h2k:
            self.wake_host()

    def _kernel_teardown(self) -> None:
        for ls, _m in self.listeners:
            with contextlib.suppress(OSError):
                ls.close()
        with self.lock:
            conns = [c for c in self.conns.values() if not c.k_closed]
            for c in conns:
                self._abort(c, "shutdown")
        for c in conns:
            self._close_kernel(c)
        self.wake_host()

    # ---- host side (the calling thread) ---------------------------------------------------
    def run(self) -> None:
        self.kthread = threading.Thread(target=self._kernel_loop, name="tcpproxy-kernel",
                                        daemon=True)
        self.kthread.start()
        sel = selectors.DefaultSelector()
        sel.register(self.hw_r, selectors.EVENT_READ, None)
        every = self.opts.stats_interval
        next_stats = time.monotonic() + every if every > 0 else None
        try:
            while not self.stopping:
                self._host_prepare(sel)
                for key, ev in sel.select(1.0):
                    self._host_event(key, ev)
                if next_stats is not None and time.monotonic() >= next_stats:
                    next_stats += every
                    self.stats_requested = True
                if self.stats_requested:
                    self.stats_requested = False
                    self.print_stats()
        finally:
            self.stopping = True
            self.wake_kernel()
            self.kthread.join(30)
            self._host_teardown()
            sel.close()

    def _host_prepare(self, sel: selectors.BaseSelector) -> None:
        with self.lock:
            pending, self.pending = self.pending, []
            conns = [c for c in self.conns.values() if not c.h_closed]
        for c in pending:
            self._host_connect(c)
        for c in conns:
            self._host_step(c)
            if c.hs is None:
                continue
            if c.h_closed:
                with contextlib.suppress(KeyError, ValueError):
                    sel.unregister(c.hs)
                c.hs.close()
                continue
            ev = 0
            if not c.connected or c.k2h:
                ev |= selectors.EVENT_WRITE
            if c.connected and not c.h_eof and len(c.h2k) < self.opts.buffer:
                ev |= selectors.EVENT_READ
            _sync(sel, c.hs, ev, c)

    def _host_connect(self, c: Conn) -> None:
        m = c.mapping
        if m not in self.targets:
            self.resolve()
        fam, addr = self.targets[m]
        try:
            hs = socket.socket(fam, socket.SOCK_STREAM)
        except OSError as e:
            with self.lock:
                self._abort(c, f"host {m.host}: {e.strerror or e}")
                self.totals.failed += 1
            self.wake_kernel()
            return
        hs.setblocking(False)
        c.hs = hs
        with contextlib.suppress(OSError):
            hs.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = hs.connect_ex(addr)
        if err not in (0, errno.EINPROGRESS):
            with self.lock:
                self._abort(c, f"connect {m.host}:{m.host_port}: {errno.errorcode.get(err)}")
                self.totals.failed += 1
            self.wake_kernel()

    def _host_step(self, c: Conn) -> None:
        """Pass the client's FIN on to the host; close a finished host socket."""
        with self.lock:
            shut = (c.abort is None and c.connected and c.k_eof and not c.k2h
                    and not c.h_shut)
            if shut:
                c.h_shut = True
        if shut and c.hs is not None:
            try:
                c.hs.shutdown(socket.SHUT_WR)
            except OSError as e:
                if e.errno == errno.ENOTCONN:
                    return
                with self.lock:
                    self._abort(c, f"host: {e.strerror or e}")
                self.wake_kernel()
        if c.h_done():
            if c.hs is not None and c.abort is not None:
                with contextlib.suppress(OSError):
                    c.hs.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
            with self.lock:
                c.h_closed = True
                self._maybe_forget(c)

    def _host_event(self, key: selectors.SelectorKey, ev: int) -> None:
        if key.fileobj is self.hw_r:
            with contextlib.suppress(OSError):
                while self.hw_r.recv(4096):
                    pass
            return
        c: Conn = key.data
        if c.abort is not None or c.h_closed:
            return
        if ev & selectors.EVENT_WRITE and not c.connected:
            self._host_connected(c)
            return
        if ev & selectors.EVENT_READ:
            self._host_read(c)
        if ev & selectors.EVENT_WRITE and c.abort is None:
            self._host_write(c)

    def _host_connected(self, c: Conn) -> None:
        assert c.hs is not None
        err = c.hs.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        with self.lock:
            if err:
                self.totals.failed += 1
                self._abort(c, f"connect {c.mapping.host}:{c.mapping.host_port}: "
                            f"{errno.errorcode.get(err, err)}")
            else:
                c.connected = True
        self.wake_kernel()

    def _host_read(self, c: Conn) -> None:
        assert c.hs is not None
        room = self.opts.buffer - len(c.h2k)
        if room <= 0:
            return
        try:
            data = c.hs.recv(min(room, CHUNK))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            with self.lock:
                self._abort(c, f"host: {e.strerror or e}")
            self.wake_kernel()
            return
        with self.lock:
            if data:
                c.h2k += data
                c.last = time.monotonic()
            else:
                c.h_eof = True
        self.wake_kernel()

    def _host_write(self, c: Conn) -> None:
        assert c.hs is not None
        with self.lock:
            chunk = bytes(c.k2h[:CHUNK])
        if not chunk:
            return
        try:
            n = c.hs.send(chunk)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            with self.lock:
                self._abort(c, f"host: {e.strerror or e}")
            self.wake_kernel()
            return
        with self.lock:
            was_full = len(c.k2h) >= self.opts.buffer
            del c.k2h[:n]
            c.last = time.monotonic()
        if was_full or not c.k2h:
            self.wake_kernel()

    def _host_teardown(self) -> None:
        with self.lock:
            conns = list(self.conns.values())
            for c in conns:
                self._abort(c, "shutdown")
        for c in conns:
            if c.hs is not None and not c.h_closed:
                _rst_close(c.hs, socket.SOL_SOCKET, socket.SO_LINGER)
            with self.lock:
                c.h_closed = True
                c.k_closed = True        # the kernel loop has ended: it closed them
                self._maybe_forget(c)
        for s in (self.hw_r, self.hw_w):
            s.close()
        for s in (self.kw_r, self.kw_w):
            with contextlib.suppress(OSError):
                s.close()

    # ---- bookkeeping (under self.lock) -------------------------------------------------------
    def _abort(self, c: Conn, why: str) -> None:
        if c.abort is not None:
            return
        c.abort = why
        if why == "idle":
            self.totals.idle += 1
        elif why != "shutdown":
            self.totals.reset += 1
        if self.opts.verbose:
            self.log(f"#{c.id} {c.peer}: reset ({why})")

    def _maybe_forget(self, c: Conn) -> None:
        if not (c.k_closed and c.h_closed) or c.id not in self.conns:
            return
        del self.conns[c.id]
        t = self.totals
        t.closed += 1
        t.bytes_in += c.bytes_in
        t.bytes_out += c.bytes_out
        if self.opts.verbose:
            self.log(f"closed {c.describe(time.monotonic())}"
                     + (f" ({c.abort})" if c.abort else ""))

    # ---- statistics ---------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Totals (the bytes of open connections included) and the open connections."""
        now = time.monotonic()
        with self.lock:
            t = self.totals
            conns = sorted(self.conns.values(), key=lambda c: c.id)
            d = {name: getattr(t, name) for name in Totals.__slots__}
            d["bytes_in"] += sum(c.bytes_in for c in conns)
            d["bytes_out"] += sum(c.bytes_out for c in conns)
            d["active"] = len(conns)
            d["buffered"] = max((len(c.k2h) + len(c.h2k) for c in conns), default=0)
            d["lines"] = [c.describe(now) for c in conns]
        return d

    def kernel_sockets(self) -> int:
        """Kernel TCP sockets that are open and not listening."""
        try:
            rows = self.S.config.sockets()
        except OSError:
            return -1
        return sum(1 for r in rows if r["proto"] == "tcp" and r["id"] and not r["listening"])

    def print_stats(self) -> None:
        d = self.snapshot()
        ks = self.kernel_sockets()
        self.out.write(f"{PROG}: stats active {d['active']} accepted {d['accepted']} "
                       f"refused {d['refused']} failed {d['failed']} reset {d['reset']} "
                       f"idle {d['idle']} closed {d['closed']} peak {d['peak']} "
                       f"bytes_in {d['bytes_in']} "
                       f"bytes_out {d['bytes_out']} max_buffered {d['buffered']} "
                       f"kernel_sockets {ks}\n")
        for line in d["lines"]:
            self.out.write(f"{PROG}:   {line}\n")
        self.out.flush()


# ---- the command ---------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:       # one line, exit 2
        raise Usage(message)


def _positive(kind: Callable[[str], Any], what: str, zero: bool = False) -> Callable[[str], Any]:
    def conv(text: str) -> Any:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad {what} {text!r}") from None
        if v < 0 or (v == 0 and not zero) or v != v:
            raise argparse.ArgumentTypeError(f"bad {what} {text!r}")
        return v
    return conv


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Terminate TCP from a TAP network in a rump kernel and "
                "relay each connection to a host address through host sockets.",
                epilog="SIGUSR1 prints statistics; SIGTERM/SIGINT shut down cleanly.")
    p.add_argument("--tap", required=True, metavar="TAP",
                   help="host TAP device for the kernel's interface virt0 (created if missing)")
    p.add_argument("--addr", metavar="A.B.C.D/LEN", help="the kernel's address on the TAP")
    p.add_argument("--gateway", metavar="A.B.C.D", help="the kernel's default route")
    p.add_argument("--dhcp", action="store_true", help="take the address from a DHCP server")
    p.add_argument("--dhcp-timeout", type=_positive(float, "timeout"), default=30.0,
                   metavar="S", help="seconds to wait for a lease (default 30)")
    p.add_argument("--mtu", type=_positive(int, "MTU"), help="interface MTU")
    p.add_argument("--listen", action="append", required=True, type=_mapping,
                   metavar="[ADDR:]PORT=HOST:PORT",
                   help="listen on the kernel's PORT and relay to HOST:PORT (repeatable)")
    p.add_argument("--max-conns", type=_positive(int, "connection limit"), default=256,
                   metavar="N", help="connections at once; more are reset (default 256)")
    p.add_argument("--idle-timeout", type=_positive(float, "timeout", zero=True),
                   default=300.0, metavar="S",
                   help="reset a connection idle this long (default 300, 0: never)")
    p.add_argument("--connect-timeout", type=_positive(float, "timeout"), default=10.0,
                   metavar="S", help="host connect timeout (default 10)")
    p.add_argument("--buffer", type=_positive(int, "buffer size"), default=256 * 1024,
                   metavar="BYTES", help="buffered bytes per direction (default 262144)")
    p.add_argument("--stats", type=_positive(float, "interval"), default=0.0, metavar="S",
                   help="print statistics every S seconds")
    p.add_argument("-v", "--verbose", action="store_true", help="log every connection")
    return p


def _mapping(text: str) -> Mapping:
    try:
        return parse_mapping(text)
    except Usage as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix(f"--listen {text}: ")) from None


def _check_args(a: argparse.Namespace) -> None:
    if a.dhcp == (a.addr is not None):
        raise Usage("give exactly one of --addr and --dhcp")
    if a.addr is not None:
        a.addr = _cidr(a.addr)
    if a.gateway is not None:
        if a.dhcp:
            raise Usage("--gateway comes from the lease with --dhcp")
        a.gateway = _ipv4(a.gateway, "--gateway")
    raw = a.tap.encode()
    if not raw or len(raw) > 15 or b"/" in raw or any(ch <= 32 for ch in raw):
        raise Usage(f"--tap: bad interface name {a.tap!r}")


class _Startup(Exception):
    """What the arguments name cannot be had (a TAP, a port): exit 2."""


class _NoLease(Exception):
    """No DHCP lease in time: exit 1."""


def _configure(k: Any, a: argparse.Namespace) -> Any:
    """virt0 on the TAP with its address (or a DHCP lease: the session is returned)."""
    cfg = k.socket.config
    try:
        cfg.create("virt0")
        cfg.linkstr("virt0", a.tap)
    except OSError as e:
        raise _Startup(f"cannot open TAP {a.tap}: {e.strerror or e}") from None
    try:
        if a.mtu:
            cfg.set_mtu("virt0", a.mtu)
        if a.addr:
            cfg.address("virt0", a.addr)
        cfg.up("virt0")
        if a.gateway:
            cfg.route_add("default", gateway=a.gateway)
    except OSError as e:
        raise _Startup(f"configuring virt0: {e.strerror or e}") from None
    if not a.dhcp:
        return None
    from rumpkernel.client.dhcp import DhcpSession

    session = DhcpSession(k, "virt0")
    try:
        session.acquire(a.dhcp_timeout)
    except TimeoutError:
        session.close()
        raise _NoLease(f"no DHCP lease on {a.tap} within {a.dhcp_timeout:g} s") from None
    return session


def _keep_lease(session: Any, stop: threading.Event) -> threading.Thread:
    def loop() -> None:
        with contextlib.suppress(Exception):
            while not stop.is_set():
                session.step(0.5)
    t = threading.Thread(target=loop, name="tcpproxy-dhcp", daemon=True)
    t.start()
    return t


def _err(msg: str) -> None:
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    import rumpkernel

    try:
        a = parser().parse_args(argv)
        _check_args(a)
    except Usage as e:
        _err(str(e))
        return 2
    opts = Options(max_conns=a.max_conns, idle_timeout=a.idle_timeout,
                   connect_timeout=a.connect_timeout, buffer=a.buffer, verbose=a.verbose,
                   stats_interval=a.stats)
    k = rumpkernel.boot(components=["net", "net_inet", "net_lo", "net_virtif"],
                        hostname="tcpproxy")
    session = None
    stop_dhcp = threading.Event()
    proxy = Proxy(k, a.listen, opts)
    try:
        proxy.resolve()
        session = _configure(k, a)
        proxy.listen()
    except (Usage, _Startup, OSError) as e:
        proxy.close()
        k.halt()
        _err(str(e) if not isinstance(e, OSError) else (e.strerror or str(e)))
        return 2
    except _NoLease as e:
        proxy.close()
        k.halt()
        _err(str(e))
        return 1
    if session is not None:
        _keep_lease(session, stop_dhcp)
        lease = session.lease
        where = ".".join(map(str, lease.address)) if lease else "?"
        _err(f"virt0 {where} from DHCP")
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: proxy.stop())
    signal.signal(signal.SIGUSR1, lambda *_: proxy.request_stats())
    for m in a.listen:
        _err(f"listening {m}")
    try:
        proxy.run()
    finally:
        proxy.print_stats()
        stop_dhcp.set()
        if session is not None:
            with contextlib.suppress(Exception):
                session.release()
        with contextlib.suppress(Exception):
            k.halt()
    if proxy.kerror is not None:
        _err(f"kernel loop failed: {proxy.kerror!r}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
