"""rump_tcpproxy against Linux (testing/proxynet.py): the proxy process runs in a namespace
with the services (Linux's http.server and small peers on 127.0.0.1), its TAP is moved into a
second namespace where the clients are -- curl and Python sockets that can reach only the
kernel's address.  Every response is checked by sha256; the proxy's statistics (SIGUSR1) and
the kernel's socket count show that state is freed.  Every wait is bounded."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rumpkernel.apps import rump_tcpproxy
from rumpkernel.testing.proxynet import PY, proxy_net

pytestmark = [pytest.mark.root, pytest.mark.oracle("ip", "curl")]
PEER = (PY, "-m", "rumpkernel.testing.proxypeer")


def _files(d: Path, n: int, size: int) -> dict[str, str]:
    out = {}
    for i in range(n):
        data = os.urandom(size + i * 997)
        (d / f"f{i}.bin").write_bytes(data)
        out[f"f{i}.bin"] = hashlib.sha256(data).hexdigest()
    return out


def test_100_concurrent_curl_clients_through_the_proxy(tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    want = _files(www, 100, 200 << 10)
    got = tmp_path / "got"
    got.mkdir()
    with proxy_net("pxcurl", ["--listen", "80=127.0.0.1:8000", "--max-conns", "200"],
                   subnet="10.99.61") as net:
        net.http_server(str(www), 8000)
        urls = []
        for name in want:
            urls += [f"http://{net.kernel}/{name}", "-o", str(got / name)]
        r = net.run_cli("curl", "-sS", "--fail", "--parallel", "--parallel-immediate",
                        "--parallel-max", "100", "--max-time", "120", *urls, timeout=180)
        assert r.returncode == 0, r.stderr
        for name, digest in want.items():
            assert hashlib.sha256((got / name).read_bytes()).hexdigest() == digest, name
        st = net.wait_stats(lambda s: s["active"] == 0 and s["kernel_sockets"] == 0)
        assert st["active"] == 0 and st["kernel_sockets"] == 0, st
        assert st["accepted"] == st["closed"] == 100 and st["refused"] == 0, st
        assert st["peak"] > 1, st            # they overlapped
        assert st["bytes_out"] >= sum((200 << 10) + i * 997 for i in range(100))
        rc, _ = net.stop()
        assert rc == 0, net.err


def test_half_close_both_ways_and_killed_clients_free_their_state(tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    (www / "big.bin").write_bytes(os.urandom(64 << 20))
    with proxy_net("pxhalf", ["--listen", "9001=127.0.0.1:9001",
                              "--listen", "10.99.62.2:9002=127.0.0.1:9002",
                              "--listen", "80=127.0.0.1:8000"], subnet="10.99.62") as net:
        net.service("digest", "9001")
        greet = net.service("greet", "9002")
        net.http_server(str(www), 8000)
        # client -> host FIN: the reply comes back after the client shut its sending side
        r = net.run_cli(*PEER, "digest", net.kernel, "9001", str(3 << 20))
        assert r.returncode == 0 and r.stdout.strip() == "ok", (r.stdout, r.stderr)
        # host -> client FIN: the client sees EOF first, then its data still reaches the host
        r = net.run_cli(*PEER, "greet", net.kernel, "9002", str(1 << 20))
        assert r.returncode == 0, (r.stdout, r.stderr)
        sent = r.stdout.split()[1]
        assert greet.stdout is not None
        assert greet.stdout.readline().split() == ["got", sent]
        # ten slow downloads, killed mid-transfer
        curls = [net.cli("curl", "-s", "--limit-rate", "200k", "-o", os.devnull,
                         f"http://{net.kernel}/big.bin") for _ in range(10)]
        st = net.wait_stats(lambda s: s["active"] == 10 and s["bytes_out"] > 10 * 65536)
        assert st["active"] == 10, st
        for p in curls:
            p.send_signal(signal.SIGKILL)
            p.wait(10)
        st = net.wait_stats(lambda s: s["active"] == 0 and s["kernel_sockets"] == 0)
        assert st["active"] == 0 and st["kernel_sockets"] == 0, st
        assert st["accepted"] == st["closed"] == 12, st
        rc, _ = net.stop()
        assert rc == 0, net.err


def test_connection_limit_idle_timeout_and_sigterm(tmp_path: Path) -> None:
    with proxy_net("pxlim", ["--listen", "7=127.0.0.1:9000", "--max-conns", "2",
                             "--idle-timeout", "2"], subnet="10.99.63") as net:
        net.service("echo", "9000")
        hold = net.cli(*PEER, "hold", net.kernel, "7", "2", stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE, text=True)
        assert hold.stdout is not None and hold.stdin is not None
        assert hold.stdout.readline().split() == ["open", "open"]
        assert hold.stdout.readline().strip() == "held"
        # a third connection while two are open: reset at once
        r = net.run_cli(*PEER, "refused", net.kernel, "7")
        assert r.stdout.strip() == "reset", (r.stdout, r.stderr)
        st = net.stats()
        assert st["active"] == 2 and st["refused"] == 1, st
        # idle for more than 2 s: both reset, the client sees it
        st = net.wait_stats(lambda s: s["idle"] == 2 and s["active"] == 0, timeout=30)
        assert st["idle"] == 2 and st["active"] == 0 and st["kernel_sockets"] == 0, st
        hold.stdin.close()
        states = hold.stdout.readline().split()
        assert hold.wait(10) == 0
        assert states and all(s in ("reset", "eof") for s in states), states
        # room again; then SIGTERM with a connection open ends it and exits 0 promptly
        hold = net.cli(*PEER, "hold", net.kernel, "7", "1", stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE, text=True)
        assert hold.stdout is not None and hold.stdin is not None
        assert hold.stdout.readline().split() == ["open"]
        assert hold.stdout.readline().strip() == "held"
        rc, seconds = net.stop(signal.SIGTERM)
        assert rc == 0, net.err
        assert seconds < 15, seconds
        hold.stdin.close()
        assert hold.stdout.readline().split() in (["reset"], ["eof"])
        assert any(" stats " in ln for ln in net.out)    # the final statistics


def test_backpressure_a_host_that_never_reads_holds_the_client_back() -> None:
    with proxy_net("pxbp", ["--listen", "9003=127.0.0.1:9003", "--buffer", "65536",
                            "--idle-timeout", "3"], subnet="10.99.64") as net:
        net.service("stall", "9003")
        # a loaded machine may not fill the host sockets' buffers in a short flood: flood
        # longer until the proxy's own buffer is reached (bounded: 3 + 6 + 12 s)
        total = 0
        for n, seconds in enumerate((3, 6, 12), 1):
            r = net.run_cli(*PEER, "flood", net.kernel, "9003", str(seconds))
            assert r.returncode == 0, r.stderr
            total += int(r.stdout)
            st = net.stats()
            # what the proxy took in is bounded by its buffer and the host sockets' buffers,
            # however long the client pushes; the rest waits in the kernel's and the client's
            assert st["max_buffered"] <= 65536, st
            assert st["bytes_in"] <= total, (st, total)
            assert st["bytes_in"] < n * (16 << 20), (st, total)    # per connection
            if st["max_buffered"] > 0:
                break
        assert st["max_buffered"] > 0, (st, total)
        st = net.wait_stats(lambda s: s["active"] == 0, timeout=30)   # idle: reset
        assert st["active"] == 0 and st["kernel_sockets"] == 0 and st["idle"] == n, st
        assert net.stop()[0] == 0


@pytest.mark.oracle("dnsmasq")
def test_dhcp_lease_then_relay_and_a_host_port_nobody_listens_on(tmp_path: Path) -> None:
    """--dhcp: a lease from dnsmasq on a TAP made beforehand (the clients share the
    namespace here); a target that refuses resets the client and counts as failed."""
    with proxy_net("pxdhcp", None, subnet="10.99.66") as net:
        for cmd in (["tuntap", "add", "dev", net.tap, "mode", "tap"],
                    ["addr", "add", "10.99.66.1/24", "dev", net.tap],
                    ["link", "set", net.tap, "up"]):
            subprocess.run(["ip", "-n", net.srv_ns, *cmd], check=True, timeout=30)
        leases = tmp_path / "leases"
        net.srv("dnsmasq", "-k", "--conf-file=/dev/null", "--pid-file=",
                f"--interface={net.tap}", "--bind-interfaces", "--no-ping", "--port=0",
                "--dhcp-range=10.99.66.100,10.99.66.150,255.255.255.0,1h",
                f"--dhcp-leasefile={leases}", "--log-facility=/dev/null",
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        net.service("digest", "9001")
        net.start_proxy(["--dhcp", "--dhcp-timeout", "30", "--listen", "9001=127.0.0.1:9001",
                         "--listen", "9002=127.0.0.1:9", "-v"], configure=False)
        got = [ln.split()[2] for ln in net.err if "from DHCP" in ln]
        assert got and got[0].startswith("10.99.66."), net.err
        addr = got[0]
        r = subprocess.run(["ip", "netns", "exec", net.srv_ns, *PEER, "digest", addr, "9001",
                            str(1 << 20)], capture_output=True, text=True, timeout=60)
        assert r.stdout.strip() == "ok", (r.stdout, r.stderr)
        r = subprocess.run(["ip", "netns", "exec", net.srv_ns, *PEER, "refused", addr, "9002"],
                           capture_output=True, text=True, timeout=60)
        assert r.stdout.strip() == "reset", (r.stdout, r.stderr)
        st = net.wait_stats(lambda s: s["active"] == 0)
        assert st["failed"] == 1 and st["closed"] == 2 and st["kernel_sockets"] == 0, st
        assert addr in leases.read_text()
        assert net.stop()[0] == 0
        deadline = time.monotonic() + 10             # released at exit
        while addr in leases.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert addr not in leases.read_text()


@pytest.mark.parametrize("argv, words", [
    (["--tap", "t0", "--addr", "10.1.2/24", "--listen", "80=127.0.0.1:80"], "bad address"),
    (["--tap", "t0", "--addr", "10.1.2.3", "--listen", "80=127.0.0.1:80"], "prefix length"),
    (["--tap", "t0", "--addr", "10.1.2.3/24", "--listen", "80=127.0.0.1:70000"], "bad port"),
    (["--tap", "t0", "--addr", "10.1.2.3/24", "--listen", "80:127.0.0.1:80"], "expected"),
    (["--tap", "t0", "--addr", "10.1.2.3/24", "--listen", "1.2.3:80=127.0.0.1:80"],
     "bad IPv4"),
    (["--tap", "t0", "--addr", "10.1.2.3/24", "--listen", "80=no.such.host.invalid:80"],
     "cannot resolve"),
    (["--tap", "a/b", "--addr", "10.1.2.3/24", "--listen", "80=127.0.0.1:80"],
     "bad interface name"),
    (["--tap", "t0", "--listen", "80=127.0.0.1:80"], "exactly one of --addr and --dhcp"),
    (["--tap", "t0", "--addr", "10.1.2.3/24"], "required"),
    (["--tap", "t0", "--addr", "10.1.2.3/24", "--listen", "80=127.0.0.1:80",
      "--max-conns", "0"], "connection limit"),
    (["--tap", "t0", "--addr", "10.1.2.3/24", "--listen", "80=127.0.0.1:80",
      "--idle-timeout", "-1"], "timeout"),
])
def test_bad_arguments_exit_2_with_one_line(argv: list[str], words: str) -> None:
    r = subprocess.run([PY, "-m", "rumpkernel.apps.rump_tcpproxy", *argv], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2, r
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rump_tcpproxy: ") and words in lines[0], \
        r.stderr


def test_tap_that_cannot_be_opened_and_port_in_use(capsys: pytest.CaptureFixture) -> None:
    # "lo" is not a TAP: attaching to it fails (in this process's namespace, harmlessly)
    assert rump_tcpproxy.main(["--tap", "lo", "--addr", "10.99.64.2/24",
                               "--listen", "80=127.0.0.1:80"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("rump_tcpproxy: cannot open TAP lo:"), err
    tap = f"rkpxport{os.getpid() % 100000}"
    assert rump_tcpproxy.main(["--tap", tap, "--addr", "10.99.64.2/24",
                               "--listen", "80=127.0.0.1:80",
                               "--listen", "10.99.64.2:80=127.0.0.1:81"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "listen on 10.99.64.2:80" in err[0], err
    assert "in use" in err[0], err
    r = subprocess.run(["ip", "link", "show", tap], capture_output=True, timeout=10)
    assert r.returncode != 0      # the TAP the proxy made went away with its kernel


def test_help_names_every_option() -> None:
    r = subprocess.run([PY, "-m", "rumpkernel.apps.rump_tcpproxy", "--help"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    for opt in ("--tap", "--addr", "--gateway", "--dhcp", "--listen", "--max-conns",
                "--idle-timeout", "--stats", "SIGUSR1", "SIGTERM"):
        assert opt in r.stdout, opt


@pytest.mark.slow
def test_soak_many_rounds_of_concurrent_clients(tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    want = _files(www, 20, 1 << 20)
    with proxy_net("pxsoak", ["--listen", "80=127.0.0.1:8000"], subnet="10.99.65") as net:
        net.http_server(str(www), 8000)
        t0 = time.monotonic()
        rounds = 0
        while time.monotonic() - t0 < 120:
            got = tmp_path / f"got{rounds}"
            got.mkdir()
            urls = []
            for name in want:
                urls += [f"http://{net.kernel}/{name}", "-o", str(got / name)]
            r = net.run_cli("curl", "-sS", "--fail", "--parallel", "--parallel-max", "20",
                            *urls, timeout=300)
            assert r.returncode == 0, r.stderr
            for name, digest in want.items():
                assert hashlib.sha256((got / name).read_bytes()).hexdigest() == digest
            rounds += 1
        st = net.wait_stats(lambda s: s["active"] == 0 and s["kernel_sockets"] == 0)
        assert st["closed"] == 20 * rounds and st["kernel_sockets"] == 0, st
        print(f"{rounds} rounds", file=sys.stderr)
        assert net.stop()[0] == 0
