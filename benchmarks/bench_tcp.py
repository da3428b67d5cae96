"""TCP through whole kernels: bulk throughput, 1-byte transactions and connections per second,
each beside Linux measured in the same run, and a profile of the bulk path.

    python benchmarks/bench_tcp.py [--mib N] [--repeat R] [--seconds S] [--conns C]
                                   [--profile-only] [--tap-only]

Measurements (medians of ``--repeat`` runs, default 5):
  bulk kernel->kernel     two kernels in this process on the in-process wire (one flow), at
                          MTU 1500 and as a jumbo link (MTU 65535)
  bulk kernel->Linux      this process's kernel on a TAP to ``socat`` in a netns, with the
                          virtio-net offloads (TSO, checksum; ``linkstr tap,offload=on``) and
                          without (``offload=off``)
  bulk Linux->kernel      ``socat`` in the netns to this process's kernel, offloads on and off
  reference               Linux->Linux over a veth pair between two namespaces, ``iperf3``
  1-byte transactions/s   kernel<->kernel on the wire; Linux (a host Python client in the
                          netns) <-> an echo server on the kernel's sockets over the TAP, with
                          p50/p99 latency; reference: the same Python client and server on
                          host sockets over the veth pair
  connections/s           ``--conns`` connect, accept, server close, client sees EOF and
                          closes (netperf's TCP_CRR without data), the same two ways (fresh
                          kernels and namespaces each run: TIME_WAIT left by a run, or a
                          run longer than the ephemeral port range, measures port reuse)
  profile                 cProfile of a kernel->kernel transfer: where the time goes per segment
The TAP and veth parts need root (skipped otherwise); namespaces are named with the pid and
removed at the end.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import rumpkernel
from rumpkernel.testing import netkit
from rumpkernel.testing.tcpnet import linux_peer

PID = os.getpid()
CHUNK = 1 << 16


def mbps(nbytes: int, seconds: float) -> float:
    return nbytes * 8 / seconds / 1e6


# ---- kernel <-> kernel in one process --------------------------------------------------------
class KernelPair:
    count = 0

    def __init__(self, mtu: int = 1500) -> None:
        KernelPair.count += 1
        self.a = rumpkernel.boot(hostname="bench-a")
        self.b = rumpkernel.boot(hostname="bench-b")
        hub = f"benchtcp-{PID}-{KernelPair.count}"          # a hub of its own
        netkit.plug(self.a, "wire0", hub, "10.99.50.1/24")
        netkit.plug(self.b, "wire0", hub, "10.99.50.2/24")
        if mtu != 1500:
            for k in (self.a, self.b):
                k.socket.config.set_mtu("wire0", mtu)
        netkit.ping(self.a, "10.99.50.2")
        self.port = 5000

    def close(self) -> None:
        self.a.halt()
        self.b.halt()

    def _listener(self):
        self.port += 1
        S = self.b.socket
        return S.create_server(("10.99.50.2", self.port), backlog=128), self.port

    def bulk(self, nbytes: int) -> float:
        lst, port = self._listener()
        got = [0]

        def sink() -> None:
            c, _ = lst.accept()
            with c:
                while d := c.recv(1 << 20):
                    got[0] += len(d)

        t = threading.Thread(target=sink)
        t.start()
        buf = bytes(CHUNK)
        c = self.a.socket.create_connection(("10.99.50.2", port))
        t0 = time.perf_counter()
        sent = 0
        while sent < nbytes:
            c.sendall(buf)
            sent += len(buf)
        c.close()
        t.join(300)
        dt = time.perf_counter() - t0
        lst.close()
        assert got[0] == sent, (got[0], sent)
        return dt

    def transactions(self, seconds: float) -> float:
        lst, port = self._listener()
        Sa, Sb = self.a.socket, self.b.socket

        def echo() -> None:
            c, _ = lst.accept()
            c.setsockopt(Sb.IPPROTO_TCP, Sb.TCP_NODELAY, 1)
            with c:
                while d := c.recv(1):
                    c.sendall(d)

        t = threading.Thread(target=echo)
        t.start()
        c = Sa.create_connection(("10.99.50.2", port))
        c.setsockopt(Sa.IPPROTO_TCP, Sa.TCP_NODELAY, 1)
        n = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            c.sendall(b"x")
            c.recv(1)
            n += 1
        dt = time.perf_counter() - t0
        c.close()
        t.join(30)
        lst.close()
        return n / dt

    def connections(self, count: int) -> float:
        lst, port = self._listener()
        Sa = self.a.socket
        stop = threading.Event()

        def acceptor() -> None:
            lst.settimeout(0.2)
            while not stop.is_set():
                try:
                    s, _ = lst.accept()
                except TimeoutError:
                    continue
                s.close()

        t = threading.Thread(target=acceptor)
        t.start()
        t0 = time.perf_counter()
        for _ in range(count):
            with Sa.create_connection(("10.99.50.2", port)) as c:
                c.recv(1)                       # the server's close: a whole lifecycle
        dt = time.perf_counter() - t0
        stop.set()
        t.join(30)
        lst.close()
        return count / dt


# ---- Linux references over a veth pair -------------------------------------------------------
def ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], capture_output=True, timeout=30, check=check)


class Veth:
    count = 0

    def __init__(self) -> None:
        Veth.count += 1
        self.n1, self.n2 = f"rk-bench1-{PID}-{Veth.count}", f"rk-bench2-{PID}-{Veth.count}"
        for n in (self.n1, self.n2):
            ip("netns", "add", n)
            ip("-n", n, "link", "set", "lo", "up")
        ip("-n", self.n1, "link", "add", "veth1", "type", "veth", "peer", "name", "veth2",
           "netns", self.n2)
        ip("-n", self.n1, "addr", "add", "10.99.51.1/24", "dev", "veth1")
        ip("-n", self.n2, "addr", "add", "10.99.51.2/24", "dev", "veth2")
        ip("-n", self.n1, "link", "set", "veth1", "up")
        ip("-n", self.n2, "link", "set", "veth2", "up")

    def close(self) -> None:
        for n in (self.n1, self.n2):
            ip("netns", "del", n, check=False)

    def iperf3(self, seconds: float) -> float:
        """Linux->Linux bulk throughput (bit/s, the receiver's count) of an iperf3 run."""
        for _ in range(20):
            srv = subprocess.Popen(["ip", "netns", "exec", self.n1, "iperf3", "-s", "-1",
                                    "-B", "10.99.51.1"], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
            try:
                time.sleep(0.2)
                r = subprocess.run(["ip", "netns", "exec", self.n2, "iperf3", "-c",
                                    "10.99.51.1", "-t", str(seconds), "-J"],
                                   capture_output=True, text=True, timeout=seconds + 60)
                try:
                    return json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"]
                except (ValueError, KeyError):
                    continue
            finally:
                srv.kill()
                srv.wait(10)
        raise RuntimeError(f"iperf3 failed: {r.stdout[-300:]} {r.stderr[-300:]}")

    PY_SERVER = textwrap.dedent("""
        import socket, sys
        mode = sys.argv[1]
        s = socket.create_server(("10.99.51.1", 6000), backlog=128)
        print("ready", flush=True)
        if mode == "echo":
            c, _ = s.accept()
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while d := c.recv(1):
                c.sendall(d)
        else:
            s.settimeout(5)
            while True:
                try:
                    c, _ = s.accept()
                except TimeoutError:
                    break
                c.close()
    """)
    PY_CLIENT = textwrap.dedent("""
        import json, socket, sys, time
        mode, amount = sys.argv[1], float(sys.argv[2])   # seconds (echo) or connections
        host, port = (sys.argv[3], int(sys.argv[4])) if len(sys.argv) > 4 else ("10.99.51.1",
                                                                                 6000)
        n = 0
        lat = []
        t0 = time.perf_counter()
        if mode == "echo":
            c = socket.create_connection((host, port))
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            clock = time.perf_counter
            while (t := clock()) - t0 < amount:
                c.sendall(b"x"); c.recv(1); n += 1
                lat.append(clock() - t)
            c.close()
        else:
            n = int(amount)
            for _ in range(n):
                with socket.create_connection((host, port)) as c:
                    c.recv(1)
        rate = n / (time.perf_counter() - t0)
        lat.sort()
        pct = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1e6) if lat else \
            (lambda q: 0.0)
        print(json.dumps({"rate": rate, "p50": pct(0.5), "p99": pct(0.99)}))
    """)

    def python_rate(self, mode: str, amount: float) -> float:
        """Transactions/s ("echo", for ``amount`` seconds) or connections/s ("connect",
        ``amount`` connections) of host Python sockets across the veth pair."""
        return self.python_run(mode, amount)["rate"]

    def python_run(self, mode: str, amount: float) -> dict[str, float]:
        """python_rate with latency percentiles (µs) for "echo": {"rate", "p50", "p99"}."""
        srv = subprocess.Popen(["ip", "netns", "exec", self.n1, sys.executable, "-c",
                                self.PY_SERVER, mode], stdout=subprocess.PIPE, text=True)
        try:
            assert srv.stdout.readline().strip() == "ready"
            r = subprocess.run(["ip", "netns", "exec", self.n2, sys.executable, "-c",
                                self.PY_CLIENT, mode, str(amount)], capture_output=True,
                               text=True, timeout=120, check=True)
            return json.loads(r.stdout)
        finally:
            srv.kill()
            srv.wait(10)
            srv.stdout.close()


def fresh_pair_connections(count: int) -> float:
    """Connections/s on new kernels (no TIME_WAIT left over from an earlier run)."""
    pair = KernelPair()
    try:
        return pair.connections(count)
    finally:
        pair.close()


def fresh_veth_connections(count: int) -> float:
    """The Linux reference on new namespaces (TIME_WAIT of an earlier run slows connect)."""
    veth = Veth()
    try:
        return veth.python_rate("connect", count)
    finally:
        veth.close()


# ---- kernel <-> Linux over a TAP ---------------------------------------------------------------
def tap_bulk(peer, nbytes: int, direction: str) -> float:
    S = peer.k.socket
    if direction == "out":
        sink = peer.popen("socat", "-u", f"TCP-LISTEN:7100,bind={peer.linux},reuseaddr",
                          "OPEN:/dev/null", stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                try:
                    c = S.create_connection((peer.linux, 7100), timeout=60)
                    break
                except ConnectionRefusedError:
                    time.sleep(0.05)
            buf = bytes(CHUNK)
            t0 = time.perf_counter()
            sent = 0
            while sent < nbytes:
                c.sendall(buf)
                sent += len(buf)
            c.close()
            sink.wait(120)
            return time.perf_counter() - t0
        finally:
            if sink.poll() is None:
                sink.kill()
                sink.wait()
    lst = S.create_server(("0.0.0.0", 7101))
    got = [0]

    def rx() -> None:
        c, _ = lst.accept()
        with c:
            while d := c.recv(1 << 20):
                got[0] += len(d)

    t = threading.Thread(target=rx)
    t.start()
    t0 = time.perf_counter()
    subprocess.run(["sh", "-c", f"head -c {nbytes} /dev/zero | ip netns exec {peer.ns} "
                    f"socat -u STDIN TCP:{peer.kernel}:7101"], timeout=300, check=True)
    t.join(120)
    dt = time.perf_counter() - t0
    lst.close()
    assert got[0] == nbytes
    return dt


def tap_rr(peer, seconds: float, port: int) -> dict[str, float]:
    """1-byte request/response: the host Python client in the namespace against an echo
    server on the kernel's sockets (TCP_NODELAY both ends): {"rate", "p50", "p99"} (µs)."""
    S = peer.k.socket
    lst = S.create_server(("0.0.0.0", port))

    def echo() -> None:
        c, _ = lst.accept()
        c.setsockopt(S.IPPROTO_TCP, S.TCP_NODELAY, 1)
        with c:
            while d := c.recv(1):
                c.sendall(d)

    t = threading.Thread(target=echo)
    t.start()
    try:
        r = peer.run(sys.executable, "-c", Veth.PY_CLIENT, "echo", str(seconds), peer.kernel,
                     str(port), timeout=seconds + 60, text=True)
        return json.loads(r.stdout)
    finally:
        t.join(30)
        lst.close()


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


# ---- profile ---------------------------------------------------------------------------------
WAITS = ("acquire' of '_thread.lock", "acquire' of '_thread.RLock", "select.poll",
         "wait' of 'threading.Condition", "select.select", "time.sleep", "fork_exec",
         "waitpid")


def profile(nbytes: int, where: str = "wire") -> None:
    """cProfile in every thread of a fresh kernel pair (senders, receive threads, callouts),
    or (``where`` "tap-out"/"tap-in") of a kernel on a TAP with offloads sending to or
    receiving from Linux: self time per data segment (per 1448 bytes, and per TSO
    super-segment on the TAP) by module, lock and poll waits set apart."""
    profiles: list[cProfile.Profile] = []

    def start(frame, event, arg):      # the first event of each new thread
        sys.setprofile(None)
        p = cProfile.Profile()
        profiles.append(p)
        p.enable()

    threading.setprofile(start)
    main_prof = cProfile.Profile()
    profiles.append(main_prof)
    supers = 0
    try:
        main_prof.enable()
        if where == "wire":
            pair = KernelPair()                 # its threads start now: each is profiled
            st_a = pair.a.net.inet.tcp.stack.stats
            st_b = pair.b.net.inet.tcp.stack.stats
            t0 = time.perf_counter()
            pair.bulk(nbytes)
            dt = time.perf_counter() - t0
            segs = st_a.segs_out + st_b.segs_out
            main_prof.disable()
            pair.close()
        else:
            with linux_peer("tcpprof", subnet="10.99.57") as peer:
                st = peer.k.net.inet.tcp.stack.stats
                drv = peer.k.net.interfaces["virt0"].driver
                t0 = time.perf_counter()
                dt = tap_bulk(peer, nbytes, where[4:])
                segs = st.segs_out + st.segs_in
                supers = drv.gso_out + drv.gso_in
                main_prof.disable()
    finally:
        threading.setprofile(None)
    data_segs = -(-nbytes // 1448)
    stats = pstats.Stats(profiles[0])
    for p in profiles[1:]:
        p.create_stats()
        stats.add(p)
    busy = waits = 0.0
    groups: dict[str, float] = {}
    for (fname, _line, fn), v in stats.stats.items():
        if any(w in fn for w in WAITS):
            waits += v[2]
            continue
        busy += v[2]
        key = _group(fname, fn)
        groups[key] = groups.get(key, 0.0) + v[2]
    what = "kernel->kernel" if where == "wire" else f"TAP {where[4:]} with offloads"
    print(f"\nprofile: {nbytes >> 20} MiB {what} under cProfile in every thread: "
          f"{data_segs} 1448-byte data segments, {segs} TCP segments with the ACKs, "
          f"{dt:.2f} s wall, {dt / data_segs * 1e6:.0f} us wall per data segment")
    print(f"  CPU (self time, all threads) {busy / data_segs * 1e6:.1f} us per data segment; "
          f"threads blocked in locks/poll {waits:.2f} s")
    if supers:
        print(f"  {supers} GSO/GRO super-frames: {busy / supers * 1e6:.0f} us CPU each")
    for key, tt in sorted(groups.items(), key=lambda kv: -kv[1])[:16]:
        print(f"  {key:<48} {tt / data_segs * 1e6:6.1f} us/segment  {100 * tt / busy:5.1f} %")
    out = io.StringIO()
    stats.stream = out
    stats.sort_stats("tottime").print_stats(30)
    print("\n".join(out.getvalue().splitlines()[6:42]))


def _group(fname: str, fn: str) -> str:
    parts = Path(fname).parts
    if "rumpkernel" in parts:
        return "/".join(parts[parts.index("rumpkernel") + 1:])
    if fname == "~":
        return f"builtin {fn}"[:48]
    return Path(fname).name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--conns", type=int, default=2000,
                    help="connections per connections/s run (below the ephemeral range: a "
                         "timed run would measure TIME_WAIT port exhaustion)")
    ap.add_argument("--profile-only", action="store_true")
    ap.add_argument("--tap-only", action="store_true",
                    help="only the TAP rows and their Linux references (and the profile)")
    ap.add_argument("--no-profile", action="store_true")
    args = ap.parse_args()
    nbytes = args.mib << 20
    if args.profile_only:
        profile(nbytes)
        if os.geteuid() == 0:
            profile(nbytes, "tap-out")
            profile(nbytes, "tap-in")
        return
    rows: dict[str, Any] = {}
    R = range(args.repeat)
    if not args.tap_only:
        pair = KernelPair()
        try:
            rows["bulk k->k"] = statistics.median(pair.bulk(nbytes) for _ in R)
            rows["tps k<->k"] = statistics.median(pair.transactions(args.seconds) for _ in R)
            rows["cps k->k"] = statistics.median(fresh_pair_connections(args.conns) for _ in R)
        finally:
            pair.close()
        jumbo = KernelPair(mtu=65535)
        try:
            rows["bulk k->k jumbo"] = statistics.median(jumbo.bulk(nbytes) for _ in R)
        finally:
            jumbo.close()
    if os.geteuid() == 0:
        veth = Veth()
        try:
            bps = statistics.median(veth.iperf3(args.seconds) for _ in R)
            rows["bulk veth"] = nbytes * 8 / bps     # as the time for nbytes
            rows["rr veth"] = median_run([veth.python_run("echo", args.seconds) for _ in R])
            if not args.tap_only:
                rows["tps veth"] = rows["rr veth"]["rate"]
                rows["cps veth"] = statistics.median(fresh_veth_connections(args.conns)
                                                     for _ in R)
        finally:
            veth.close()
        for offload, subnet in (("on", "10.99.52"), ("off", "10.99.53")):
            with linux_peer(f"tcpb{offload}", subnet=subnet, offload=offload) as peer:
                rows[f"bulk k->L {offload}"] = statistics.median(
                    tap_bulk(peer, nbytes, "out") for _ in R)
                rows[f"bulk L->k {offload}"] = statistics.median(
                    tap_bulk(peer, nbytes, "in") for _ in R)
                rows[f"rr L<->k {offload}"] = median_run(
                    [tap_rr(peer, args.seconds, 7110 + i) for i in R])
    report(rows, nbytes, args)
    if not args.no_profile:
        profile(min(nbytes, 8 << 20))
        if os.geteuid() == 0:
            profile(nbytes, "tap-out")
            profile(nbytes, "tap-in")


def report(rows: dict[str, Any], nbytes: int, args: argparse.Namespace) -> None:
    print(f"TCP, {args.mib} MiB per bulk run, medians of {args.repeat} "
          f"(2 shared cores, noisy: read the ratios)")
    ref = rows.get("bulk veth")
    for key, label in (("bulk k->k", "bulk kernel->kernel (in-process wire)"),
                       ("bulk k->k jumbo", "bulk kernel->kernel (wire, MTU 65535)"),
                       ("bulk k->L on", "bulk kernel->Linux (TAP, offloads)"),
                       ("bulk k->L off", "bulk kernel->Linux (TAP, no offloads)"),
                       ("bulk L->k on", "bulk Linux->kernel (TAP, offloads)"),
                       ("bulk L->k off", "bulk Linux->kernel (TAP, no offloads)"),
                       ("bulk veth", "bulk Linux->Linux (veth, iperf3)")):
        if key in rows:
            rate = mbps(nbytes, rows[key])
            ratio = f"   {mbps(nbytes, ref) / rate:8.1f}x slower than Linux" \
                if ref and key != "bulk veth" else ""
            print(f"  {label:<44} {rate:10.1f} Mbit/s{ratio}")
    for d in ("k->L", "L->k"):
        on, off = rows.get(f"bulk {d} on"), rows.get(f"bulk {d} off")
        if on and off:
            print(f"  offloads speed {d} up {off / on:.1f}x")
    ref_rr = rows.get("rr veth")
    for key, label in (("rr L<->k on", "1-byte RR Linux<->kernel (TAP, offloads)"),
                       ("rr L<->k off", "1-byte RR Linux<->kernel (TAP, no offloads)"),
                       ("rr veth", "1-byte RR Linux<->Linux (veth, same Python)")):
        r = rows.get(key)
        if r is None:
            continue
        line = (f"  {label:<44} {r['rate']:10.0f} trans/s  p50 {r['p50']:7.1f} us  "
                f"p99 {r['p99']:7.1f} us")
        if ref_rr and key != "rr veth":
            line += (f"   ratio {ref_rr['rate'] / r['rate']:4.1f}x rate, "
                     f"{r['p50'] / ref_rr['p50']:4.1f}x p50, {r['p99'] / ref_rr['p99']:4.1f}x p99")
        print(line)
    for key, refkey, label, unit in (
            ("tps k<->k", "tps veth", "1-byte transactions", "trans/s"),
            ("cps k->k", "cps veth", "connections (connect..EOF..close)", "conn/s")):
        if key not in rows:
            continue
        ours = rows[key]
        line = f"  {label + ' kernel<->kernel':<44} {ours:10.0f} {unit}"
        if refkey in rows:
            line += (f"   Linux over veth (same Python code) {rows[refkey]:8.0f} {unit}, "
                     f"ratio {rows[refkey] / ours:5.1f}x")
        print(line)


if __name__ == "__main__":
    main()
