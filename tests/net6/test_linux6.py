"""The kernel's IPv6 and DHCP against real peers: a rump_server in a network namespace the test
creates, on a TAP device (virtif), Linux and dnsmasq on the other side.

  - Linux ping6 reaches the kernel's link-local and static addresses; the kernel pings Linux
    (rump.ping6, the command); UDP over IPv6 both ways (socat); tcpdump on the TAP sees
    neighbour discovery, echo and UDP with good checksums;
  - dnsmasq's router advertisement gives the kernel a SLAAC address, a default router and an
    RDNSS server; rump.dhcpclient's helper takes a DHCPv4 lease (dnsmasq's lease file shows
    it), renews it (the file's expiry moves) and releases it (the file forgets it); the
    resolver asks dnsmasq for AAAA over IPv6, from resolv.conf and from RDNSS alone.

Only addresses inside the namespace are used (fd00::/8, 10.99.x.0/24); everything the test
makes is removed afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rumpkernel.client.dhcp import DhcpSession
from rumpkernel.testing.remote import env, wait_connectable

pytestmark = [pytest.mark.root, pytest.mark.oracle("ip", "ping", "socat", "tcpdump",
                                                   "dnsmasq")]
LINUX6, KERNEL6 = "fd00:99:9::1", "fd00:99:9::2"


def run(*cmd: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check)


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


@pytest.fixture
def kernel6(tmp_path: Path) -> Iterator[tuple[str, object, str, str]]:
    """(namespace, connection, TAP name, server URL): a rump_server inside a namespace, virt0
    on a TAP it created, the TAP up on Linux's side with nothing configured yet."""
    ns = f"rk-ip6-{os.getpid()}"
    tap = f"rk6tap{os.getpid() % 100000}"
    url = f"unix://{tmp_path}/k.sock"
    run("ip", "netns", "add", ns)
    proc = conn = None
    try:
        run("ip", "-n", ns, "link", "set", "lo", "up")
        proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m",
                                 "rumpkernel.apps.rump_server", "-s", url], env=env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        conn = wait_connectable(url, proc)
        # offloads off: the capture checks Linux's checksums, which it leaves partial for a
        # TAP that does checksum offload
        conn.socket.config.ifconfig("virt0", create=True, linkstr=f"{tap},offload=off",
                                    up=False)
        run("ip", "-n", ns, "link", "set", tap, "up")
        yield ns, conn, tap, url
    finally:
        if conn is not None:
            conn.close()
        if proc is not None:
            _stop(proc)
        run("ip", "netns", "del", ns, check=False)


def _settled(conn, want: int = 1, limit: float = 15.0) -> list[dict]:
    """The kernel's IPv6 addresses on virt0 once ``want`` of them are preferred."""
    end = time.monotonic() + limit
    while True:
        addrs = next(i for i in conn.socket.config.interfaces()
                     if i["name"] == "virt0")["addrs6"]
        ok = [a for a in addrs if a["state"] == "preferred"]
        if len(ok) >= want and not [a for a in addrs if a["state"] == "tentative"]:
            return addrs
        assert time.monotonic() < end, f"addresses not ready: {addrs}"
        time.sleep(0.1)


def _linux_ll(ns: str, dev: str) -> str:
    out = run("ip", "-n", ns, "-6", "-o", "addr", "show", "dev", dev, "scope", "link").stdout
    return out.split()[3].split("/")[0]


def test_linux_ping6_and_udp6_over_a_tap(kernel6, tmp_path: Path) -> None:
    ns, conn, tap, url = kernel6
    S = conn.socket
    run("ip", "-n", ns, "addr", "add", f"{LINUX6}/64", "dev", tap, "nodad")
    pcap = tmp_path / "tap.pcap"
    dump = subprocess.Popen(["ip", "netns", "exec", ns, "tcpdump", "-i", tap, "-n", "-U",
                             "--immediate-mode",
                             "-w", str(pcap), "ip6"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        from tests.net.test_interop import _wait_listening

        _wait_listening(dump)
        S.config.address6("virt0", f"{KERNEL6}/64")          # brings virt0 up: DAD
        addrs = _settled(conn, 2)
        ll = next(a["addr"] for a in addrs if a["origin"] == "linklocal")
        for dst in (KERNEL6, f"{ll}%{tap}"):                 # Linux pings the kernel
            r = run("ip", "netns", "exec", ns, "ping", "-6", "-c", "3", "-i", "0.2", "-W", "3",
                    dst, check=False)
            assert r.returncode == 0 and "3 received" in r.stdout, r.stdout + r.stderr
        linux_ll = _linux_ll(ns, tap)
        r = run(sys.executable, "-m", "rumpkernel.apps.rump_net", "ping6", "-u", url, "-c",
                "2", "-i", "0.2", f"{linux_ll}%virt0", check=False)     # the command
        assert r.returncode == 0 and "2 packets received" in r.stdout, r.stdout + r.stderr
        r = run(sys.executable, "-m", "rumpkernel.apps.rump_net", "ping", "-u", url, "-6",
                "-c", "1", "-s", "3000", LINUX6, check=False)           # fragmented
        assert r.returncode == 0 and "1 packets received" in r.stdout, r.stdout + r.stderr
        with S.socket(S.AF_INET6, S.SOCK_DGRAM) as u:        # UDP, Linux -> kernel
            u.bind(("::", 40006))
            u.settimeout(10)
            subprocess.run(["ip", "netns", "exec", ns, "socat", "-u", "-",
                            f"UDP6:[{KERNEL6}]:40006"], input="hello kernel", text=True,
                           timeout=30, check=True)
            data, addr = u.recvfrom(100)
            assert data == b"hello kernel" and addr[0] == LINUX6
            rx = subprocess.Popen(["ip", "netns", "exec", ns, "socat", "-u",
                                   f"UDP6-RECV:40007,bind=[{LINUX6}]", "STDOUT"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:                                             # UDP, kernel -> Linux
                got = b""
                end = time.monotonic() + 15
                os.set_blocking(rx.stdout.fileno(), False)
                while b"hello linux" not in got and time.monotonic() < end:
                    u.sendto(b"hello linux\n", (LINUX6, 40007))
                    time.sleep(0.2)
                    got += rx.stdout.read() or b""
                assert b"hello linux" in got
            finally:
                _stop(rx, signal.SIGKILL)
        nd = {e["ip"]: e for e in S.config.nd6()["neighbors"]}
        assert nd[LINUX6]["state"] in ("reachable", "stale", "delay", "probe")
    finally:
        time.sleep(0.3)
        dump.send_signal(signal.SIGINT)
        try:
            _out, err = dump.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            dump.kill()
            _out, err = dump.communicate()
    text = run("tcpdump", "-r", str(pcap), "-n", "-vv").stdout
    text += err.decode(errors="replace")
    for what in ("neighbor solicitation", "neighbor advertisement", "echo request",
                 "echo reply", f"{KERNEL6}.40006"):
        assert what in text, f"{what!r} not in the capture:\n{text}"
    assert "frag" in text.lower()
    for bad in ("bad cksum", "bad udp cksum", "[|", "truncated"):
        assert bad not in text, f"tcpdump found {bad!r}:\n{text}"


def _lease_line(path: Path) -> list[str]:
    lines = path.read_text().splitlines() if path.exists() else []
    return next((ln.split() for ln in lines if "10.99.8." in ln), [])


def _write(sys_, path: str, text: str) -> None:
    fd = sys_.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        sys_.write(fd, text.encode())
    finally:
        sys_.close(fd)


def test_slaac_dhcp_and_dns_from_dnsmasq(kernel6, tmp_path: Path) -> None:
    ns, conn, tap, url = kernel6
    S = conn.socket
    for cmd in (["addr", "add", "10.99.8.1/24", "dev", tap],
                ["addr", "add", "fd00:99:8::1/64", "dev", tap, "nodad"]):
        run("ip", "-n", ns, *cmd)
    leases, log = tmp_path / "leases", tmp_path / "dnsmasq.log"
    dnsmasq = subprocess.Popen(
        ["ip", "netns", "exec", ns, "dnsmasq", "-k", "--conf-file=/dev/null", "--pid-file=",
         f"--interface={tap}", "--bind-interfaces", "--no-resolv", "--no-hosts",
         "--enable-ra", "--ra-param=*,4,600", "--dhcp-range=fd00:99:8::,ra-only,64,1h",
         "--dhcp-range=10.99.8.50,10.99.8.60,255.255.255.0,2m",
         "--dhcp-option=option:router,10.99.8.1", "--domain=test",
         f"--dhcp-leasefile={leases}", "--host-record=host.test,10.99.8.8,fd00:99:8::8",
         "--no-ping", "--log-queries", f"--log-facility={log}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        S.config.up("virt0")                                   # link-local, DAD, RS
        addrs = _settled(conn, 2, 30)
        slaac = [a for a in addrs if a["origin"] == "slaac"]
        assert slaac and slaac[0]["addr"].startswith("fd00:99:8:")
        routes6 = S.config.routes6()
        router = _linux_ll(ns, tap)
        assert [(r["gateway"], r["interface"]) for r in routes6 if r["plen"] == 0] == [
            (router, "virt0")]
        rdnss = [s for e in S.config.rdnss() for s in e["servers"]]
        assert rdnss and rdnss[0] in ("fd00:99:8::1", router)

        # DHCPv4: lease, renew, release -- as dnsmasq's lease file sees them
        s = DhcpSession(conn, "virt0")
        lease = s.acquire(30)
        addr = ".".join(map(str, lease.address))
        line = _lease_line(leases)
        assert addr.startswith("10.99.8.") and line and line[2] == addr
        mac = next(i["lladdr"] for i in S.config.interfaces() if i["name"] == "virt0")
        assert line[1] == mac
        assert [r["gateway"] for r in S.config.routes() if r["plen"] == 0] == ["10.99.8.1"]
        resolv = _read(conn.sys, "/etc/resolv.conf")
        assert "nameserver 10.99.8.1" in resolv and "search test" in resolv
        assert S.getaddrinfo("host", 80, S.AF_INET, S.SOCK_STREAM)[0][4] == ("10.99.8.8", 80)
        time.sleep(1.2)
        s.renew(30)
        renewed = _lease_line(leases)
        assert renewed[2] == addr and int(renewed[0]) > int(line[0])    # the expiry moved
        s.release()
        end = time.monotonic() + 10
        while _lease_line(leases) and time.monotonic() < end:
            time.sleep(0.1)
        assert not _lease_line(leases)
        assert not [a for i in S.config.interfaces() if i["name"] == "virt0"
                    for a in i["addrs"]]
        cli = [sys.executable, "-m", "rumpkernel.apps.rump_dhcpclient", "-u", url]
        r = run(*cli, "-1", "-t", "20", "virt0", check=False)        # the command: keep it
        assert r.returncode == 0 and "address 10.99.8." in r.stdout, r.stdout + r.stderr
        assert _lease_line(leases)
        r = run(*cli, "-x", "virt0", check=False)                     # release what -1 kept
        assert r.returncode == 0 and "released" in r.stdout, r.stdout + r.stderr
        end = time.monotonic() + 10
        while _lease_line(leases) and time.monotonic() < end:
            time.sleep(0.1)
        assert not _lease_line(leases)

        # DNS over IPv6: an IPv6 name server in resolv.conf, then RDNSS alone
        _write(conn.sys, "/etc/resolv.conf", "nameserver fd00:99:8::1\noptions timeout:2\n")
        assert S.getaddrinfo("host.test", 53, S.AF_INET6, S.SOCK_DGRAM) == [
            (S.AF_INET6, S.SOCK_DGRAM, 17, "", ("fd00:99:8::8", 53, 0, 0))]
        conn.sys.unlink("/etc/resolv.conf")
        assert [a[4][0] for a in S.getaddrinfo("host.test", 53, 0, S.SOCK_DGRAM)] == [
            "10.99.8.8", "fd00:99:8::8"]
        text = log.read_text()
        assert f"query[AAAA] host.test from {slaac[0]['addr']}" in text, text
    finally:
        _stop(dnsmasq)


def _read(sys_, path: str) -> str:
    fd = sys_.open(path, os.O_RDONLY)
    try:
        return sys_.read(fd, 65536).decode()
    finally:
        sys_.close(fd)
