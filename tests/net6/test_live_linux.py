"""The sans-IO cores against live peers, before they are wired into the kernel: a driver
(tests/net6/live_driver.py, a minimal host loop on an AF_PACKET socket) runs Addrconf,
NeighborCache, frag6, DhcpClient and the resolver core in a network namespace the test creates,
facing Linux's IPv6 stack and a real dnsmasq (RA with RDNSS, DHCPv4, DNS):
  - DAD, router solicitation, SLAAC from dnsmasq's RA, RDNSS;
  - Linux pings us (its NS answered by our NA), also with 3000-byte echoes (our reassembly of
    Linux's fragments, Linux's reassembly of ours); we ping Linux (our neighbour cache);
  - our DHCP client gets a lease from dnsmasq, and dnsmasq forgets it after our RELEASE;
  - our resolver asks dnsmasq over IPv6 (the RDNSS address) for A and AAAA through a CNAME.
Only documentation prefixes inside the namespace are used; everything is removed afterwards."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.oracle("ip", "ping", "dnsmasq")]
ROOT = Path(__file__).resolve().parents[2]


def run(*cmd: str, timeout: float = 20, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check)


class Driver:
    def __init__(self, ns: str, ifname: str) -> None:
        env = dict(os.environ, PYTHONPATH=f"{ROOT}/src:{ROOT}")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "tests.net6.live_driver", ifname,
             "40"], cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        self.events: queue.Queue = queue.Queue()
        self.backlog: list[dict] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.events.put(json.loads(line))
        self.events.put({"event": "exit"})

    def wait(self, event: str, timeout: float = 15) -> dict:
        """The first not yet consumed ``event`` (earlier events of other kinds are kept)."""
        for i, e in enumerate(self.backlog):
            if e["event"] == event:
                return self.backlog.pop(i)
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            try:
                e = self.events.get(timeout=left)
            except queue.Empty:
                break
            if e["event"] == event:
                return e
            if e["event"] == "exit":
                break
            self.backlog.append(e)
        raise AssertionError(f"no {event!r} from the driver (got {self.backlog}); stderr: "
                             f"{self.proc.stderr.read() if self.proc.poll() is not None else ''}")

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.reader.join(10)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass


@pytest.fixture
def network(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Namespace with a veth pair: p0 is Linux (2001:db8:1::1, 10.99.1.1, dnsmasq), u0 is ours
    (Linux's IPv6 and IPv4 are off there; the driver owns the wire)."""
    ns = f"v6-live-{os.getpid()}"
    dnsmasq = None
    run("ip", "netns", "add", ns)
    try:
        for cmd in (["link", "set", "lo", "up"],
                    ["link", "add", "p0", "type", "veth", "peer", "name", "u0"],
                    ["link", "set", "u0", "address", "02:00:00:00:0c:01"]):
            run("ip", "-n", ns, *cmd)
        run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.u0.disable_ipv6=1")
        for cmd in (["addr", "add", "10.99.1.1/24", "dev", "p0"],
                    ["addr", "add", "2001:db8:1::1/64", "dev", "p0", "nodad"],
                    ["link", "set", "p0", "up"], ["link", "set", "u0", "up"]):
            run("ip", "-n", ns, *cmd)
        leases = tmp_path / "leases"
        dnsmasq = subprocess.Popen(
            ["ip", "netns", "exec", ns, "dnsmasq", "-k", "--conf-file=/dev/null", "--pid-file=",
             "--interface=p0", "--bind-interfaces", "--enable-ra", "--no-ping",
             "--dhcp-range=2001:db8:1::,ra-only,64,1h",
             "--dhcp-range=10.99.1.100,10.99.1.150,255.255.255.0,1h",
             f"--dhcp-leasefile={leases}", "--domain=test",
             "--host-record=host.test,10.99.1.8,2001:db8:1::8", "--cname=alias.test,host.test",
             "--no-resolv", "--no-hosts", "--log-facility=/dev/null"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        yield ns, leases
    finally:
        if dnsmasq is not None:
            dnsmasq.terminate()
            try:
                dnsmasq.wait(10)
            except subprocess.TimeoutExpired:
                dnsmasq.kill()
                dnsmasq.wait()
        run("ip", "netns", "del", ns, check=False)


def test_cores_against_linux_and_dnsmasq(network) -> None:
    ns, leases = network
    d = Driver(ns, "u0")
    try:
        ready = d.wait("ready", 30)
        me = ready["address"]
        assert me.startswith("2001:db8:1:") and ready["linklocal"].startswith("fe80::")
        assert ready["dns"] and ready["dns"][0].startswith("fe80::")      # dnsmasq's RDNSS
        lease = d.wait("dhcp", 20)
        assert lease["action"] == "Configure" and lease["prefix"] == 24
        assert lease["address"].startswith("10.99.1.1") and lease["routers"] == ["10.99.1.1"]
        assert lease["domain"] == "test" and lease["lease_s"] == 3600
        assert lease["address"] in leases.read_text()
        # Linux pings us: its NS gets our NA, its echo our reply; then 3000-byte echoes
        r = run("ip", "netns", "exec", ns, "ping", "-6", "-c", "2", "-i", "0.2", "-W", "3", me,
                check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        r = run("ip", "netns", "exec", ns, "ping", "-6", "-c", "1", "-s", "3000", "-W", "3", me,
                check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        neigh = run("ip", "-n", ns, "-6", "neigh", "show", me).stdout
        assert "02:00:00:00:0c:01" in neigh
        # we ping Linux (neighbour cache resolution), small and fragmented
        d.send("ping6 2001:db8:1::1")
        assert d.wait("ping")["src"] == "2001:db8:1::1"
        d.send("ping6 2001:db8:1::1 4000")
        assert d.wait("ping")["bytes"] == 4000
        d.send("resolve alias.test")
        ans = d.wait("dns")
        assert ans == {"event": "dns", "error": "ok", "canonical": "host.test",
                       "addresses": ["10.99.1.8", "2001:db8:1::8"]}
        d.send("quit")
        bye = d.wait("bye")
        assert bye["reassembled"] >= 1 and bye["dhcp_state"] == "stopped"
        deadline = time.monotonic() + 5
        while lease["address"] in leases.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert lease["address"] not in leases.read_text()            # RELEASE was honoured
    finally:
        d.stop()
