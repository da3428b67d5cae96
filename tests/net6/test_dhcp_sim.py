"""The DHCP client helper (client/dhcp.py) between simulated kernels: kernel A takes a lease
from a small DHCP server that runs on kernel B's UDP (written here, on the wire format module),
through the kernel's broadcast path from an interface with no address (SO_BINDTODEVICE);
configures address, default route and /etc/resolv.conf; renews; releases.  Hostile server
replies (hypothesis) are counted and dropped, never raised.  The real peer is dnsmasq
(test_linux6.py)."""

from __future__ import annotations

import threading

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rumpkernel.client.dhcp import DhcpSession
from rumpkernel.net.inet import dhcp_client as dc
from rumpkernel.net.wire import dhcp
from rumpkernel.testing import netkit

SERVER, OFFERED, ROUTER = bytes([10, 99, 5, 1]), bytes([10, 99, 5, 50]), bytes([10, 99, 5, 1])


class MiniServer:
    """Offers 10.99.5.50/24 for 120 s; answers REQUESTs; records what it saw."""

    def __init__(self, k) -> None:
        S = k.socket
        self.sock = S.socket(S.AF_INET, S.SOCK_DGRAM)
        self.sock.setsockopt(S.SOL_SOCKET, S.SO_BROADCAST, 1)
        self.sock.bind(("0.0.0.0", 67))
        self.sock.settimeout(0.2)
        self.seen: list[tuple[int, bytes]] = []
        self.stop = threading.Event()

    def reply(self, m: dhcp.DhcpMessage, t: int) -> None:
        opts = ((dhcp.OPT_MSG_TYPE, bytes((t,))), (dhcp.OPT_SERVER_ID, SERVER),
                (dhcp.OPT_LEASE_TIME, (120).to_bytes(4, "big")),
                (dhcp.OPT_SUBNET_MASK, bytes([255, 255, 255, 0])), (dhcp.OPT_ROUTER, ROUTER),
                (dhcp.OPT_DNS, SERVER), (dhcp.OPT_DOMAIN, b"sim.test"))
        r = dhcp.DhcpMessage(dhcp.BOOTREPLY, m.xid, m.chaddr, opts, yiaddr=OFFERED,
                             siaddr=SERVER, flags=m.flags)
        to = "255.255.255.255" if m.flags & dhcp.FLAG_BROADCAST else \
            ".".join(map(str, m.ciaddr))
        self.sock.sendto(r.emit(), (to, 68))

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                data, addr = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            m = dhcp.parse(data)
            self.seen.append((m.msg_type, bytes(int(x) for x in addr[0].split("."))))
            if m.msg_type == dhcp.DISCOVER:
                for junk in (b"\x02" + bytes(300), dhcp.DhcpMessage(
                        dhcp.BOOTREPLY, m.xid ^ 1, m.chaddr).emit()[:250],
                        dhcp.DhcpMessage(dhcp.BOOTREPLY, m.xid ^ 1, m.chaddr,
                                         ((dhcp.OPT_MSG_TYPE, b"\x02"),)).emit()):
                    self.sock.sendto(junk, ("255.255.255.255", 68))   # hostile first
                self.reply(m, dhcp.OFFER)
            elif m.msg_type == dhcp.REQUEST:
                self.reply(m, dhcp.ACK)


def _cat(k, path: str) -> str:
    fd = k.sys.open(path, 0)
    try:
        return k.sys.read(fd, 4096).decode()
    finally:
        k.sys.close(fd)


def test_lease_renew_release_between_simulated_kernels() -> None:
    _world, (ka, kb) = netkit.sim_kernels(71, ["a", "b"])
    try:
        netkit.plug(ka, "wire0", "dh", None)              # no address yet
        netkit.plug(kb, "wire0", "dh", "10.99.5.1/24")
        netkit.faults(ka, "dh", delay_ns=2_000_000)           # so that time passes
        srv = MiniServer(kb)

        def body():
            t = kb.host.world.thread_create(srv.serve, "dhcpd")
            try:
                s = DhcpSession(ka, "wire0")
                lease = s.acquire(20)
                routes = ka.socket.config.routes()
                resolv = _cat(ka, "/etc/resolv.conf")
                ping = netkit.ping(ka, "10.99.5.1")
                renewed = s.renew(20)
                s.release()
                after = ka.socket.config.interfaces()
                return lease, routes, resolv, ping, renewed, after, s.ignored
            finally:
                srv.stop.set()
                kb.host.world.thread_join(t)

        lease, routes, resolv, ping, renewed, after, ignored = netkit.drive(ka, body)
        assert lease.address == OFFERED and lease.prefix_len == 24
        assert lease.routers == (ROUTER,) and lease.domain == b"sim.test"
        assert [r["gateway"] for r in routes if r["plen"] == 0] == ["10.99.5.1"]
        assert "nameserver 10.99.5.1" in resolv and "search sim.test" in resolv
        assert ping[0] is not None
        assert renewed is not lease and renewed.start > lease.start
        wire0 = next(i for i in after if i["name"] == "wire0")
        assert wire0["addrs"] == []                                  # released
        kinds = [t for t, _src in srv.seen]
        assert kinds == [dhcp.DISCOVER, dhcp.REQUEST, dhcp.REQUEST, dhcp.RELEASE]
        srcs = [src for _t, src in srv.seen]
        assert srcs[:2] == [bytes(4)] * 2 and srcs[2:] == [OFFERED] * 2   # 0.0.0.0, then ours
        assert ignored == 3                     # the junk: counted, dropped, not raised
    finally:
        srv.sock.close()
        for k in (ka, kb):
            k.halt()
            assert not k.panicked


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=600), st.builds(
    lambda body, cut: body[:cut], st.binary(min_size=240, max_size=600),
    st.integers(0, 600))))
def test_hostile_server_replies_are_counted_never_raised(raw: bytes) -> None:
    s = DhcpSession.__new__(DhcpSession)
    s.client = dc.DhcpClient(b"\x02\0\0\0\0\x01", broadcast=True)
    s.ignored = 0
    s.now = lambda: 10**9                                           # type: ignore[method-assign]
    s.rand = lambda n: 0                                             # type: ignore[assignment]
    s._flush = lambda: None                                          # type: ignore[method-assign]
    s.client.start(0, s.rand)
    s.client.take_output()
    assert s.input(magic_prefix(raw)) in (True, False)
    assert s.ignored in (0, 1)


def magic_prefix(raw: bytes) -> bytes:
    """Half the examples look like BOOTP replies (op 2, the cookie), so parsing goes deep."""
    if len(raw) > 240 and raw[0] & 1:
        b = bytearray(raw)
        b[0] = dhcp.BOOTREPLY
        b[236:240] = dhcp.MAGIC
        return bytes(b)
    return raw
