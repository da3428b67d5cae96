"""virtio-net offloads on virtif against Linux (issue #12), in a network namespace the test
creates: bulk transfers both ways byte-exact with offloads on and off (32 MiB each way in the
default run, 256 MiB in the slow run); tcpdump on a veth behind the TAP, whose TSO/GSO is off,
shows the kernel's super-segments leaving as valid MSS-sized segments; a frame with a bad TCP
checksum that the host did not validate is still dropped and counted; a host that refuses
TUNSETOFFLOAD (simulated in the companion) leaves a working interface without the offloads."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

from rumpkernel.hypercall.dev import tap as tapdev
from rumpkernel.net.interface import IFCAP_CSUM_TCPv4_Rx, IFCAP_TSOv4
from rumpkernel.testing.tcpnet import linux_peer

pytestmark = [pytest.mark.root, pytest.mark.oracle("ip", "socat", "tcpdump", "ethtool")]
BLOCK = 1 << 20


def pattern(seed: int) -> bytes:
    """1 MiB of incompressible bytes, different per seed (the stream is block i of seed+i)."""
    return hashlib.shake_256(seed.to_bytes(8, "big")).digest(BLOCK)


def connect(S, addr: tuple[str, int], timeout: float = 60):
    deadline = time.monotonic() + 30
    while True:
        try:
            return S.create_connection(addr, timeout=timeout)
        except ConnectionRefusedError:
            assert time.monotonic() < deadline, f"nobody listens on {addr}"
            time.sleep(0.05)


def kernel_to_linux(peer, mib: int, port: int, out: Path, seed: int) -> str:
    """The kernel sends ``mib`` MiB to socat in the namespace, which writes ``out``; returns
    the sha256 of what was sent."""
    sink = peer.popen("socat", "-u", f"TCP-LISTEN:{port},bind={peer.linux},reuseaddr",
                      f"OPEN:{out},creat,trunc", stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL)
    try:
        h = hashlib.sha256()
        c = connect(peer.S, (peer.linux, port))
        with c:
            for i in range(mib):
                blk = pattern(seed + i)
                h.update(blk)
                c.sendall(blk)
        assert sink.wait(120) == 0
        return h.hexdigest()
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait()


def linux_to_kernel(peer, src: Path, port: int) -> str:
    """socat in the namespace sends file ``src`` to the kernel; the sha256 of what arrived."""
    S = peer.S
    lst = S.create_server(("0.0.0.0", port))
    h = hashlib.sha256()
    done = threading.Event()

    def rx() -> None:
        c, _ = lst.accept()
        with c:
            c.settimeout(120)
            while d := c.recv(1 << 20):
                h.update(d)
        done.set()

    t = threading.Thread(target=rx, daemon=True)
    t.start()
    try:
        peer.run("socat", "-u", f"OPEN:{src},rdonly", f"TCP:{peer.kernel}:{port}",
                 timeout=300)
        assert done.wait(120), "the kernel did not see the end of the stream"
    finally:
        lst.close()
    return h.hexdigest()


def write_pattern(path: Path, mib: int, seed: int) -> str:
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for i in range(mib):
            blk = pattern(seed + i)
            h.update(blk)
            f.write(blk)
    return h.hexdigest()


def file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(BLOCK):
            h.update(b)
    return h.hexdigest()


def both_ways(tmp_path: Path, offload: str, mib: int, subnet: str) -> None:
    with linux_peer(f"off{offload}", subnet=subnet, offload=offload) as peer:
        ifp = peer.k.net.interfaces["virt0"]
        out = tmp_path / "from-kernel.bin"
        sent = kernel_to_linux(peer, mib, 7200, out, seed=1)
        assert out.stat().st_size == mib * BLOCK
        assert file_sha(out) == sent
        out.unlink()
        src = tmp_path / "from-linux.bin"
        want = write_pattern(src, mib, seed=1000)
        assert linux_to_kernel(peer, src, 7201) == want
        drv = ifp.info()["driver"]
        st = peer.tcp_stats()
        assert st["checksum_errors"] == 0
        if offload == "on":
            assert ifp.capabilities & IFCAP_TSOv4 and ifp.tso_max == 65535
            # super-segments both ways, checksums left to the host
            assert drv["gso_out"] > mib and drv["gso_in"] > 0 and drv["csum_trusted"] > 0
            assert st["segs_out"] < mib * BLOCK // 1448 // 4
        else:
            assert ifp.capabilities == 0 and ifp.tso_max == 0
            assert drv["offloads"] == [] and drv["gso_out"] == drv["gso_in"] == 0
            assert st["segs_out"] >= mib * BLOCK // 1448


@pytest.mark.parametrize("offload", ["on", "off"])
def test_32mib_each_way_byte_exact(tmp_path: Path, offload: str) -> None:
    both_ways(tmp_path, offload, 32, "10.99.61" if offload == "on" else "10.99.62")


@pytest.mark.slow
@pytest.mark.parametrize("offload", ["on", "off"])
def test_256mib_each_way_byte_exact(tmp_path: Path, offload: str) -> None:
    both_ways(tmp_path, offload, 256, "10.99.63" if offload == "on" else "10.99.64")


def test_tcpdump_shows_super_segments_cut_to_mss_on_the_wire(tmp_path: Path) -> None:
    """TAP (host side .1) -> forwarding -> veth with TSO, GSO and checksum offload off -> a
    second namespace: the host kernel cuts the GSO frames and completes their partial
    checksums before the veth, where tcpdump checks every segment."""
    with linux_peer("offdump", subnet="10.99.65") as peer:
        pid = os.getpid()
        far = f"rk-offfar-{pid}"
        subprocess.run(["ip", "netns", "add", far], check=True, timeout=30)
        try:
            _wire(peer, far)
            peer.S.config.route_add("10.99.66.0/24", "10.99.65.1")
            pcap = tmp_path / "wire.pcap"
            dump = subprocess.Popen(["ip", "netns", "exec", far, "tcpdump", "-i", "vfar", "-n",
                                     "-U", "--immediate-mode", "-s", "0", "-w", str(pcap),
                                     "tcp port 7300"], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)
            _wait_listening(dump)
            out = tmp_path / "far.bin"
            sink = subprocess.Popen(["ip", "netns", "exec", far, "socat", "-u",
                                     "TCP-LISTEN:7300,bind=10.99.66.2,reuseaddr",
                                     f"OPEN:{out},creat,trunc"], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            try:
                h = hashlib.sha256()
                gso_before = peer.k.net.interfaces["virt0"].info()["driver"]["gso_out"]
                with connect(peer.S, ("10.99.66.2", 7300)) as c:
                    for i in range(4):
                        blk = pattern(50 + i)
                        h.update(blk)
                        c.sendall(blk)
                assert sink.wait(60) == 0
            finally:
                if sink.poll() is None:
                    sink.kill()
                    sink.wait()
                time.sleep(0.3)
                dump.terminate()
                dump.wait(10)
                dump.stderr.close()
            assert file_sha(out) == h.hexdigest()
            assert peer.k.net.interfaces["virt0"].info()["driver"]["gso_out"] > gso_before
            text = subprocess.run(["tcpdump", "-r", str(pcap), "-nn", "-vv",
                                   "src host 10.99.65.2"], capture_output=True, text=True,
                                  timeout=60).stdout
            data = [n for n in (int(x) for x in re.findall(r", length (\d+)$", text,
                                                           re.M)) if n > 0]
            assert data and sum(data) == 4 * BLOCK, (sum(data), len(data))
            assert max(data) == 1448 and data.count(1448) > len(data) * 0.9
            assert "incorrect" not in text
            assert text.count("(correct)") >= len(data)
        finally:
            subprocess.run(["ip", "netns", "del", far], timeout=30, check=False)


def _wire(peer, far: str) -> None:
    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, timeout=30, capture_output=True)

    ip("-n", peer.ns, "link", "add", "vnear", "type", "veth", "peer", "name", "vfar",
       "netns", far)
    ip("-n", peer.ns, "addr", "add", "10.99.66.1/24", "dev", "vnear")
    ip("-n", far, "addr", "add", "10.99.66.2/24", "dev", "vfar")
    for ns, dev in ((peer.ns, "vnear"), (far, "vfar"), (far, "lo")):
        ip("-n", ns, "link", "set", dev, "up")
    ip("-n", far, "route", "add", "10.99.65.0/24", "via", "10.99.66.1")
    peer.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
    for ns, dev in ((peer.ns, "vnear"), (far, "vfar")):
        # no segmentation or checksum offload: the host completes our partial checksums in
        # software before the veth, so the capture sees what a real wire would carry
        subprocess.run(["ip", "netns", "exec", ns, "ethtool", "-K", dev, "tso", "off", "gso",
                        "off", "gro", "off", "tx", "off"], check=True, timeout=30,
                       capture_output=True)


def _wait_listening(dump: subprocess.Popen) -> None:
    import select

    deadline = time.monotonic() + 15
    seen = b""
    while b"listening on" not in seen and time.monotonic() < deadline:
        if select.select([dump.stderr], [], [], 0.2)[0]:
            chunk = os.read(dump.stderr.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
    assert b"listening on" in seen, seen


def _csum(data: bytes) -> int:
    if len(data) & 1:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _syn_frame(peer, dst_mac: bytes, src_mac: bytes, sport: int, dport: int,
               bad: bool) -> bytes:
    src = socket.inet_aton(peer.linux)
    dst = socket.inet_aton(peer.kernel)
    tcp = bytearray(struct.pack("!HHIIBBHHH", sport, dport, 12345, 0, 5 << 4, 0x02, 65535, 0,
                                0))
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    c = _csum(pseudo + bytes(tcp))
    struct.pack_into("!H", tcp, 16, c ^ 0x5555 if bad else c)
    iph = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0, src,
                                dst))
    struct.pack_into("!H", iph, 10, _csum(bytes(iph)))
    return dst_mac + src_mac + b"\x08\x00" + bytes(iph) + bytes(tcp)


INJECT = """
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
s.send(bytes.fromhex(sys.argv[2]))
"""


def test_bad_checksum_from_the_host_is_dropped_and_counted() -> None:
    """A frame written on the host side of the TAP by a packet socket carries no checksum
    validation (no DATA_VALID, no NEEDS_CSUM): the kernel verifies it, drops the bad one and
    answers the good one (a SYN-ACK from the listener)."""
    import sys

    with linux_peer("offbad", subnet="10.99.67") as peer:
        S = peer.S
        lst = S.create_server(("0.0.0.0", 7400))
        try:
            ifp = peer.k.net.interfaces["virt0"]
            mac = ifp.lladdr
            host_mac = bytes.fromhex(peer.run("cat", f"/sys/class/net/{peer.tap}/address")
                                     .stdout.decode().strip().replace(":", ""))
            before = peer.tcp_stats()
            for bad in (True, False):
                frame = _syn_frame(peer, mac, host_mac, 40000 + bad, 7400, bad)
                peer.run(sys.executable, "-c", INJECT, peer.tap, frame.hex())
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                st = peer.tcp_stats()
                if st["checksum_errors"] > before["checksum_errors"] and \
                        st["segs_out"] > before["segs_out"]:
                    break
                time.sleep(0.05)
            assert st["checksum_errors"] == before["checksum_errors"] + 1
            drops = peer.k.net.inet.tcp.stack.stats.drops
            assert drops.get("bad_checksum", 0) == 1, drops
            assert st["segs_out"] > before["segs_out"]     # the good SYN was answered
            assert ifp.info()["driver"]["offloads"] == ["csum", "tso4", "tso6"]
        finally:
            lst.close()


def test_host_refusing_offloads_falls_back(tmp_path: Path, monkeypatch) -> None:
    """TUNSETOFFLOAD refused for TSO (then for everything): the interface keeps working with
    what the host took, and TCP sends MSS-sized segments."""
    real = tapdev.set_offload
    refuse = {"mask": tapdev.TUN_F_TSO4 | tapdev.TUN_F_TSO6}

    def picky(fd: int, flags: int) -> None:
        if flags & refuse["mask"]:
            raise OSError(errno.EINVAL, "refused (simulated)")
        real(fd, flags)

    monkeypatch.setattr(tapdev, "set_offload", picky)
    for mask, want_caps, subnet in ((tapdev.TUN_F_TSO4 | tapdev.TUN_F_TSO6, ["csum"],
                                     "10.99.68"),
                                    (0xFF, [], "10.99.69")):
        refuse["mask"] = mask
        with linux_peer("offfb", subnet=subnet) as peer:
            ifp = peer.k.net.interfaces["virt0"]
            drv = ifp.info()["driver"]
            assert drv["offloads"] == want_caps
            assert ifp.tso_max == 0 and not ifp.capabilities & IFCAP_TSOv4
            assert bool(ifp.capabilities & IFCAP_CSUM_TCPv4_Rx) == bool(want_caps)
            out = tmp_path / "fb.bin"
            sent = kernel_to_linux(peer, 4, 7500, out, seed=77)
            assert file_sha(out) == sent
            src = tmp_path / "fb-in.bin"
            want = write_pattern(src, 4, seed=78)
            assert linux_to_kernel(peer, src, 7502) == want
            drv = ifp.info()["driver"]
            assert drv["gso_out"] == 0 and drv["gso_in"] == 0
            assert peer.tcp_stats()["checksum_errors"] == 0


def test_linkstr_offload_option_is_checked() -> None:
    import rumpkernel

    k = rumpkernel.boot(hostname="offopt")
    try:
        with pytest.raises(OSError) as ei:
            k.socket.config.ifconfig("virt0", create=True, linkstr="rkx0,offload=maybe")
        assert ei.value.errno == errno.EINVAL
    finally:
        k.halt()
