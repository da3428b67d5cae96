"""TCP input processing, split by state as RFC 9293 3.10.7 is (SEGMENT ARRIVES).

Interface:
    segment_input(c, seg, now)  -- dispatch one segment for connection ``c`` by its state:
                                   CLOSED -> _closed_input, SYN_SENT -> _syn_sent_input,
                                   SYN_RECEIVED and the synchronized states -> _sync_input,
                                   whose steps are: PAWS (RFC 7323 5), RST (RFC 5961 3),
                                   sequence check and trimming, SYN (RFC 5961 4), ACK (per-state
                                   handlers, RFC 5961 5), URG, text, FIN (per-state handlers).
    reset_for(seg) -> TcpSegment | None -- the RST answering ``seg`` when no connection exists
                                   (RFC 9293 3.10.7.1); used by listeners and the stack.

Rules: a segment never raises: anything unacceptable is counted (stats.drop(reason)) and
dropped, with an ACK where the RFC asks for one.  Sequence and ACK numbers are unwrapped against
rcv_nxt and snd_una before any comparison.
"""

from __future__ import annotations

from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.net.inet import tcp_output
from rumpkernel.net.inet.tcp_fsm import DATA_RECEIVING, TcpEvent, TcpState
from rumpkernel.net.wire.tcp import TcpSegment

MASK = 0xFFFFFFFF
FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
PAWS_IDLE = 24 * 86400.0
S = TcpState
E = TcpEvent


def _unwrap(wire: int, ref: int) -> int:
    d = (wire - ref) & MASK
    return ref + d - ((d >> 31) << 32)


def _ts_before(a: int, b: int) -> bool:
    return ((a - b) & MASK) >= 0x80000000


def reset_for(seg: TcpSegment) -> TcpSegment | None:
    """RFC 9293 3.10.7.1: <SEQ=SEG.ACK><CTL=RST>, or <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>."""
    if seg.flags & RST:
        return None
    if seg.flags & ACK:
        return TcpSegment(seg.dst_port, seg.src_port, seg.ack, 0, RST, 0)
    return TcpSegment(seg.dst_port, seg.src_port, 0, (seg.seq + seg.seq_len) & MASK,
                      RST | ACK, 0)


def segment_input(c, seg: TcpSegment, now: float) -> None:
    stats = c.stats
    stats.segs_in += 1
    stats.bytes_in += len(seg.payload)
    c.last_recv = now
    c.keep_probes = 0
    _STATE_INPUT[c.state](c, seg, now)


def _closed_input(c, seg: TcpSegment, now: float) -> None:
    c.stats.drop("closed")
    rst = reset_for(seg)
    if rst is not None:
        c.stats.out_rsts += 1
        c.sink(c, rst) if c.sink is not None else c.out.append(rst)


def _listen_input(c, seg: TcpSegment, now: float) -> None:
    c.stats.drop("listen_state_connection")  # listeners are TcpListener objects


# --- SYN_SENT ---------------------------------------------------------------------------------

def _syn_sent_input(c, seg: TcpSegment, now: float) -> None:
    f = seg.flags
    stats = c.stats
    ack = 0
    if f & ACK:
        ack = _unwrap(seg.ack, c.snd_una)
        if ack <= c.iss or ack > c.snd_max:
            stats.drop("syn_sent_bad_ack")
            if not f & RST:
                _send_reset(c, TcpSegment(c.lport, c.rport, seg.ack, 0, RST, 0))
            return
    if f & RST:
        if f & ACK:  # RFC 5961 3.2: acceptable only when it acknowledges our SYN
            stats.in_rsts += 1
            stats.attempt_fails += 1
            c.so_error = Errno.ECONNREFUSED
            c._to_closed(E.RCV_RST)
        else:
            stats.drop("syn_sent_rst_without_ack")
        return
    if not f & SYN:
        stats.drop("syn_sent_no_syn")
        return
    c.irs = seg.seq
    c.rcv_nxt = c.last_ack_sent = c.read_seq = c.irs + 1
    c.negotiate(seg.options, now, we_sent_wscale=c.config.window_scaling)
    c.snd_wnd = seg.window
    c.max_sndwnd = max(c.max_sndwnd, seg.window)
    c.snd_wl1 = c.irs
    if f & ACK:
        c.syn_window = min(c.rcvbuf.window_space(), 0xFFFF)
        c.rcv_adv = c.rcv_nxt + c.syn_window
        _syn_acked(c, seg, ack, now)
        c.ack_now = True
        if seg.payload or f & FIN:
            _text_and_fin(c, seg, c.irs + 1, seg.payload, bool(f & FIN), now)
        tcp_output.output(c, now)
        return
    # simultaneous open (RFC 9293 3.5, Figure 8)
    c._set_state(E.RCV_SYN)
    c.snd_wl2 = c.iss
    c.t_rtx = None
    c.syn_count = 0  # synack_retries counts SYN-ACK retransmissions from here
    tcp_output.send_syn(c, now)
    c.syn_window = min(c.rcvbuf.window_space(), 0xFFFF)
    c.rcv_adv = c.rcv_nxt + c.syn_window


def _syn_acked(c, seg: TcpSegment, ack: int, now: float) -> None:
    _rtt_sample(c, seg, ack, now)
    c.snd_una = ack
    c.snd_wl2 = ack
    c.rtx_count = 0
    c.t_rtx = None
    c._set_state(E.RCV_SYN_ACK)
    c.established(now)


def _rtt_sample(c, seg: TcpSegment, ack: int, now: float) -> None:
    ecr = seg.options.ts_ecr
    if c.ts_ok and ecr:
        r = (c.ts_now(now) - ecr) & MASK
        if r < 0x7FFFFFFF:
            c.rtt.sample(max(r / 1000.0, 0.0005))
    elif c.rtt_seq is not None and ack >= c.rtt_seq:
        c.rtt.sample(now - c.rtt_time)
        c.rtt_seq = None


# --- SYN_RECEIVED and the synchronized states -------------------------------------------------

def _sync_input(c, seg: TcpSegment, now: float) -> None:
    f = seg.flags
    stats = c.stats
    seq = _unwrap(seg.seq, c.rcv_nxt)
    ts_val = seg.options.ts_val
    if c.ts_ok and ts_val is not None and not f & RST and _ts_before(ts_val, c.ts_recent):
        if now - c.ts_recent_time <= PAWS_IDLE:  # RFC 7323 5.3 R1
            stats.paws_drops += 1
            stats.drop("paws")
            c.ack_now = True
            tcp_output.output(c, now)
            return
        c.ts_recent, c.ts_recent_time = ts_val, now  # stale ts_recent: invalidated
    rcv_wnd = c.rcv_adv - c.rcv_nxt
    if rcv_wnd < 0:
        rcv_wnd = 0
    if f & RST:
        _rst_input(c, seq, rcv_wnd, now)
        return
    trimmed = _trim(c, seg, seq, rcv_wnd)
    if trimmed is None:
        if c.state == S.TIME_WAIT and f & FIN:
            c.t_2msl = now + 2 * c.config.msl
        tcp_output.output(c, now)
        return
    dseq, payload, fin, syn = trimmed
    if c.ts_ok and ts_val is not None and seq <= c.last_ack_sent \
            and not _ts_before(ts_val, c.ts_recent):
        c.ts_recent, c.ts_recent_time = ts_val, now  # RFC 7323 4.3
    if syn:  # RFC 5961 4.2: any SYN on a synchronized connection gets a challenge ACK
        stats.drop("syn_in_window")
        _challenge_ack(c, now)
        return
    if not f & ACK:
        stats.drop("no_ack")
        tcp_output.output(c, now)
        return
    if c.state == S.SYN_RECEIVED and not _syn_received_ack(c, seg, seq, now):
        return
    if not _ack_input(c, seg, seq, now):
        return
    if not _ACK_STATE[c.state](c, seg, now):
        return
    if f & URG and c.state in DATA_RECEIVING:
        up = seq + seg.urgent  # relative to the untrimmed SEG.SEQ (RFC 6093: byte after)
        if up > c.rcv_up:
            c.rcv_up = up
            stats.urgent_in += 1
    if payload or fin or c.ooo_fin is not None:
        _text_and_fin(c, seg, dseq, payload, fin, now)
    elif c.state == S.TIME_WAIT and f & FIN:
        c.ack_now = True
        c.t_2msl = now + 2 * c.config.msl
    tcp_output.output(c, now)


def _trim(c, seg: TcpSegment, seq: int, rcv_wnd: int):
    """Sequence check with trimming (RFC 9293 3.10.7.4 first; BSD's duplicate handling):
    returns (seq, payload, fin, syn) of the acceptable part, or None (ACK owed, drop)."""
    f = seg.flags
    payload = seg.payload
    syn = bool(f & SYN)
    fin = bool(f & FIN)
    rcv_nxt = c.rcv_nxt
    todrop = rcv_nxt - seq
    stats = c.stats
    if todrop > 0:
        if syn:
            syn = False
            seq += 1
            todrop -= 1
        plen = len(payload)
        if todrop > plen or (todrop == plen and not fin):
            if plen or fin or f & SYN:  # a duplicate that used sequence space: re-ACK
                stats.dup_segs += 1
                stats.dup_bytes += plen
            # wholly old, so not acceptable: ACK it (a zero-length one is a keepalive probe)
            c.ack_now = True
            fin = False
            todrop = plen
        if todrop:
            payload = payload[todrop:]
            seq += todrop
    edge = rcv_nxt + rcv_wnd
    excess = seq + len(payload) - edge
    if excess > 0:
        if excess >= len(payload):
            if seq == rcv_nxt and rcv_wnd == 0:  # zero-window probe: keep its ACK
                c.ack_now = True
                return seq, b"", False, syn
            stats.drop("out_of_window")
            c.ack_now = True
            return None
        payload = payload[:-excess]
        fin = False
    return seq, payload, fin, syn


def _rst_input(c, seq: int, rcv_wnd: int, now: float) -> None:
    """RFC 5961 3.2: reset only on an exact match; challenge ACK when merely in window."""
    stats = c.stats
    if seq != c.rcv_nxt:
        if c.rcv_nxt < seq < c.rcv_nxt + rcv_wnd:
            stats.drop("rst_in_window")
            _challenge_ack(c, now)
        else:
            stats.drop("rst_out_of_window")
        return
    stats.in_rsts += 1
    st = c.state
    if st == S.SYN_RECEIVED:
        if not c.passive_open:
            c.so_error = Errno.ECONNREFUSED
    elif st in (S.ESTABLISHED, S.CLOSE_WAIT, S.FIN_WAIT_1, S.FIN_WAIT_2):
        c.so_error = Errno.ECONNRESET
        if st in (S.ESTABLISHED, S.CLOSE_WAIT):
            stats.estab_resets += 1
    c._to_closed(E.RCV_RST)


def _challenge_ack(c, now: float) -> None:
    if c.shared.allow_challenge_ack(now):
        c.ack_now = True
        tcp_output.output(c, now)


def _send_reset(c, rst: TcpSegment) -> None:
    c.stats.out_rsts += 1
    c.sink(c, rst) if c.sink is not None else c.out.append(rst)


def _syn_received_ack(c, seg: TcpSegment, seq: int, now: float) -> bool:
    ack = _unwrap(seg.ack, c.snd_una)
    if not c.snd_una < ack <= c.snd_max:
        c.stats.drop("syn_received_bad_ack")
        _send_reset(c, TcpSegment(c.lport, c.rport, seg.ack, 0, RST, 0))
        return False
    c.snd_wnd = seg.window << c.snd_wscale
    c.max_sndwnd = max(c.max_sndwnd, c.snd_wnd)
    c.snd_wl1, c.snd_wl2 = seq, ack
    c._set_state(E.RCV_ACK_OF_SYN)
    c.established(now)
    return True


# --- the ACK field ----------------------------------------------------------------------------

def _ack_input(c, seg: TcpSegment, seq: int, now: float) -> bool:
    """RFC 9293 ESTABLISHED ACK processing, RFC 5961 5.2 validation, SACK, recovery."""
    ack = _unwrap(seg.ack, c.snd_una)
    stats = c.stats
    if ack > c.snd_max:
        stats.drop("ack_unsent_data")
        _challenge_ack(c, now)
        return False
    if ack < c.snd_una - c.max_sndwnd:
        stats.drop("ack_too_old")
        _challenge_ack(c, now)
        return False
    newly_sacked = 0
    opts = seg.options
    if opts.sack and c.sack_ok:
        una = c.snd_una
        blocks = [(_unwrap(a, una), _unwrap(b, una)) for a, b in opts.sack]
        stats.sacks_in += 1
        if blocks and blocks[0][1] <= max(ack, una):
            stats.dsacks_in += 1  # D-SACK (RFC 2883): reports a duplicate, nothing to do
        newly_sacked = c.board.update(blocks, max(ack, una), c.snd_max)
    wnd = seg.window << c.snd_wscale
    same_window = wnd == c.snd_wnd
    if c.snd_wl1 < seq or (c.snd_wl1 == seq and c.snd_wl2 <= ack):
        if wnd and c.snd_wnd == 0:
            c.probes_unanswered = 0
        c.snd_wnd = wnd
        c.snd_wl1, c.snd_wl2 = seq, ack
        if wnd > c.max_sndwnd:
            c.max_sndwnd = wnd
    if c.t_persist is not None:
        c.probes_unanswered = 0
    if ack > c.snd_una:
        _new_ack(c, seg, ack, now)
    elif (ack == c.snd_una and c.snd_max > c.snd_una and not seg.payload and wnd
          and not seg.flags & (SYN | FIN) and (same_window or newly_sacked)):
        _dup_ack(c, now, newly_sacked)
    return True


def _new_ack(c, seg: TcpSegment, ack: int, now: float) -> None:
    acked = ack - c.snd_una
    _rtt_sample(c, seg, ack, now)
    buf = c.sndbuf
    data_end = buf.start + len(buf.data)
    data_acked = buf.drop_to(ack if ack < data_end else data_end)
    c.snd_una = ack
    if c.snd_nxt < ack:
        c.snd_nxt = ack
    if c.board.blocks:
        c.board.advance(ack)
    c.rtx_count = 0
    cc = c.cc
    mss = c.snd_mss
    if c.recovery is not None:
        if ack >= c.recover:
            if c.recovery == "newreno":
                cc.cwnd = min(cc.ssthresh, max(c.snd_max - ack, mss) + mss)
            else:
                cc.cwnd = cc.ssthresh
            c.recovery = None
            cc.on_recovery_exit(now)
        else:
            c.stats.partial_acks += 1
            if c.recovery == "newreno":  # RFC 6582 3.2 step 5
                tcp_output.transmit(c, ack, mss, now)
                cwnd = cc.cwnd - acked + (mss if acked >= mss else 0)
                cc.cwnd = cwnd if cwnd > mss else mss
                if not c.partial_seen:
                    c.partial_seen = True
                    c.t_rtx = None
    elif data_acked:
        cc.on_ack(data_acked, now, c.rtt.srtt)
        if c.config.autotune and not c.sndbuf_locked:
            want = 2 * cc.cwnd
            if want > buf.limit and buf.limit < c.config.wmem_max:
                buf.limit = min(want, c.config.wmem_max)
                c.stats.sndbuf_grow += 1
    c.dupacks = 0
    if c.snd_una == c.snd_max:
        c.t_rtx = None
    elif c.t_persist is None:
        c.t_rtx = now + c.rtt.rto  # RFC 6298 5.3


def _dup_ack(c, now: float, newly_sacked: int) -> None:
    c.dupacks += 1
    c.stats.dup_acks += 1
    if c.recovery == "newreno":
        c.cc.cwnd += c.snd_mss  # RFC 6582 3.2 step 4: inflate
        return
    if c.recovery is not None:
        return
    mss = c.snd_mss
    dup = c.config.dupthresh
    lost = c.sack_ok and c.board.lost_boundary(mss, dup) > c.snd_una
    if (c.dupacks >= dup or lost) and c.snd_una >= c.recover:
        tcp_output.enter_recovery(c, now)


# --- per-state ACK handling (RFC 9293 3.10.7.4 fifth step) ---------------------------------------

def _ack_plain(c, seg: TcpSegment, now: float) -> bool:
    return True


def _fin_acked(c) -> bool:
    return c.fin_seq is not None and c.snd_una > c.fin_seq


def _ack_fin_wait_1(c, seg: TcpSegment, now: float) -> bool:
    if _fin_acked(c):
        c._set_state(E.RCV_ACK_OF_FIN)
        if c.app_closed:
            c.t_fin2 = now + c.config.fin_timeout
    return True


def _ack_closing(c, seg: TcpSegment, now: float) -> bool:
    if _fin_acked(c):
        c._set_state(E.RCV_ACK_OF_FIN)
        c.enter_time_wait(now)
    return True


def _ack_last_ack(c, seg: TcpSegment, now: float) -> bool:
    if _fin_acked(c):
        c._to_closed(E.RCV_ACK_OF_FIN)
        return False
    return True


_ACK_STATE = {
    S.ESTABLISHED: _ack_plain, S.CLOSE_WAIT: _ack_plain, S.FIN_WAIT_2: _ack_plain,
    S.TIME_WAIT: _ack_plain, S.FIN_WAIT_1: _ack_fin_wait_1, S.CLOSING: _ack_closing,
    S.LAST_ACK: _ack_last_ack,
}


# --- text and FIN -----------------------------------------------------------------------------

def _text_and_fin(c, seg: TcpSegment, seq: int, payload: bytes, fin: bool, now: float) -> None:
    if payload and not _text(c, seq, payload, now):
        return
    if fin:
        _fin(c, seq + len(payload), now)
    elif c.ooo_fin is not None and c.ooo_fin == c.rcv_nxt:
        _fin(c, c.ooo_fin, now)


def _text(c, seq: int, payload: bytes, now: float) -> bool:
    stats = c.stats
    if c.state not in DATA_RECEIVING:
        stats.drop("data_after_fin")
        return False
    if c.app_closed:  # nobody will read it: RFC 9293 3.10.7.4 / RFC 2525 2.17
        stats.drop("data_after_close")
        tcp_output.send_rst(c, c.snd_nxt, now)
        c._to_closed(E.ABORT)
        return False
    rcv_nxt = c.rcv_nxt
    had_ooo = bool(c.rcvbuf.ooo)
    try:
        new_nxt = c.rcvbuf.insert(seq, payload, rcv_nxt)
    except KernelError:
        new_nxt = None
        if seq == rcv_nxt and c.rcvbuf.ooo:
            # out of memory: renege on out-of-order data (RFC 2018 8) so the in-order
            # segment the peer must retransmit anyway fits
            c.rcvbuf.prune_ooo()
            c.ooo_fin = None
            stats.rcv_pruned += 1
            try:
                new_nxt = c.rcvbuf.insert(seq, payload, rcv_nxt)
            except KernelError:
                pass
        if new_nxt is None:
            stats.memory_drops += 1
            stats.drop("memory")
            c.ack_now = True
            return False
    if seq == rcv_nxt:
        c.rcv_nxt = new_nxt
        if c.shut_rd:
            c.rcvbuf.read(c.rcvbuf.readable)
            c.read_seq = new_nxt
        if had_ooo:
            c.ack_now = True  # RFC 5681 4.2: a segment that fills a gap is ACKed at once
        else:
            c.delack_count += 1
            if c.delack_count >= c.config.delack_segments:
                c.ack_now = True
            elif c.t_delack is None:
                c.t_delack = now + c.config.delack_time
    else:
        stats.ooo_segs += 1
        stats.ooo_bytes += len(payload)
        c.ack_now = True
    return True


def _fin(c, fin_seq: int, now: float) -> None:
    if fin_seq > c.rcv_nxt:
        c.ooo_fin = fin_seq
        c.ack_now = True
        return
    if fin_seq < c.rcv_nxt or c.fin_rcvd:
        return
    c.rcv_nxt += 1
    c.fin_rcvd = True
    c.ooo_fin = None
    c.ack_now = True
    st = c.state
    if st in (S.ESTABLISHED, S.FIN_WAIT_1):
        c._set_state(E.RCV_FIN)
    elif st == S.FIN_WAIT_2:
        c._set_state(E.RCV_FIN)
        c.enter_time_wait(now)
    elif st == S.TIME_WAIT:
        c.t_2msl = now + 2 * c.config.msl


_STATE_INPUT = {
    S.CLOSED: _closed_input, S.LISTEN: _listen_input, S.SYN_SENT: _syn_sent_input,
    S.SYN_RECEIVED: _sync_input, S.ESTABLISHED: _sync_input, S.CLOSE_WAIT: _sync_input,
    S.FIN_WAIT_1: _sync_input, S.FIN_WAIT_2: _sync_input, S.CLOSING: _sync_input,
    S.LAST_ACK: _sync_input, S.TIME_WAIT: _sync_input,
}
