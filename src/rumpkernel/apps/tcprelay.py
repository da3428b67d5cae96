"""The relay behind rump_tcpproxy (apps/rump_tcpproxy.py): connections accepted on kernel
TCP sockets, each joined to a host socket, both ways, with bounded buffers.

Interface:
    Proxy(k, mappings, Options(...), out=sys.stdout, log=None)
        .resolve()       look the host targets up (Usage when one does not resolve)
        .listen()        kernel listening sockets (OSError naming the address: EADDRINUSE ...)
        .run()           serve in the calling thread (the host loop; the kernel loop is a thread
                         of its own) until .stop(); then every connection is reset, every
                         socket closed
        .stop() / .request_stats()   safe from signal handlers and other threads
        .snapshot() -> dict / .print_stats() / .kernel_sockets() / .close() (never run)
    Mapping(listen_addr, listen_port, host, host_port); Options(max_conns, idle_timeout,
    connect_timeout, buffer, verbose, stats_interval); Usage (a bad argument)

Threads and ownership: the kernel loop (one thread) polls every kernel socket through the
kernel's poll (``k.socket.selector()``) and is the only one to touch them; the host loop (the
caller's thread) runs a ``selectors`` loop over the host sockets and is the only one to touch
those.  A connection's two buffers (``k2h`` client->host, ``h2k`` host->client) hold at most
``Options.buffer`` bytes each; a full buffer takes its reading side out of the poll set
(backpressure), and each loop wakes the other through a socket pair of its own kind when it
fills or drains a buffer, sees a FIN or resets.  Shared fields change under ``Proxy.lock``.

Closing: a FIN read on one side is passed on (shutdown SHUT_WR) once the buffer toward the
other side is empty; a socket closes when it has both read and sent its FIN.  A reset or error
on either side, the idle timeout and a host connect that fails or times out reset both sides
(SO_LINGER 0).  The connection is forgotten -- its counters folded into the totals -- when
both sockets are closed.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
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


# ---- one connection ------------------------------------------------------------------------------
class Conn:
    """Both halves of one relayed connection.  ``k2h``: client bytes on their way to the host
    (the kernel thread appends, the host thread drains); ``h2k`` the other way.  Fields are
    changed under ``Proxy.lock``; each socket is used by its own thread only."""

    __slots__ = ("id", "mapping", "peer", "ks", "hs", "k2h", "h2k", "k_eof", "h_eof",
                 "k_shut", "h_shut", "connected", "abort", "k_closed", "h_closed", "started",
                 "last", "bytes_in", "bytes_out", "deadline", "kev", "hev")

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
        self.kev = self.hev = 0           # what each loop's selector polls for (0: nothing)

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


def _sync(sel: selectors.BaseSelector, obj: Any, have: int, events: int, data: Any) -> int:
    """Change ``obj``'s registration in ``sel`` from ``have`` to ``events`` (0: not
    registered); the new value, which the caller keeps (no lookups, no KeyError per poll)."""
    if events == have:
        return have
    if not events:
        sel.unregister(obj)
    elif not have:
        sel.register(obj, events, data)
    else:
        sel.modify(obj, events, data)
    return events


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
                c.kev = _sync(sel, c.ks, c.kev, 0, c)
                self._close_kernel(c)
                continue
            ev = 0
            if not c.k_eof and len(c.k2h) < self.opts.buffer:
                ev |= selectors.EVENT_READ
            if c.h2k:
                ev |= selectors.EVENT_WRITE
            c.kev = _sync(sel, c.ks, c.kev, ev, c)
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
        self._send(c, c.ks, c.h2k, "client", self.wake_host, counted=True)

    def _send(self, c: Conn, sock: Any, buf: bytearray, who: str, wake_other: Any,
              counted: bool) -> None:
        """Send from ``buf`` (one direction's buffer) on ``sock``; wake the loop that fills
        it when room appears or it runs empty.  Both loops' writers."""
        with self.lock:
            chunk = bytes(buf[:CHUNK])
        if not chunk:
            return
        try:
            n = sock.send(chunk)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            with self.lock:
                self._abort(c, f"{who}: {e.strerror or e}")
            wake_other()
            return
        with self.lock:
            was_full = len(buf) >= self.opts.buffer
            del buf[:n]
            if counted:
                c.bytes_out += n
            c.last = time.monotonic()
        if was_full or not buf:
            wake_other()

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
                c.hev = _sync(sel, c.hs, c.hev, 0, c)
                c.hs.close()
                continue
            ev = 0
            if not c.connected or c.k2h:
                ev |= selectors.EVENT_WRITE
            if c.connected and not c.h_eof and len(c.h2k) < self.opts.buffer:
                ev |= selectors.EVENT_READ
            c.hev = _sync(sel, c.hs, c.hev, ev, c)

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
        self._send(c, c.hs, c.k2h, "host", self.wake_kernel, counted=False)

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
        """The totals line and one line per open connection (a closed stdout is ignored)."""
        d = self.snapshot()
        ks = self.kernel_sockets()
        text = (f"{PROG}: stats active {d['active']} accepted {d['accepted']} "
                f"refused {d['refused']} failed {d['failed']} reset {d['reset']} "
                f"idle {d['idle']} closed {d['closed']} peak {d['peak']} "
                f"bytes_in {d['bytes_in']} bytes_out {d['bytes_out']} "
                f"max_buffered {d['buffered']} kernel_sockets {ks}\n")
        text += "".join(f"{PROG}:   {line}\n" for line in d["lines"])
        with contextlib.suppress(OSError, ValueError):
            self.out.write(text)
            self.out.flush()
