"""A DHCPv4 client for one interface of a kernel: the thin loop around the sans-IO state
machine (net/inet/dhcp_client.py) over the kernel's own UDP, configuring the kernel through its
system calls -- so it works on a local kernel object (``k``) and on a ``rump_server``
connection alike.  As in NetBSD, where dhcpcd is a program, the kernel only carries the
packets; ``rump.dhcpclient`` (apps/rump_dhcpclient.py) is this class as a command.

Interface:
    DhcpSession(api, ifname, hostname=None, resolv_conf=True, lease_file=True)
        ``api``: anything with ``.socket`` and ``.sys`` (a kernel, a connection)
    .acquire(timeout=30.0) -> Lease     up the interface, DISCOVER..ACK, configure; TimeoutError
    .renew(timeout=30.0) -> Lease       a renewing REQUEST now, wait for the ACK
    .run(seconds) / .step(limit)        keep the lease: T1 renewals, T2 rebinding, expiry
    .release()                          RELEASE to the server, deconfigure, close
    .close()                            stop without telling the server (the lease stays
                                        configured until it expires)
    .lease / .state / .ignored (replies dropped: malformed, not ours) / .client
    configure(api, ifname, lease, resolv_conf=True) / deconfigure(...)
    release_saved(api, ifname) -> bool  RELEASE the lease a previous session saved

What Configure does: the address with its prefix length (and the lease's broadcast), a default
route through the first router (replacing a default route already there), the MTU, and -- when
the kernel has a file system -- ``/etc/resolv.conf`` with the lease's servers and domain (the
old file is put back on deconfigure) and ``/var/db/dhcpclient-IF.lease`` (JSON: what
``release_saved`` needs).  Deconfigure removes the address and the route.

How the packets flow: a UDP socket bound to 0.0.0.0:68 with SO_BROADCAST and SO_BINDTODEVICE
sends the broadcasts from 0.0.0.0 out of the unconfigured interface (the kernel's
``select_source`` allows exactly that); the client sets the BROADCAST flag so servers answer
to 255.255.255.255 until the address is up.  Every wait is on the kernel's clock, so a
simulated network replays; malformed replies are counted in ``ignored``, never raised.
"""

from __future__ import annotations

import errno
import json
from typing import Any

from rumpkernel.client import abi as H
from rumpkernel.client.resolver import _Rand
from rumpkernel.kern import abi as K
from rumpkernel.net.inet import dhcp_client as dc
from rumpkernel.net.wire import dhcp
from rumpkernel.net.wire.base import FormatError, ip4str

SEC = 10**9
RESOLV_CONF = "/etc/resolv.conf"
MAX_REPLY = 2048


def _mac(text: str) -> bytes:
    return bytes(int(x, 16) for x in text.split(":"))


class DhcpSession:
    def __init__(self, api: Any, ifname: str, hostname: bytes | None = None,
                 resolv_conf: bool = True, lease_file: bool = True) -> None:
        self.api = api
        self.S = api.socket
        self.sys = api.sys
        self.ifname = ifname
        self.resolv_conf = resolv_conf
        self.lease_file = lease_file
        cfg = self.S.config
        info = next((i for i in cfg.interfaces() if i["name"] == ifname), None)
        if info is None or not info.get("lladdr"):
            raise OSError(errno.ENXIO, f"{ifname}: no such Ethernet interface")
        self.mac = _mac(info["lladdr"])
        self.client = dc.DhcpClient(self.mac, hostname=hostname, client_id=b"\x01" + self.mac,
                                    broadcast=True)
        self.rand = _Rand(self.sys, self.now())
        self.sock: Any = None
        self.saved_resolv: str | None = None
        self.ignored = 0

    # ---- time and sockets ------------------------------------------------------------------
    def now(self) -> int:
        return int(self.sys.clock_gettime(H.CLOCK_MONOTONIC) * 1e9)

    def _open(self) -> None:
        if self.sock is not None:
            return
        S = self.S
        s = S.socket(S.AF_INET, S.SOCK_DGRAM)
        try:
            s.setsockopt(S.SOL_SOCKET, S.SO_REUSEADDR, 1)
            s.setsockopt(S.SOL_SOCKET, S.SO_BROADCAST, 1)
            s.setsockopt(S.SOL_SOCKET, S.SO_BINDTODEVICE, self.ifname.encode())
            s.bind(("0.0.0.0", dhcp.CLIENT_PORT))
        except BaseException:
            s.close()
            raise
        self.sock = s

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    @property
    def state(self) -> str:
        return self.client.state

    @property
    def lease(self) -> dc.Lease | None:
        return self.client.lease

    # ---- the loop ---------------------------------------------------------------------------
    def _flush(self) -> None:
        for o in self.client.take_output():
            if isinstance(o, dc.Transmit):
                try:
                    self.sock.sendto(o.message.emit(), (ip4str(o.dst), dhcp.SERVER_PORT))
                except OSError:
                    pass                        # unreachable now: the timers retry
            elif isinstance(o, dc.Configure):
                configure(self.api, self.ifname, o.lease, self.resolv_conf, self)
            elif isinstance(o, dc.Deconfigure):
                deconfigure(self.api, self.ifname, o.lease, self)

    def input(self, data: bytes) -> bool:
        """One datagram from port 67; False (and counted) when it was not for us."""
        try:
            m = dhcp.parse(data)
        except FormatError:
            self.ignored += 1
            return False
        ok = self.client.input(m, self.now(), self.rand)
        if not ok:
            self.ignored += 1
        self._flush()
        return ok

    def step(self, limit: float) -> None:
        """Wait at most ``limit`` seconds for a reply or the client's next timer."""
        self._flush()
        now = self.now()
        deadline = self.client.deadline
        left = limit if deadline is None else min(limit, max(0.0, (deadline - now) / SEC))
        if left > 0:
            self.sock.settimeout(left)
            try:
                data, addr = self.sock.recvfrom(MAX_REPLY)
            except TimeoutError:
                data = None
            except OSError:
                data = None
            if data is not None and addr[1] == dhcp.SERVER_PORT:
                self.input(data)
        self.client.timeout(self.now(), self.rand)
        self._flush()

    def _until(self, states: tuple[str, ...], timeout: float, what: str) -> dc.Lease:
        end = self.now() + int(timeout * SEC)
        while self.client.state not in states:
            left = (end - self.now()) / SEC
            if left <= 0:
                raise TimeoutError(f"{self.ifname}: DHCP {what}: no answer in {timeout:g} s "
                                   f"(state {self.client.state})")
            self.step(left)
        assert self.client.lease is not None
        return self.client.lease

    def acquire(self, timeout: float = 30.0) -> dc.Lease:
        self.S.config.up(self.ifname)
        self._open()
        self.client.start(self.now(), self.rand)
        return self._until((dc.BOUND,), timeout, "lease")

    def renew(self, timeout: float = 30.0) -> dc.Lease:
        self._open()
        if not self.client.renew(self.now()):
            raise OSError(errno.EINVAL, f"{self.ifname}: no lease to renew")
        before = self.client.lease
        self._flush()
        end = self.now() + int(timeout * SEC)
        while self.client.lease is before or self.client.state != dc.BOUND:
            left = (end - self.now()) / SEC
            if left <= 0:
                raise TimeoutError(f"{self.ifname}: DHCP renew: no answer in {timeout:g} s")
            self.step(left)
        assert self.client.lease is not None
        return self.client.lease

    def run(self, seconds: float) -> None:
        end = self.now() + int(seconds * SEC)
        while self.now() < end:
            self.step((end - self.now()) / SEC)

    def release(self) -> None:
        if self.sock is None:
            self._open()
        self.client.release(self.now())
        self._flush()
        self.close()


# ---- configuring the kernel ------------------------------------------------------------------
def _write(sys: Any, path: str, text: str) -> bool:
    try:
        parts = path.strip("/").split("/")
        for i in range(1, len(parts)):
            try:
                sys.mkdir("/" + "/".join(parts[:i]), 0o755)
            except FileExistsError:
                pass
        fd = sys.open(path, H.open_flags_to_host(K.O_WRONLY | K.O_CREAT | K.O_TRUNC), 0o644)
    except OSError:
        return False                              # no file system in this kernel
    try:
        sys.write(fd, text.encode())
    finally:
        sys.close(fd)
    return True


def _read(sys: Any, path: str) -> str | None:
    from rumpkernel.client.resolver import _read as read

    return read(sys, path)


def _unlink(sys: Any, path: str) -> None:
    try:
        sys.unlink(path)
    except OSError:
        pass


def lease_path(ifname: str) -> str:
    return f"/var/db/dhcpclient-{ifname}.lease"


def configure(api: Any, ifname: str, lease: dc.Lease, resolv_conf: bool = True,
              session: DhcpSession | None = None) -> None:
    cfg = api.socket.config
    bc = ip4str(lease.broadcast) if lease.broadcast else None
    cfg.address(ifname, f"{ip4str(lease.address)}/{lease.prefix_len}", broadcast=bc)
    if lease.mtu:
        try:
            cfg.set_mtu(ifname, lease.mtu)
        except OSError:
            pass
    if lease.routers:
        for r in cfg.routes():
            if r["plen"] == 0:
                cfg.route_delete("default")
        cfg.route_add("default", gateway=ip4str(lease.routers[0]))
    sys = api.sys
    if resolv_conf and lease.dns:
        old = _read(sys, RESOLV_CONF)
        if session is not None and session.saved_resolv is None:
            session.saved_resolv = old if old is not None else ""
        text = f"# written by the DHCP client for {ifname}\n"
        if lease.domain:
            text += f"search {lease.domain.decode('ascii', 'replace')}\n"
        text += "".join(f"nameserver {ip4str(d)}\n" for d in lease.dns[:3])
        _write(sys, RESOLV_CONF, text)
    if session is None or session.lease_file:
        _write(sys, lease_path(ifname), json.dumps({
            "address": ip4str(lease.address), "prefix_len": lease.prefix_len,
            "server": ip4str(lease.server), "hwaddr": lease_hw(api, ifname)}) + "\n")


def lease_hw(api: Any, ifname: str) -> str:
    for i in api.socket.config.interfaces():
        if i["name"] == ifname:
            return str(i["lladdr"])
    return ""


def deconfigure(api: Any, ifname: str, lease: dc.Lease,
                session: DhcpSession | None = None) -> None:
    cfg = api.socket.config
    if lease.routers:
        try:
            cfg.route_delete("default", gateway=ip4str(lease.routers[0]))
        except OSError:
            pass
    try:
        cfg.delete_address(ifname, ip4str(lease.address))
    except OSError:
        pass
    sys = api.sys
    if session is not None and session.saved_resolv is not None:
        if session.saved_resolv:
            _write(sys, RESOLV_CONF, session.saved_resolv)
        else:
            _unlink(sys, RESOLV_CONF)
        session.saved_resolv = None
    _unlink(sys, lease_path(ifname))


def release_saved(api: Any, ifname: str) -> bool:
    """RELEASE the lease a previous session saved in the kernel (``rump.dhcpclient -x``)."""
    text = _read(api.sys, lease_path(ifname))
    if text is None:
        return False
    try:
        d = json.loads(text)
        addr = bytes(int(x) for x in d["address"].split("."))
        server = bytes(int(x) for x in d["server"].split("."))
        mac = _mac(d["hwaddr"])
    except (ValueError, KeyError, TypeError):
        _unlink(api.sys, lease_path(ifname))
        return False
    S = api.socket
    rand = _Rand(api.sys, 0)
    msg = dhcp.request(dhcp.RELEASE, rand(1 << 32), mac, ((dhcp.OPT_SERVER_ID, server),
                                                          (dhcp.OPT_CLIENT_ID, b"\x01" + mac)),
                       ciaddr=addr)
    with S.socket(S.AF_INET, S.SOCK_DGRAM) as s:
        try:
            s.sendto(msg.emit(), (ip4str(server), dhcp.SERVER_PORT))
        except OSError:
            pass
    lease = dc.Lease(addr, int(d.get("prefix_len", 24)), (), (), b"", server, 0, 0, 0, 0)
    deconfigure(api, ifname, lease)
    return True
