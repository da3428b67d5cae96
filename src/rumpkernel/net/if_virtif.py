"""virtif: a kernel's interface on a host TAP device, so it talks to the host's own network
stack (virt(4); host side ``hypercall/dev/tap.py``).  Needs CAP_NET_ADMIN on the host (or a
TAP made beforehand for the user).

    ifconfig virt0 create; ifconfig virt0 linkstr tap0; ifconfig virt0 inet 10.0.0.2/24
    ifconfig virt0 linkstr tap0,offload=off      (or offload=csum: checksum offload only)

The TAP is opened (or created) in the network namespace the kernel's process runs in; no
address is configured on the host side by the kernel.  Component "net_virtif" (NET_IF)
registers the "virt" interface cloner.

virtio-net offloads (default ``offload=on``): the companion opens the TAP with IFF_VNET_HDR and
negotiates checksum, TSO4 and TSO6 with the host kernel; what it got becomes the interface's
``capabilities`` (IFCAP_CSUM_TCPv4/6 Rx/Tx, IFCAP_TSOv4/v6) and, with TSO4, ``tso_max`` =
65535, so TCP hands down super-segments (net/wire/gso.py).  This driver writes the
virtio_net_hdr: a frame longer than MTU + 14 is a TCP super-segment with a partial checksum,
sent as GSO (NEEDS_CSUM, ``gso_size`` = MTU less its IP and TCP headers) when the TAP does
TSO for its IP version, else cut in software; other frames go with an empty header.  On
receive, GSO/GRO super-frames go up whole, and IPv4 TCP frames the host marked DATA_VALID or
NEEDS_CSUM are input with ``csum_ok`` (TCP skips its checksum); other NEEDS_CSUM frames (UDP,
IPv6) get their partial checksum completed here, and everything else is verified as usual.
One host call reads every frame waiting (``recv_batch``), and they are input on the receive
thread itself.  ``info()`` counts GSO frames each way, software-cut ones and bad headers.
"""

from __future__ import annotations

from typing import Any

from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.net.if_nic import NicDriver
from rumpkernel.net.interface import (
    IFCAP_CSUM_TCPv4_Rx,
    IFCAP_CSUM_TCPv4_Tx,
    IFCAP_CSUM_TCPv6_Rx,
    IFCAP_CSUM_TCPv6_Tx,
    IFCAP_TSOv4,
    IFCAP_TSOv6,
    Ifnet,
)
from rumpkernel.net.wire import gso
from rumpkernel.net.wire.base import FormatError

TSO_MAX = 65535
_ETH_IP6 = b"\x86\xdd"
_OFFLOAD_CHOICES = ("on", "csum", "off")


def parse_linkstr(text: str) -> tuple[str, str]:
    """``tapname[,offload=on|csum|off]`` -> (tapname, offload); EINVAL otherwise."""
    name, *opts = text.split(",")
    offload = "on"
    for opt in opts:
        key, _, value = opt.partition("=")
        if key != "offload" or value not in _OFFLOAD_CHOICES:
            raise KernelError(Errno.EINVAL, f"virtif linkstr option {opt!r} "
                              "(offload=on, offload=csum or offload=off)")
        offload = value
    return name, offload


def _tcp4(frame: bytes) -> bool:
    """An IPv4 TCP frame: the protocol that takes the host's word for its checksum."""
    return len(frame) > 34 and frame[12:14] == b"\x08\x00" and frame[23] == 6


class VirtifDriver(NicDriver):
    companion = "tap"
    version = 2

    def __init__(self, k: Any) -> None:
        super().__init__(k)
        self.vnet = False
        self.tso4 = self.tso6 = False
        self.gso_out = self.gso_in = self.sw_gso = self.bad_hdr = self.csum_trusted = 0

    def open_port(self, comp: Any, linkstr: str) -> Any:
        name, offload = parse_linkstr(linkstr)
        return comp.attach(name, offload)

    def set_linkstr(self, ifp: Ifnet, text: str) -> None:
        if text:
            parse_linkstr(text)             # EINVAL before anything is torn down
        super().set_linkstr(ifp, text)
        port = self.port
        caps = 0
        offloads = port.offloads if port is not None else set()
        self.vnet = port is not None and port.vnet
        if "csum" in offloads:
            caps |= IFCAP_CSUM_TCPv4_Rx | IFCAP_CSUM_TCPv4_Tx | IFCAP_CSUM_TCPv6_Rx \
                | IFCAP_CSUM_TCPv6_Tx
        self.tso4 = "tso4" in offloads
        self.tso6 = "tso6" in offloads
        if self.tso4:
            caps |= IFCAP_TSOv4
        if self.tso6:
            caps |= IFCAP_TSOv6
        with ifp.ns.lock:
            ifp.capabilities = caps
            ifp.tso_max = TSO_MAX if self.tso4 else 0

    # ---- receive ------------------------------------------------------------------------------
    def _rx(self, port: Any, ifp: Ifnet) -> None:
        k = self.k
        vnet = port.vnet
        hl = gso.VNET_HDR_LEN
        while True:
            batch = k.hostcall(port.recv_batch)
            if batch is None:
                return
            for data in batch:
                if not vnet:
                    ifp.input(data)
                    continue
                if len(data) < hl:
                    self.bad_hdr += 1
                    ifp.ierrors += 1
                    continue
                if data[1] != gso.GSO_NONE:
                    self.gso_in += 1
                flags = data[0]
                frame = memoryview(data)[hl:]
                if flags & gso.F_NEEDS_CSUM and not _tcp4(frame):
                    frame = self._complete(frame, data)   # a protocol that checks itself
                    if frame is None:
                        ifp.ierrors += 1
                        continue
                elif flags & (gso.F_NEEDS_CSUM | gso.F_DATA_VALID):
                    self.csum_trusted += 1
                    ifp.input(frame, True)
                    continue
                ifp.input(frame)

    def _complete(self, frame: bytes, data: bytes) -> bytes | None:
        h = gso.vnet_parse(data)
        try:
            return gso.complete_checksum(frame, h.csum_start, h.csum_offset)
        except FormatError:
            self.bad_hdr += 1
            return None

    # ---- transmit -----------------------------------------------------------------------------
    def transmit(self, frame: bytes) -> bool:
        port = self.port
        if port is None:
            raise KernelError(Errno.ENETDOWN, "no link")
        ifp = self.ifp
        mtu = ifp.mtu if ifp is not None else 1500
        if len(frame) <= mtu + 14:
            self.k.hostcall(port.send, (gso.VNET_NONE, frame) if self.vnet else frame)
            return True
        pkt = memoryview(frame)[14:]
        try:
            size = gso.gso_size_for(pkt, mtu)
            v6 = frame[12:14] == _ETH_IP6
            if self.vnet and (self.tso6 if v6 else self.tso4):
                ihl = 40 if v6 else (frame[14] & 0xF) * 4
                thl = (frame[14 + ihl + 12] >> 4) * 4
                hdr = gso.vnet_emit(gso.F_NEEDS_CSUM, gso.GSO_TCPV6 if v6 else gso.GSO_TCPV4,
                                    14 + ihl + thl, size, 14 + ihl, 16)
                self.gso_out += 1
                self.k.hostcall(port.send, (hdr, frame))
                return True
            pieces = gso.tcp_segment(pkt, size)
        except FormatError as e:
            raise KernelError(Errno.EMSGSIZE, f"frame of {len(frame)} bytes: {e}") from None
        self.sw_gso += 1
        head = (gso.VNET_NONE if self.vnet else b"") + frame[:14]
        self.k.hostcall(port.send_many, [head + p for p in pieces])
        return True

    def info(self) -> dict[str, Any]:
        d = super().info()
        d.update(gso_out=self.gso_out, gso_in=self.gso_in, sw_gso=self.sw_gso,
                 bad_vnet_hdr=self.bad_hdr, csum_trusted=self.csum_trusted)
        return d
