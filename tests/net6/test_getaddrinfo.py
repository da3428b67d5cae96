"""getaddrinfo through the stub resolver over the kernel's own UDP (client/resolver.py): a DNS
server written with net/wire/dns runs on the kernel's loopback (a host thread using the same
kernel's sockets), the client -- local or remote (sysproxy) -- resolves through the kernel's
/etc/resolv.conf; search lists, NXDOMAIN, an unanswering server (EAI_AGAIN after the
resolv.conf timeouts), hosts-file precedence; and in a simulated two-kernel network."""

from __future__ import annotations

import os
import threading

import pytest

from rumpkernel.net.wire import dns
from rumpkernel.net.wire.base import ip4
from rumpkernel.testing import netkit
from tests.net.conftest import NetView, knet  # noqa: F401  (the local/remote fixture)

ZONE = {dns.name("www.test"): "10.99.0.80", dns.name("alias.test"): None}


def _answer(q: bytes) -> bytes:
    m = dns.parse(q)
    (qq,) = m.questions
    flags = dns.FLAG_QR | dns.FLAG_RD | dns.FLAG_RA
    key = next((k for k in ZONE if dns.name_eq(k, qq.name)), None)
    if key is None:
        return dns.Message(m.id, flags | dns.NXDOMAIN, m.questions).emit()
    rrs: list[dns.Record] = []
    target = key
    if ZONE[key] is None:                        # alias.test -> www.test
        target = dns.name("www.test")
        rrs.append(dns.Record(key, dns.CNAME, dns.IN, 30, target))
    if qq.qtype == dns.A:
        rrs.append(dns.Record(target, dns.A, dns.IN, 30, ip4(ZONE[target])))
    return dns.Message(m.id, flags, m.questions, tuple(rrs)).emit()


def _serve(sock_mod, addr: str, stop: threading.Event, seen: list) -> threading.Thread:
    s = sock_mod.socket(sock_mod.AF_INET, sock_mod.SOCK_DGRAM)
    s.bind((addr, 53))
    s.settimeout(0.05)

    def run() -> None:
        try:
            while not stop.is_set():
                try:
                    q, peer = s.recvfrom(512)
                except TimeoutError:
                    continue
                seen.append(dns.parse(q).questions[0])
                s.sendto(_answer(q), peer)
        finally:
            s.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _write(sys, path: str, text: str) -> None:
    fd = sys.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        sys.write(fd, text.encode())
    finally:
        sys.close(fd)


def test_getaddrinfo_over_kernel_udp(knet: NetView) -> None:  # noqa: F811
    S = knet.socket
    with pytest.raises(S.gaierror):                 # no resolv.conf: unknown, no traffic
        S.getaddrinfo("www.test", 80)
    try:
        knet.sys.mkdir("/etc", 0o755)
    except FileExistsError:
        pass
    _write(knet.sys, "/etc/resolv.conf", "search test\nnameserver 127.0.0.1\n"
                                         "options timeout:1 attempts:1\n")
    _write(knet.sys, "/etc/hosts", "10.1.2.3 pinned.test\n")
    stop, seen = threading.Event(), []
    t = _serve(knet.k.socket, "127.0.0.1", stop, seen)
    try:
        ai = S.getaddrinfo("www.test", 80, 0, S.SOCK_STREAM)
        assert ai == [(S.AF_INET, S.SOCK_STREAM, 6, "", ("10.99.0.80", 80))]
        assert S.gethostbyname("www") == "10.99.0.80"                 # search list
        assert S.gethostbyname("ALIAS.test") == "10.99.0.80"          # CNAME, case
        assert S.gethostbyname("pinned.test") == "10.1.2.3"           # hosts first
        with pytest.raises(S.gaierror) as e:
            S.gethostbyname("nosuch.test")
        assert e.value.errno == -2
        assert {q.qtype for q in seen} == {dns.A, dns.AAAA}     # family 0: both
        assert not any(dns.name_eq(q.name, dns.name("pinned.test")) for q in seen)
    finally:
        stop.set()
        t.join(5)
    _write(knet.sys, "/etc/resolv.conf", "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    with pytest.raises(S.gaierror) as e:             # nobody listens: EAI_AGAIN after 1 s
        S.gethostbyname("www.test")
    assert e.value.errno == -3


def test_resolve_across_simulated_network() -> None:
    world, (ka, kb) = netkit.sim_kernels(13, ["client", "server"])
    try:
        netkit.plug(ka, "wire0", "dns", "10.99.0.1/24")
        netkit.plug(kb, "wire0", "dns", "10.99.0.2/24")
        ka.sys.mkdir("/etc", 0o755)
        _write(ka.sys, "/etc/resolv.conf",
               "nameserver 10.99.0.9\nnameserver 10.99.0.2\noptions timeout:2 attempts:2\n")

        def body():
            srv = kb.socket.socket(kb.socket.AF_INET, kb.socket.SOCK_DGRAM)
            srv.bind(("0.0.0.0", 53))
            srv.settimeout(30)

            def serve() -> None:
                q, peer = srv.recvfrom(512)
                srv.sendto(_answer(q), peer)
                srv.close()

            th = world.thread_create(serve, "dns")
            t0 = ka.sys.clock_gettime(1)
            addr = ka.socket.gethostbyname("alias.test")
            elapsed = ka.sys.clock_gettime(1) - t0
            world.thread_join(th)
            return addr, elapsed

        addr, elapsed = netkit.drive(ka, body)
        assert addr == "10.99.0.80"
        assert 2 <= elapsed < 4          # the first server (no one there) timed out after 2 s
    finally:
        for k in (ka, kb):
            k.halt()
