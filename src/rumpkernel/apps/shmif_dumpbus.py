"""shmif_dumpbus: show what is on a shmif bus file, or convert it to pcap (shmif_dumpbus(1)).

    shmif_dumpbus [-h] [-p PCAPFILE] BUSFILE

Without options, one line per frame still in the bus's ring (oldest first): its number, the
sender's timestamp, its length, the sender's id and its Ethernet header (addresses and type;
for the protocols inside, write a pcap and read it with tcpdump or tshark).
``-h`` prints only the bus header.  ``-p FILE`` writes the frames as a pcap file that tcpdump,
tshark and wireshark read (``-p -``: to standard output).  The bus is not locked (a frame being
written as we read may be cut short); timestamps are the senders' and need not be monotonic.
Exit status 1 with a one-line message for a file that is not a bus.
"""

from __future__ import annotations

import argparse
import sys

from rumpkernel.hypercall.dev import pcap
from rumpkernel.hypercall.dev.shmif import read_bus

ETHERTYPES = {0x0800: "IPv4", 0x0806: "ARP", 0x86DD: "IPv6", 0x8100: "802.1Q"}


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def summary(frame: bytes) -> str:
    """The Ethernet header of ``frame``: "src > dst TYPE"."""
    if len(frame) < 14:
        return f"runt frame of {len(frame)} bytes"
    et = int.from_bytes(frame[12:14], "big")
    return f"{_mac(frame[6:12])} > {_mac(frame[0:6])} {ETHERTYPES.get(et, f'0x{et:04x}')}"


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
