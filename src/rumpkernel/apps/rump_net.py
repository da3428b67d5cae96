"""Network tools in NetBSD's syntax, as remote clients of a rump_server (``-u URL`` or
$RUMP_SERVER): rump.ifconfig, rump.route, rump.ping (and rump.ping6), rump.netstat, rump.arp,
rump.ndp.

    rump.ifconfig [-a]                               every interface, with counters
    rump.ifconfig IF                                 one interface
    rump.ifconfig IF create | destroy
    rump.ifconfig IF linkstr TEXT                    the host side: bus file, TAP, wire hub
    rump.ifconfig IF [inet] ADDR[/LEN] [netmask M] [broadcast B] [alias] [up] [mtu N]
    rump.ifconfig IF -alias ADDR | delete ADDR
    rump.ifconfig IF inet6 ADDR[/LEN] [prefixlen N] [alias]     an IPv6 address (LEN: 64)
    rump.ifconfig IF inet6 ADDR -alias | delete
    rump.ifconfig IF up | down | mtu N | pcap FILE | -pcap
    rump.route add [-net|-host] DEST [GATEWAY] [-netmask M] [-iface IF] [-reject] [-blackhole]
    rump.route delete DEST [GATEWAY] | get DEST | show
    rump.route add -inet6 DEST[/LEN] GATEWAY[%IF] [-iface IF]    (also delete, get; an IPv6
                                                     DEST or GATEWAY implies -inet6)
    rump.ping [-6] [-c COUNT] [-i WAIT] [-s SIZE] [-W TIMEOUT] [-w DEADLINE] [-t TTL] [-q] HOST
    rump.ping6 ...                                   rump.ping -6 (HOST may be ADDR%IF)
    rump.netstat [-i | -r | -s | -a] [-n]
    rump.arp -a | -d HOST | -s HOST MAC [temp]
    rump.ndp -a | -r | -p                            IPv6 neighbours, routers, prefixes

Each tool is also a function ``ifconfig(api, argv, out)`` etc. taking anything with ``.socket``
and ``.sys`` -- a remote connection or a local kernel.  Exit status 0; 1 after printing
``rump.TOOL: why``; rump.ping exits 2 when no reply came back.
"""

from __future__ import annotations

import argparse
import math
import struct
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from rumpkernel.apps.cli import restore_sigpipe
from rumpkernel.apps.rumptools import _describe
from rumpkernel.client.remote import connect
from rumpkernel.kern import abi as K

IFF_NAMES = [(K.IFF_UP, "UP"), (K.IFF_BROADCAST, "BROADCAST"), (K.IFF_DEBUG, "DEBUG"),
             (K.IFF_LOOPBACK, "LOOPBACK"), (K.IFF_POINTOPOINT, "POINTOPOINT"),
             (K.IFF_RUNNING, "RUNNING"), (K.IFF_NOARP, "NOARP"), (K.IFF_PROMISC, "PROMISC"),
             (K.IFF_ALLMULTI, "ALLMULTI"), (K.IFF_SIMPLEX, "SIMPLEX"),
             (K.IFF_MULTICAST, "MULTICAST")]
RTF_LETTERS = [(K.RTF_UP, "U"), (K.RTF_GATEWAY, "G"), (K.RTF_HOST, "H"), (K.RTF_REJECT, "R"),
               (K.RTF_DYNAMIC, "D"), (K.RTF_MODIFIED, "M"), (K.RTF_STATIC, "S"),
               (K.RTF_BLACKHOLE, "B"), (K.RTF_CONNECTED, "C"), (K.RTF_LOCAL, "l")]


class Usage(Exception):
    pass


def flag_names(flags: int) -> str:
    return ",".join(n for bit, n in IFF_NAMES if flags & bit)


def route_flags(flags: int) -> str:
    return "".join(c for bit, c in RTF_LETTERS if flags & bit)


# ---- ifconfig ------------------------------------------------------------------------------------
def _show_if(i: dict[str, Any], out: TextIO) -> None:
    out.write(f"{i['name']}: flags=0x{i['flags']:x}<{flag_names(i['flags'])}> mtu {i['mtu']}\n")
    if i.get("linkstr"):
        out.write(f"\tlinkstr: {i['linkstr']}\n")
    if i.get("lladdr"):
        out.write(f"\taddress: {i['lladdr']}\n")
    for a in i["addrs"]:
        bc = f" broadcast {a['broadcast']}" if a["broadcast"] else ""
        out.write(f"\tinet {a['addr']}/{a['plen']}{bc} flags 0x0\n")
    for a in i.get("addrs6", ()):
        zone = f"%{a['scope']}" if a["scope"] else ""
        state = "" if a["state"] == "preferred" else f" {a['state']}"
        life = ""
        if a["valid_s"] is not None:
            life = f" pltime {a['preferred_s']} vltime {a['valid_s']}"
        out.write(f"\tinet6 {a['addr']}{zone}/{a['plen']}{state} ({a['origin']}){life}\n")
    if i.get("pcap"):
        out.write(f"\tpcap: {i['pcap']}\n")
    out.write(f"\tinput: {i['ipackets']} packets, {i['ibytes']} bytes, {i['ierrors']} errors,"
              f" {i['iqdrops']} drops\n")
    out.write(f"\toutput: {i['opackets']} packets, {i['obytes']} bytes, {i['oerrors']} errors,"
              f" {i['oqdrops']} drops\n")


def ifconfig(api: Any, argv: list[str], out: TextIO = sys.stdout) -> int:
    cfg = api.socket.config
    args = [a for a in argv if a != "-a"]
    if not args:
        for i in cfg.interfaces():
            _show_if(i, out)
        return 0
    name, words = args[0], args[1:]
    if not words:
        for i in cfg.interfaces():
            if i["name"] == name:
                _show_if(i, out)
                return 0
        raise Usage(f"{name}: no such interface")
    _ifconfig_words(cfg, name, words)
    return 0


def _ifconfig_words(cfg: Any, name: str, words: list[str]) -> None:
    if "inet6" in words:
        _ifconfig6(cfg, name, [w for w in words if w != "inet6"])
        return
    it = iter(words)
    addr = netmask = broadcast = None
    up = None
    for w in it:
        if w == "create":
            cfg.create(name)
        elif w == "destroy":
            cfg.destroy(name)
        elif w == "linkstr":
            cfg.linkstr(name, _next(it, w))
        elif w == "inet":
            continue
        elif w == "netmask":
            netmask = _next(it, w)
        elif w == "broadcast":
            broadcast = _next(it, w)
        elif w == "alias":
            continue
        elif w in ("-alias", "delete"):
            cfg.delete_address(name, _next(it, w).split("/")[0])
        elif w == "up":
            up = True
        elif w == "down":
            up = False
        elif w == "mtu":
            cfg.set_mtu(name, int(_next(it, w)))
        elif w == "pcap":
            cfg.pcap(name, _next(it, w))
        elif w == "-pcap":
            cfg.pcap(name, None)
        elif w[:1].isdigit():
            addr = w
        else:
            raise Usage(f"{name}: unknown word {w!r}")
    if addr is not None:
        cfg.address(name, addr, broadcast=broadcast, netmask=netmask)
    if up is True:
        cfg.up(name)
    elif up is False:
        cfg.down(name)


def _ifconfig6(cfg: Any, name: str, words: list[str]) -> None:
    it = iter(words)
    addr = None
    plen = None
    delete = False
    up = None
    for w in it:
        if w == "prefixlen":
            plen = int(_next(it, w))
        elif w in ("-alias", "delete"):
            delete = True
        elif w == "alias":
            continue
        elif w == "up":
            up = True
        elif w == "down":
            up = False
        elif ":" in w:
            addr = w
        else:
            raise Usage(f"{name}: unknown word {w!r}")
    if addr is None:
        raise Usage(f"{name}: inet6 needs an address")
    if delete:
        cfg.delete_address6(name, addr.split("/")[0])
    else:
        if plen is not None and "/" not in addr:
            addr = f"{addr}/{plen}"
        cfg.address6(name, addr)
    if up is True:
        cfg.up(name)
    elif up is False:
        cfg.down(name)


def _next(it: Any, word: str) -> str:
    try:
        return next(it)
    except StopIteration:
        raise Usage(f"{word} needs an argument") from None


# ---- route ---------------------------------------------------------------------------------------
def _mask_len(mask: str) -> int:
    v = int.from_bytes(bytes(int(p) for p in mask.split(".")), "big")
    n = bin(v).count("1")
    if v != (0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF:
        raise Usage(f"netmask {mask} is not contiguous")
    return n


def route(api: Any, argv: list[str], out: TextIO = sys.stdout) -> int:
    cfg = api.socket.config
    if not argv or argv[0] in ("show", "-n"):
        _show_routes(cfg.routes(), out)
        _show_routes6(cfg, out)
        return 0
    cmd, rest = argv[0], argv[1:]
    if "-inet6" in rest or any(":" in w for w in rest if not w.startswith("-")):
        return _route6(cfg, cmd, [w for w in rest if w != "-inet6"], out)
    opts = {"-reject": False, "-blackhole": False}
    plain: list[str] = []
    host = False
    netmask = iface = None
    it = iter(rest)
    for w in it:
        if w in opts:
            opts[w] = True
        elif w == "-host":
            host = True
        elif w == "-net":
            host = False
        elif w == "-netmask":
            netmask = _next(it, w)
        elif w in ("-iface", "-interface", "-ifp"):
            iface = _next(it, w)
        else:
            plain.append(w)
    if not plain:
        raise Usage(f"route {cmd}: destination missing")
    dst = plain[0]
    if netmask is not None and "/" not in dst and dst != "default":
        dst = f"{dst}/{_mask_len(netmask)}"
    elif host and "/" not in dst:
        dst = f"{dst}/32"
    elif "/" not in dst and dst != "default" and not host and cmd == "add" and \
            netmask is None and dst.count(".") == 3 and dst.endswith(".0"):
        dst = f"{dst}/24"
    gw = plain[1] if len(plain) > 1 else None
    if cmd == "add":
        cfg.route_add(dst, gateway=gw, interface=iface, reject=opts["-reject"],
                      blackhole=opts["-blackhole"])
        out.write(f"add {'host' if dst.endswith('/32') else 'net'} {plain[0]}"
                  f"{': gateway ' + gw if gw else ''}\n")
    elif cmd in ("delete", "del"):
        cfg.route_delete(dst, gateway=gw)
        out.write(f"delete {'host' if dst.endswith('/32') else 'net'} {plain[0]}\n")
    elif cmd == "get":
        r = cfg.route_get(plain[0].split("/")[0])
        plen = r["plen"]
        mask = ".".join(str((((0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF) >> s) & 255)
                        for s in (24, 16, 8, 0))
        out.write(f"   route to: {plain[0]}\ndestination: {r['dst']}\n       mask: {mask}\n")
        if r["gateway"]:
            out.write(f"    gateway: {r['gateway']}\n")
        out.write(f"  interface: {r['interface']}\n      flags: <{route_flags(r['flags'])}>\n")
    else:
        raise Usage(f"unknown route command {cmd!r} (add, delete, get, show)")
    return 0


def _route6(cfg: Any, cmd: str, rest: list[str], out: TextIO) -> int:
    opts = {"-reject": False, "-blackhole": False}
    plain: list[str] = []
    iface = None
    prefixlen = None
    it = iter(rest)
    for w in it:
        if w in opts:
            opts[w] = True
        elif w in ("-host", "-net"):
            continue
        elif w == "-prefixlen":
            prefixlen = int(_next(it, w))
        elif w in ("-iface", "-interface", "-ifp"):
            iface = _next(it, w)
        else:
            plain.append(w)
    if not plain:
        raise Usage(f"route {cmd}: destination missing")
    dst = plain[0]
    if prefixlen is not None and "/" not in dst:
        dst = f"{dst}/{prefixlen}"
    gw = plain[1] if len(plain) > 1 else None
    if cmd == "add":
        cfg.route6_add(dst, gateway=gw, interface=iface, reject=opts["-reject"],
                       blackhole=opts["-blackhole"])
        out.write(f"add net {plain[0]}{': gateway ' + gw if gw else ''}\n")
    elif cmd in ("delete", "del"):
        cfg.route6_delete(dst, gateway=gw)
        out.write(f"delete net {plain[0]}\n")
    elif cmd == "get":
        r = cfg.route6_get(plain[0].split("/")[0])
        out.write(f"   route to: {plain[0]}\ndestination: {r['dst']}\n     prefix: "
                  f"{r['plen']}\n")
        if r["gateway"]:
            out.write(f"    gateway: {r['gateway']}\n")
        out.write(f"  interface: {r['interface']}\n      flags: <{route_flags(r['flags'])}>\n")
    else:
        raise Usage(f"unknown route command {cmd!r} (add, delete, get, show)")
    return 0


def _show_routes6(cfg: Any, out: TextIO) -> None:
    try:
        routes = cfg.routes6()
    except OSError:
        return
    if not routes:
        return
    out.write("\nInternet6:\n")
    out.write(f"{'Destination':<32}{'Gateway':<28}{'Flags':<8}{'Use':>8}  Interface\n")
    for r in routes:
        if r["plen"] == 0:
            dst = "default"
        elif r.get("scope"):
            dst = f"{r['dst']}%{r['scope']}/{r['plen']}"
        else:
            dst = r["dst"] if r["plen"] == 128 else f"{r['dst']}/{r['plen']}"
        if r["gateway"]:
            gw = r["gateway"] + (f"%{r['gateway_scope']}" if r.get("gateway_scope") else "")
        else:
            gw = r["src"] if r["flags"] & K.RTF_LOCAL and r["src"] else \
                f"link#{r.get('ifindex', '')}"
        out.write(f"{dst:<32}{gw:<28}{route_flags(r['flags']):<8}{r['use']:>8}  "
                  f"{r['interface']}\n")


def _show_routes(routes: list[dict[str, Any]], out: TextIO) -> None:
    out.write("Routing tables\n\nInternet:\n")
    out.write(f"{'Destination':<20}{'Gateway':<18}{'Flags':<8}{'Use':>8}  Interface\n")
    for r in routes:
        dst = "default" if r["plen"] == 0 else (r["dst"] if r["plen"] == 32
                                                 else f"{r['dst']}/{r['plen']}")
        gw = r["gateway"] or (r["src"] if r["flags"] & K.RTF_LOCAL
                              else f"link#{r.get('ifindex', '')}")
        out.write(f"{dst:<20}{gw:<18}{route_flags(r['flags']):<8}{r['use']:>8}  "
                  f"{r['interface']}\n")


# ---- ping ----------------------------------------------------------------------------------------
def ping(api: Any, argv: list[str], out: TextIO = sys.stdout) -> int:
    p = argparse.ArgumentParser(prog="rump.ping", add_help=False)
    p.add_argument("-c", type=int, default=None)
    p.add_argument("-i", type=float, default=1.0)
    p.add_argument("-s", type=int, default=56)
    p.add_argument("-W", type=float, default=1.0)
    p.add_argument("-w", type=float, default=None)
    p.add_argument("-t", type=int, default=None)
    p.add_argument("-q", action="store_true")
    p.add_argument("-6", dest="v6", action="store_true")
    p.add_argument("-4", dest="v4", action="store_true")
    p.add_argument("host")
    a = p.parse_args(argv)
    if not 0 <= a.s <= 65507 or (a.c is not None and a.c < 1) or a.i < 0:
        raise Usage("bad -c, -i or -s value")
    if a.v6 or (":" in a.host and not a.v4):
        return _ping6(api, a, out)
    S = api.socket
    dst = S.gethostbyname(a.host)
    out.write(f"PING {a.host} ({dst}): {a.s} data bytes\n")
    out.flush()
    rtts: list[float] = []
    sent = 0
    start = time.monotonic()
    # an ICMP echo socket: the kernel fills in the identifier and the checksum
    with S.socket(S.AF_INET, S.SOCK_DGRAM, S.IPPROTO_ICMP) as s:
        if a.t is not None:
            s.setsockopt(S.IPPROTO_IP, S.IP_TTL, a.t)
        try:
            while a.c is None or sent < a.c:
                if a.w is not None and time.monotonic() - start >= a.w:
                    break
                t0 = time.monotonic()
                data = (time.time_ns().to_bytes(8, "big") + bytes(max(0, a.s - 8)))[: a.s]
                s.sendto(ECHO_HEADER.pack(ICMP_ECHO, 0, 0, 0, sent & 0xFFFF) + data, (dst, 0))
                rtt = _await_reply(s, sent & 0xFFFF, t0, a.W, out, a.q)
                sent += 1
                if rtt is not None:
                    rtts.append(rtt)
                if a.c is None or sent < a.c:
                    time.sleep(max(0.0, a.i - (time.monotonic() - t0)))
        except KeyboardInterrupt:
            pass
    return _ping_summary(a.host, sent, rtts, out)


ICMP_ECHO, ICMP_ECHOREPLY = 8, 0
ICMP6_ECHO, ICMP6_ECHOREPLY = 128, 129
ECHO_HEADER = struct.Struct("!BBHHH")     # type, code, checksum, identifier, sequence


def _ping6(api: Any, a: Any, out: TextIO) -> int:
    """ICMPv6 echo through an ICMPv6 echo socket (identifier and checksum by the kernel)."""
    S = api.socket
    info = S.getaddrinfo(a.host, None, S.AF_INET6, S.SOCK_DGRAM)
    sa = info[0][4]
    out.write(f"PING6 {a.host} ({sa[0]}): {a.s} data bytes\n")
    out.flush()
    rtts: list[float] = []
    sent = 0
    start = time.monotonic()
    with S.socket(S.AF_INET6, S.SOCK_DGRAM, S.IPPROTO_ICMPV6) as s:
        if a.t is not None:
            s.setsockopt(S.IPPROTO_IPV6, S.IPV6_UNICAST_HOPS, a.t)
            s.setsockopt(S.IPPROTO_IPV6, S.IPV6_MULTICAST_HOPS, a.t)
        try:
            while a.c is None or sent < a.c:
                if a.w is not None and time.monotonic() - start >= a.w:
                    break
                t0 = time.monotonic()
                data = (time.time_ns().to_bytes(8, "big") + bytes(max(0, a.s - 8)))[: a.s]
                s.sendto(ECHO_HEADER.pack(ICMP6_ECHO, 0, 0, 0, sent & 0xFFFF) + data, sa)
                rtt = _await_reply(s, sent & 0xFFFF, t0, a.W, out, a.q, ICMP6_ECHOREPLY)
                sent += 1
                if rtt is not None:
                    rtts.append(rtt)
                if a.c is None or sent < a.c:
                    time.sleep(max(0.0, a.i - (time.monotonic() - t0)))
        except KeyboardInterrupt:
            pass
    return _ping_summary(a.host, sent, rtts, out)


def _ping_summary(host: str, sent: int, rtts: list[float], out: TextIO) -> int:
    loss = 100.0 * (sent - len(rtts)) / sent if sent else 0.0
    out.write(f"\n----{host} PING Statistics----\n{sent} packets transmitted, {len(rtts)} "
              f"packets received, {loss:.1f}% packet loss\n")
    if rtts:
        ms = [r * 1000 for r in rtts]
        avg = sum(ms) / len(ms)
        sd = math.sqrt(sum((x - avg) ** 2 for x in ms) / len(ms))
        out.write(f"round-trip min/avg/max/stddev = {min(ms):.3f}/{avg:.3f}/{max(ms):.3f}/"
                  f"{sd:.3f} ms\n")
    return 0 if rtts else 2


def _await_reply(s: Any, seq: int, t0: float, timeout: float, out: TextIO,
                 quiet: bool, reply_type: int = ICMP_ECHOREPLY) -> float | None:
    deadline = t0 + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        s.settimeout(left)
        try:
            data, addr = s.recvfrom(65535)
        except TimeoutError:
            return None
        if len(data) < ECHO_HEADER.size:
            continue
        kind, _code, _sum, _ident, rseq = ECHO_HEADER.unpack_from(data)
        if kind == reply_type and rseq == seq:
            rtt = time.monotonic() - t0
            if not quiet:
                out.write(f"{len(data)} bytes from {addr[0]}: icmp_seq={seq} "
                          f"time={rtt * 1000:.3f} ms\n")
                out.flush()
            return rtt


# ---- netstat -------------------------------------------------------------------------------------
SS_NAMES = [(0x2, "CONNECTED"), (0x4, "CONNECTING"), (0x10, "CANTSENDMORE"),
            (0x20, "CANTRCVMORE")]


def netstat(api: Any, argv: list[str], out: TextIO = sys.stdout) -> int:
    cfg = api.socket.config
    flags = set("".join(a.lstrip("-") for a in argv if a.startswith("-")))
    if flags - set("irsan"):
        raise Usage(f"unknown flags {''.join(sorted(flags - set('irsan')))} (-i -r -s -a -n)")
    if "i" in flags:
        out.write(f"{'Name':<8}{'Mtu':>6} {'Network':<18}{'Address':<18}{'Ipkts':>8}"
                  f"{'Ierrs':>6}{'Opkts':>8}{'Oerrs':>6}{'Drops':>6}\n")
        for i in cfg.interfaces():
            rows = [("<Link>", i["lladdr"] or "")] + [
                (f"{_net(a['addr'], a['plen'])}/{a['plen']}", a["addr"]) for a in i["addrs"]]
            rows += [(f"{_net6(a['addr'], a['plen'])}/{a['plen']}", a["addr"] + (
                f"%{a['scope']}" if a["scope"] else "")) for a in i.get("addrs6", ())]
            for net, addr in rows:
                out.write(f"{i['name']:<8}{i['mtu']:>6} {net:<18}{addr:<18}{i['ipackets']:>8}"
                          f"{i['ierrors']:>6}{i['opackets']:>8}{i['oerrors']:>6}"
                          f"{i['iqdrops'] + i['oqdrops']:>6}\n")
    elif "r" in flags:
        _show_routes(cfg.routes(), out)
        _show_routes6(cfg, out)
    elif "s" in flags:
        for proto, counters in cfg.stats().items():
            out.write(f"{proto}:\n")
            for name, v in counters.items():
                out.write(f"\t{v} {name}\n")
    else:
        _sockets(cfg.sockets(), out, listening="a" in flags)
    return 0


def _net(addr: str, plen: int) -> str:
    v = int.from_bytes(bytes(int(p) for p in addr.split(".")), "big")
    v &= (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
    return ".".join(str((v >> s) & 255) for s in (24, 16, 8, 0))


def _net6(addr: str, plen: int) -> str:
    import ipaddress

    return str(ipaddress.IPv6Network(f"{addr}/{plen}", strict=False).network_address)


def _sockets(socks: list[dict[str, Any]], out: TextIO, listening: bool) -> None:
    out.write("Active Internet and local sockets\n")
    out.write(f"{'Proto':<16}{'Recv-Q':>7}{'Send-Q':>7}  {'Local Address':<24}"
              f"{'Foreign Address':<24}State\n")
    for s in sorted(socks, key=lambda s: s["id"]):
        if s["listening"] and not listening:
            continue
        state = "LISTEN" if s["listening"] else ",".join(
            n for bit, n in SS_NAMES if s["state"] & bit)
        out.write(f"{s['proto']:<16}{s['rcv']:>7}{s['snd']:>7}  {s['local'] or '*':<24}"
                  f"{s['remote'] or '*':<24}{s.get('tcp_state', state)}\n")


# ---- arp -----------------------------------------------------------------------------------------
def arp(api: Any, argv: list[str], out: TextIO = sys.stdout) -> int:
    cfg = api.socket.config
    if not argv or argv[0] == "-a" or argv == ["-an"] or argv == ["-n", "-a"]:
        for e in cfg.arp():
            mac = e["mac"] or "(incomplete)"
            extra = " permanent" if e["state"] == "permanent" else (
                " [down]" if e["state"] == "down" else "")
            out.write(f"? ({e['ip']}) at {mac} on {e['interface']}{extra}\n")
        return 0
    if argv[0] == "-d" and len(argv) == 2:
        cfg.arp_delete(api.socket.gethostbyname(argv[1]))
        return 0
    if argv[0] == "-s" and len(argv) in (3, 4):
        cfg.arp_set(api.socket.gethostbyname(argv[1]), argv[2],
                    permanent=not (len(argv) == 4 and argv[3] == "temp"))
        return 0
    raise Usage("usage: rump.arp -a | -d HOST | -s HOST MAC [temp]")


# ---- ndp -----------------------------------------------------------------------------------------
def ndp(api: Any, argv: list[str], out: TextIO = sys.stdout) -> int:
    """IPv6 neighbour cache (-a), default routers (-r), prefixes (-p)."""
    cfg = api.socket.config
    t = cfg.nd6()
    if not argv or argv[0] in ("-a", "-an", "-na"):
        out.write(f"{'Neighbor':<40}{'Linklayer Address':<20}{'Netif':<8}{'Expire':<10}S Flags\n")
        for e in t["neighbors"]:
            exp = "permanent" if e["state"] == "permanent" else (
                f"{e['expires_in']}s" if e["expires_in"] is not None else "-")
            name = e["ip"] + ("%" + e["interface"] if e["ip"].startswith("fe80:") else "")
            out.write(f"{name:<40}{e['mac'] or '(incomplete)':<20}"
                      f"{e['interface']:<8}{exp:<10}{e['state'][0].upper()} "
                      f"{'R' if e['router'] else ''}\n")
        return 0
    if argv[0] == "-r":
        for i in t["interfaces"]:
            for r in i["routers"]:
                out.write(f"{r['addr']} if={i['interface']} expire={r['expires_in']}s\n")
        return 0
    if argv[0] == "-p":
        for i in t["interfaces"]:
            for p in i["prefixes"]:
                exp = "infinity" if p["expires_in"] is None else f"{p['expires_in']}s"
                out.write(f"{p['prefix']}/{p['plen']} if={i['interface']} expire={exp}\n")
        return 0
    raise Usage("usage: rump.ndp -a | -r | -p")


# ---- command-line wrappers -----------------------------------------------------------------------
def _main(tool: str, fn: Callable[[Any, list[str], TextIO], int],
          argv: list[str] | None) -> int:
    restore_sigpipe()
    args = list(sys.argv[1:] if argv is None else argv)
    url = None
    if len(args) >= 2 and args[0] == "-u":
        url, args = args[1], args[2:]
    if args[:1] in (["-h"], ["--help"]) and tool != "ping":
        print(__doc__)
        return 0
    try:
        conn = connect(url, progname=f"rump.{tool}", autofork=False)
    except (OSError, ValueError) as e:
        print(f"rump.{tool}: cannot reach the server {url or '$RUMP_SERVER'}: "
              f"{_describe(e)}", file=sys.stderr)
        return 1
    try:
        with conn:
            return fn(conn, args, sys.stdout)
    except OSError as e:
        print(f"rump.{tool}: {e.strerror or _describe(e)}", file=sys.stderr)
        return 1
    except (ValueError, Usage) as e:
        print(f"rump.{tool}: {e}", file=sys.stderr)
        return 1
    except SystemExit as e:              # argparse usage errors
        return int(e.code or 0)


def ifconfig_main(argv: list[str] | None = None) -> int:
    return _main("ifconfig", ifconfig, argv)


def route_main(argv: list[str] | None = None) -> int:
    return _main("route", route, argv)


def ping_main(argv: list[str] | None = None) -> int:
    return _main("ping", ping, argv)


def netstat_main(argv: list[str] | None = None) -> int:
    return _main("netstat", netstat, argv)


def arp_main(argv: list[str] | None = None) -> int:
    return _main("arp", arp, argv)


def ping6_main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["-u"]:
        return _main("ping6", ping, [*args[:2], "-6", *args[2:]])
    return _main("ping6", ping, ["-6", *args])


def ndp_main(argv: list[str] | None = None) -> int:
    return _main("ndp", ndp, argv)


if __name__ == "__main__":
    tools = {"ifconfig": ifconfig_main, "route": route_main, "ping": ping_main,
             "netstat": netstat_main, "arp": arp_main, "ping6": ping6_main, "ndp": ndp_main}
    sys.exit(tools[sys.argv[1]](sys.argv[2:]))
