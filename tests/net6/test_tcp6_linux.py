"""TCP over IPv6 against Linux: the kernel on a TAP in a network namespace the test creates
(fd00:99:x::/64 and 10.99.x.0/24 exist only there; testing/tcpnet.linux_peer).

  - curl -6 downloads from http.server on the kernel's AF_INET6 sockets, byte-exact, and
    tcpdump shows both SYNs offering MSS 1440 (Ethernet's 1500 less 60);
  - the kernel downloads from Linux's ``python3 -m http.server --bind <v6>`` (local and remote);
  - nc -6 and socat half-close over IPv6 both ways; ping6 still answers;
  - a dual-stack listener on :: serves curl -4 (the peer seen as ::ffff:a.b.c.d) and curl -6;
    with IPV6_V6ONLY it refuses IPv4 (Linux's curl gets a reset);
  - path MTU: Linux forwards to a second namespace over a 1280-byte link and answers the
    kernel's 1500-byte segments with packet-too-big; the connection lowers its MSS and the
    bytes arrive intact.
Every wait is bounded; namespaces and kernels go away afterwards."""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from rumpkernel.testing.tcpnet import (
    KernelHTTPConnection,
    KernelHTTPServer,
    linux_peer,
    quiet_handler,
)
from tests.net.test_tcp_interop import file_sha, start_capture, stop_capture

pytestmark = [pytest.mark.root, pytest.mark.oracle("ip", "curl", "socat", "nc", "tcpdump")]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def connect_retry(S, addr: tuple, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return S.create_connection(addr, timeout=60)
        except ConnectionRefusedError:
            assert time.monotonic() < deadline, f"nothing listening on {addr}"
            time.sleep(0.1)


def test_curl6_downloads_from_http_server_on_kernel_ipv6_sockets(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(16 << 20))
    with linux_peer("t6curl", subnet="10.99.61", inet6=True) as peer:
        pcap = tmp_path / "syn.pcap"
        dump = start_capture(peer, pcap, "ip6 and tcp and ip6[53] & 2 != 0")   # SYNs
        server = KernelHTTPServer(peer.S, ("::", 8080), quiet_handler(str(tmp_path))).start()
        try:
            out = tmp_path / "got.bin"
            r = peer.run("curl", "-6", "-gsS", "--max-time", "120", "-o", str(out),
                         f"http://[{peer.kernel6}]:8080/big.bin", timeout=150, check=False)
            assert r.returncode == 0, r.stderr
            assert file_sha(out) == file_sha(big)
            r = peer.run("ping", "-6", "-c", "2", "-i", "0.2", "-W", "3", peer.kernel6,
                         check=False, text=True)
            assert r.returncode == 0 and "2 received" in r.stdout, r.stdout
        finally:
            server.stop()
            stop_capture(dump)
        text = subprocess.run(["tcpdump", "-r", str(pcap), "-nn", "-v"], capture_output=True,
                              text=True, timeout=30).stdout
        syns = [ln for ln in text.splitlines() if "mss" in ln]
        assert len(syns) >= 2, text
        for ln in syns[:2]:                      # Linux's SYN and our SYN-ACK
            assert "mss 1440" in ln and "sackOK" in ln and "wscale" in ln, ln
        st = peer.S.config.stats()
        assert st["tcp"]["checksum_errors"] == 0 and st["tcp6"]["opackets"] > 10000


@pytest.mark.parametrize("mode", ["local", "remote"])
def test_kernel_downloads_from_linux_over_ipv6(tmp_path: Path, mode: str) -> None:
    data = os.urandom(8 << 20)
    (tmp_path / "linux.bin").write_bytes(data)
    with linux_peer("t6http", subnet="10.99.62", mode=mode, inet6=True) as peer:
        srv = peer.popen("python3", "-m", "http.server", "8000", "--bind", peer.linux6,
                         "--directory", str(tmp_path), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
        try:
            connect_retry(peer.S, (peer.linux6, 8000)).close()
            conn = KernelHTTPConnection(peer.S, peer.linux6, 8000, timeout=60)
            conn.request("GET", "/linux.bin")
            resp = conn.getresponse()
            assert resp.status == 200
            body = resp.read()
            conn.close()
            assert len(body) == len(data) and sha(body) == sha(data)
        finally:
            srv.terminate()
            srv.wait(10)


def test_nc_and_socat_half_close_over_ipv6(tmp_path: Path) -> None:
    with linux_peer("t6half", subnet="10.99.63", inet6=True) as peer:
        S = peer.S
        request = os.urandom(2 << 20)
        reply = b"kernel got it\n" * 1000
        with S.create_server(("::", 7000), family=S.AF_INET6) as lst:
            got: dict[str, object] = {}

            def serve() -> None:
                c, addr = lst.accept()
                with c:
                    buf = bytearray()
                    while d := c.recv(1 << 20):
                        buf += d
                    got["req"], got["peer"] = bytes(buf), addr
                    c.sendall(reply)
            t = threading.Thread(target=serve)
            t.start()
            r = peer.run("nc", "-6", "-N", "-w", "30", peer.kernel6, "7000", input=request,
                         timeout=60)
            t.join(30)
            assert got["req"] == request and r.stdout == reply
            assert got["peer"][0] == peer.linux6
        out = tmp_path / "from_kernel.bin"
        lsn = peer.popen("socat", f"TCP6-LISTEN:7001,bind=[{peer.linux6}],reuseaddr",
                         f"SYSTEM:'cat > {out}; echo linux done'", stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
        try:
            with connect_retry(S, (peer.linux6, 7001)) as c:
                c.sendall(request)
                c.shutdown(S.SHUT_WR)
                buf = bytearray()
                while d := c.recv(65536):
                    buf += d
            assert bytes(buf) == b"linux done\n"
            assert lsn.wait(30) == 0
            assert out.read_bytes() == request
        finally:
            if lsn.poll() is None:
                lsn.kill()
                lsn.wait()


def test_dual_stack_listener_and_v6only_against_linux_curl(tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_bytes(b"hello from the kernel\n")
    with linux_peer("t6dual", subnet="10.99.64", inet6=True) as peer:
        S = peer.S
        seen: list[str] = []

        class Handler(quiet_handler(str(tmp_path)).func):       # type: ignore[misc]
            def do_GET(self) -> None:
                seen.append(self.client_address[0])
                super().do_GET()

        handler = functools.partial(Handler, directory=str(tmp_path))
        server = KernelHTTPServer(S, ("::", 8080), handler).start()
        try:
            for flag, host in (("-4", peer.kernel), ("-6", f"[{peer.kernel6}]")):
                r = peer.run("curl", flag, "-gsS", "--max-time", "20",
                             f"http://{host}:8080/hello.txt", timeout=30, check=False)
                assert r.returncode == 0 and r.stdout == b"hello from the kernel\n", r.stderr
            assert seen == [f"::ffff:{peer.linux}", peer.linux6]
        finally:
            server.stop()
        with S.socket(S.AF_INET6, S.SOCK_STREAM) as only6:
            only6.setsockopt(S.IPPROTO_IPV6, S.IPV6_V6ONLY, 1)
            only6.bind(("::", 8081))
            only6.listen(4)
            r = peer.run("curl", "-4", "-sS", "--max-time", "10",
                         f"http://{peer.kernel}:8081/", timeout=30, check=False)
            assert r.returncode == 7, r.stderr          # curl: couldn't connect (a reset)
            r = peer.run("curl", "-6", "-gsS", "--max-time", "10",
                         f"http://[{peer.kernel6}]:8082/", timeout=30, check=False)
            assert r.returncode == 7, r.stderr          # a closed port over IPv6: a reset
            assert peer.tcp_stats()["out_rsts"] >= 2


def test_icmpv6_unreachable_from_a_linux_router_fails_the_connect() -> None:
    """Linux forwards for the kernel but has no route to fd00:97::/64: its ICMPv6 no-route
    error ends the kernel's SYN_SENT at once with ENETUNREACH (not a timeout)."""
    with linux_peer("t6unr", subnet="10.99.66", inet6=True) as peer:
        peer.run("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        peer.S.config.route6_add("fd00:97::/64", peer.linux6)
        S = peer.S
        with S.socket(S.AF_INET6, S.SOCK_STREAM) as s:
            s.settimeout(20)
            t0 = time.monotonic()
            with pytest.raises(OSError) as e:
                s.connect(("fd00:97::5", 80))
            assert e.value.errno == errno.ENETUNREACH
            assert time.monotonic() - t0 < 10          # the first SYN's answer, not retries
        assert S.config.stats()["icmp6"]["in_1"] >= 1


def test_packet_too_big_from_a_linux_router_lowers_the_mss(tmp_path: Path) -> None:
    """kernel --(1500)-- Linux router --(1280)-- Linux host in a second namespace (whose own
    interface says 1500, so it offers MSS 1440 and only the router knows better)."""
    data = os.urandom(2 << 20)
    with linux_peer("t6pmtu", subnet="10.99.65", inet6=True) as peer:
        far = f"rk-t6far-{os.getpid()}"
        veth = f"rk6v{os.getpid() % 100000}"
        run = lambda *a: subprocess.run(a, capture_output=True, timeout=30, check=True)  # noqa
        run("ip", "netns", "add", far)
        try:
            run("ip", "-n", far, "link", "set", "lo", "up")
            run("ip", "-n", peer.ns, "link", "add", veth, "mtu", "1280", "type", "veth",
                "peer", "name", "eth0", "netns", far)
            run("ip", "-n", far, "link", "set", "eth0", "up")     # far end 1500: MSS 1440
            run("ip", "-n", peer.ns, "link", "set", veth, "up")
            run("ip", "-n", peer.ns, "addr", "add", "fd00:98::1/64", "dev", veth, "nodad")
            run("ip", "-n", far, "addr", "add", "fd00:98::2/64", "dev", "eth0", "nodad")
            run("ip", "-n", far, "-6", "route", "add", "default", "via", "fd00:98::1")
            run("ip", "netns", "exec", peer.ns, "sysctl", "-qw",
                "net.ipv6.conf.all.forwarding=1")
            peer.S.config.route6_add("fd00:98::/64", peer.linux6)
            out = tmp_path / "far.bin"
            lsn = subprocess.Popen(["ip", "netns", "exec", far, "socat", "-u",
                                    "TCP6-LISTEN:7002,reuseaddr", f"CREATE:{out}"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                S = peer.S
                with connect_retry(S, ("fd00:98::2", 7002)) as c:
                    assert c.getsockopt(S.IPPROTO_TCP, S.TCP_MAXSEG) > 1300   # 1500's MSS
                    c.sendall(data)
                    mss = c.getsockopt(S.IPPROTO_TCP, S.TCP_MAXSEG)
                assert lsn.wait(60) == 0
                assert out.read_bytes() == data
                assert mss <= 1280 - 60
                st = S.config.stats()
                assert st["icmp6"]["pmtuchanged"] >= 1 and st["tcp6"]["pmtu_lowered"] >= 1
            finally:
                if lsn.poll() is None:
                    lsn.kill()
                    lsn.wait()
        finally:
            subprocess.run(["ip", "netns", "del", far], capture_output=True, timeout=30)


def _curl_until_up(peer, *args: str, timeout: float = 30) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        r = peer.run("curl", "-gsS", "--max-time", "20", *args, timeout=40, check=False)
        if r.returncode == 0:
            return r.stdout
        assert r.returncode == 7 and time.monotonic() < deadline, r.stderr  # 7: refused
        time.sleep(0.2)


@pytest.mark.parametrize("bind", ["0.0.0.0", "::"])
def test_hijacked_http_server_on_the_kernel_stack_answers_linux_curl(tmp_path: Path,
                                                                      bind: str) -> None:
    """An unmodified ``python -m http.server --bind BIND`` hijacked to a rump_server whose
    virt0 is a TAP in the namespace: Linux's curl fetches from it over the kernel's TCP,
    over IPv4, and with ``--bind ::`` over IPv6 and (dual stack) IPv4 too."""
    import sys

    from rumpkernel.testing.remote import env

    big = os.urandom(4 << 20)
    (tmp_path / "big.bin").write_bytes(big)
    sub = "10.99.67" if bind == "::" else "10.99.68"
    with linux_peer("t6hj", subnet=sub, mode="remote", inet6=True) as peer:
        prog = subprocess.Popen([sys.executable, "-m", "rumpkernel.hijack", "-u", peer.url,
                                 "-m", "http.server", "8080", "--bind", bind, "--directory",
                                 str(tmp_path)], cwd=tmp_path, env=env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            hosts = [peer.kernel] + ([f"[{peer.kernel6}]"] if bind == "::" else [])
            for host in hosts:
                got = _curl_until_up(peer, f"http://{host}:8080/big.bin")
                assert sha(got) == sha(big), host
            if bind != "::":
                r = peer.run("curl", "-gsS", "--max-time", "10",
                             f"http://[{peer.kernel6}]:8080/big.bin", timeout=30, check=False)
                assert r.returncode == 7              # an IPv4 server: IPv6 gets a reset
            rows = [r for r in peer.S.config.sockets() if r.get("tcp_state") == "LISTEN"]
            assert [r["proto"] for r in rows] == ["tcp6" if bind == "::" else "tcp"]
        finally:
            prog.terminate()
            try:
                prog.wait(15)
            except subprocess.TimeoutExpired:
                prog.kill()
                prog.wait()
            prog.stderr.close()
