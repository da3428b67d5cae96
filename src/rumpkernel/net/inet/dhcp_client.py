"""The DHCPv4 client state machine (RFC 2131 4.4), sans-IO (DESIGN rule 7): received messages,
time (integer ns) and randomness (``rand(n) -> [0, n)``) in; messages to send and
"configure" / "deconfigure" actions out.

Interface:
    DhcpClient(hwaddr, hostname=None, client_id=None, params=DEFAULT_PARAMS,
               max_request_tries=4, broadcast=False)
                                     ``broadcast``: ask servers to broadcast their replies
                                     while we have no address (the BROADCAST flag, RFC 2131
                                     4.1: for hosts that cannot receive unicast before their
                                     address is configured -- the kernel's IP layer)
    start(now, rand)                 INIT -> SELECTING: DISCOVER broadcast
    input(msg, now, rand) -> bool    a parsed DhcpMessage from port 67; False when it was not
                                     for us or not acceptable in this state (counted)
    timeout(now, rand)               retransmissions, T1 (RENEWING), T2 (REBINDING), expiry
    decline(now, rand)               the offered address is in use (the caller's ARP probe
                                     answered): DECLINE, then INIT again after 10 s
    renew(now) -> bool               BOUND/RENEWING: send a renewing REQUEST now (``dhcpcd -n``);
                                     False in other states
    release(now)                     RELEASE to the server, deconfigure, stop
    stop()                           forget the lease without telling anyone
    take_output() -> [Transmit | Configure | Deconfigure]
    deadline -> int | None;  state;  lease -> Lease | None
    Transmit(message, src, dst)      send ``message`` from port 68 to ``dst`` port 67;
                                     src 0.0.0.0 / dst 255.255.255.255 while unconfigured
    Configure(lease)                 set address/prefix, default route, DNS servers, domain,
                                     MTU from ``lease``
    Deconfigure(lease)               remove what Configure set
    Lease(address, prefix_len, routers, dns, domain, server, lease_ns, t1_ns, t2_ns, start,
          mtu, broadcast)

States: INIT, SELECTING, REQUESTING, BOUND, RENEWING, REBINDING, STOPPED.
Rules: retransmissions start at 4 s and double up to 64 s, each +-1 s at random (4.1);
RENEWING retries at half the time left to T2 and REBINDING at half the time left to expiry,
never more often than every 60 s (4.4.5); a reply must match our xid and hardware address;
the first acceptable OFFER is taken; an ACK without a lease time, or for an unusable address
(0, broadcast, multicast, loopback), is refused; T1/T2 default to 1/2 and 7/8 of the lease
and are corrected when inconsistent; a NAK drops the lease and restarts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rumpkernel.net.wire import dhcp
from rumpkernel.net.wire.base import FormatError, mask_len
from rumpkernel.net.wire.dhcp import ACK, NAK, OFFER, DhcpMessage

SEC = 10**9
INIT, SELECTING, REQUESTING, BOUND, RENEWING, REBINDING, STOPPED = (
    "init", "selecting", "requesting", "bound", "renewing", "rebinding", "stopped")
BROADCAST = b"\xff\xff\xff\xff"
DEFAULT_PARAMS = (dhcp.OPT_SUBNET_MASK, dhcp.OPT_ROUTER, dhcp.OPT_DNS, dhcp.OPT_DOMAIN,
                  dhcp.OPT_MTU, dhcp.OPT_BROADCAST, dhcp.OPT_LEASE_TIME, dhcp.OPT_T1,
                  dhcp.OPT_T2)
MIN_LEASE_S = 10
Rand = Callable[[int], int]


@dataclass(frozen=True, slots=True)
class Lease:
    address: bytes
    prefix_len: int
    routers: tuple[bytes, ...]
    dns: tuple[bytes, ...]
    domain: bytes
    server: bytes
    lease_ns: int
    t1_ns: int
    t2_ns: int
    start: int                       # when the request was sent (RFC 2131 4.4.1)
    mtu: int = 0
    broadcast: bytes | None = None

    @property
    def expires(self) -> int:
        return self.start + self.lease_ns


@dataclass(frozen=True, slots=True)
class Transmit:
    message: DhcpMessage
    src: bytes
    dst: bytes


@dataclass(frozen=True, slots=True)
class Configure:
    lease: Lease


@dataclass(frozen=True, slots=True)
class Deconfigure:
    lease: Lease


def _usable(a: bytes) -> bool:
    return a not in (dhcp.ZERO, BROADCAST) and a[0] not in (0, 127) and a[0] < 224


class DhcpClient:
    def __init__(self, hwaddr: bytes, hostname: bytes | None = None,
                 client_id: bytes | None = None, params: tuple[int, ...] = DEFAULT_PARAMS,
                 max_request_tries: int = 4, broadcast: bool = False) -> None:
        self.hwaddr = hwaddr
        self.broadcast = broadcast
        self.hostname = hostname
        self.client_id = client_id
        self.params = params
        self.max_request_tries = max_request_tries
        self.state = STOPPED
        self.lease: Lease | None = None
        self.offer: DhcpMessage | None = None
        self.xid = 0
        self.began = 0                   # start of this acquisition (secs field)
        self.sent_at = 0                 # last REQUEST, the lease's start time
        self.tries = 0
        self.next: int | None = None     # retransmission / state timer
        self.output: list = []
        self.ignored = 0

    # ---- helpers -----------------------------------------------------------------------------
    def take_output(self) -> list:
        o, self.output = self.output, []
        return o

    @property
    def deadline(self) -> int | None:
        return self.next

    def _common(self) -> tuple:
        opts: list[tuple[int, bytes]] = []
        if self.client_id is not None:
            opts.append((dhcp.OPT_CLIENT_ID, self.client_id))
        if self.hostname:
            opts.append((dhcp.OPT_HOSTNAME, self.hostname))
        opts.append((dhcp.OPT_PARAMS, bytes(self.params)))
        return tuple(opts)

    def _send(self, msg_type: int, now: int, options: tuple = (), ciaddr: bytes = dhcp.ZERO,
              src: bytes = dhcp.ZERO, dst: bytes = BROADCAST) -> None:
        secs = (now - self.began) // SEC
        m = dhcp.request(msg_type, self.xid, self.hwaddr, options, ciaddr, secs,
                         broadcast=self.broadcast and ciaddr == dhcp.ZERO)
        self.output.append(Transmit(m, src, dst))

    def _backoff(self, now: int, rand: Rand) -> int:
        base = min(4 << self.tries, 64) * SEC
        return now + base - SEC + rand(2 * SEC + 1)

    # ---- acquisition -------------------------------------------------------------------------
    def start(self, now: int, rand: Rand) -> None:
        self.lease = None
        self._discover(now, rand)

    def _discover(self, now: int, rand: Rand) -> None:
        self.state, self.offer, self.tries = SELECTING, None, 0
        self.xid = rand(1 << 32)
        self.began = now
        self._send_discover(now, rand)

    def _send_discover(self, now: int, rand: Rand) -> None:
        self._send(dhcp.DISCOVER, now, self._common())
        self.next = self._backoff(now, rand)
        self.tries += 1

    def _send_request(self, now: int, rand: Rand) -> None:
        assert self.offer is not None
        sid = self.offer.addr(dhcp.OPT_SERVER_ID)
        self._send(dhcp.REQUEST, now, ((dhcp.OPT_REQUESTED_IP, self.offer.yiaddr),
                                       (dhcp.OPT_SERVER_ID, sid), *self._common()))
        self.sent_at = now
        self.next = self._backoff(now, rand)
        self.tries += 1

    def input(self, m: DhcpMessage, now: int, rand: Rand) -> bool:
        if m.op != dhcp.BOOTREPLY or m.xid != self.xid or m.hwaddr != self.hwaddr \
                or self.state in (STOPPED, INIT, BOUND):
            self.ignored += 1
            return False
        t = m.msg_type
        if t == OFFER and self.state == SELECTING:
            return self._offered(m, now, rand)
        if t in (ACK, NAK) and self.state in (REQUESTING, RENEWING, REBINDING):
            sid = m.addr(dhcp.OPT_SERVER_ID)
            if self.state == REQUESTING and self.offer is not None \
                    and sid != self.offer.addr(dhcp.OPT_SERVER_ID):
                self.ignored += 1
                return False
            return self._nak(now, rand) if t == NAK else self._acked(m, now)
        self.ignored += 1
        return False

    def _offered(self, m: DhcpMessage, now: int, rand: Rand) -> bool:
        if not _usable(m.yiaddr) or m.addr(dhcp.OPT_SERVER_ID) is None:
            self.ignored += 1
            return False
        self.offer, self.state, self.tries = m, REQUESTING, 0
        self._send_request(now, rand)
        return True

    def _acked(self, m: DhcpMessage, now: int) -> bool:
        lease = self._lease(m)
        if lease is None:
            self.ignored += 1
            return False
        old = self.lease
        if old is not None and (old.address, old.prefix_len, old.routers) != (
                lease.address, lease.prefix_len, lease.routers):
            self.output.append(Deconfigure(old))
            old = None
        if old is None or old.dns != lease.dns or old.domain != lease.domain:
            self.output.append(Configure(lease))
        self.lease, self.state, self.tries = lease, BOUND, 0
        self.next = lease.start + lease.t1_ns
        return True

    def _lease(self, m: DhcpMessage) -> Lease | None:
        secs = m.u32(dhcp.OPT_LEASE_TIME)
        server = m.addr(dhcp.OPT_SERVER_ID) or (self.lease.server if self.lease else None)
        if secs is None or server is None or not _usable(m.yiaddr):
            return None
        secs = max(secs, MIN_LEASE_S)
        lease_ns = secs * SEC
        t1, t2 = m.u32(dhcp.OPT_T1), m.u32(dhcp.OPT_T2)
        if t1 is None or t2 is None or not 0 < t1 < t2 < secs:
            t1, t2 = secs // 2, secs * 7 // 8
        mask = m.addr(dhcp.OPT_SUBNET_MASK)
        try:
            plen = mask_len(mask) if mask is not None else _classful(m.yiaddr)
        except FormatError:                   # a non-contiguous mask
            plen = _classful(m.yiaddr)
        mtu = m.option(dhcp.OPT_MTU)
        mtu_v = int.from_bytes(mtu, "big") if mtu is not None and len(mtu) == 2 else 0
        return Lease(m.yiaddr, plen, m.addrs(dhcp.OPT_ROUTER), m.addrs(dhcp.OPT_DNS),
                     (m.option(dhcp.OPT_DOMAIN) or b"").rstrip(b"\0")[:253], server, lease_ns,
                     t1 * SEC, t2 * SEC, self.sent_at, mtu_v if mtu_v >= 68 else 0,
                     m.addr(dhcp.OPT_BROADCAST))

    def _nak(self, now: int, rand: Rand) -> bool:
        if self.lease is not None:
            self.output.append(Deconfigure(self.lease))
            self.lease = None
        self._discover(now, rand)
        return True

    def decline(self, now: int, rand: Rand) -> None:
        if self.lease is None:
            return
        lease = self.lease
        self._send(dhcp.DECLINE, now, ((dhcp.OPT_REQUESTED_IP, lease.address),
                                       (dhcp.OPT_SERVER_ID, lease.server)))
        self.output.append(Deconfigure(lease))
        self.lease, self.state, self.tries = None, INIT, 0
        self.next = now + 10 * SEC                               # RFC 2131 3.1.5

    # ---- time --------------------------------------------------------------------------------
    def timeout(self, now: int, rand: Rand) -> None:
        if self.next is None or now < self.next:
            return
        st = self.state
        if st == INIT:
            self._discover(now, rand)
        elif st == SELECTING:
            self._send_discover(now, rand)
        elif st == REQUESTING:
            if self.tries >= self.max_request_tries:
                self._discover(now, rand)
            else:
                self._send_request(now, rand)
        elif st in (BOUND, RENEWING, REBINDING):
            self._lease_timer(now)

    def _lease_timer(self, now: int) -> None:
        lease = self.lease
        assert lease is not None
        t2, end = lease.start + lease.t2_ns, lease.expires
        if now >= end:
            self.output.append(Deconfigure(lease))
            self.lease = None
            self.state, self.next = INIT, now
            return
        if now >= t2:
            self.state = REBINDING
            self._extend(now, BROADCAST, end)
        else:
            self.state = RENEWING
            self._extend(now, lease.server, t2)

    def _extend(self, now: int, dst: bytes, until: int) -> None:
        """A REQUEST with ciaddr (no server id or requested address: 4.3.2), retried at half
        the time left to ``until``, at least 60 s apart."""
        assert self.lease is not None
        if self.tries == 0:
            self.began = now
        self.sent_at = now
        self._send(dhcp.REQUEST, now, self._common(), ciaddr=self.lease.address,
                   src=self.lease.address, dst=dst)
        self.tries += 1
        self.next = min(until, now + max((until - now) // 2, 60 * SEC))

    def renew(self, now: int) -> bool:
        if self.state not in (BOUND, RENEWING) or self.lease is None:
            return False
        lease = self.lease
        self.state, self.tries = RENEWING, 0
        self._extend(now, lease.server, lease.start + lease.t2_ns)
        return True

    def release(self, now: int) -> None:
        if self.lease is not None:
            lease = self.lease
            self._send(dhcp.RELEASE, now, ((dhcp.OPT_SERVER_ID, lease.server),),
                       ciaddr=lease.address, src=lease.address, dst=lease.server)
            self.output.append(Deconfigure(lease))
        self.stop()

    def stop(self) -> None:
        self.lease, self.state, self.next, self.offer = None, STOPPED, None, None


def _classful(a: bytes) -> int:
    return 8 if a[0] < 128 else 16 if a[0] < 192 else 24
