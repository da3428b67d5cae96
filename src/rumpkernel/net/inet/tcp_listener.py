"""A listening TCP endpoint: SYN queue, accept queue and SYN cookies (bounded memory).

Interface:
    TcpListener(shared, isn, laddr, lport, backlog, account_factory=None, cc=None,
                mss_clamp=None)
        .input(laddr, raddr, seg, now) -> TcpConnection | None
                          -- a segment for the listening port with no connection; returns a new
                             connection when a handshake completes (it is also on the accept
                             queue).  ``laddr`` is the segment's destination address (matters
                             for a wildcard listener).
        .accept() -> TcpConnection | None
        .timeout(now), .deadline     -- SYN-ACK retransmission and SYN-queue expiry
        .take_output() -> [(laddr, raddr, TcpSegment)] (or ``sink(laddr, raddr, seg)``)
        .close(now)                  -- RST every queued connection, forget the SYN queue
        .readable, .backlog (settable: listen() again), .syn_queue, .accept_queue
        .on_events(listener)         -- optional hook, called when a connection is queued
        .queued()                    -- connections counted against the backlog: the accept
                                        queue, or ``queue_len()`` when the owner moves
                                        connections elsewhere (a socket layer's own queue)
        .route_mss(laddr, raddr)     -- optional hook: our MSS from the route (MTU - 40), else
                                        config.mtu's
        .user                        -- free for the owner
        .rcvbuf                      -- SO_RCVBUF of the listening socket (None: autotuned):
                                        the SYN-ACK's window and shift, and the accepted
                                        connections' fixed receive buffer

Rules: a SYN-queue entry is a small record (no buffers); at most config.max_syn_backlog of
them.  When the queue is full a SYN is answered with a SYN cookie (config.syncookies 1; with 2
always) carrying MSS, and window scale and SACK in the timestamp, so a flood costs no memory and
a legitimate client still connects.  A completed handshake whose accept queue is full is
dropped (the client retransmits its ACK or data) and counted.
"""

from __future__ import annotations

from collections import deque

from rumpkernel.net.inet.tcp_buffers import NULL_ACCOUNT
from rumpkernel.net.inet.tcp_engine import TcpConnection, TcpShared, _wscale_for
from rumpkernel.net.inet.tcp_fsm import TcpEvent, TcpState, next_state
from rumpkernel.net.inet.tcp_input import reset_for
from rumpkernel.net.inet.tcp_isn import IsnGenerator, decode_ts_options, encode_ts_options
from rumpkernel.net.wire.tcp import TcpOptions, TcpSegment

MASK = 0xFFFFFFFF
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


class SynEntry:
    __slots__ = ("deadline", "iss", "irs", "laddr", "opts", "raddr", "rcv_wscale", "retries",
                 "rport", "synack_time", "ts_offset", "window")

    def __init__(self, laddr, raddr, rport, irs, iss, opts, window, ts_offset, rcv_wscale,
                 now) -> None:
        self.laddr, self.raddr, self.rport = laddr, raddr, rport
        self.irs, self.iss, self.opts, self.window = irs, iss, opts, window
        self.ts_offset, self.rcv_wscale = ts_offset, rcv_wscale
        self.synack_time = now
        self.retries = 0
        self.deadline = now


class TcpListener:
    def __init__(self, shared: TcpShared, isn: IsnGenerator, laddr: bytes, lport: int,
                 backlog: int, *, account_factory=None, cc: str | None = None,
                 mss_clamp: int | None = None) -> None:
        self.shared = shared
        self.config = shared.config
        self.stats = shared.stats
        self.isn = isn
        self.laddr, self.lport = laddr, lport
        self.backlog = max(backlog, 1)
        self.account_factory = account_factory
        self.cc = cc
        self.mss_clamp = mss_clamp
        self.state = next_state(TcpState.CLOSED, TcpEvent.PASSIVE_OPEN)
        self.syn_queue: dict[tuple, SynEntry] = {}
        self.accept_queue: deque[TcpConnection] = deque()
        self.out: list = []
        self.sink = None
        self.deadline: float | None = None
        self.on_deadline = None
        self.on_events = None
        self.queue_len = None
        self.route_mss = None
        self.user = None
        self.rcvbuf: int | None = None

    def _wscale(self) -> int:
        """The window shift we offer: enough for the buffer a connection may grow to."""
        return _wscale_for(self.rcvbuf or self.config.rmem_max)

    def _our_mss(self, laddr: bytes, raddr: bytes) -> tuple[int | None, int]:
        """(the route's MSS or None, the MSS we announce)."""
        route = self.route_mss(laddr, raddr) if self.route_mss is not None else None
        base = route or self.config.our_mss
        return route, min(base, self.mss_clamp) if self.mss_clamp else base

    def queued(self) -> int:
        return self.queue_len() if self.queue_len is not None else len(self.accept_queue)

    # --- segments ----------------------------------------------------------------------------

    def input(self, laddr: bytes, raddr: bytes, seg: TcpSegment, now: float):
        self.stats.segs_in += 1
        f = seg.flags
        key = (laddr, raddr, seg.src_port)
        if f & RST:
            entry = self.syn_queue.get(key)
            if entry is not None and seg.seq == (entry.irs + 1) & MASK:
                del self.syn_queue[key]
            self.stats.drop("listen_rst")
            return None
        if f & ACK:
            if f & SYN:
                self._reset(laddr, raddr, seg, "listen_synack")
                return None
            return self._ack(laddr, raddr, key, seg, now)
        if f & SYN:
            self._syn(laddr, raddr, key, seg, now)
        else:
            self.stats.drop("listen_no_syn")
        return None

    def _reset(self, laddr: bytes, raddr: bytes, seg: TcpSegment, reason: str) -> None:
        self.stats.drop(reason)
        rst = reset_for(seg)
        if rst is not None:
            self.stats.out_rsts += 1
            self._emit(laddr, raddr, rst)

    def _syn(self, laddr, raddr, key, seg: TcpSegment, now: float) -> None:
        cfg = self.config
        entry = self.syn_queue.get(key)
        if entry is not None:
            if seg.seq == entry.irs:  # retransmitted SYN: answer again, echo its TSval
                entry.opts = seg.options
                self._send_synack(entry, now)
            else:
                self.stats.drop("listen_syn_mismatch")
            return
        if self.queued() >= self.backlog:
            self.stats.listen_overflows += 1
            self.stats.listen_drops += 1
            self.stats.drop("accept_queue_full")
            return
        if cfg.syncookies == 2 or len(self.syn_queue) >= cfg.max_syn_backlog:
            if cfg.syncookies:
                self._send_cookie(laddr, raddr, seg, now)
            else:
                self.stats.syn_queue_drops += 1
                self.stats.listen_drops += 1
                self.stats.drop("syn_queue_full")
            return
        rport = seg.src_port
        opts = seg.options
        iss = self.isn.isn(laddr, self.lport, raddr, rport, now)
        ts_offset = self.isn.ts_offset(laddr, self.lport, raddr, rport)
        rcv_wscale = self._wscale() if cfg.window_scaling and \
            opts.wscale is not None else None
        entry = SynEntry(laddr, raddr, rport, seg.seq, iss, opts, seg.window, ts_offset,
                         rcv_wscale, now)
        self.syn_queue[key] = entry
        self._send_synack(entry, now)

    def _synack(self, laddr, raddr, rport, irs, iss, opts: TcpOptions, ts_offset: int,
                rcv_wscale, now: float, ts_val: int | None = None) -> TcpSegment:
        cfg = self.config
        ts = None
        if cfg.timestamps and opts.ts_val is not None:
            ts = (ts_val if ts_val is not None else (int(now * 1000) + ts_offset) & MASK,
                  opts.ts_val)
        synopts = TcpOptions.build(mss=self._our_mss(laddr, raddr)[1],
                                   sack_permitted=cfg.sack and opts.sack_permitted, ts=ts,
                                   wscale=rcv_wscale)
        window = min(self.rcvbuf or cfg.rmem_default, 0xFFFF)
        return TcpSegment(self.lport, rport, iss, (irs + 1) & MASK, SYN | ACK, window, 0,
                          synopts)

    def _send_synack(self, entry: SynEntry, now: float) -> None:
        seg = self._synack(entry.laddr, entry.raddr, entry.rport, entry.irs, entry.iss,
                           entry.opts, entry.ts_offset, entry.rcv_wscale, now)
        self.stats.segs_out += 1
        self._emit(entry.laddr, entry.raddr, seg)
        entry.deadline = now + self.config.rto_initial * (1 << entry.retries)
        self._update_deadline(entry.deadline)

    def _send_cookie(self, laddr, raddr, seg: TcpSegment, now: float) -> None:
        cfg = self.config
        opts = seg.options
        rport = seg.src_port
        iss, _mss = self.isn.cookie(laddr, self.lport, raddr, rport, seg.seq,
                                    opts.mss or cfg.mss_default, now)
        ts_offset = self.isn.ts_offset(laddr, self.lport, raddr, rport)
        ws = self._wscale() if cfg.window_scaling and opts.wscale is not None \
            else None
        ts_val = None
        if not (cfg.timestamps and opts.ts_val is not None):
            # nowhere to keep window scale and SACK-permitted: offer neither (as Linux does)
            ws = None
            opts = TcpOptions.build(mss=opts.mss)
        else:
            # the peer's options live in our TSval; without timestamps they are lost
            ts_val = encode_ts_options((int(now * 1000) + ts_offset) & MASK, opts.wscale
                                       if ws is not None else None,
                                       cfg.sack and opts.sack_permitted)
        synack = self._synack(laddr, raddr, rport, seg.seq, iss, opts, ts_offset, ws, now,
                              ts_val)
        self.stats.syncookies_sent += 1
        self.stats.segs_out += 1
        self._emit(laddr, raddr, synack)

    def _ack(self, laddr, raddr, key, seg: TcpSegment, now: float):
        entry = self.syn_queue.get(key)
        if entry is None:
            entry = self._from_cookie(laddr, raddr, seg, now)
            if entry is None:
                self._reset(laddr, raddr, seg, "listen_bad_ack")
                return None
        elif seg.ack != (entry.iss + 1) & MASK:
            self._reset(laddr, raddr, seg, "listen_bad_ack")
            return None
        if self.queued() >= self.backlog:
            self.stats.listen_overflows += 1
            self.stats.drop("accept_queue_full")
            if self.config.abort_on_overflow:
                self.syn_queue.pop(key, None)
                self._reset(laddr, raddr, seg, "accept_queue_full_reset")
            return None
        conn = self._make_connection(entry, now)
        conn.input(seg, now)
        if conn.state in (TcpState.ESTABLISHED, TcpState.CLOSE_WAIT):
            self.syn_queue.pop(key, None)
            self.accept_queue.append(conn)
            self.stats.passive_opens += 1
            if self.on_events is not None:
                self.on_events(self)
            return conn
        if conn.state == TcpState.CLOSED:
            self.syn_queue.pop(key, None)
        out = conn.take_output()  # e.g. an ACK answering an unacceptable segment
        for s in out:
            self._emit(laddr, raddr, s)
        return None

    def _from_cookie(self, laddr, raddr, seg: TcpSegment, now: float) -> SynEntry | None:
        cfg = self.config
        if not cfg.syncookies:
            return None
        rport = seg.src_port
        irs = (seg.seq - 1) & MASK
        iss = (seg.ack - 1) & MASK
        mss = self.isn.check_cookie(laddr, self.lport, raddr, rport, irs, iss, now)
        if mss is None:
            self.stats.syncookies_failed += 1
            return None
        self.stats.syncookies_recv += 1
        opts = seg.options
        wscale, sack_ok = None, False
        ts = None
        if opts.ts_val is not None and opts.ts_ecr is not None and cfg.timestamps:
            wscale, sack_ok = decode_ts_options(opts.ts_ecr)
            ts = (opts.ts_val, opts.ts_ecr)
        syn_opts = TcpOptions.build(mss=mss, sack_permitted=sack_ok, ts=ts, wscale=wscale)
        rcv_wscale = self._wscale() if wscale is not None else None
        ts_offset = self.isn.ts_offset(laddr, self.lport, raddr, rport)
        entry = SynEntry(laddr, raddr, rport, irs, iss, syn_opts, seg.window, ts_offset,
                         rcv_wscale, now)
        entry.retries = 0
        entry.synack_time = None  # no RTT sample from a cookie (but no SYN timeout either)
        return entry

    def _make_connection(self, entry: SynEntry, now: float) -> TcpConnection:
        account = self.account_factory() if self.account_factory else NULL_ACCOUNT
        return TcpConnection.passive(
            self.shared, entry.laddr, self.lport, entry.raddr, entry.rport, entry.iss,
            entry.ts_offset, entry.irs, entry.opts, entry.window, now, account=account,
            cc=self.cc, mss_clamp=self.mss_clamp, rcv_wscale=entry.rcv_wscale,
            route_mss=self._our_mss(entry.laddr, entry.raddr)[0], rcvbuf=self.rcvbuf,
            synack_time=entry.synack_time if entry.retries == 0 else None,
            synack_retries=entry.retries)

    # --- queue and timers --------------------------------------------------------------------

    def accept(self) -> TcpConnection | None:
        return self.accept_queue.popleft() if self.accept_queue else None

    @property
    def readable(self) -> bool:
        return bool(self.accept_queue)

    def timeout(self, now: float) -> None:
        limit = self.config.synack_retries
        for key, entry in list(self.syn_queue.items()):
            if entry.deadline > now:
                continue
            if entry.retries >= limit:
                del self.syn_queue[key]
                self.stats.drop("synack_retries")
                continue
            entry.retries += 1
            self.stats.syn_retrans += 1
            self.stats.retrans_segs += 1
            self._send_synack(entry, now)
        self._update_deadline(None)

    def _update_deadline(self, hint: float | None) -> None:
        old = self.deadline
        if hint is not None and (old is None or hint < old):
            self.deadline = hint
        elif hint is None:
            self.deadline = min((e.deadline for e in self.syn_queue.values()), default=None)
        if self.on_deadline is not None and self.deadline != old:
            self.on_deadline(self)

    def close(self, now: float) -> None:
        if self.state == TcpState.CLOSED:
            return
        self.state = next_state(self.state, TcpEvent.CLOSE)
        while self.accept_queue:
            conn = self.accept_queue.popleft()
            conn.abort(now)
            for s in conn.take_output():
                self._emit(conn.laddr, conn.raddr, s)
        self.syn_queue.clear()
        self._update_deadline(None)

    def take_output(self) -> list:
        out, self.out = self.out, []
        return out

    def _emit(self, laddr: bytes, raddr: bytes, seg: TcpSegment) -> None:
        if self.sink is not None:
            self.sink(laddr, raddr, seg)
        else:
            self.out.append((laddr, raddr, seg))
