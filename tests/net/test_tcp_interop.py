"""TCP against Linux: a kernel on a TAP inside a network namespace the test creates (the
10.99.4x.0/24 addresses live only there) -- in this process, and for the smaller tests also as
a rump_server process in the namespace reached through a remote (sysproxy) client.  curl
downloads 100 MiB from http.server running on the kernel's sockets, the kernel downloads from
Linux's ``python3 -m http.server``, socat and nc half-close both ways, 100 concurrent curl
clients, and tcpdump shows the options both sides negotiated.  Every wait is bounded; the
namespace and the kernel go away afterwards."""

from __future__ import annotations

import hashlib
import os
import re
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

pytestmark = [pytest.mark.root, pytest.mark.oracle("ip", "curl", "socat", "nc", "tcpdump")]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def start_capture(peer, pcap: Path, bpf: str) -> subprocess.Popen:
    dump = peer.popen("tcpdump", "-i", peer.tap, "-n", "-U", "--immediate-mode", "-s", "128",
                      "-w", str(pcap),
                      bpf, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 15
    seen = b""
    import select

    while b"listening on" not in seen and time.monotonic() < deadline:
        if select.select([dump.stderr], [], [], 0.2)[0]:
            chunk = os.read(dump.stderr.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
    assert b"listening on" in seen, seen
    return dump


def stop_capture(dump: subprocess.Popen) -> None:
    time.sleep(0.2)
    dump.terminate()
    try:
        dump.wait(10)
    except subprocess.TimeoutExpired:
        dump.kill()
        dump.wait()
    dump.stderr.close()


def test_curl_downloads_100mib_from_http_server_on_kernel_sockets(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(100 << 20))
    with linux_peer("tcpcurl") as peer:
        S = peer.S
        pcap = tmp_path / "syn.pcap"
        dump = start_capture(peer, pcap, "tcp[tcpflags] & tcp-syn != 0")
        server = KernelHTTPServer(S, ("0.0.0.0", 8080), quiet_handler(str(tmp_path))).start()
        try:
            out = tmp_path / "got.bin"
            r = peer.run("curl", "-sS", "--max-time", "240", "-o", str(out),
                         f"http://{peer.kernel}:8080/big.bin", timeout=300, check=False)
            assert r.returncode == 0, r.stderr
            assert out.stat().st_size == 100 << 20
            assert file_sha(out) == file_sha(big)
        finally:
            server.stop()
            stop_capture(dump)
        text = subprocess.run(["tcpdump", "-r", str(pcap), "-nn", "-v"], capture_output=True,
                              text=True, timeout=30).stdout
        synack = [ln for ln in text.splitlines() if "Flags [S.]" in ln]
        syn = [ln for ln in text.splitlines() if "Flags [S]," in ln]
        assert syn and synack, text
        # what Linux offered and what the kernel answered
        for line in (syn[0], synack[0]):
            assert re.search(r"options \[mss 1460,sackOK,TS val \d+ ecr \d+,nop,wscale \d+\]",
                             line), line
        assert f"{peer.kernel}.8080 >" in synack[0]
        st = peer.tcp_stats()
        assert st["checksum_errors"] == 0 and st["bytes_out"] >= 100 << 20


@pytest.mark.parametrize("mode", ["local", "remote"])
def test_kernel_downloads_from_linux_http_server(tmp_path: Path, mode: str) -> None:
    data = os.urandom(32 << 20)
    (tmp_path / "linux.bin").write_bytes(data)
    with linux_peer("tcphttp", subnet="10.99.42", mode=mode) as peer:
        srv = peer.popen("python3", "-m", "http.server", "8000", "--bind", peer.linux,
                         "--directory", str(tmp_path), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    conn = KernelHTTPConnection(peer.S, peer.linux, 8000, timeout=60)
                    conn.connect()
                    break
                except ConnectionRefusedError:
                    assert time.monotonic() < deadline, "Linux http.server did not start"
                    time.sleep(0.1)
            conn.request("GET", "/linux.bin")
            resp = conn.getresponse()
            assert resp.status == 200
            h = hashlib.sha256()
            n = 0
            while chunk := resp.read(1 << 20):
                h.update(chunk)
                n += len(chunk)
            conn.close()
            assert n == len(data) and h.hexdigest() == sha(data)
        finally:
            srv.terminate()
            srv.wait(10)


@pytest.mark.parametrize("mode", ["local", "remote"])
def test_socat_and_nc_half_close_both_ways(tmp_path: Path, mode: str) -> None:
    with linux_peer("tcphalf", subnet="10.99.43", mode=mode) as peer:
        S = peer.S
        request = os.urandom(3 << 20)
        reply = b"kernel got it\n" * 1000
        # Linux -> kernel: nc sends its input, shuts down its side (-N), prints the reply
        with S.create_server(("0.0.0.0", 7000)) as lst:
            got: dict[str, bytes] = {}

            def serve() -> None:
                c, _ = lst.accept()
                with c:
                    buf = bytearray()
                    while d := c.recv(1 << 20):        # until Linux's FIN
                        buf += d
                    got["req"] = bytes(buf)
                    c.sendall(reply)                    # our half is still open
            t = threading.Thread(target=serve)
            t.start()
            r = peer.run("nc", "-N", "-w", "30", peer.kernel, "7000", input=request,
                         timeout=60)
            t.join(30)
            assert got["req"] == request and r.stdout == reply
        # kernel -> Linux: socat runs a program on the connection; the kernel's shutdown(WR)
        # ends the program's input, its output comes back, then Linux closes
        out = tmp_path / "from_kernel.bin"
        lsn = peer.popen("socat", f"TCP-LISTEN:7001,bind={peer.linux},reuseaddr",
                         f"SYSTEM:'cat > {out}; echo linux done'", stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    c = S.create_connection((peer.linux, 7001), timeout=30)
                    break
                except ConnectionRefusedError:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
            with c:
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


@pytest.mark.parametrize("mode", ["local", "remote"])
def test_hundred_concurrent_linux_clients(tmp_path: Path, mode: str) -> None:
    files = {}
    for i in range(100):
        data = os.urandom(48 * 1024 + i)
        (tmp_path / f"f{i}.bin").write_bytes(data)
        files[i] = sha(data)
    with linux_peer("tcpmany", subnet="10.99.44", mode=mode) as peer:
        server = KernelHTTPServer(peer.S, ("0.0.0.0", 8080),
                                  quiet_handler(str(tmp_path))).start()
        try:
            args = ["curl", "-sS", "--parallel", "--parallel-immediate", "--parallel-max",
                    "100", "--max-time", "120"]
            outdir = tmp_path / "out"
            outdir.mkdir()
            for i in range(100):
                args += ["-o", str(outdir / f"f{i}.bin"),
                         f"http://{peer.kernel}:8080/f{i}.bin"]
            r = peer.run(*args, timeout=180, check=False)
            assert r.returncode == 0, r.stderr
            for i, h in files.items():
                assert file_sha(outdir / f"f{i}.bin") == h, i
            assert peer.tcp_stats()["passive_opens"] >= 100
        finally:
            server.stop()


@pytest.mark.slow
def test_kernel_downloads_100mib_from_linux(tmp_path: Path) -> None:
    data = os.urandom(100 << 20)
    (tmp_path / "linux.bin").write_bytes(data)
    with linux_peer("tcpbig", subnet="10.99.45") as peer:
        srv = peer.popen("socat", f"TCP-LISTEN:7002,bind={peer.linux},reuseaddr",
                         f"OPEN:{tmp_path / 'linux.bin'},rdonly", stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    c = peer.S.create_connection((peer.linux, 7002), timeout=120)
                    break
                except ConnectionRefusedError:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
            h = hashlib.sha256()
            n = 0
            with c:
                while d := c.recv(1 << 20):
                    h.update(d)
                    n += len(d)
            assert n == len(data) and h.hexdigest() == sha(data)
        finally:
            srv.kill()
            srv.wait(10)
