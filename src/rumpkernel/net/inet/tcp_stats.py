"""TCP counters (what ``netstat -s`` shows) and the TCP_INFO-like per-connection snapshot.

Interface:
    TcpStats()            -- one per stack; plain integer attributes bumped by the engine, plus
                             ``drops`` ({reason: count}).  stats.drop(reason) counts one drop.
                             stats.as_dict() for netstat -s and sysctl.
    TcpInfo               -- frozen snapshot from TcpConnection.info(): state, cwnd, ssthresh
                             (bytes), srtt/rttvar/rto (seconds), retransmits (consecutive),
                             total_retrans, mss values, windows, queue lengths, options in use.

Rules: counters only grow; the names are stable (tools print them).
"""

from __future__ import annotations

from dataclasses import dataclass

COUNTERS = (
    "active_opens", "passive_opens", "attempt_fails", "estab_resets", "conn_drops",
    "segs_in", "segs_out", "bytes_in", "bytes_out", "retrans_segs", "retrans_bytes",
    "fast_retrans", "rto_timeouts", "syn_retrans", "dup_acks", "sack_recoveries",
    "newreno_recoveries", "partial_acks", "ooo_segs", "ooo_bytes", "dup_segs", "dup_bytes",
    "checksum_errors", "bad_segments", "in_rsts", "out_rsts", "challenge_acks",
    "challenge_acks_suppressed", "paws_drops", "delayed_acks", "pure_acks_out",
    "window_probes", "keepalive_probes", "keepalive_drops", "persist_timeouts",
    "syncookies_sent", "syncookies_recv", "syncookies_failed", "listen_overflows",
    "listen_drops", "syn_queue_drops", "time_wait_reuse", "timewait_kills",
    "urgent_in", "rcvbuf_grow", "sndbuf_grow", "memory_drops", "sacks_in", "sack_blocks_out",
    "dsacks_in", "rcv_pruned",
)


class TcpStats:
    __slots__ = (*COUNTERS, "drops")

    def __init__(self) -> None:
        for name in COUNTERS:
            setattr(self, name, 0)
        self.drops: dict[str, int] = {}

    def drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {name: getattr(self, name) for name in COUNTERS}
        out["drops"] = dict(sorted(self.drops.items()))
        return out


@dataclass(frozen=True, slots=True)
class TcpInfo:
    state: str
    cc: str
    cwnd: int
    ssthresh: int
    srtt: float | None
    rttvar: float | None
    rto: float
    retransmits: int
    total_retrans: int
    snd_mss: int
    rcv_mss: int
    snd_wnd: int
    rcv_wnd: int
    unacked: int
    sacked: int
    lost: int
    in_recovery: str | None
    snd_wscale: int
    rcv_wscale: int
    timestamps: bool
    sack: bool
    sndbuf: int
    rcvbuf: int
    send_queue: int
    recv_queue: int
    backoff: int
