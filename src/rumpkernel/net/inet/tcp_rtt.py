"""Round-trip time estimation and the retransmission timeout (RFC 6298).

Interface:
    RttEstimator(rto_initial, rto_min, rto_max)
    est.sample(rtt)     -- feed one measurement in seconds (Karn's rule is the caller's: never
                           sample a retransmitted segment unless timestamps identify it).
    est.backoff()       -- double the timeout after an expiry (capped at rto_max).
    est.reset(rto)      -- a fresh timeout without samples (RFC 6298 5.7 after a SYN timeout).
    est.rto             -- current timeout in seconds, backoff included.
    est.srtt, est.rttvar (None before the first sample), est.shift (backoff count).

Rules: alpha 1/8, beta 1/4, K = 4, clock granularity G = 1 ms; the backed-off value stays until
a valid sample arrives (RFC 6298 5.7 and Karn).
"""

from __future__ import annotations

G = 0.001


class RttEstimator:
    __slots__ = ("base", "rto_max", "rto_min", "rttvar", "shift", "srtt")

    def __init__(self, rto_initial: float = 1.0, rto_min: float = 0.2,
                 rto_max: float = 120.0) -> None:
        self.srtt: float | None = None
        self.rttvar: float | None = None
        self.base = rto_initial
        self.rto_min = rto_min
        self.rto_max = rto_max
        self.shift = 0

    def sample(self, rtt: float) -> None:
        if rtt < 0:
            return
        srtt = self.srtt
        if srtt is None:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(srtt - rtt)
            self.srtt = 0.875 * srtt + 0.125 * rtt
        base = self.srtt + max(G, 4 * self.rttvar)
        self.base = min(max(base, self.rto_min), self.rto_max)
        self.shift = 0

    def reset(self, rto: float) -> None:
        """Start over from ``rto`` seconds (no backoff), keeping no samples."""
        self.base = min(max(rto, self.rto_min), self.rto_max)
        self.shift = 0

    def backoff(self) -> None:
        if self.base * (1 << self.shift) < self.rto_max:
            self.shift += 1

    @property
    def rto(self) -> float:
        return min(self.base * (1 << self.shift), self.rto_max)
