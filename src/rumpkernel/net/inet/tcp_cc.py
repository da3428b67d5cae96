"""Pluggable congestion control (TCP_CONGESTION): the interface and the registry.

Interface:
    CongestionControl(mss, initial_cwnd_segments) -- base class; ``cwnd`` and ``ssthresh`` in
                                bytes (ssthresh starts "infinite").  The engine calls:
        on_ack(acked, now, rtt)        new data acknowledged outside loss recovery; ``rtt`` is the
                                       latest smoothed RTT in seconds or None
        on_congestion(now, flight)     entering fast recovery: set and return the new ssthresh
        on_recovery_exit(now)          loss recovery finished (cwnd already = ssthresh)
        on_rto(now, flight)            retransmission timeout: ssthresh from flight, cwnd 1 MSS
        on_idle_restart(now)           sending after an idle period longer than the RTO
        set_mss(mss)                   the send MSS changed
        start(mss, iw) / adopt(cwnd, ssthresh) -- after the handshake / on TCP_CONGESTION
    register(name, cls), create(name, mss, iw) -> instance, available() -> names.
    KeyError from create() for an unknown name (the socket layer turns it into ENOENT).

Rules: loss recovery itself (which segments to resend, cwnd inflation during NewReno recovery,
the RFC 6675 pipe) belongs to the engine; a module only decides growth and reduction.
"""

from __future__ import annotations

INFINITE_SSTHRESH = 0x7FFFFFFF


class CongestionControl:
    name = "base"
    __slots__ = ("cwnd", "initial_window", "mss", "ssthresh")

    def __init__(self, mss: int, initial_cwnd: int = 10) -> None:
        self.mss = mss
        self.initial_window = self._iw(initial_cwnd)
        self.cwnd = self.initial_window
        self.ssthresh = INFINITE_SSTHRESH

    def _iw(self, segments: int) -> int:
        return max(segments, 1) * self.mss

    def start(self, mss: int, initial_cwnd: int) -> None:
        """The handshake fixed the send MSS: begin with the initial window."""
        self.mss = mss
        self.cwnd = self.initial_window = self._iw(initial_cwnd)

    def adopt(self, cwnd: int, ssthresh: int) -> None:
        """Take over a window from the algorithm this one replaces (TCP_CONGESTION)."""
        self.cwnd, self.ssthresh = cwnd, ssthresh

    def set_mss(self, mss: int) -> None:
        if mss != self.mss:
            segs = max(1, round(self.cwnd / self.mss))
            self.mss = mss
            self.cwnd = segs * mss

    def on_ack(self, acked: int, now: float, rtt: float | None) -> None:
        raise NotImplementedError

    def on_congestion(self, now: float, flight: int) -> int:
        raise NotImplementedError

    def on_recovery_exit(self, now: float) -> None:
        pass

    def on_rto(self, now: float, flight: int) -> None:
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.mss

    def on_idle_restart(self, now: float) -> None:
        self.cwnd = min(self.cwnd, self.initial_window)


_REGISTRY: dict[str, type[CongestionControl]] = {}


def register(name: str, cls: type[CongestionControl]) -> None:
    _REGISTRY[name] = cls


def create(name: str, mss: int, initial_cwnd: int = 10) -> CongestionControl:
    if not _REGISTRY:
        _load_builtin()
    return _REGISTRY[name](mss, initial_cwnd)


def available() -> list[str]:
    if not _REGISTRY:
        _load_builtin()
    return sorted(_REGISTRY)


def _load_builtin() -> None:
    from rumpkernel.net.inet import cc_cubic, cc_newreno

    register("newreno", cc_newreno.NewReno)
    register("reno", cc_newreno.NewReno)
    register("cubic", cc_cubic.Cubic)
