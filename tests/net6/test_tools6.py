"""The tools with IPv6 (apps/rump_net.py as functions on simulated kernels): rump.ifconfig
inet6 (add, show, delete), rump.route -inet6 (add, get, show, delete), rump.ping -6 and
rump.ping6's function, rump.ndp, rump.netstat -i/-r/-a/-s -- and their errors."""

from __future__ import annotations

import io

import pytest

from rumpkernel.apps import rump_net
from rumpkernel.testing import netkit
from tests.net6.sim6 import settle


@pytest.fixture
def pair():
    _world, (ka, kb) = netkit.sim_kernels(81, ["a", "b"])
    for k, n in ((ka, 1), (kb, 2)):
        netkit.plug(k, "wire0", "tools6", f"10.99.0.{n}/24")
    yield ka, kb
    for k in (ka, kb):
        k.halt()
        assert not k.panicked


def _run(fn, k, argv) -> tuple[int, str]:
    out = io.StringIO()
    return fn(k, argv, out), out.getvalue()


def test_ifconfig_route_ping6_ndp_netstat(pair) -> None:
    ka, kb = pair

    def body():
        res = {}
        res["add_a"] = _run(rump_net.ifconfig, ka, ["wire0", "inet6", "fd00:99::1/64"])
        res["add_b"] = _run(rump_net.ifconfig, kb, ["wire0", "inet6", "fd00:99::2",
                                                    "prefixlen", "64", "alias"])
        settle(ka, "wire0")
        settle(kb, "wire0")
        res["route"] = _run(rump_net.route, kb, ["add", "-inet6", "fd00:77::/64",
                                                 "fd00:99::1"])
        res["get"] = _run(rump_net.route, kb, ["get", "-inet6", "fd00:77::9"])
        res["ping"] = _run(rump_net.ping, ka, ["-6", "-c", "2", "-i", "0.05", "fd00:99::2"])
        res["ping_ll"] = _run(rump_net.ping, ka, ["-c", "1", "-W", "2",
                                                  _ll(kb) + "%wire0"])      # ':' means -6
        res["show_a"] = _run(rump_net.ifconfig, ka, ["wire0"])
        res["routes"] = _run(rump_net.route, kb, ["show"])
        res["ndp"] = _run(rump_net.ndp, ka, ["-a"])
        res["netstat_i"] = _run(rump_net.netstat, ka, ["-i"])
        res["netstat_s"] = _run(rump_net.netstat, ka, ["-s"])
        res["del_route"] = _run(rump_net.route, kb, ["delete", "-inet6", "fd00:77::/64"])
        res["del_addr"] = _run(rump_net.ifconfig, ka, ["wire0", "inet6", "fd00:99::1",
                                                       "delete"])
        res["after"] = _run(rump_net.ifconfig, ka, ["wire0"])
        return res

    r = netkit.drive(ka, body)
    assert all(rc == 0 for rc, _ in r.values()), {k: v for k, v in r.items() if v[0]}
    assert "destination: fd00:77::" in r["get"][1] and "gateway: fd00:99::1" in r["get"][1]
    assert "2 packets transmitted, 2 packets received" in r["ping"][1]
    assert "1 packets received" in r["ping_ll"][1] and "PING6" in r["ping_ll"][1]
    show = r["show_a"][1]
    assert "inet6 fd00:99::1/64 (static)" in show and "%wire0/64 (linklocal)" in show
    routes = r["routes"][1]
    assert "Internet6:" in routes and "fd00:77::/64" in routes and "UGS" in routes
    assert "fe80::%wire0/64" in routes
    assert "fd00:99::2" in r["ndp"][1] and "wire0" in r["ndp"][1]
    assert "fd00:99::/64" in r["netstat_i"][1]
    assert "ip6:" in r["netstat_s"][1] and "icmp6:" in r["netstat_s"][1]
    assert "fd00:99::1" not in r["after"][1]


def _ll(k) -> str:
    return next(a["addr"] for i in k.socket.config.interfaces() if i["name"] == "wire0"
                for a in i["addrs6"] if a["origin"] == "linklocal")


def test_tool_errors(pair) -> None:
    ka, _kb = pair

    def body():
        out = []
        for fn, argv in ((rump_net.ifconfig, ["wire0", "inet6", "fd00::1", "frobnicate"]),
                         (rump_net.ifconfig, ["wire0", "inet6"]),
                         (rump_net.route, ["add", "-inet6"]),
                         (rump_net.ndp, ["-z"])):
            with pytest.raises(rump_net.Usage) as e:
                _run(fn, ka, argv)
            out.append(str(e.value))
        with pytest.raises(OSError) as e:
            _run(rump_net.ifconfig, ka, ["wire0", "inet6", "ff02::1/64"])    # multicast
        with pytest.raises(OSError) as e2:
            _run(rump_net.ifconfig, ka, ["wire0", "inet6", "fd00::9", "delete"])
        with pytest.raises(OSError) as e3:
            _run(rump_net.route, ka, ["add", "-inet6", "fd00:5::/64", "fe80::1"])  # no zone
        return out, e.value.errno, e2.value.errno, e3.value.errno

    msgs, e1, e2, e3 = netkit.drive(ka, body)
    assert "frobnicate" in msgs[0] and "needs an address" in msgs[1]
    import errno

    assert (e1, e2, e3) == (errno.EINVAL, errno.EADDRNOTAVAIL, errno.EINVAL)
