"""shmif: kernels in separate processes on one bus file; shmif_dumpbus reads the bus back and
tshark reads its pcap; a chain of kernel processes forwards a ping end to end."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rumpkernel.apps import shmif_dumpbus
from tests.remote.harness import ServerProcess


def _servers(tmp: Path, n: int, *args: str) -> list[ServerProcess]:
    out = []
    try:
        for i in range(n):
            out.append(ServerProcess(f"unix://{tmp}/k{i}.sock", *args))
    except BaseException:
        for s in out:
            s.close()
        raise
    return out


@pytest.mark.oracle("tshark")
def test_three_processes_on_one_bus(tmp_path: Path) -> None:
    bus = str(tmp_path / "bus")
    servers = _servers(tmp_path, 3)
    conns = []
    try:
        for i, srv in enumerate(servers):
            c = srv.connect()
            conns.append(c)
            c.socket.config.ifconfig("shmif0", create=True, linkstr=bus,
                                     inet=f"10.99.4.{i + 1}/24")
        from rumpkernel.net.wire import icmp

        for i, c in enumerate(conns):                  # ping every other kernel
            S = c.socket
            with S.socket(S.AF_INET, S.SOCK_RAW, S.IPPROTO_ICMP) as r:
                r.settimeout(10)
                for j in range(3):
                    if j == i:
                        continue
                    r.sendto(icmp.echo(icmp.ECHO, 100 + i, j, b"shmif").emit(),
                             (f"10.99.4.{j + 1}", 0))
                    while True:
                        data, addr = r.recvfrom(1500)
                        m = icmp.parse(data[20:])
                        if m.type == icmp.ECHO_REPLY and m.ident == 100 + i:
                            break
                    assert addr == (f"10.99.4.{j + 1}", 0) and m.payload == b"shmif"
        rx = []
        for c in conns:                               # UDP between every pair
            S = c.socket
            s = S.socket(S.AF_INET, S.SOCK_DGRAM)
            s.bind(("0.0.0.0", 5300))
            s.settimeout(10)
            rx.append(s)
        for i, s in enumerate(rx):
            for j in range(3):
                if i != j:
                    s.sendto(b"from %d to %d" % (i, j), (f"10.99.4.{j + 1}", 5300))
        for j, s in enumerate(rx):
            got = sorted(s.recvfrom(100) for _ in range(2))
            assert got == sorted((b"from %d to %d" % (i, j), (f"10.99.4.{i + 1}", 5300))
                                 for i in range(3) if i != j)
        for s in rx:
            s.close()
        info = conns[0].socket.config.interfaces()[1]["driver"]
        assert info["bus"] == bus and info["errors"] == 0 and info["lost"] == 0
    finally:
        for c in conns:
            c.close()
        for s in servers:
            s.close()
    out = subprocess.run([sys.executable, "-m", "rumpkernel.apps.shmif_dumpbus", bus],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    lines = out.splitlines()
    assert sum(line.endswith(" IPv4") for line in lines) == 6 + 6 + 6   # pings, replies, UDP
    assert any(line.endswith(" ff:ff:ff:ff:ff:ff ARP") for line in lines)
    pcap = tmp_path / "bus.pcap"
    assert shmif_dumpbus.main(["-p", str(pcap), bus]) == 0
    r = subprocess.run(["tshark", "-r", str(pcap), "-T", "fields", "-e", "ip.src", "-e",
                        "ip.dst", "-e", "icmp.type", "-e", "udp.dstport", "-e", "_ws.expert"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    echo = {(a, b) for a, b, t, *_ in rows if t == "8"}
    assert echo == {(f"10.99.4.{i + 1}", f"10.99.4.{j + 1}") for i in range(3) for j in range(3)
                    if i != j}
    assert sum(1 for row in rows if len(row) > 3 and row[3] == "5300") == 6
    assert not any(len(row) > 4 and row[4] for row in rows), "tshark found malformed frames"


def test_dumpbus_header_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import rumpkernel
    from rumpkernel.testing import netkit

    bus = str(tmp_path / "b2")
    k = rumpkernel.boot()
    try:
        netkit.plug(k, "shmif0", bus, "10.99.5.1/24")
    finally:
        k.halt()
    assert shmif_dumpbus.main(["-h", bus]) == 0
    assert "generation 1" in capsys.readouterr().out          # the gratuitous ARP
    (tmp_path / "junk").write_bytes(b"x" * 100)
    assert shmif_dumpbus.main([str(tmp_path / "junk")]) == 1
    assert "not a shmif bus" in capsys.readouterr().err
    with pytest.raises(OSError):
        k2 = rumpkernel.boot()
        try:
            k2.socket.config.ifconfig("shmif0", create=True, linkstr=str(tmp_path / "junk"))
        finally:
            k2.halt()


def test_bus_ring_wraps_and_readers_resync(tmp_path: Path) -> None:
    from rumpkernel.hypercall.dev import shmif

    bus = str(tmp_path / "small")
    comp = shmif.companion(None)
    a = comp.attach(bus, ringsize=RING)
    b = comp.attach(bus)
    try:
        frames = [bytes([i % 256]) * (100 + i) for i in range(2000)]
        for f in frames[:100]:
            a.send(f)
        got = [b.recv() for _ in range(100)]
        assert got == frames[:100]
        for f in frames[100:]:                       # far more than the ring holds
            a.send(f)
        first = b.recv()
        assert b.lost > 0 and first in frames        # resynchronised at the oldest record
        hdr, recs = shmif.read_bus(Path(bus).read_bytes())
        assert hdr["last"] - hdr["first"] <= RING and recs[-1][3] == frames[-1]
        assert [r[3] for r in recs] == frames[len(frames) - len(recs):]
    finally:
        for p in (a, b):
            p.close()
            p.release()
    assert os.path.getsize(bus) == shmif.HEADER_LEN + RING


RING = 96 * 1024


def test_chain_of_16_kernel_processes_pings_end_to_end(tmp_path: Path) -> None:
    from rumpkernel.testing.netchain import Chain

    with Chain(16, str(tmp_path)) as ch:
        rtts = ch.ping(count=3, timeout=20)
        assert None not in rtts, rtts
        hops = ch.conns[7].socket.config.stats()["ip"]
        assert hops["forward"] >= 6                    # 3 requests and 3 replies crossed it
        ttl_probe = ch.conns[0].socket
        with ttl_probe.socket(ttl_probe.AF_INET, ttl_probe.SOCK_DGRAM) as s:
            s.setsockopt(ttl_probe.IPPROTO_IP, ttl_probe.IP_TTL, 8)
            s.connect((ch.last_addr, 9))
            s.send(b"dies on the way")
            s.settimeout(20)
            with pytest.raises(OSError) as e:          # time exceeded at the 8th hop
                s.recv(10)
            assert e.value.errno == errno.EHOSTUNREACH
