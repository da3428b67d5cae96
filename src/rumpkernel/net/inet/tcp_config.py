"""TCP tunables: one record per stack, shared by its connections (the ``net.inet.tcp.*`` sysctl
nodes map one to one onto these fields).

Interface:
    TcpConfig(**overrides)   -- mutable slots dataclass; times in seconds, sizes in bytes.
    config.set(name, value)  -- typed assignment by name (ValueError on unknown names or types).

Defaults follow Linux where RFCs leave room (RTO floor 200 ms, delayed ACK 40 ms, initial window
10 segments, CUBIC), RFC values elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(slots=True)
class TcpConfig:
    mtu: int = 1500                    # route MTU: our MSS is mtu - 40 (IPv4) and clamps the peer's
    mss_default: int = 536             # send MSS when the peer sends no MSS option (RFC 9293 3.7.1)
    msl: float = 30.0                  # TIME_WAIT lasts 2*msl
    rto_initial: float = 1.0           # RFC 6298 2.1
    rto_min: float = 0.2
    rto_max: float = 120.0
    syn_retries: int = 6               # SYN retransmissions before ETIMEDOUT
    synack_retries: int = 5            # SYN-ACK retransmissions per SYN-queue entry
    retries2: int = 15                 # data retransmissions before ETIMEDOUT
    delack_time: float = 0.04          # delayed-ACK timer (RFC 9293 3.8.6.3: < 0.5 s)
    delack_segments: int = 2           # ACK at least every 2nd full-sized segment
    keepidle: float = 7200.0           # TCP_KEEPIDLE
    keepintvl: float = 75.0            # TCP_KEEPINTVL
    keepcnt: int = 9                   # TCP_KEEPCNT
    fin_timeout: float = 60.0          # orphaned FIN_WAIT_2 lifetime
    timestamps: bool = True            # RFC 7323 timestamps and PAWS
    window_scaling: bool = True        # RFC 7323 window scale
    sack: bool = True                  # RFC 2018 SACK, RFC 6675 recovery
    syncookies: int = 1                # 0 never, 1 when the SYN queue overflows, 2 always
    max_syn_backlog: int = 256         # SYN-queue entries per listener
    initial_cwnd: int = 10             # segments (RFC 6928)
    congestion_control: str = "cubic"  # TCP_CONGESTION default
    rmem_default: int = 131072         # initial receive buffer
    rmem_max: int = 6291456            # receive-buffer autotuning limit
    wmem_default: int = 16384          # initial send buffer
    wmem_max: int = 4194304            # send-buffer autotuning limit
    autotune: bool = True              # grow buffers with the bandwidth-delay product
    challenge_ack_limit: int = 1000    # challenge ACKs per second per stack (RFC 5961 7)
    dupthresh: int = 3                 # duplicate ACKs that start fast retransmit
    tw_reuse: bool = True              # connect() may reuse a TIME_WAIT 4-tuple (timestamps)
    abort_on_overflow: bool = False    # RST (not a silent drop) when the accept queue is full
    tso: bool = True                   # super-segments up to 64 KiB when the interface does TSO

    def set(self, name: str, value: object) -> None:
        types = {f.name: f.type for f in fields(self)}
        if name not in types:
            raise ValueError(f"unknown TCP tunable {name!r}")
        kind = {"int": int, "float": float, "bool": bool, "str": str}[types[name]]
        if kind is bool and isinstance(value, str):
            value = value.lower() in ("1", "true", "yes", "on")
        elif kind is float and isinstance(value, int | str):
            value = float(value)
        elif kind is int and isinstance(value, str):
            value = int(value, 0)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError(f"TCP tunable {name} takes a {kind.__name__}, not {value!r}")
        setattr(self, name, value)

    @property
    def our_mss(self) -> int:
        """The MSS we advertise: route MTU less IPv4 and TCP headers."""
        return self.mtu - 40
