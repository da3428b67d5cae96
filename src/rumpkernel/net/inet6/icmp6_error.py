"""When and how to answer a packet with an ICMPv6 error (RFC 4443 2.4), sans-IO.

Interface:
    RateLimit(per_second=100, burst=10)       a token bucket (RFC 4443 2.4 f); ``allow(now)``
                                              (now in ns) -> bool, counting ``limited``;
                                              per_second < 0: no limit, 0: never
    may_answer(orig, icmp_type, code, link_multicast=False) -> bool
            False for (e.1) an ICMPv6 error or (e.2) a redirect, (e.3/e.4) a packet to an IPv6
            or link-layer multicast address -- except packet too big and parameter problem
            code 2 for an option whose type says "report even for multicast" -- and (e.6) a
            source that is unspecified or multicast.  ``orig`` is the invoking packet's bytes
            from its IPv6 header on; an unparsable one is never answered.
    error_message(icmp_type, code, param, orig) -> Icmp6Message
            ``param`` is the MTU (packet too big) or the pointer (parameter problem); the
            invoking packet is cut so the error fits the IPv6 minimum MTU (1280 bytes)
    MAX_INVOKING = 1280 - 40 - 8
"""

from __future__ import annotations

from rumpkernel.net.wire import icmp6, ipv6
from rumpkernel.net.wire.base import FormatError

MAX_INVOKING = ipv6.MIN_MTU - ipv6.HEADER_LEN - icmp6.HEADER_LEN


class RateLimit:
    __slots__ = ("burst", "last", "limited", "per_second", "tokens")

    def __init__(self, per_second: int = 100, burst: int = 10) -> None:
        self.per_second = per_second
        self.burst = burst
        self.tokens = float(burst)
        self.last: int | None = None
        self.limited = 0

    def allow(self, now: int) -> bool:
        if self.per_second < 0:
            return True
        if self.per_second > 0 and self.last is not None:
            self.tokens = min(float(self.burst),
                              self.tokens + (now - self.last) * self.per_second / 1e9)
        self.last = now
        if self.per_second > 0 and self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        self.limited += 1
        return False


def may_answer(orig: bytes, icmp_type: int, code: int, link_multicast: bool = False) -> bool:
    try:
        v = ipv6.Ipv6View(orig[: ipv6.HEADER_LEN + ((orig[4] << 8) | orig[5])]
                          if len(orig) >= 6 else orig)
    except FormatError:
        return False
    src, dst = v.src, v.dst
    if ipv6.is_unspecified(src) or ipv6.is_multicast(src):
        return False
    multicast_ok = icmp_type == icmp6.PACKET_TOO_BIG or (
        icmp_type == icmp6.PARAM_PROBLEM and code == ipv6.PP_OPTION)
    if (ipv6.is_multicast(dst) or link_multicast) and not multicast_ok:
        return False
    return not _is_error_or_redirect(v)


def _is_error_or_redirect(v: ipv6.Ipv6View) -> bool:
    try:
        ch = ipv6.parse_chain(v.payload, v.next_header)
    except FormatError:
        return False
    if ch.upper != ipv6.NH_ICMPV6 or ch.offset >= len(v.payload):
        return False
    if any(isinstance(h, ipv6.FragmentHeader) and h.offset for h in ch.headers):
        return False
    t = v.payload[ch.offset]
    return icmp6.is_error(t) or t == icmp6.REDIRECT


def error_message(icmp_type: int, code: int, param: int, orig: bytes) -> icmp6.Icmp6Message:
    return icmp6.Icmp6Message(icmp_type, code, param, bytes(orig[:MAX_INVOKING]))
