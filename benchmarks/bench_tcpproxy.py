"""Throughput through rump_tcpproxy beside a direct Linux connection: same client, same server,
same run (testing/proxynet.py; needs root).

    python benchmarks/bench_tcpproxy.py [--mib N] [--repeat R]

Two namespaces: "srv" runs the proxy and the servers (bound to 0.0.0.0), "cli" the clients;
the proxy's TAP goes to "cli", and a veth pair joins "cli" and "srv" for the direct path.
  download   curl in "cli" fetches an N MiB file from Linux's http.server (proxypeer
             "serve http", threading, backlog 512) -- through the proxy (TAP -> kernel TCP ->
             host socket over loopback) and directly over the veth pair
  upload     proxypeer's Python client sends N MiB to its digest server and checks the sha256
             it answers, the same two ways
Each figure is the median of ``--repeat`` runs (default 5), in Mbit/s, with the ratio
proxy/direct.  Every transfer is checked (curl's byte count; the upload's digest).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from rumpkernel.testing.proxynet import PY, ProxyNet, proxy_net

PEER = (PY, "-m", "rumpkernel.testing.proxypeer")
VETH_SRV, VETH_CLI = "10.99.71.1", "10.99.71.2"


def mbps(nbytes: int, seconds: float) -> float:
    return nbytes * 8 / seconds / 1e6


def veth(net: ProxyNet) -> None:
    a, b = f"vps{os.getpid() % 100000}", f"vpc{os.getpid() % 100000}"
    subprocess.run(["ip", "-n", net.srv_ns, "link", "add", a, "type", "veth", "peer", "name", b,
                    "netns", net.cli_ns], check=True, timeout=30)
    for ns, dev, addr in ((net.srv_ns, a, VETH_SRV), (net.cli_ns, b, VETH_CLI)):
        subprocess.run(["ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev], check=True,
                       timeout=30)
        subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True, timeout=30)


def download(net: ProxyNet, host: str, port: int, size: int) -> float:
    t0 = time.monotonic()
    r = net.run_cli("curl", "-sS", "--fail", "-o", "/dev/null", "-w", "%{size_download}",
                    f"http://{host}:{port}/big.bin", timeout=600)
    dt = time.monotonic() - t0
    if r.returncode != 0 or int(r.stdout) != size:
        raise RuntimeError(f"download from {host}: {r.returncode} {r.stdout} {r.stderr}")
    return mbps(size, dt)


def upload(net: ProxyNet, host: str, port: int, size: int) -> float:
    t0 = time.monotonic()
    r = net.run_cli(*PEER, "digest", host, str(port), str(size), timeout=600)
    dt = time.monotonic() - t0
    if r.returncode != 0:
        raise RuntimeError(f"upload to {host}: {r.stdout} {r.stderr}")
    return mbps(size, dt)


def run(mib: int, repeat: int) -> dict[str, float]:
    size = mib << 20
    with tempfile.TemporaryDirectory(prefix="bench-tcpproxy-") as d:
        Path(d, "big.bin").write_bytes(os.urandom(size))
        with proxy_net("pxbench", ["--listen", "80=127.0.0.1:8000",
                                   "--listen", "9001=127.0.0.1:9001"],
                       subnet="10.99.72") as net:
            veth(net)
            net.http_server(d, 8000, addr="0.0.0.0")
            net.service("digest", "0.0.0.0:9001")
            res: dict[str, list[float]] = {k: [] for k in
                                           ("down_proxy", "down_direct", "up_proxy", "up_direct")}
            for _ in range(repeat):     # interleaved, so load changes hit both alike
                res["down_proxy"].append(download(net, net.kernel, 80, size))
                res["down_direct"].append(download(net, VETH_SRV, 8000, size))
                res["up_proxy"].append(upload(net, net.kernel, 9001, size))
                res["up_direct"].append(upload(net, VETH_SRV, 9001, size))
            st = net.stats()
            rc, _ = net.stop()
            if rc != 0 or st["reset"] or st["failed"]:
                raise RuntimeError(f"proxy: exit {rc}, {st}")
    med = {k: statistics.median(v) for k, v in res.items()}
    med["down_ratio"] = med["down_proxy"] / med["down_direct"]
    med["up_ratio"] = med["up_proxy"] / med["up_direct"]
    return med


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_tcpproxy: needs root (namespaces, TAP)", file=sys.stderr)
        return 1
    m = run(a.mib, a.repeat)
    if a.json:
        print(json.dumps(m))
        return 0
    print(f"rump_tcpproxy throughput, {a.mib} MiB per transfer, median of {a.repeat}")
    print(f"{'':10} {'proxy Mbit/s':>14} {'direct Mbit/s':>14} {'ratio':>8}")
    for name, key in (("download", "down"), ("upload", "up")):
        print(f"{name:10} {m[key + '_proxy']:14.0f} {m[key + '_direct']:14.0f} "
              f"{m[key + '_ratio']:8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
