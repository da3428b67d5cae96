"""shmif_dumpbus: show what is on a shmif bus file, or convert it to pcap (shmif_dumpbus(1)).

    shmif_dumpbus [-h] [-p PCAPFILE] BUSFILE

Without options, one line per frame still in the bus's ring (oldest first): its number, the
sender's timestamp, its length and a summary (Ethernet addresses, ARP, IPv4 with ICMP/UDP/TCP).
``-h`` prints only the bus header.  ``-p FILE`` writes the frames as a pcap file that tcpdump,
tshark and wireshark read (``-p -``: to standard output).  The bus is not locked (a frame being
written as we read may be cut short); timestamps are the senders' and need not be monotonic.
Exit status 1 with a one-line message for a file that is not a bus.
"""

from __future__ import annotations

import argparse
import sys

from rumpkernel.hypercall.dev.shmif import read_bus
from rumpkernel.net.wire import arp, ethernet, icmp, ipv4, pcap, udp
from rumpkernel.net.wire.base import FormatError, ip4str, macstr

PROTO_NAMES = {1: "ICMP", 6: "TCP", 17: "UDP"}


def summary(frame: bytes) -> str:
    try:
        eth = ethernet.parse(frame)
    except FormatError:
        return f"runt frame of {len(frame)} bytes"
    head = f"{macstr(eth.src)} > {macstr(eth.dst)}"
    try:
        if eth.ethertype == ethernet.ETHERTYPE_ARP:
            a = arp.parse(eth.payload)
            if a.op == arp.OP_REQUEST:
                return f"{head} ARP who-has {ip4str(a.tpa)} tell {ip4str(a.spa)}"
            return f"{head} ARP reply {ip4str(a.spa)} is-at {macstr(a.sha)}"
        if eth.ethertype == ethernet.ETHERTYPE_IP:
            return f"{head} {_ip(eth.payload)}"
    except FormatError as e:
        return f"{head} malformed: {e.detail}"
    return f"{head} ethertype 0x{eth.ethertype:04x}"


def _ip(buf: bytes) -> str:
    p = ipv4.parse(buf)
    where = f"IP {ip4str(p.src)} > {ip4str(p.dst)}"
    if p.flags & ipv4.FLAG_MF or p.frag_offset:
        return f"{where} fragment id {p.ident} offset {p.frag_offset} ({len(p.payload)} bytes)"
    if p.proto == 1:
        m = icmp.parse(p.payload)
        names = {icmp.ECHO: "echo request", icmp.ECHO_REPLY: "echo reply",
                 icmp.UNREACH: "unreachable", icmp.TIME_EXCEEDED: "time exceeded"}
        extra = f" id {m.ident} seq {m.seq}" if m.type in (icmp.ECHO, icmp.ECHO_REPLY) else ""
        return f"{where} ICMP {names.get(m.type, f'type {m.type}')}{extra}"
    if p.proto == 17:
        d = udp.parse(p.payload)
        return f"{where} UDP {d.sport} > {d.dport} length {len(d.payload)}"
    return f"{where} {PROTO_NAMES.get(p.proto, f'proto {p.proto}')} length {len(p.payload)}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="shmif_dumpbus", add_help=False,
                                 description="Show or convert a shmif bus file.")
    ap.add_argument("-h", dest="header", action="store_true", help="print only the header")
    ap.add_argument("-p", dest="pcap", metavar="PCAPFILE", help="write a pcap file (- = stdout)")
    ap.add_argument("--help", action="help", help="show this help")
    ap.add_argument("busfile")
    a = ap.parse_args(argv)
    try:
        with open(a.busfile, "rb") as f:
            raw = f.read()
        hdr, frames = read_bus(raw)
    except (OSError, ValueError) as e:
        msg = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        print(f"shmif_dumpbus: {a.busfile}: {msg}", file=sys.stderr)
        return 1
    if a.header:
        print(f"bus version {hdr['version']}, generation {hdr['generation']}, ring "
              f"{hdr['ringsize']} bytes, first {hdr['first']}, last {hdr['last']}, "
              f"{len(frames)} frames")
        return 0
    if a.pcap:
        out = b"".join([pcap.file_header(pcap.LINKTYPE_ETHERNET)] +
                       [pcap.record(sec * 10**9 + usec * 1000, fr)
                        for sec, usec, _s, fr in frames])
        try:
            if a.pcap == "-":
                sys.stdout.buffer.write(out)
                sys.stdout.flush()
            else:
                with open(a.pcap, "wb") as f:
                    f.write(out)
        except BrokenPipeError:
            return 0
        except OSError as e:
            print(f"shmif_dumpbus: {a.pcap}: {e.strerror}", file=sys.stderr)
            return 1
        return 0
    try:
        for i, (sec, usec, sender, fr) in enumerate(frames, 1):
            print(f"{i:5d} {sec}.{usec:06d} {len(fr):5d} {sender:08x} {summary(fr)}")
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
