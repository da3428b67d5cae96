"""Memory accounting and captures: socket and packet buffers count against the kernel memory
limit (under pressure the stack drops and counts, it never grows past it); any interface writes
a pcap that tshark reads."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import rumpkernel
from rumpkernel.testing import netkit


def test_socket_buffers_respect_the_memory_limit() -> None:
    limit = 3 << 20
    k = rumpkernel.boot(memlimit=limit)
    try:
        S = k.socket
        rx = [S.socket(S.AF_INET, S.SOCK_DGRAM) for _ in range(8)]
        tx = S.socket(S.AF_INET, S.SOCK_DGRAM)
        for s in rx:
            s.setsockopt(S.SOL_SOCKET, S.SO_RCVBUF, 4 << 20)   # each may ask for more than all
            s.bind(("127.0.0.1", 0))
        for _ in range(40):
            for s in rx:
                tx.sendto(bytes(30000), s.getsockname())
        k.sys.nanosleep(0.2)
        mem = k.statistics()["memory"]
        assert mem["peak"] <= limit and mem["in_use"] <= limit
        st = k.socket.config.stats()
        drops = st.get("udp", {}).get("fullsock", 0) + st.get("netisr", {}).get("nomem", 0) \
            + st.get("netisr", {}).get("qdrops", 0)
        assert drops > 0 and mem["failures"] + drops > 0
        got = 0
        for s in rx:
            s.setblocking(False)
            try:
                while True:
                    assert len(s.recv(65536)) == 30000
                    got += 1
            except BlockingIOError:
                pass
        assert 0 < got < 320
        for s in [*rx, tx]:
            s.close()
        assert k.statistics()["memory"]["by_tag"].get("sockbuf", 0) == 0
    finally:
        k.halt()
    assert k.statistics()["memory"]["in_use"] == 0


@pytest.mark.oracle("tshark")
def test_any_interface_writes_a_pcap(tmp_path: Path) -> None:
    _w, (ka, kb) = netkit.sim_kernels(8, ["a", "b"])
    try:
        netkit.plug(ka, "wire0", "cap", "10.99.3.1/24")
        netkit.plug(kb, "wire0", "cap", "10.99.3.2/24")
        ka.socket.config.pcap("wire0", "/cap/wire0.pcap")
        ka.socket.config.pcap("lo0", "/cap/lo0.pcap")

        def body():
            netkit.ping(ka, "10.99.3.2", 2)
            netkit.ping(ka, "127.0.0.1", 1)

        netkit.drive(ka, body)
        ka.socket.config.pcap("wire0", None)
        ka.socket.config.pcap("lo0", None)
        for name in ("wire0", "lo0"):
            (tmp_path / f"{name}.pcap").write_bytes(bytes(ka.host.files[f"/cap/{name}.pcap"]))
    finally:
        ka.halt()
        kb.halt()

    def fields(name: str) -> list[list[str]]:
        r = subprocess.run(["tshark", "-r", str(tmp_path / name), "-T", "fields", "-e",
                            "frame.protocols", "-e", "icmp.type"], capture_output=True,
                           text=True, timeout=60, check=True)
        return [line.split("\t") for line in r.stdout.splitlines()]

    wire = fields("wire0.pcap")
    assert [t for _p, t in wire if t] == ["8", "0", "8", "0"]
    assert any(p.startswith("eth:ethertype:arp") for p, _t in wire)
    lo = fields("lo0.pcap")
    assert [t for _p, t in lo] == ["8", "0"] and lo[0][0].startswith("null:ip:icmp")
