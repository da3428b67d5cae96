"""A sans-IO TCP stack for one host: demultiplexing, listeners, RSTs for closed ports, TIME_WAIT
reuse, and one timer queue -- the wiring a socket layer needs around TcpConnection.

Interface:
    TcpStack(secret, config=None, account_factory=None)
        ``secret``: 16..64 random bytes (ISNs, SYN cookies, timestamp offsets);
        ``account_factory()``: a BufferAccount for each new connection (kernel memory).
    .listen(laddr, lport, backlog, cc=None) -> TcpListener  (EADDRINUSE if taken;
                                               laddr ANY4 = b"\\0\\0\\0\\0" listens on all
                                               IPv4 addresses, ANY6 = bytes(16) on all IPv6)
    .route_mss                               -- optional hook (laddr, raddr) -> MSS from the
                                               route's MTU, for listeners' SYN-ACKs
    .route_tso                               -- optional hook (laddr, raddr) -> (MTU, largest
                                               datagram the interface segments itself, 0:
                                               no TSO); a connection whose MSS is the MTU's
                                               gets ``tso_max`` (config.tso turns it off)
    .connect(laddr, lport, raddr, rport, now, reuse=False, cc=None, mss_clamp=None,
             route_mss=None, setup=None) -> TcpConnection (SYN sent;
                                               EADDRINUSE when the 4-tuple is in use, except a
                                               TIME_WAIT one with ``reuse``/config.tw_reuse
                                               and timestamps)
    .input(src, dst, seg, now)               -- one parsed segment (addresses as bytes)
    .input_bytes(src, dst, buf, now, verified=False) -- raw TCP bytes: checksum verified
                                               (unless the device did: ``verified``),
                                               malformed segments counted and dropped
    .timeout(now), .deadline                 -- every connection's and listener's timers
    .take_output() -> [(src, dst, TcpSegment)] and .take_output_bytes() -> [(src, dst, bytes)]
    .connections / .listeners / .stats / .config
    .forget(conn)                            -- drop a connection from the tables now

Rules: one stack per kernel; closed connections leave the demultiplexing table lazily (on
their next segment or timer, or reap()).  A SYN for a 4-tuple in TIME_WAIT reopens it when its
timestamp (or, without timestamps, its sequence number) is newer (RFC 6191).
"""

from __future__ import annotations

import heapq
import itertools

from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.net.inet.tcp_config import TcpConfig
from rumpkernel.net.inet.tcp_engine import TcpConnection, TcpShared
from rumpkernel.net.inet.tcp_fsm import TcpEvent, TcpState
from rumpkernel.net.inet.tcp_input import reset_for
from rumpkernel.net.inet.tcp_isn import IsnGenerator
from rumpkernel.net.inet.tcp_listener import TcpListener
from rumpkernel.net.wire.tcp import TcpFormatError, TcpSegment, emit_for, parse, parse_for

MASK = 0xFFFFFFFF
ANY4 = b"\x00\x00\x00\x00"
ANY6 = bytes(16)
SYN, RST, ACK = 0x02, 0x04, 0x10


class TcpStack:
    def __init__(self, secret: bytes, config: TcpConfig | None = None,
                 account_factory=None) -> None:
        self.shared = TcpShared(config)
        self.config = self.shared.config
        self.stats = self.shared.stats
        self.isn = IsnGenerator(secret)
        self.account_factory = account_factory
        self.connections: dict[tuple, TcpConnection] = {}
        self.listeners: dict[tuple, TcpListener] = {}
        self.out: list[tuple[bytes, bytes, TcpSegment]] = []
        self._heap: list = []
        self._seq = itertools.count()
        self.route_mss = None
        self.route_tso = None

    # --- endpoints ---------------------------------------------------------------------------

    def listen(self, laddr: bytes, lport: int, backlog: int, cc: str | None = None,
               mss_clamp: int | None = None) -> TcpListener:
        key = (laddr, lport)
        old = self.listeners.get(key)
        if old is not None and old.state == TcpState.LISTEN:
            raise KernelError(Errno.EADDRINUSE, f"port {lport} already listening")
        lst = TcpListener(self.shared, self.isn, laddr, lport, backlog,
                          account_factory=self.account_factory, cc=cc, mss_clamp=mss_clamp)
        lst.sink = self._listener_sink
        lst.on_deadline = self._schedule
        lst.route_mss = self.route_mss
        self.listeners[key] = lst
        return lst

    def unlisten(self, lst: TcpListener, now: float) -> None:
        lst.close(now)
        if self.listeners.get((lst.laddr, lst.lport)) is lst:
            del self.listeners[lst.laddr, lst.lport]

    def connect(self, laddr: bytes, lport: int, raddr: bytes, rport: int, now: float, *,
                reuse: bool = False, cc: str | None = None, mss_clamp: int | None = None,
                route_mss: int | None = None, setup=None) -> TcpConnection:
        """Active open.  ``setup(conn)`` runs before the SYN is sent (socket options)."""
        key = (laddr, lport, raddr, rport)
        iss = self.isn.isn(laddr, lport, raddr, rport, now)
        old = self.connections.get(key)
        if old is not None and old.state != TcpState.CLOSED:
            if old.state != TcpState.TIME_WAIT or not (
                    reuse or (self.config.tw_reuse and old.ts_ok)):
                raise KernelError(Errno.EADDRINUSE, "4-tuple in use")
            if ((iss - old.snd_max) & MASK) >= 0x80000000 or iss == old.snd_max & MASK:
                iss = (old.snd_max + 65536) & MASK  # stay ahead of the old incarnation
            old._to_closed(TcpEvent.TIMEOUT)
            self.stats.time_wait_reuse += 1
        conn = TcpConnection(self.shared, laddr, lport, raddr, rport, iss,
                             self.isn.ts_offset(laddr, lport, raddr, rport),
                             account=self._account(), cc=cc, mss_clamp=mss_clamp,
                             route_mss=route_mss)
        self._register(conn)
        if setup is not None:
            setup(conn)
        conn.connect(now)
        return conn

    def _account(self):
        from rumpkernel.net.inet.tcp_buffers import NULL_ACCOUNT

        return self.account_factory() if self.account_factory else NULL_ACCOUNT

    def _register(self, conn: TcpConnection) -> None:
        self.connections[conn.laddr, conn.lport, conn.raddr, conn.rport] = conn
        conn.sink = self._conn_sink
        conn.on_deadline = self._schedule
        conn.owner = self
        if self.route_tso is not None and self.config.tso:
            mtu, limit = self.route_tso(conn.laddr, conn.raddr)
            hdrs = 40 if len(conn.laddr) == 4 else 60
            conn.tso_max = limit if limit and conn.our_mss + hdrs == mtu else 0
        for seg in conn.take_output():
            self.out.append((conn.laddr, conn.raddr, seg))
        if conn.deadline is not None:
            self._schedule(conn)

    def forget(self, conn: TcpConnection) -> None:
        key = (conn.laddr, conn.lport, conn.raddr, conn.rport)
        if self.connections.get(key) is conn:
            del self.connections[key]

    def reap(self) -> None:
        for key, conn in list(self.connections.items()):
            if conn.state == TcpState.CLOSED:
                del self.connections[key]

    # --- segments ----------------------------------------------------------------------------

    def input_bytes(self, src: bytes, dst: bytes, buf: bytes, now: float,
                    verified: bool = False) -> None:
        try:
            seg = parse(buf) if verified else parse_for(buf, src, dst)
        except TcpFormatError as e:
            if e.reason == "checksum":
                self.stats.checksum_errors += 1
            else:
                self.stats.bad_segments += 1
            self.stats.drop("bad_" + e.reason)
            return
        self.input(src, dst, seg, now)

    def input(self, src: bytes, dst: bytes, seg: TcpSegment, now: float) -> None:
        key = (dst, seg.dst_port, src, seg.src_port)
        conn = self.connections.get(key)
        if conn is not None:
            st = conn.state
            if st == TcpState.CLOSED:
                del self.connections[key]
                conn = None
            elif st == TcpState.TIME_WAIT and seg.flags & (SYN | ACK | RST) == SYN \
                    and self._reopen_allowed(conn, seg):
                conn._to_closed(TcpEvent.TIMEOUT)
                del self.connections[key]
                self.stats.time_wait_reuse += 1
                conn = None
        if conn is not None:
            conn.input(seg, now)
            if conn.state == TcpState.CLOSED:
                self.forget(conn)
            return
        lst = self.listeners.get((dst, seg.dst_port)) or self.listeners.get(
            (ANY4 if len(dst) == 4 else ANY6, seg.dst_port))
        if lst is not None and lst.state == TcpState.LISTEN:
            new = lst.input(dst, src, seg, now)
            if new is not None:
                self._register(new)
            return
        self.stats.segs_in += 1
        self.stats.drop("no_socket")
        rst = reset_for(seg)
        if rst is not None:
            self.stats.out_rsts += 1
            self.out.append((dst, src, rst))

    @staticmethod
    def _reopen_allowed(conn: TcpConnection, seg: TcpSegment) -> bool:
        ts = seg.options.ts_val
        if conn.ts_ok and ts is not None:
            return ((ts - conn.ts_recent) & MASK) - 1 < 0x7FFFFFFF
        return ((seg.seq - conn.rcv_nxt) & MASK) - 1 < 0x7FFFFFFF

    # --- timers and output -------------------------------------------------------------------

    def _schedule(self, obj) -> None:
        if obj.deadline is not None:
            heapq.heappush(self._heap, (obj.deadline, next(self._seq), obj))

    @property
    def deadline(self) -> float | None:
        heap = self._heap
        while heap and heap[0][2].deadline != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def timeout(self, now: float) -> None:
        heap = self._heap
        ran: dict[int, object] = {}
        while heap and heap[0][0] <= now:
            due, _, obj = heapq.heappop(heap)
            if obj.deadline != due or id(obj) in ran:
                continue
            ran[id(obj)] = obj  # once per call, whatever its handlers re-arm
            obj.timeout(now)
            if isinstance(obj, TcpConnection) and obj.state == TcpState.CLOSED:
                self.forget(obj)
        for obj in ran.values():  # a deadline that did not change sent no on_deadline
            self._schedule(obj)

    def _conn_sink(self, conn: TcpConnection, seg: TcpSegment) -> None:
        self.out.append((conn.laddr, conn.raddr, seg))

    def _listener_sink(self, laddr: bytes, raddr: bytes, seg: TcpSegment) -> None:
        self.out.append((laddr, raddr, seg))

    def take_output(self) -> list[tuple[bytes, bytes, TcpSegment]]:
        out, self.out = self.out, []
        return out

    def take_output_bytes(self) -> list[tuple[bytes, bytes, bytes]]:
        return [(src, dst, emit_for(seg, src, dst)) for src, dst, seg in self.take_output()]
