"""A test driver that runs the sans-IO cores against a live Linux peer: a minimal IPv6/DHCP
host loop around Addrconf, NeighborCache, Reassembler6/fragment, DhcpClient and the resolver's
Lookup, on an AF_PACKET socket bound to one interface (run inside a network namespace the test
created: ``ip netns exec NS python -m tests.net6.live_driver IFNAME``).

It prints one JSON object per line on stdout ("ready", "dhcp", "dns", "ping", "bye") and reads
commands on stdin ("ping6 ADDR", "resolve NAME", "quit").  This is test scaffolding, not kernel
code: the kernel's interface layer does this wiring in Phase 2 of issue #13.
"""

from __future__ import annotations

import json
import os
import random
import select
import socket
import sys
import time

from rumpkernel.net.inet import dhcp_client as dc
from rumpkernel.net.inet import resolv
from rumpkernel.net.inet.resolv_conf import AF_INET, AF_INET6, ResolvConf
from rumpkernel.net.inet6 import addrconf as ac
from rumpkernel.net.inet6.frag6 import Reassembled, Reassembler6, fragment
from rumpkernel.net.inet6.nd import NeighborCache
from rumpkernel.net.wire import dhcp, ethernet, icmp6, ipv4, ipv6, udp, udp6
from rumpkernel.net.wire.base import FormatError, ip4str
from rumpkernel.net.wire.ipv6 import Ipv6Packet, ip6, ip6str

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOL_PACKET, PACKET_AUXDATA, TP_STATUS_CSUMNOTREADY = 263, 8, 0x8
MAC = bytes.fromhex("02000000 0c01".replace(" ", ""))
DNS_PORT = 40053


def say(**kw) -> None:
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


class Host:
    def __init__(self, ifname: str) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.bind((ifname, 0))
        self.sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        self.csum_ready = True
        self.rng = random.Random(int.from_bytes(os.urandom(8), "big"))
        self.rand = self.rng.randrange
        self.ac = ac.Addrconf(MAC, os.urandom(16), ifname.encode())
        self.nc = NeighborCache()
        self.reass = Reassembler6()
        self.dhcp = dc.DhcpClient(MAC, hostname=b"rumpv6")
        self.dhcp_server_mac = ethernet.BROADCAST
        self.groups: set[bytes] = set()
        self.lookup: resolv.Lookup | None = None
        self.pings: dict[int, int] = {}
        self.ident = 1
        self.announced = False

    def now(self) -> int:
        return time.monotonic_ns()

    # ---- output ------------------------------------------------------------------------------
    def send_frame(self, dst_mac: bytes, ethertype: int, payload: bytes) -> None:
        self.sock.send(ethernet.pad(ethernet.emit(dst_mac, MAC, ethertype, payload)))

    def src_for(self, dst: bytes) -> bytes:
        glob = [a.addr for a in self.ac.addresses()
                if a.state == ac.PREFERRED and not ipv6.is_linklocal(a.addr)]
        if not ipv6.is_linklocal(dst) and glob:
            return glob[0]
        return self.ac.linklocal() or ipv6.UNSPECIFIED

    def send6(self, pkt: Ipv6Packet) -> None:
        self.ident += 1
        for p in fragment(pkt, 1500, self.ident):
            raw = p.emit()
            if ipv6.is_multicast(p.dst):
                self.send_frame(ipv6.multicast_mac(p.dst), ethernet.ETHERTYPE_IPV6, raw)
                continue
            hop = p.dst
            if not (ipv6.is_linklocal(hop) or self.ac.onlink(hop)):
                hop = self.ac.select_router(self.nc.probably_reachable) or hop
            lladdr = self.nc.resolve(hop, raw, self.now())
            if lladdr is not None:
                self.send_frame(lladdr, ethernet.ETHERTYPE_IPV6, raw)
        self.solicit()

    def icmp(self, src: bytes, dst: bytes, msg, hop_limit: int = 64) -> None:
        self.send6(Ipv6Packet(src, dst, ipv6.NH_ICMPV6, msg.emit(src, dst), hop_limit))

    def solicit(self) -> None:
        for target, lladdr in self.nc.take_solicitations():
            src = self.src_for(target)
            dst = ipv6.solicited_node(target) if lladdr is None else target
            ns = icmp6.NeighborSolicitation(target, (icmp6.LinkAddr(1, MAC),))
            raw = Ipv6Packet(src, dst, ipv6.NH_ICMPV6, ns.emit(src, dst), 255).emit()
            self.send_frame(lladdr or ipv6.multicast_mac(dst), ethernet.ETHERTYPE_IPV6, raw)

    def run_actions(self) -> None:
        for a in self.ac.take_actions():
            if isinstance(a, ac.JoinGroup):
                self.groups.add(a.group)
            elif isinstance(a, ac.LeaveGroup):
                self.groups.discard(a.group)
            elif isinstance(a, ac.SendNS):
                opts = (icmp6.Nonce(a.nonce),) if a.nonce else ()
                self.icmp(a.src, a.dst, icmp6.NeighborSolicitation(a.target, opts), 255)
            elif isinstance(a, ac.SendRS):
                opts = (icmp6.LinkAddr(1, MAC),) if a.slla else ()
                self.icmp(a.src, ipv6.ALL_ROUTERS, icmp6.RouterSolicitation(opts), 255)
            elif isinstance(a, ac.SendNA):
                self.send_na(a)
            elif isinstance(a, ac.AddressReady | ac.AddressDuplicate | ac.DnsServers):
                say(event=type(a).__name__, **{k: _text(getattr(a, k))
                                               for k in a.__slots__})
        for o in self.dhcp.take_output():
            if isinstance(o, dc.Transmit):
                self.send_dhcp(o)
            else:
                say(event="dhcp", action=type(o).__name__, address=ip4str(o.lease.address),
                    prefix=o.lease.prefix_len, routers=[ip4str(r) for r in o.lease.routers],
                    dns=[ip4str(r) for r in o.lease.dns], domain=o.lease.domain.decode(),
                    lease_s=o.lease.lease_ns // dc.SEC)
        if self.lookup is not None:
            for s in self.lookup.take_output():
                self.send6(Ipv6Packet(self.src_for(s.server), s.server, ipv6.NH_UDP,
                                      udp6.emit(DNS_PORT, s.port, s.payload,
                                                self.src_for(s.server), s.server)))
            if self.lookup.done:
                r = self.lookup.result
                say(event="dns", error=r.error, canonical=r.canonical,
                    addresses=[ip6str(a) if f == AF_INET6 else ip4str(a)
                               for f, a in r.addresses])
                self.lookup = None
        self.announce()

    def send_na(self, a: ac.SendNA) -> None:
        na = icmp6.NeighborAdvertisement(a.target, a.flags, (icmp6.LinkAddr(2, MAC),))
        self.icmp(a.src, a.dst, na, 255)

    def send_dhcp(self, t: dc.Transmit) -> None:
        body = udp.emit_raw(dhcp.CLIENT_PORT, dhcp.SERVER_PORT, t.message.emit(), t.src, t.dst)
        pkt = ipv4.header(t.src, t.dst, 17, len(body), ttl=64) + body
        mac = ethernet.BROADCAST if t.dst == dc.BROADCAST else self.dhcp_server_mac
        self.send_frame(mac, ethernet.ETHERTYPE_IP, pkt)

    def announce(self) -> None:
        if self.announced:
            return
        glob = [a for a in self.ac.addresses() if a.origin == "slaac" and a.state == ac.PREFERRED]
        if glob and self.ac.dns_servers():
            self.announced = True
            say(event="ready", linklocal=ip6str(self.ac.linklocal()),
                address=ip6str(glob[0].addr), dns=[ip6str(s) for s in self.ac.dns_servers()],
                routers=[ip6str(r) for r, _ in self.ac.routers()])

    # ---- input -------------------------------------------------------------------------------
    def frame(self, raw: bytes) -> None:
        try:
            f = ethernet.parse(raw)
            if f.dst != MAC and not ethernet.is_multicast(f.dst):
                return
            if f.ethertype == ethernet.ETHERTYPE_IPV6:
                self.ipv6_in(ipv6.parse(f.payload))
            elif f.ethertype == ethernet.ETHERTYPE_IP:
                self.ipv4_in(f)
        except FormatError:
            return

    def ipv6_in(self, p: Ipv6Packet) -> None:
        if not (p.dst in self.groups or p.dst in {a.addr for a in self.ac.addresses()}):
            return
        chain = ipv6.parse_chain(p.payload, p.next_header)
        if any(isinstance(h, ipv6.FragmentHeader) for h in chain.headers):
            r = self.reass.add(p, chain, self.now())
            if isinstance(r, Reassembled):
                self.ipv6_in(r.packet)
            return
        data = p.payload[chain.offset:]
        if chain.upper == ipv6.NH_ICMPV6:
            self.icmp_in(p, icmp6.decode(icmp6.parse(data, p.src, p.dst)))
        elif chain.upper == ipv6.NH_UDP and self.lookup is not None:
            # veth hands local traffic over with CHECKSUM_PARTIAL (auxdata says so): the
            # checksum field holds only the pseudo-header sum then
            d = udp6.parse(data, p.src, p.dst) if self.csum_ready else udp.parse(data)
            if d.dport == DNS_PORT:
                self.lookup.input(p.src, d.sport, d.payload, self.now(), self.rand)

    def icmp_in(self, p: Ipv6Packet, m) -> None:
        now = self.now()
        if isinstance(m, icmp6.NeighborSolicitation):
            slla = icmp6.find(m.options, icmp6.LinkAddr, 1)
            if slla is not None and p.src != ipv6.UNSPECIFIED:
                self.flush(p.src, self.nc.learn(p.src, slla.addr, now))
            na = self.ac.input_ns(p.src, p.dst, p.hop_limit, m, now, self.rand)
            if na is not None:
                self.send_na(na)
        elif isinstance(m, icmp6.NeighborAdvertisement) and p.hop_limit == 255:
            self.ac.input_na(m, p.hop_limit, now, self.rand)
            tlla = icmp6.find(m.options, icmp6.LinkAddr, 2)
            held = self.nc.advertised(m.target, tlla.addr if tlla else None, m.router,
                                      m.solicited, m.override, now)
            self.flush(m.target, held)
        elif isinstance(m, icmp6.RouterAdvertisement):
            slla = icmp6.find(m.options, icmp6.LinkAddr, 1)
            if slla is not None:
                self.flush(p.src, self.nc.learn(p.src, slla.addr, now, router=True))
            self.ac.input_ra(p.src, p.hop_limit, m, now, self.rand)
        elif isinstance(m, icmp6.Echo) and m.request and not ipv6.is_multicast(p.dst):
            self.icmp(p.dst, p.src, icmp6.Echo(False, m.ident, m.seq, m.data))
        elif isinstance(m, icmp6.Echo) and not m.request and m.seq in self.pings:
            say(event="ping", src=ip6str(p.src), seq=m.seq, bytes=len(m.data),
                rtt_us=(now - self.pings.pop(m.seq)) // 1000)

    def flush(self, neighbour: bytes, held: list[bytes]) -> None:
        lladdr = next((e.lladdr for e in self.nc.entries() if e.ip == neighbour), None)
        for raw in held:
            if lladdr is not None:
                self.send_frame(lladdr, ethernet.ETHERTYPE_IPV6, raw)

    def ipv4_in(self, f: ethernet.EthernetFrame) -> None:
        p = ipv4.parse(f.payload)
        if p.proto != 17:
            return
        d = udp.parse(p.payload)
        if d.dport == dhcp.CLIENT_PORT and d.sport == dhcp.SERVER_PORT:
            m = dhcp.parse(d.payload)
            if self.dhcp.input(m, self.now(), self.rand):
                self.dhcp_server_mac = f.src

    # ---- commands and the loop ---------------------------------------------------------------
    def command(self, line: str) -> bool:
        words = line.split()
        if not words or words[0] == "quit":
            return False
        if words[0] == "ping6":
            seq = len(self.pings) + 1
            self.pings[seq] = self.now()
            dst = ip6(words[1])
            size = int(words[2]) if len(words) > 2 else 56
            self.icmp(self.src_for(dst), dst, icmp6.Echo(True, 0x7777, seq, bytes(size)))
        elif words[0] == "resolve":
            conf = ResolvConf(tuple(self.ac.dns_servers()), (), timeout_s=2)
            self.lookup = resolv.Lookup(words[1], conf, (AF_INET, AF_INET6))
            self.lookup.start(self.now(), self.rand)
        return True

    def timers(self) -> None:
        now = self.now()
        self.ac.timeout(now, self.rand)
        for r in self.nc.take_lost_routers():
            self.ac.router_unreachable(r)
        self.nc.timeout(now)
        self.solicit()
        self.reass.timeout(now)
        self.dhcp.timeout(now, self.rand)
        if self.lookup is not None:
            self.lookup.timeout(now, self.rand)

    def deadline(self) -> int:
        ds = [d for d in (self.ac.deadline, self.nc.deadline, self.reass.deadline,
                          self.dhcp.deadline, self.lookup.deadline if self.lookup else None)
              if d is not None]
        return min(ds, default=self.now() + 10**9)

    def run(self, limit_s: float) -> None:
        end = self.now() + int(limit_s * 1e9)
        self.ac.start(self.now(), self.rand)
        self.dhcp.start(self.now(), self.rand)
        self.run_actions()
        stdin = sys.stdin.fileno()
        pending = ""
        while self.now() < end:
            wait = max(0, min(self.deadline(), end) - self.now()) / 1e9
            ready, _, _ = select.select([self.sock, stdin], [], [], wait)
            if self.sock in ready:
                data, anc, _flags, addr = self.sock.recvmsg(65536, 64)
                status = next((int.from_bytes(d[:4], "little") for lvl, typ, d in anc
                               if (lvl, typ) == (SOL_PACKET, PACKET_AUXDATA)), 0)
                self.csum_ready = not status & TP_STATUS_CSUMNOTREADY
                if addr[2] != PACKET_OUTGOING:
                    self.frame(data)
            if stdin in ready:
                chunk = os.read(stdin, 4096)
                pending += chunk.decode()
                lines = pending.split("\n")
                pending = lines.pop()
                if not chunk or not all(self.command(x) for x in lines):
                    break
            self.timers()
            self.run_actions()
        self.dhcp.release(self.now())
        self.run_actions()
        say(event="bye", reassembled=self.reass.reassembled, nd_failed=self.nc.failed,
            dhcp_state=self.dhcp.state)


def _text(v) -> object:
    if isinstance(v, bytes) and len(v) == 16:
        return ip6str(v)
    if isinstance(v, tuple):
        return [_text(x) for x in v]
    return v if isinstance(v, int | str) else repr(v)


if __name__ == "__main__":
    Host(sys.argv[1]).run(float(sys.argv[2]) if len(sys.argv) > 2 else 60.0)
