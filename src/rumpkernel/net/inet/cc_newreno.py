"""NewReno congestion control (RFC 5681 growth, RFC 6582 reduction).

Slow start grows cwnd by the bytes acked, at most one SMSS per ACK (RFC 5681 3.1, RFC 3465 with
L = 1); congestion avoidance adds one SMSS per cwnd of acked bytes; a loss halves the flight.
"""

from __future__ import annotations

from rumpkernel.net.inet.tcp_cc import CongestionControl


class NewReno(CongestionControl):
    name = "newreno"
    __slots__ = ("acked_ca",)

    def __init__(self, mss: int, initial_cwnd: int = 10) -> None:
        super().__init__(mss, initial_cwnd)
        self.acked_ca = 0

    def on_ack(self, acked: int, now: float, rtt: float | None) -> None:
        if self.cwnd < self.ssthresh:
            self.cwnd += min(acked, self.mss)
            return
        self.acked_ca += acked
        if self.acked_ca >= self.cwnd:
            self.acked_ca -= self.cwnd
            self.cwnd += self.mss

    def on_congestion(self, now: float, flight: int) -> int:
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.acked_ca = 0
        return self.ssthresh

    def on_rto(self, now: float, flight: int) -> None:
        super().on_rto(now, flight)
        self.acked_ca = 0
