"""rump.ifconfig, rump.route, rump.ping, rump.netstat, rump.arp (NetBSD syntax) against served
kernels, and the same functions against a local kernel."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

import rumpkernel
from rumpkernel.apps import rump_net
from tests.remote.harness import RemoteView


@pytest.fixture
def two_servers(tmp_path: Path):
    views = []
    try:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            views.append(RemoteView(rumpkernel.boot(hostname=name), tmp_path / name))
        yield views, str(tmp_path / "bus")
    finally:
        for v in views:
            v.halt()


def tool(capsys: pytest.CaptureFixture, fn, url: str, *argv: str) -> tuple[int, str, str]:
    rc = fn(["-u", url, *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_configure_ping_and_inspect_two_kernels(two_servers, capsys) -> None:
    (a, b), bus = two_servers
    ifc, route, ping = rump_net.ifconfig_main, rump_net.route_main, rump_net.ping_main
    assert tool(capsys, ifc, a.url, "shmif0", "create")[0] == 0
    assert tool(capsys, ifc, a.url, "shmif0", "linkstr", bus)[0] == 0
    assert tool(capsys, ifc, a.url, "shmif0", "inet", "10.99.6.1/24", "up")[0] == 0
    for words in (["shmif0", "create"], ["shmif0", "linkstr", bus],
                  ["shmif0", "10.99.6.2", "netmask", "255.255.255.0"]):
        assert tool(capsys, ifc, b.url, *words)[0] == 0
    rc, out, _ = tool(capsys, ping, a.url, "-c", "2", "-i", "0.05", "10.99.6.2")
    assert rc == 0 and "2 packets transmitted, 2 packets received, 0.0% packet loss" in out
    assert "64 bytes from 10.99.6.2: icmp_seq=1 time=" in out
    assert "round-trip min/avg/max/stddev" in out
    rc, out, _ = tool(capsys, ifc, a.url)
    assert "shmif0: flags=0x8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> mtu 1500" in out
    assert "inet 10.99.6.1/24 broadcast 10.99.6.255" in out and f"linkstr: {bus}" in out
    assert "lo0: flags=0x8049<UP,LOOPBACK,RUNNING,MULTICAST> mtu 33184" in out
    assert tool(capsys, ifc, a.url, "shmif0", "10.99.7.1/24", "alias")[0] == 0
    assert "inet 10.99.7.1/24" in tool(capsys, ifc, a.url, "shmif0")[1]
    assert tool(capsys, ifc, a.url, "shmif0", "-alias", "10.99.7.1")[0] == 0
    assert "10.99.7.1" not in tool(capsys, ifc, a.url, "shmif0")[1]
    assert tool(capsys, route, a.url, "add", "-net", "10.42.0.0/16", "10.99.6.2")[0] == 0
    assert tool(capsys, route, a.url, "add", "default", "10.99.6.2")[0] == 0
    rc, out, _ = tool(capsys, route, a.url, "get", "10.42.9.9")
    assert "destination: 10.42.0.0" in out and "mask: 255.255.0.0" in out
    assert "gateway: 10.99.6.2" in out and "flags: <UGS>" in out
    rc, out, _ = tool(capsys, route, a.url, "show")
    assert "default             10.99.6.2" in out and "10.99.6.0/24        link#2" in out
    assert tool(capsys, route, a.url, "delete", "10.42.0.0/16")[0] == 0
    rc, _, err = tool(capsys, route, a.url, "delete", "10.42.0.0/16")
    assert rc == 1 and "rump.route: No such process" in err
    rc, out, _ = tool(capsys, rump_net.netstat_main, a.url, "-i")
    assert "shmif0    1500 10.99.6.0/24      10.99.6.1" in out
    rc, out, _ = tool(capsys, rump_net.netstat_main, a.url, "-s")
    assert "icmp:" in out and "in_type0" in out
    rc, out, _ = tool(capsys, rump_net.arp_main, a.url, "-a")
    assert "? (10.99.6.2) at b2:a0:" in out and "on shmif0" in out
    assert tool(capsys, rump_net.arp_main, a.url, "-s", "10.99.6.50", "02:00:00:00:00:50")[0] == 0
    assert "? (10.99.6.50) at 02:00:00:00:00:50 on shmif0 permanent" in tool(
        capsys, rump_net.arp_main, a.url, "-a")[1]
    assert tool(capsys, rump_net.arp_main, a.url, "-d", "10.99.6.50")[0] == 0


def test_tool_errors_are_one_line(two_servers, capsys) -> None:
    (a, _b), _bus = two_servers
    rc, _, err = tool(capsys, rump_net.ifconfig_main, a.url, "bogus0", "create")
    assert rc == 1 and err.startswith("rump.ifconfig: Invalid argument (cannot create")
    assert err.count("\n") == 1
    rc, _, err = tool(capsys, rump_net.ifconfig_main, a.url, "lo0", "frobnicate")
    assert rc == 1 and "unknown word 'frobnicate'" in err
    rc, out, _ = tool(capsys, rump_net.ping_main, a.url, "-c", "1", "-W", "0.2", "127.0.0.9")
    assert rc == 2 and "100.0% packet loss" in out              # nobody answers
    rc, _, err = tool(capsys, rump_net.ping_main, a.url, "-c", "1", "10.99.99.1")
    assert rc == 1 and "Network is unreachable" in err           # no route
    rc, _, err = tool(capsys, rump_net.netstat_main, "unix:///nonexistent/x.sock", "-i")
    assert rc == 1 and "cannot reach the server" in err


def test_tools_work_on_a_local_kernel() -> None:
    k = rumpkernel.boot()
    try:
        out = io.StringIO()
        rump_net.ifconfig(k, ["wire0", "create", "linkstr", "tools-local", "10.99.8.1/24",
                              "up"], out)
        rump_net.ifconfig(k, ["wire0"], out)
        assert "inet 10.99.8.1/24" in out.getvalue()
        out = io.StringIO()
        assert rump_net.ping(k, ["-c", "1", "-q", "127.0.0.1"], out) == 0
        assert "1 packets received" in out.getvalue()
        out = io.StringIO()
        rump_net.netstat(k, ["-r"], out)
        assert "127.0.0.0/8" in out.getvalue()
    finally:
        k.halt()
