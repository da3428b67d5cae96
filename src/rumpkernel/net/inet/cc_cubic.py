"""CUBIC congestion control (RFC 9438).

State in segments (floats): W_max, K, the epoch start, the Reno-friendly estimate W_est.  In
congestion avoidance cwnd moves towards W_cubic(t + RTT) (clamped to [cwnd, 1.5 cwnd]), or to
W_est when that is larger (the Reno-friendly region, RFC 9438 4.3).  beta_cubic 0.7, C 0.4,
fast convergence on (4.7).  Slow start is standard (no HyStart).
"""

from __future__ import annotations

from rumpkernel.net.inet.tcp_cc import CongestionControl

C = 0.4
BETA = 0.7
ALPHA = 3 * (1 - BETA) / (1 + BETA)


class Cubic(CongestionControl):
    name = "cubic"
    __slots__ = ("epoch", "k", "w_est", "w_max", "cwnd_f")

    def __init__(self, mss: int, initial_cwnd: int = 10) -> None:
        super().__init__(mss, initial_cwnd)
        self.w_max = 0.0
        self.k = 0.0
        self.epoch: float | None = None
        self.w_est = 0.0
        self.cwnd_f = float(self.cwnd)

    def start(self, mss: int, initial_cwnd: int) -> None:
        super().start(mss, initial_cwnd)
        self.cwnd_f = float(self.cwnd)

    def adopt(self, cwnd: int, ssthresh: int) -> None:
        super().adopt(cwnd, ssthresh)
        self.cwnd_f = float(cwnd)

    def on_ack(self, acked: int, now: float, rtt: float | None) -> None:
        mss = self.mss
        if self.cwnd < self.ssthresh:
            self.cwnd += min(acked, mss)
            self.cwnd_f = float(self.cwnd)
            return
        if int(self.cwnd_f) != self.cwnd:  # the engine set cwnd (recovery exit, clamping)
            self.cwnd_f = float(self.cwnd)
        cwnd_seg = self.cwnd_f / mss
        if self.epoch is None:
            self.epoch = now
            self.w_est = cwnd_seg
            if self.w_max <= cwnd_seg:
                self.k = 0.0
                self.w_max = cwnd_seg
            else:
                self.k = ((self.w_max - cwnd_seg) / C) ** (1 / 3)
        t = now - self.epoch + (rtt or 0.0)
        target = C * (t - self.k) ** 3 + self.w_max
        target = min(max(target, cwnd_seg), 1.5 * cwnd_seg)
        seg_acked = acked / mss
        self.w_est += ALPHA * seg_acked / cwnd_seg
        if target < self.w_est:
            target = self.w_est
        cwnd_seg += (target - cwnd_seg) * seg_acked / cwnd_seg
        self.cwnd_f = cwnd_seg * mss
        self.cwnd = max(int(self.cwnd_f), mss)

    def on_congestion(self, now: float, flight: int) -> int:
        cwnd_seg = self.cwnd / self.mss
        if cwnd_seg < self.w_max:  # fast convergence
            self.w_max = cwnd_seg * (1 + BETA) / 2
        else:
            self.w_max = cwnd_seg
        self.ssthresh = max(int(self.cwnd * BETA), 2 * self.mss)
        self.k = ((self.w_max * (1 - BETA)) / C) ** (1 / 3)
        self.epoch = None
        return self.ssthresh

    def on_recovery_exit(self, now: float) -> None:
        self.cwnd_f = float(self.cwnd)
        self.epoch = None

    def on_rto(self, now: float, flight: int) -> None:
        self.on_congestion(now, flight)
        self.cwnd = self.mss
        self.cwnd_f = float(self.mss)
        self.epoch = None

    def on_idle_restart(self, now: float) -> None:
        super().on_idle_restart(now)
        self.cwnd_f = float(self.cwnd)
        self.epoch = None
