"""The TCP protocol engine: one connection, sans-IO (DESIGN rule 7), RFC 9293 throughout.

The boundary to the socket layer
--------------------------------
A ``TcpConnection`` never touches a clock, a random source, a lock or a network.  The socket
layer (or a test harness) owns it and drives it with these calls; every one that can emit
segments takes ``now`` (seconds, float, monotonic):

    TcpConnection(shared, laddr, lport, raddr, rport, iss, ts_offset, account=..., cc=...,
                  mss_clamp=None, route_mss=None)
        ``shared`` is the stack-wide TcpShared (config, counters, challenge-ACK limiter);
        ``iss``/``ts_offset`` come from IsnGenerator (the caller's randomness); ``account``
        charges buffer bytes to the kernel memory limit (tcp_buffers.BufferAccount);
        ``route_mss`` (the route's MTU less 40) replaces config.mtu for our MSS and
        ``mss_clamp`` (TCP_MAXSEG) lowers it.
    connect(now)                   -- active open: SYN_SENT, SYN queued.
    send(data, now, oob=False)     -> bytes accepted (0 < n <= len(data)); KernelError EAGAIN
                                      (no room or still connecting), EPIPE (shut down for
                                      writing), ENOTCONN, or the pending error (ECONNRESET...).
    recv(n, now, peek=False)       -> bytes; b"" at end of stream; EAGAIN when nothing yet;
                                      the pending error after a reset (unread data first).
    shutdown(how, now)             -- SHUT_RD / SHUT_WR / SHUT_RDWR.
    close(now)                     -- the user is done: FIN (or RST if unread data is pending or
                                      linger_zero is set); the connection lingers until CLOSED.
    abort(now)                     -- RST now (SO_LINGER 0), CLOSED.
    input(seg, now)                -- one received, checksum-verified TcpSegment for this 4-tuple.
    timeout(now)                   -- run every timer due at ``now``.
    take_output() -> [TcpSegment]  -- segments to send, in order (unless ``sink`` is set, then
                                      each goes to sink(conn, seg) as it is made).
    deadline                       -- when timeout() must next be called (None: no timer).
    events                         -- EV_* bitmask for poll: READABLE WRITABLE ERROR HANGUP RDHUP
                                      URGENT CONNECTED.
    take_error() -> Errno | None   -- SO_ERROR (read and clear).
    info() -> TcpInfo              -- TCP_INFO snapshot.
    Options: nodelay, linger_zero (attributes); set_nodelay(on, now) (pushes held data);
             set_keepalive(now, enable, idle, interval, count);
             set_rcvbuf(n)/set_sndbuf(n) (fixed size, autotuning off), set_congestion(name).
    Hooks: sink(conn, seg), on_deadline(conn), on_events(conn) -- optional callables the owner
           sets; called after the engine changes output, deadline or readiness.  ``user`` is
           free for the owner (the socket layer keeps its protocol control block there).

Passive opens come from tcp_listener.TcpListener, which creates connections with
``TcpConnection.passive(...)``; tcp_stack.TcpStack shows the whole wiring (demultiplexing,
RSTs for closed ports, TIME_WAIT reuse).

Rules: sequence numbers inside the engine are unwrapped absolute integers (``unwrap``), so all
comparisons are plain ``<``; only segments carry 32-bit values.  State changes go through the
transition table (tcp_fsm).  Input processing lives in tcp_input (one function per state group),
sending in tcp_output, the SACK scoreboard in tcp_sack, congestion control in cc_* modules.
"""

from __future__ import annotations

from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.net.inet import tcp_cc, tcp_input, tcp_output
from rumpkernel.net.inet.tcp_buffers import NULL_ACCOUNT, BufferAccount, ReceiveBuffer, SendBuffer
from rumpkernel.net.inet.tcp_config import TcpConfig
from rumpkernel.net.inet.tcp_fsm import DATA_SENDING, SYNCHRONIZED, TcpEvent, TcpState, next_state
from rumpkernel.net.inet.tcp_rtt import RttEstimator
from rumpkernel.net.inet.tcp_sack import Scoreboard
from rumpkernel.net.inet.tcp_stats import TcpInfo, TcpStats
from rumpkernel.net.wire.tcp import TcpFlags, TcpOptions, TcpSegment

MASK = 0xFFFFFFFF
EV_READABLE = 0x01
EV_WRITABLE = 0x02
EV_ERROR = 0x04
EV_HANGUP = 0x08
EV_RDHUP = 0x10
EV_URGENT = 0x20
EV_CONNECTED = 0x40
SHUT_RD, SHUT_WR, SHUT_RDWR = 0, 1, 2
NEWRENO, SACK = "newreno", "sack"

S = TcpState
# RFC 9293 3.10.5 ABORT: RST from these; CLOSING, LAST_ACK and TIME_WAIT just go away
_RST_ON_ABORT = frozenset({S.SYN_RECEIVED, S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2,
                           S.CLOSE_WAIT})


def unwrap(wire: int, ref: int) -> int:
    """The absolute sequence number nearest ``ref`` whose low 32 bits are ``wire``."""
    d = (wire - ref) & MASK
    return ref + d - ((d >> 31) << 32)


class TcpShared:
    """What a stack's connections share: tunables, counters, the challenge-ACK limiter."""

    __slots__ = ("challenge_count", "challenge_window", "config", "stats")

    def __init__(self, config: TcpConfig | None = None, stats: TcpStats | None = None) -> None:
        self.config = config or TcpConfig()
        self.stats = stats or TcpStats()
        self.challenge_window = -1.0
        self.challenge_count = 0

    def allow_challenge_ack(self, now: float) -> bool:
        """RFC 5961 7: at most config.challenge_ack_limit challenge ACKs per second."""
        if now - self.challenge_window >= 1.0:
            self.challenge_window = now
            self.challenge_count = 0
        if self.challenge_count >= self.config.challenge_ack_limit:
            self.stats.challenge_acks_suppressed += 1
            return False
        self.challenge_count += 1
        self.stats.challenge_acks += 1
        return True


class TcpConnection:
    __slots__ = (
        "shared", "config", "stats", "laddr", "lport", "raddr", "rport", "state", "cc", "rtt",
        # send sequence space
        "iss", "snd_una", "snd_nxt", "snd_max", "snd_wnd", "snd_wl1", "snd_wl2", "max_sndwnd",
        "snd_wscale", "snd_mss", "peer_mss", "our_mss", "sndbuf", "fin_seq", "snd_up", "snd_sml",
        # receive sequence space
        "irs", "rcv_nxt", "rcv_adv", "rcv_wscale", "rcv_mss", "rcvbuf", "fin_rcvd", "rcv_up",
        "ooo_fin", "last_ack_sent", "syn_window",
        # options
        "ts_ok", "ts_recent", "ts_recent_time", "ts_offset", "sack_ok", "ws_ok",
        # loss recovery
        "dupacks", "recovery", "recover", "high_rxt", "board", "partial_seen",
        # timing
        "rtt_seq", "rtt_time", "t_rtx", "t_delack", "t_persist", "t_keep", "t_2msl", "t_fin2",
        "rtx_count", "persist_shift", "probes_unanswered", "keep_probes", "last_recv",
        "last_send", "total_retrans", "syn_count", "deadline",
        # acknowledgement state
        "ack_now", "delack_count",
        # user side
        "nodelay", "keepalive", "keepidle", "keepintvl", "keepcnt", "linger_zero",
        "shut_rd", "shut_wr", "app_closed", "so_error", "connected", "passive_open",
        "rcvbuf_locked", "sndbuf_locked", "rcv_copied", "rcv_space_time", "read_seq",
        "sws_hold", "tso_max",
        # plumbing
        "out", "sink", "on_deadline", "on_events", "account", "owner", "user",
    )

    def __init__(self, shared: TcpShared, laddr: bytes, lport: int, raddr: bytes, rport: int,
                 iss: int, ts_offset: int = 0, *, account: BufferAccount = NULL_ACCOUNT,
                 cc: str | None = None, mss_clamp: int | None = None,
                 route_mss: int | None = None) -> None:
        cfg = shared.config
        self.shared, self.config, self.stats = shared, cfg, shared.stats
        self.laddr, self.lport, self.raddr, self.rport = laddr, lport, raddr, rport
        self.state = S.CLOSED
        self.rtt = RttEstimator(cfg.rto_initial, cfg.rto_min, cfg.rto_max)
        base = route_mss or cfg.our_mss
        self.our_mss = min(base, mss_clamp) if mss_clamp else base
        self.cc = tcp_cc.create(cc or cfg.congestion_control, cfg.mss_default, cfg.initial_cwnd)
        iss &= MASK
        self.iss = self.snd_una = self.snd_nxt = self.snd_max = self.snd_sml = iss
        self.snd_wnd = self.snd_wl1 = self.snd_wl2 = self.max_sndwnd = 0
        self.snd_wscale = 0
        self.peer_mss = cfg.mss_default
        self.snd_mss = min(cfg.mss_default, self.our_mss)
        self.account = account
        self.sndbuf = SendBuffer(cfg.wmem_default, account, iss + 1)
        self.rcvbuf = ReceiveBuffer(cfg.rmem_default, account)
        self.fin_seq: int | None = None
        self.snd_up = 0
        self.irs = self.rcv_nxt = self.rcv_adv = self.last_ack_sent = self.read_seq = 0
        self.rcv_wscale = _wscale_for(cfg.rmem_max) if cfg.window_scaling else 0
        self.rcv_mss = self.our_mss
        self.fin_rcvd = False
        self.rcv_up = 0
        self.ooo_fin: int | None = None
        self.syn_window = 0
        self.ts_ok = self.sack_ok = self.ws_ok = False
        self.ts_recent = 0
        self.ts_recent_time = 0.0
        self.ts_offset = ts_offset & MASK
        self.dupacks = 0
        self.recovery: str | None = None
        self.recover = iss
        self.high_rxt = iss
        self.board = Scoreboard()
        self.partial_seen = False
        self.rtt_seq: int | None = None
        self.rtt_time = 0.0
        self.t_rtx = self.t_delack = self.t_persist = self.t_keep = None
        self.t_2msl = self.t_fin2 = None
        self.rtx_count = self.persist_shift = self.probes_unanswered = self.keep_probes = 0
        self.last_recv = self.last_send = 0.0
        self.total_retrans = self.syn_count = 0
        self.deadline: float | None = None
        self.ack_now = False
        self.delack_count = 0
        self.nodelay = False
        self.keepalive = False
        self.keepidle, self.keepintvl, self.keepcnt = cfg.keepidle, cfg.keepintvl, cfg.keepcnt
        self.linger_zero = False
        self.shut_rd = self.shut_wr = self.app_closed = False
        self.so_error: Errno | None = None
        self.connected = self.passive_open = False
        self.rcvbuf_locked = self.sndbuf_locked = False
        self.rcv_copied = 0
        self.rcv_space_time = 0.0
        self.sws_hold = False
        self.tso_max = 0
        self.out: list[TcpSegment] = []
        self.sink = self.on_deadline = self.on_events = None
        self.owner = None
        self.user = None

    # --- construction for passive opens ------------------------------------------------------

    @classmethod
    def passive(cls, shared: TcpShared, laddr: bytes, lport: int, raddr: bytes, rport: int,
                iss: int, ts_offset: int, irs: int, syn_opts: TcpOptions, syn_window: int,
                now: float, *, account: BufferAccount = NULL_ACCOUNT, cc: str | None = None,
                mss_clamp: int | None = None, rcv_wscale: int | None = None,
                synack_time: float | None = None, synack_retries: int = 0,
                route_mss: int | None = None, rcvbuf: int | None = None) -> TcpConnection:
        """A connection in SYN_RECEIVED whose SYN-ACK the listener already sent (seq ``iss``,
        ``synack_retries`` times again).  ``rcv_wscale`` is the shift our SYN-ACK announced
        (None: none announced); ``rcvbuf`` the listener's fixed receive buffer, if any."""
        c = cls(shared, laddr, lport, raddr, rport, iss, ts_offset, account=account, cc=cc,
                mss_clamp=mss_clamp, route_mss=route_mss)
        c.state = next_state(next_state(S.CLOSED, TcpEvent.PASSIVE_OPEN), TcpEvent.RCV_SYN)
        c.passive_open = True
        c.snd_nxt = c.snd_max = c.iss + 1
        c.irs = irs & MASK
        c.rcv_nxt = c.last_ack_sent = c.read_seq = c.irs + 1
        if rcv_wscale is not None:
            c.rcv_wscale = rcv_wscale
        c.negotiate(syn_opts, now, we_sent_wscale=rcv_wscale is not None)
        if rcvbuf is not None:
            c.set_rcvbuf(rcvbuf)
        c.syn_window = min(c.rcvbuf.window_space(), 0xFFFF)
        c.rcv_adv = c.rcv_nxt + c.syn_window
        c.snd_wnd = syn_window
        c.snd_wl1, c.snd_wl2 = c.irs, c.iss
        if synack_time is not None and not c.ts_ok:
            c.rtt_seq, c.rtt_time = c.iss + 1, synack_time
        c.t_rtx = now + c.rtt.rto
        c.syn_count = 1 + synack_retries
        c.last_recv = c.last_send = now
        return c

    def negotiate(self, opts: TcpOptions, now: float, we_sent_wscale: bool = True) -> None:
        """Apply the options of the peer's SYN (RFC 9293 3.7.1, RFC 7323 2-3, RFC 2018)."""
        cfg = self.config
        self.peer_mss = opts.mss if opts.mss else cfg.mss_default
        self.ws_ok = cfg.window_scaling and opts.wscale is not None and we_sent_wscale
        if self.ws_ok:
            self.snd_wscale = min(opts.wscale, 14)
        else:
            self.snd_wscale = self.rcv_wscale = 0
        self.sack_ok = cfg.sack and opts.sack_permitted
        self.ts_ok = cfg.timestamps and opts.ts_val is not None
        if self.ts_ok:
            self.ts_recent, self.ts_recent_time = opts.ts_val, now
        optlen = 12 if self.ts_ok else 0
        self.snd_mss = max(min(self.peer_mss, self.our_mss) - optlen, 64)
        self.rcv_mss = max(self.our_mss - optlen, 64)
        self.cc.start(self.snd_mss, cfg.initial_cwnd)

    # --- user calls --------------------------------------------------------------------------

    def connect(self, now: float) -> None:
        if self.state != S.CLOSED or self.connected:
            raise KernelError(Errno.EISCONN if self.connected else Errno.EALREADY)
        self._set_state(TcpEvent.ACTIVE_OPEN)
        self.stats.active_opens += 1
        self.snd_nxt = self.snd_max = self.iss + 1
        self.rtt_seq, self.rtt_time = self.iss + 1, now
        self.syn_count = 0
        tcp_output.send_syn(self, now)
        self._done(now)

    def send(self, data: bytes | bytearray | memoryview, now: float, oob: bool = False) -> int:
        self._check_send()
        if not data:
            return 0
        n = self.sndbuf.append(data)
        if n == 0:
            raise KernelError(Errno.EAGAIN)
        if oob:
            self.snd_up = self.sndbuf.end
        tcp_output.output(self, now)
        self._done(now)
        return n

    def _check_send(self) -> None:
        if self.so_error is not None:
            raise KernelError(self.take_error())
        if self.shut_wr or self.fin_seq is not None:
            raise KernelError(Errno.EPIPE)
        st = self.state
        if st in (S.SYN_SENT, S.SYN_RECEIVED):
            raise KernelError(Errno.EAGAIN)
        if st not in DATA_SENDING:
            raise KernelError(Errno.EPIPE if self.connected else Errno.ENOTCONN)

    def recv(self, n: int, now: float, peek: bool = False) -> bytes:
        data = self.rcvbuf.read(n, peek) if n > 0 else b""
        if data:
            if not peek:
                self.read_seq += len(data)
                self._after_read(len(data), now)
            return data
        if self.fin_rcvd or self.shut_rd:
            return b""
        if self.so_error is not None:
            raise KernelError(self.take_error())
        if self.state == S.CLOSED:
            if self.connected:
                return b""
            raise KernelError(Errno.ENOTCONN)
        if self.state in (S.LISTEN,):
            raise KernelError(Errno.ENOTCONN)
        raise KernelError(Errno.EAGAIN)

    def _after_read(self, nread: int, now: float) -> None:
        self._rcv_autotune(nread, now)
        if self.state in SYNCHRONIZED and not self.fin_rcvd:
            # window update (Linux's rule): the advertised window is at most half the buffer
            # and reading at least doubles it, by more than the SWS threshold
            limit = self.rcvbuf.limit
            adv = max(self.rcv_adv - self.rcv_nxt, 0)
            if 2 * adv <= limit:
                space = self.rcvbuf.window_space()
                if space >= 2 * adv and space - adv >= min(limit >> 1, self.rcv_mss):
                    self.ack_now = True
                    tcp_output.output(self, now)
        self._done(now)

    def _rcv_autotune(self, nread: int, now: float) -> None:
        self.rcv_copied += nread
        srtt = self.rtt.srtt
        if srtt is None or self.rcvbuf_locked or not self.config.autotune:
            return
        if now - self.rcv_space_time < srtt:
            return
        want = 4 * self.rcv_copied
        self.rcv_copied = 0
        self.rcv_space_time = now
        limit = self.rcvbuf.limit
        if want > limit and limit < self.config.rmem_max:
            self.rcvbuf.limit = min(want, self.config.rmem_max)
            self.stats.rcvbuf_grow += 1

    def shutdown(self, how: int, now: float) -> None:
        if how not in (SHUT_RD, SHUT_WR, SHUT_RDWR):
            raise KernelError(Errno.EINVAL)
        if self.state in (S.CLOSED, S.LISTEN) and not self.connected:
            raise KernelError(Errno.ENOTCONN)
        if how in (SHUT_RD, SHUT_RDWR) and not self.shut_rd:
            self.shut_rd = True
            self.rcvbuf.read(self.rcvbuf.readable)
        if how in (SHUT_WR, SHUT_RDWR) and not self.shut_wr:
            self.shut_wr = True
            self._queue_fin(now)
        self._done(now)

    def close(self, now: float) -> None:
        """The user is done with the connection (the socket's last close)."""
        if self.app_closed:
            return
        self.app_closed = True
        self.shut_rd = True
        st = self.state
        if st == S.CLOSED:
            self._release_buffers()
        elif self.linger_zero or (self.rcvbuf.readable and st in SYNCHRONIZED):
            self.stats.drop("close_with_unread_data" if not self.linger_zero else "linger_zero")
            self.abort(now)
            return
        elif st == S.SYN_SENT:
            self._to_closed(TcpEvent.CLOSE)
        else:
            self.rcvbuf.read(self.rcvbuf.readable)
            self.shut_wr = True
            self._queue_fin(now)
            if self.state == S.FIN_WAIT_2 and self.t_fin2 is None:
                self.t_fin2 = now + self.config.fin_timeout
        self._done(now)

    def abort(self, now: float) -> None:
        """Reset the connection now (SO_LINGER with zero timeout)."""
        if self.state in _RST_ON_ABORT:
            tcp_output.send_rst(self, self.snd_nxt, now)
        if self.state != S.CLOSED:
            self._to_closed(TcpEvent.ABORT)
        self.app_closed = True
        self._release_buffers()
        self._done(now)

    def _queue_fin(self, now: float) -> None:
        st = self.state
        if st in (S.SYN_SENT, S.CLOSED) or self.fin_seq is not None:
            return  # a SYN_SENT connection sends its FIN once established
        self.fin_seq = self.sndbuf.end
        if st in (S.SYN_RECEIVED, S.ESTABLISHED, S.CLOSE_WAIT):
            self._set_state(TcpEvent.CLOSE)
        tcp_output.output(self, now)

    def set_keepalive(self, now: float, enable: bool | None = None, idle: float | None = None,
                      interval: float | None = None, count: int | None = None) -> None:
        """SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT (seconds, probes)."""
        if enable is not None:
            self.keepalive = enable
        if idle is not None:
            self.keepidle = idle
        if interval is not None:
            self.keepintvl = interval
        if count is not None:
            self.keepcnt = count
        if not self.keepalive:
            self.t_keep = None
        elif self.connected and self.keep_probes == 0 and self.state != S.CLOSED:
            self.t_keep = max(self.last_recv + self.keepidle, now)
        self._done(now)

    def set_nodelay(self, on: bool, now: float) -> None:
        """TCP_NODELAY: turning it on sends what Nagle was holding back (as Linux does)."""
        self.nodelay = on
        if on and self.state in DATA_SENDING:
            tcp_output.output(self, now)
        self._done(now)

    def set_rcvbuf(self, nbytes: int) -> None:
        self.rcvbuf.limit = max(nbytes, 256)
        self.rcvbuf_locked = True
        if self.state in (S.CLOSED,) and self.config.window_scaling:
            self.rcv_wscale = _wscale_for(self.rcvbuf.limit)

    def set_sndbuf(self, nbytes: int) -> None:
        self.sndbuf.limit = max(nbytes, 256)
        self.sndbuf_locked = True

    def set_congestion(self, name: str) -> None:
        """TCP_CONGESTION: switch algorithms, keeping cwnd and ssthresh (KeyError: unknown)."""
        new = tcp_cc.create(name, self.snd_mss, self.config.initial_cwnd)
        new.adopt(self.cc.cwnd, self.cc.ssthresh)
        self.cc = new

    # --- segments and timers -----------------------------------------------------------------

    def input(self, seg: TcpSegment, now: float) -> None:
        tcp_input.segment_input(self, seg, now)
        self._done(now)

    def timeout(self, now: float) -> None:
        entry_deadline = self.deadline
        for _ in range(8):  # each handler re-arms its timer in the future; bound the loop
            due = self.deadline
            if due is None or due > now:
                break
            self._fire_timers(now)
            self._update_deadline()
        self.deadline = entry_deadline
        self._done(now)

    def _fire_timers(self, now: float) -> None:
        if self.t_2msl is not None and self.t_2msl <= now:
            self.t_2msl = None
            self._to_closed(TcpEvent.TIMEOUT)
            return
        if self.t_fin2 is not None and self.t_fin2 <= now:
            self.t_fin2 = None
            if self.state == S.FIN_WAIT_2:
                self.stats.drop("fin_wait_2_timeout")
                self._to_closed(TcpEvent.TIMEOUT)
                return
        if self.t_rtx is not None and self.t_rtx <= now:
            self.t_rtx = None
            tcp_output.retransmit_timeout(self, now)
        if self.t_persist is not None and self.t_persist <= now:
            self.t_persist = None
            tcp_output.persist_timeout(self, now)
        if self.t_delack is not None and self.t_delack <= now:
            self.t_delack = None
            if self.state in SYNCHRONIZED and self.rcv_nxt != self.last_ack_sent:
                self.stats.delayed_acks += 1
                self.ack_now = True
                tcp_output.output(self, now)
        if self.t_keep is not None and self.t_keep <= now:
            self.t_keep = None
            tcp_output.keepalive_timeout(self, now)

    def take_output(self) -> list[TcpSegment]:
        out, self.out = self.out, []
        return out

    def take_error(self) -> Errno | None:
        err, self.so_error = self.so_error, None
        return err

    # --- state changes -----------------------------------------------------------------------

    def _set_state(self, event: TcpEvent) -> None:
        self.state = next_state(self.state, event)

    def established(self, now: float) -> None:
        """Bookkeeping on entering ESTABLISHED (from SYN_SENT or SYN_RECEIVED)."""
        self.connected = True
        self.rtx_count = 0
        if self.syn_count > 1 and self.rtt.srtt is None:
            self.rtt.reset(3.0)  # RFC 6298 5.7: the SYN timed out and no RTT sample since
        self.rcv_space_time = now
        if self.keepalive:
            self.t_keep = now + self.keepidle
        if self.shut_wr and self.fin_seq is None:
            self._queue_fin(now)

    def enter_time_wait(self, now: float) -> None:
        self.t_rtx = self.t_persist = self.t_keep = self.t_fin2 = None
        self.t_2msl = now + 2 * self.config.msl
        self.sndbuf.free_all()
        if self.app_closed:
            self.rcvbuf.free_all()

    def _to_closed(self, event: TcpEvent) -> None:
        self.state = next_state(self.state, event)
        self.t_rtx = self.t_delack = self.t_persist = self.t_keep = None
        self.t_2msl = self.t_fin2 = None
        self.sndbuf.free_all()
        if self.app_closed:
            self.rcvbuf.free_all()

    def drop(self, errno: Errno, now: float, send_rst: bool = True) -> None:
        """Give up on the connection (retransmission or keepalive limit): ``errno`` for the
        user, an RST for the peer."""
        if send_rst and self.state in _RST_ON_ABORT:
            tcp_output.send_rst(self, self.snd_nxt, now)
        self.so_error = errno
        self.stats.conn_drops += 1
        if self.state == S.SYN_SENT:
            self.stats.attempt_fails += 1
        self._to_closed(TcpEvent.TIMEOUT)

    def _release_buffers(self) -> None:
        self.sndbuf.free_all()
        self.rcvbuf.free_all()

    def _update_deadline(self) -> None:
        d = None
        for t in (self.t_rtx, self.t_delack, self.t_persist, self.t_keep, self.t_2msl,
                  self.t_fin2):
            if t is not None and (d is None or t < d):
                d = t
        self.deadline = d

    def _done(self, now: float) -> None:
        old = self.deadline
        self._update_deadline()
        if self.on_deadline is not None and self.deadline != old:
            self.on_deadline(self)
        if self.on_events is not None:
            self.on_events(self)

    # --- what the socket layer looks at ------------------------------------------------------

    @property
    def events(self) -> int:
        ev = 0
        st = self.state
        if self.rcvbuf.readable or self.fin_rcvd or self.shut_rd or self.so_error is not None:
            ev |= EV_READABLE
        if self.fin_rcvd:
            ev |= EV_RDHUP
        if self.so_error is not None:
            ev |= EV_ERROR | EV_WRITABLE
        elif st in DATA_SENDING and not self.shut_wr and self.fin_seq is None:
            free = self.sndbuf.free
            if free and free * 2 >= self.sndbuf.used:
                ev |= EV_WRITABLE
        if self.connected:
            ev |= EV_CONNECTED
        if st == S.CLOSED and (self.connected or self.so_error is not None or self.app_closed):
            ev |= EV_HANGUP | EV_READABLE
        elif self.fin_rcvd and (self.shut_wr or self.fin_seq is not None):
            ev |= EV_HANGUP
        if self.rcv_up > self.read_seq:
            ev |= EV_URGENT
        return ev

    @property
    def at_mark(self) -> bool:
        """SIOCATMARK: the next byte to read is the urgent byte (RFC 6093 semantics)."""
        return self.rcv_up > 0 and self.read_seq == self.rcv_up - 1

    @property
    def is_closed(self) -> bool:
        return self.state == S.CLOSED

    def info(self) -> TcpInfo:
        cc = self.cc
        return TcpInfo(
            state=self.state.name, cc=cc.name, cwnd=cc.cwnd, ssthresh=cc.ssthresh,
            srtt=self.rtt.srtt, rttvar=self.rtt.rttvar, rto=self.rtt.rto,
            retransmits=self.rtx_count, total_retrans=self.total_retrans,
            snd_mss=self.snd_mss, rcv_mss=self.rcv_mss, snd_wnd=self.snd_wnd,
            rcv_wnd=max(self.rcv_adv - self.rcv_nxt, 0), unacked=self.snd_max - self.snd_una,
            sacked=self.board.sacked,
            lost=max(0, self.board.lost_boundary(self.snd_mss, self.config.dupthresh)
                     - self.snd_una) if self.recovery == SACK else 0,
            in_recovery=self.recovery, snd_wscale=self.snd_wscale, rcv_wscale=self.rcv_wscale,
            timestamps=self.ts_ok, sack=self.sack_ok, sndbuf=self.sndbuf.limit,
            rcvbuf=self.rcvbuf.limit, send_queue=self.sndbuf.used,
            recv_queue=self.rcvbuf.readable, backoff=self.rtt.shift)

    def ts_now(self, now: float) -> int:
        return (int(now * 1000) + self.ts_offset) & MASK

    def __repr__(self) -> str:
        return (f"<TcpConnection {self.lport}->{self.rport} {self.state.name} "
                f"una={self.snd_una - self.iss} nxt={self.snd_nxt - self.iss} "
                f"rcv_nxt={self.rcv_nxt - self.irs}>")


def _wscale_for(limit: int) -> int:
    shift = 0
    while shift < 14 and (0xFFFF << shift) < limit:
        shift += 1
    return shift


FLAGS = TcpFlags
