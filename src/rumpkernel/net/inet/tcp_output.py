"""TCP output: what a connection sends and when (RFC 9293 3.8, RFC 5681, RFC 6675, RFC 6582).

Interface (functions of a TcpConnection ``c``; the engine and tcp_input call them):
    output(c, now)               -- send what windows, Nagle and silly-window avoidance allow,
                                    then a pure ACK if one is owed; (re)arm the send timers.
    transmit(c, seq, maxlen, now) -> end seq: send the segment starting at ``seq`` (data from the
                                    send buffer, FIN when it reaches fin_seq); counts
                                    retransmissions; never moves snd_nxt.
    send_syn(c, now)             -- SYN (SYN_SENT) or SYN-ACK (SYN_RECEIVED) with our options.
    send_rst(c, seq, now)        -- RST,ACK from this connection.
    send_segment(c, seq, flags, payload, now, opts=None) -- the one place segments are built.
    window_field(c, syn)         -- the 16-bit window to advertise (receiver SWS avoidance,
                                    never shrinking the right edge, RFC 9293 3.8.6.2.2).
    enter_recovery(c, now)       -- fast retransmit; SACK-based (RFC 6675) or NewReno (RFC 6582).
    retransmit_timeout / persist_timeout / keepalive_timeout(c, now) -- timer handlers.

TSO: a connection whose interface segments itself (``c.tso_max``, the largest datagram it
takes, set by the stack) sends new data in super-segments of whole MSS-sized pieces up to
``size_goal`` (Linux's tcp_tso_autosize without pacing) once the peer's MSS is at least ours;
the socket layer emits them with a partial checksum and the device (or software GSO) cuts
them into MSS-sized segments.  Nagle applies to the short piece at the tail: it is trimmed
off while a short segment is unacknowledged.  Loss recovery retransmits MSS-sized segments.

Rules: sender SWS avoidance sends a short segment only when it is all the queued data and
nothing is outstanding (Nagle; or TCP_NODELAY), or when it is at least half the largest window
the peer offered; a persist timer overrides both.  Every segment carries the current ACK, window
and timestamps, so sending anything cancels a pending delayed ACK.
"""

from __future__ import annotations

from rumpkernel.kern.errno import Errno
from rumpkernel.net.inet.tcp_fsm import TcpState
from rumpkernel.net.wire.tcp import TcpOptions, TcpSegment

MASK = 0xFFFFFFFF
FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
S = TcpState
_SENDING = frozenset({S.ESTABLISHED, S.CLOSE_WAIT, S.FIN_WAIT_1, S.CLOSING, S.LAST_ACK})
_ACKING = frozenset({S.SYN_RECEIVED, S.ESTABLISHED, S.CLOSE_WAIT, S.FIN_WAIT_1, S.FIN_WAIT_2,
                     S.CLOSING, S.LAST_ACK, S.TIME_WAIT})
PERSIST_MAX = 60.0


def window_field(c, syn: bool) -> int:
    buf = c.rcvbuf
    space = buf.limit - len(buf.data)
    if space < 0:
        space = 0
    if syn:
        return space if space < 0xFFFF else 0xFFFF
    adv = c.rcv_adv - c.rcv_nxt
    if adv < 0:
        adv = 0
    if space <= adv or space - adv < min(buf.limit >> 1, c.rcv_mss):
        space = adv  # never shrink; advance the right edge only by a useful amount (SWS)
    s = c.rcv_wscale
    field = space >> s
    if field > 0xFFFF:
        field = 0xFFFF
    elif (field << s) < adv:
        field = min((adv + (1 << s) - 1) >> s, 0xFFFF)
    edge = c.rcv_nxt + (field << s)
    if edge > c.rcv_adv:
        c.rcv_adv = edge
    return field


def send_segment(c, seq: int, flags: int, payload: bytes, now: float,
                 opts: TcpOptions | None = None) -> TcpSegment:
    if opts is None:
        ts_val = ((int(now * 1000) + c.ts_offset) & MASK) if c.ts_ok else None
        sack = ()
        if c.sack_ok and c.rcvbuf.ooo and flags & ACK:
            sack = tuple((a & MASK, b & MASK)
                         for a, b in c.rcvbuf.sack_blocks(3 if c.ts_ok else 4))
            c.stats.sack_blocks_out += len(sack)
        opts = TcpOptions.data_options(ts_val, c.ts_recent, sack)
    window = window_field(c, bool(flags & SYN))
    urgent = 0
    if c.snd_up > seq and not flags & SYN:
        flags |= URG
        urgent = min(c.snd_up - seq, 0xFFFF)
    ack = 0
    if flags & ACK:
        ack = c.rcv_nxt & MASK
        c.last_ack_sent = c.rcv_nxt
        c.delack_count = 0
        c.t_delack = None
        c.ack_now = False
    seg = TcpSegment(c.lport, c.rport, seq & MASK, ack, flags, window, urgent, opts, payload)
    c.stats.segs_out += 1
    c.last_send = now
    if c.sink is not None:
        c.sink(c, seg)
    else:
        c.out.append(seg)
    return seg


def syn_options(c, now: float) -> TcpOptions:
    cfg = c.config
    synack = c.state == S.SYN_RECEIVED
    ts = None
    if cfg.timestamps and (c.ts_ok or not synack):
        ts = (c.ts_now(now), c.ts_recent if synack else 0)
    wscale = None
    if cfg.window_scaling and (c.ws_ok or not synack):
        wscale = c.rcv_wscale
    sack_ok = cfg.sack and (c.sack_ok or not synack)
    return TcpOptions.build(mss=c.our_mss, sack_permitted=sack_ok, ts=ts, wscale=wscale)


def send_syn(c, now: float) -> None:
    flags = SYN | (ACK if c.state == S.SYN_RECEIVED else 0)
    send_segment(c, c.iss, flags, b"", now, syn_options(c, now))
    c.syn_count += 1
    if c.t_rtx is None:
        c.t_rtx = now + c.rtt.rto


def send_rst(c, seq: int, now: float) -> None:
    ts = c.ts_now(now) if c.ts_ok else None
    send_segment(c, seq, RST | ACK, b"", now, TcpOptions.data_options(ts, c.ts_recent))
    c.stats.out_rsts += 1


def current_mss(c) -> int:
    """Payload room of the next data segment (Linux's tcp_current_mss): the send MSS less the
    SACK option it will carry -- segment and options together must fit the peer's MSS (RFC
    9293 3.7.1), or the datagram overflows the path MTU."""
    mss = c.snd_mss
    ooo = c.rcvbuf.ooo
    if ooo and c.sack_ok:
        mss -= 4 + 8 * min(len(ooo), 3 if c.ts_ok else 4)
    return mss


def size_goal(c, mss: int) -> int:
    """Payload bytes of the largest segment to build: ``mss``, or a whole number of MSS-sized
    pieces filling one TSO datagram (headers and 40 bytes of options kept free)."""
    limit = c.tso_max
    if not limit or c.peer_mss < c.our_mss:
        return mss
    n = (limit - 120) // mss
    return n * mss if n > 1 else mss


def transmit(c, seq: int, maxlen: int, now: float) -> int:
    buf = c.sndbuf
    data_end = buf.start + len(buf.data)
    length = data_end - seq
    room = current_mss(c)
    if maxlen > room:
        goal = size_goal(c, room) if c.tso_max else room
        if maxlen > goal:
            maxlen = goal
    if length > maxlen:
        length = maxlen
    if length < 0:
        length = 0
    fin_seq = c.fin_seq
    fin = fin_seq is not None and seq + length == fin_seq
    flags = ACK
    if fin:
        flags |= FIN
    if length:
        off = seq - buf.start
        payload = buf.data.peek(off, length)
        if seq + length == data_end:
            flags |= PSH
    else:
        payload = b""
    send_segment(c, seq, flags, payload, now)
    end = seq + length + (1 if fin else 0)
    stats = c.stats
    if seq < c.snd_max:
        stats.retrans_segs += 1
        stats.retrans_bytes += length
        c.total_retrans += 1
        if c.rtt_seq is not None and seq < c.rtt_seq:
            c.rtt_seq = None  # Karn: never time a retransmitted segment
    else:
        stats.bytes_out += length
        if c.rtt_seq is None and not c.ts_ok and length:
            c.rtt_seq, c.rtt_time = end, now
    if end > c.snd_max:
        c.snd_max = end
    return end


def output(c, now: float) -> None:
    if c.state in _SENDING:
        if c.recovery == "sack":
            _sack_output(c, now)
        else:
            _send_loop(c, now)
        _arm_timers(c, now)
    if c.ack_now and c.state in _ACKING:
        send_segment(c, c.snd_nxt, ACK, b"", now)
        c.stats.pure_acks_out += 1


def _send_loop(c, now: float) -> bool:
    sent = False
    mss = current_mss(c)
    goal = size_goal(c, mss) if c.tso_max else mss
    buf = c.sndbuf
    board = c.board
    c.sws_hold = False
    while True:
        nxt = c.snd_nxt
        if nxt < c.snd_max and board.blocks:
            nxt = board.skip_sacked(nxt)  # go-back-N after an RTO skips what the peer holds
            if nxt > c.snd_max:
                nxt = c.snd_max
            c.snd_nxt = nxt
        data_end = buf.start + len(buf.data)
        cwnd = c.cc.cwnd
        if c.dupacks and c.recovery is None:
            cwnd += min(c.dupacks, 2) * mss  # limited transmit (RFC 3042)
        win = c.snd_wnd if c.snd_wnd < cwnd else cwnd
        usable = c.snd_una + win - nxt
        avail = data_end - nxt
        length = avail if avail < goal else goal
        if usable < length:
            length = usable
        if length > mss and length % mss and not (
                length == avail and (c.nodelay or c.snd_sml <= c.snd_una)):
            length -= length % mss    # TSO: the short tail waits (Nagle, window edge)
        if nxt < c.snd_max and board.blocks:
            nb = board.next_block_start(nxt)
            if nb is not None and nb - nxt < length:
                length = nb - nxt
        if length < 0:
            length = 0
        fin = c.fin_seq is not None and nxt + length == c.fin_seq and usable >= length
        if length == 0 and not fin:
            break
        if length < mss and not fin and nxt >= c.snd_max and not _short_ok(c, nxt, length, avail):
            c.sws_hold = True
            break
        if nxt == c.snd_una == c.snd_max and c.last_send and now - c.last_send > c.rtt.rto:
            c.cc.on_idle_restart(now)  # RFC 5681 4.1: restart window after idle
        c.snd_nxt = transmit(c, nxt, length, now)
        if length % mss and c.snd_nxt > c.snd_sml:
            c.snd_sml = c.snd_nxt
        sent = True
        if fin:
            break
    return sent


def _short_ok(c, nxt: int, length: int, avail: int) -> bool:
    """May a segment shorter than the MSS go now?  Nagle (RFC 9293 3.7.4) in Minshall's form:
    the tail of the queue goes unless a short segment is still unacknowledged."""
    if length == avail and (c.nodelay or c.snd_sml <= c.snd_una):
        return True
    if c.max_sndwnd and 2 * length >= c.max_sndwnd:
        return True
    return c.snd_up > nxt


def _sack_output(c, now: float) -> bool:
    """RFC 6675 5 (4.3)-(4.4): while cwnd - pipe >= 1 SMSS, send NextSeg()."""
    sent = False
    mss = c.snd_mss
    board = c.board
    dup = c.config.dupthresh
    for _ in range(1000):
        pipe = board.pipe(c.snd_una, c.snd_max, c.high_rxt, mss, dup)
        if c.cc.cwnd - pipe < mss:
            break
        lost_end = board.lost_boundary(mss, dup)
        s = board.skip_sacked(max(c.high_rxt, c.snd_una))
        if s < lost_end and s < c.snd_max:  # rule 1: first lost, not yet retransmitted
            nb = board.next_block_start(s)
            limit = min(nb if nb is not None else c.snd_max, c.snd_max) - s
            c.high_rxt = transmit(c, s, min(mss, limit), now)
            sent = True
            continue
        buf = c.sndbuf
        data_end = buf.start + len(buf.data)
        fin_pending = c.fin_seq is not None and c.snd_max <= c.fin_seq
        if c.snd_max < data_end or fin_pending:  # rule 2: new data
            usable = c.snd_una + c.snd_wnd - c.snd_max
            length = min(mss, data_end - c.snd_max, usable)
            if length < 0:
                length = 0
            if length == 0 and not (fin_pending and c.snd_max == c.fin_seq):
                break
            c.snd_nxt = transmit(c, c.snd_max, length, now)
            sent = True
            continue
        break
    c.snd_nxt = c.snd_max
    return sent


def _arm_timers(c, now: float) -> None:
    if c.t_persist is not None:
        if c.snd_wnd > 0:
            c.t_persist = None
            c.persist_shift = 0
        else:
            c.t_rtx = None
            return
    unsent = c.sndbuf.start + len(c.sndbuf.data) > c.snd_nxt
    if c.snd_una == c.snd_max and ((unsent and c.snd_wnd == 0) or c.sws_hold):
        c.t_persist = now + _persist_interval(c)
        c.t_rtx = None
        return
    if c.snd_max > c.snd_una:
        if c.t_rtx is None:
            c.t_rtx = now + c.rtt.rto
    else:
        c.t_rtx = None


def _persist_interval(c) -> float:
    base = max(c.rtt.rto, c.config.rto_min)
    return min(base * (1 << min(c.persist_shift, 16)), PERSIST_MAX)


def enter_recovery(c, now: float) -> None:
    """Fast retransmit and the start of loss recovery."""
    mss = c.snd_mss
    flight = c.snd_max - c.snd_una
    c.recover = c.snd_max
    ssthresh = c.cc.on_congestion(now, flight)
    c.stats.fast_retrans += 1
    c.rtt_seq = None
    c.partial_seen = False
    if c.sack_ok:
        c.recovery = "sack"
        c.stats.sack_recoveries += 1
        c.cc.cwnd = ssthresh
        nb = c.board.next_block_start(c.snd_una)
        limit = (nb - c.snd_una) if nb is not None else mss
        c.high_rxt = transmit(c, c.snd_una, min(mss, max(limit, 1)), now)
    else:
        c.recovery = "newreno"
        c.stats.newreno_recoveries += 1
        transmit(c, c.snd_una, mss, now)
        c.cc.cwnd = ssthresh + 3 * mss


def retransmit_timeout(c, now: float) -> None:
    """RFC 6298 5.4-5.7 and RFC 5681 3.1: the retransmission timer expired."""
    st = c.state
    cfg = c.config
    stats = c.stats
    if st in (S.SYN_SENT, S.SYN_RECEIVED):
        if c.syn_count > (cfg.syn_retries if st == S.SYN_SENT else cfg.synack_retries):
            c.drop(Errno.ETIMEDOUT, now, send_rst=st == S.SYN_RECEIVED)
            return
        stats.syn_retrans += 1
        stats.retrans_segs += 1
        c.total_retrans += 1
        c.rtx_count += 1
        c.rtt.backoff()
        c.rtt_seq = None
        send_syn(c, now)
        return
    if c.snd_max == c.snd_una:
        return
    if c.snd_wnd == 0 and c.sndbuf.start + len(c.sndbuf.data) > c.snd_una:
        # the peer closed its window on data in flight: probe it instead of collapsing cwnd
        c.t_persist = now
        persist_timeout(c, now)
        return
    c.rtx_count += 1
    stats.rto_timeouts += 1
    if c.rtx_count > cfg.retries2:
        c.drop(Errno.ETIMEDOUT, now)
        return
    c.rtt.backoff()
    flight = c.snd_max - c.snd_una
    if c.rtx_count == 1:
        c.cc.on_rto(now, flight)
    else:
        c.cc.cwnd = c.snd_mss
        if c.board.blocks:
            c.board.clear()  # no progress across two timeouts: maybe the peer reneged
    c.recovery = None
    c.recover = c.snd_max
    c.dupacks = 0
    c.rtt_seq = None
    c.snd_nxt = c.snd_una
    output(c, now)
    if c.t_rtx is None and c.snd_max > c.snd_una and c.t_persist is None:
        c.t_rtx = now + c.rtt.rto


def persist_timeout(c, now: float) -> None:
    """Zero-window probe (RFC 9293 3.8.6.1) or the SWS override timeout."""
    stats = c.stats
    if c.state not in _SENDING:
        return
    c.probes_unanswered += 1
    if c.probes_unanswered > c.config.retries2:
        c.drop(Errno.ETIMEDOUT, now)
        return
    if c.snd_wnd == 0:
        stats.window_probes += 1
        end = transmit(c, c.snd_una, 1, now)
        if end > c.snd_nxt:
            c.snd_nxt = end
    else:
        stats.persist_timeouts += 1
        avail = c.sndbuf.start + len(c.sndbuf.data) - c.snd_nxt
        usable = c.snd_una + c.snd_wnd - c.snd_nxt
        length = max(min(avail, usable, c.snd_mss), 0)
        if length:
            c.snd_nxt = transmit(c, c.snd_nxt, length, now)
    c.persist_shift += 1
    if c.snd_wnd == 0 or c.sndbuf.start + len(c.sndbuf.data) > c.snd_nxt:
        c.t_persist = now + _persist_interval(c)
    else:
        c.t_persist = None
        c.persist_shift = 0
        if c.snd_max > c.snd_una and c.t_rtx is None:
            c.t_rtx = now + c.rtt.rto


def keepalive_timeout(c, now: float) -> None:
    """Keepalive (RFC 9293 3.8.4, RFC 1122 4.2.3.6): probe an idle connection."""
    if not c.keepalive or c.state not in (S.ESTABLISHED, S.CLOSE_WAIT, S.FIN_WAIT_2):
        return
    due = c.last_recv + c.keepidle
    if c.keep_probes == 0 and now < due:  # heard from the peer since: wait the rest
        c.t_keep = due
        return
    if c.keep_probes >= c.keepcnt:
        c.stats.keepalive_drops += 1
        c.drop(Errno.ETIMEDOUT, now)
        return
    if c.snd_max > c.snd_una:  # data in flight: the retransmission timer does the work
        c.t_keep = now + c.keepintvl
        return
    c.keep_probes += 1
    c.stats.keepalive_probes += 1
    send_segment(c, c.snd_una - 1, ACK, b"", now)
    c.t_keep = now + c.keepintvl
