"""Linux interop over virtif: a kernel process in a network namespace the test creates, on a TAP
device, against the Linux stack of that namespace.  Linux ping reaches the kernel, the kernel
pings Linux, UDP flows both ways (socat), tcpdump on the TAP sees well-formed ARP, ICMP and UDP.
Only addresses inside the namespace (10.99.9.0/24) are used; everything is removed afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.remote.harness import env, wait_connectable

pytestmark = [pytest.mark.root, pytest.mark.oracle("ip", "ping", "socat", "tcpdump")]

LINUX, KERNEL = "10.99.9.1", "10.99.9.2"


def run(*cmd: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check)


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"rk-net-{os.getpid()}"
    run("ip", "netns", "add", name)
    try:
        run("ip", "-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        run("ip", "netns", "del", name, check=False)


@pytest.fixture
def kernel_in_netns(netns: str, tmp_path: Path) -> Iterator[tuple[str, object, str]]:
    """A rump_server inside the namespace, with virt0 on a TAP it created."""
    url = f"unix://{tmp_path}/k.sock"
    tap = f"rktap{os.getpid() % 100000}"
    proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable,
                             "-m", "rumpkernel.apps.rump_server", "-s", url],
                            env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    conn = None
    try:
        conn = wait_connectable(url, proc)
        # offloads off: the capture checks Linux's checksums, which it leaves partial for a
        # TAP that does checksum offload
        conn.socket.config.ifconfig("virt0", create=True, linkstr=f"{tap},offload=off",
                                    inet=f"{KERNEL}/24")
        run("ip", "-n", netns, "addr", "add", f"{LINUX}/24", "dev", tap)
        run("ip", "-n", netns, "link", "set", tap, "up")
        yield netns, conn, tap
    finally:
        if conn is not None:
            conn.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_listening(dump: subprocess.Popen, timeout: float = 15.0) -> None:
    """Until tcpdump says it captures (so the first ARP exchange is in the file)."""
    import select

    deadline = time.monotonic() + timeout
    seen = b""
    while b"listening on" not in seen and time.monotonic() < deadline:
        if select.select([dump.stderr], [], [], 0.2)[0]:
            chunk = os.read(dump.stderr.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
    assert b"listening on" in seen, f"tcpdump did not start: {seen!r}"


def test_linux_and_kernel_talk_over_a_tap(kernel_in_netns, tmp_path: Path) -> None:
    ns, conn, tap = kernel_in_netns
    S = conn.socket
    pcap = tmp_path / "tap.pcap"
    dump = subprocess.Popen(["ip", "netns", "exec", ns, "tcpdump", "-i", tap, "-n", "-U",
                             "-w", str(pcap)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _wait_listening(dump)
    try:
        # Linux pings the kernel
        r = run("ip", "netns", "exec", ns, "ping", "-c", "3", "-i", "0.2", "-W", "3", KERNEL,
                check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "3 received" in r.stdout
        # the kernel pings Linux
        from rumpkernel.net.wire import icmp

        with S.socket(S.AF_INET, S.SOCK_RAW, S.IPPROTO_ICMP) as raw:
            raw.settimeout(5)
            raw.sendto(icmp.echo(icmp.ECHO, 4242, 1, b"from the rump kernel").emit(),
                       (LINUX, 0))
            while True:
                data, addr = raw.recvfrom(2048)
                m = icmp.parse(data[20:])
                if m.type == icmp.ECHO_REPLY and m.ident == 4242:
                    break
            assert addr == (LINUX, 0) and m.payload == b"from the rump kernel"
        # UDP, Linux -> kernel
        with S.socket(S.AF_INET, S.SOCK_DGRAM) as u:
            u.bind(("0.0.0.0", 40000))
            u.settimeout(10)
            subprocess.run(["ip", "netns", "exec", ns, "socat", "-u", "-",
                            f"UDP:{KERNEL}:40000"], input="hello kernel", text=True,
                           timeout=30, check=True)
            data, addr = u.recvfrom(100)
            assert data == b"hello kernel" and addr[0] == LINUX
            # UDP, kernel -> Linux
            rx = subprocess.Popen(["ip", "netns", "exec", ns, "socat", "-u",
                                   f"UDP-RECV:40001,bind={LINUX}", "STDOUT"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                got = b""
                deadline = time.monotonic() + 15
                while b"hello linux" not in got and time.monotonic() < deadline:
                    u.sendto(b"hello linux\n", (LINUX, 40001))
                    time.sleep(0.2)
                    if rx.poll() is not None:
                        break
                    os.set_blocking(rx.stdout.fileno(), False)
                    try:
                        got += rx.stdout.read() or b""
                    except BlockingIOError:
                        pass
                assert b"hello linux" in got, rx.stderr.read() if rx.poll() else got
            finally:
                rx.kill()
                rx.communicate(timeout=10)
        arp = {e["ip"]: e for e in conn.socket.config.arp()}
        assert LINUX in arp and arp[LINUX]["state"] == "reachable"
    finally:
        time.sleep(0.3)
        dump.send_signal(signal.SIGINT)
        try:
            dump.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            dump.kill()
            dump.communicate()
    text = run("tcpdump", "-r", str(pcap), "-n", "-vv").stdout
    assert "ARP" in text and "ICMP echo request" in text and "ICMP echo reply" in text
    assert f"{LINUX}" in text and f"{KERNEL}.40000: [udp sum ok] UDP" in text
    for bad in ("bad cksum", "truncated", "[|", "bad udp cksum", "wrong icmp cksum"):
        assert bad not in text, f"tcpdump found {bad!r}:\n{text}"


def test_virtif_needs_a_device_name(kernel_in_netns) -> None:
    _ns, conn, _tap = kernel_in_netns
    cfg = conn.socket.config
    cfg.create("virt1")
    with pytest.raises(OSError):
        cfg.linkstr("virt1", "x" * 20)                  # longer than IFNAMSIZ
    cfg.destroy("virt1")
