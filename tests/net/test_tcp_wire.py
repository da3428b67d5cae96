"""Two kernels over the in-process wire with seeded faults (loss, 2% reordering, 1% duplication,
0.1% corruption, 1 ms each way): byte-exact transfers both ways with NewReno and CUBIC, exact
replay from a seed, connections closed and reopened under loss, hundreds of concurrent
connections, keepalive and connect timeouts -- all on the sim host's virtual clock."""

from __future__ import annotations

import errno
import hashlib
import random
from typing import Any

import pytest

from rumpkernel.testing import netkit

A_IP, B_IP = "10.0.0.1", "10.0.0.2"
SHUT_WR = 1
FAULTY = dict(reorder=0.02, duplicate=0.01, corrupt=0.001)


def two_kernels(seed: int, loss: float = 0.0, **extra: Any) -> tuple[Any, Any, Any]:
    world, (a, b) = netkit.sim_kernels(seed, ["a", "b"])
    hub = f"tcpwire-{seed}"
    netkit.plug(a, "wire0", hub, f"{A_IP}/24")
    netkit.plug(b, "wire0", hub, f"{B_IP}/24")
    faults = dict(FAULTY, loss=loss, delay_ns=1_000_000) if loss else dict(delay_ns=1_000_000)
    faults.update(extra)
    netkit.faults(a, hub, **faults)
    return world, a, b


def halt(*ks: Any) -> None:
    for k in ks:
        k.halt()
        assert k.panicked is None


def parallel(world: Any, *fns: Any) -> list[Any]:
    """Run ``fns`` as threads of the simulated world (called from inside it); their results,
    the first exception re-raised."""
    box: list[Any] = [None] * len(fns)
    errors: list[BaseException] = []

    def wrap(i: int, fn: Any) -> Any:
        def body() -> None:
            try:
                box[i] = fn()
            except BaseException as e:       # re-raised in the caller
                errors.append(e)
        return body

    threads = [world.thread_create(wrap(i, fn), f"t{i}") for i, fn in enumerate(fns)]
    for t in threads:
        world.thread_join(t)
    if errors:
        raise errors[0]
    return box


def pump(sock: Any, data: bytes, chunk: int = 65536) -> None:
    """Send ``data`` in pieces of varying size, then shut down the sending side."""
    rng = random.Random(len(data))
    i = 0
    while i < len(data):
        n = rng.randint(1, chunk)
        sock.sendall(data[i:i + n])
        i += n
    sock.shutdown(SHUT_WR)


def drain(sock: Any) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    while True:
        d = sock.recv(1 << 20)
        if not d:
            return n, h.hexdigest()
        h.update(d)
        n += len(d)


def exchange(world: Any, a: Any, b: Any, nbytes: int, cc: str, seed: int,
             port: int = 5001) -> dict[str, Any]:
    """One connection from a to b; ``nbytes`` each way at once; both ends check the bytes."""
    up = random.Random(seed).randbytes(nbytes)
    down = random.Random(seed + 1).randbytes(nbytes)
    Sa, Sb = a.socket, b.socket

    def main() -> dict[str, Any]:
        srv = Sb.socket(Sb.AF_INET, Sb.SOCK_STREAM)
        srv.bind((B_IP, port))
        srv.listen(1)
        c = Sa.socket(Sa.AF_INET, Sa.SOCK_STREAM)
        c.setsockopt(Sa.IPPROTO_TCP, Sa.TCP_CONGESTION, cc.encode())
        t0 = world.now_ns

        def server() -> tuple[int, str]:
            s, _ = srv.accept()
            with s:
                got = parallel(world, lambda: drain(s), lambda: pump(s, down))[0]
            return got

        def client() -> tuple[int, str]:
            c.connect((B_IP, port))
            got = parallel(world, lambda: drain(c), lambda: pump(c, up))[0]
            c.close()
            return got

        at_b, at_a = parallel(world, server, client)
        srv.close()
        return {"at_b": at_b, "at_a": at_a, "virtual_s": (world.now_ns - t0) / 1e9,
                "stats_a": a.net.inet.tcp.stack.stats.as_dict(),     # read inside the world:
                "stats_b": b.net.inet.tcp.stack.stats.as_dict(),     # it runs on after drive
                "trace": len(world.trace)}

    out = netkit.drive(a, main)
    assert out["at_b"] == (nbytes, hashlib.sha256(up).hexdigest())
    assert out["at_a"] == (nbytes, hashlib.sha256(down).hexdigest())
    return out


@pytest.mark.parametrize("cc", ["newreno", "cubic"])
@pytest.mark.parametrize("loss", [0.0, 0.01, 0.05])
@pytest.mark.parametrize("seed", [1, 2])
def test_byte_exact_both_ways_under_faults(seed: int, loss: float, cc: str) -> None:
    world, a, b = two_kernels(seed, loss)
    try:
        out = exchange(world, a, b, 1 << 20, cc, seed)
        if loss >= 0.05:
            for st in (out["stats_a"], out["stats_b"]):
                assert st["retrans_segs"] > 0 and st["sack_recoveries"] > 0
        if loss == 0:
            assert out["stats_a"]["retrans_segs"] == 0
    finally:
        halt(a, b)


@pytest.mark.slow
@pytest.mark.parametrize("cc", ["newreno", "cubic"])
@pytest.mark.parametrize("loss", [0.0, 0.01, 0.05])
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_64mib_both_ways_under_faults(seed: int, loss: float, cc: str) -> None:
    world, a, b = two_kernels(seed, loss)
    try:
        exchange(world, a, b, 64 << 20, cc, seed)
    finally:
        halt(a, b)


def test_a_seed_replays_exactly() -> None:
    runs = []
    for _ in range(2):
        world, a, b = two_kernels(7, 0.05)
        try:
            out = exchange(world, a, b, 256 << 10, "cubic", 7)
            runs.append((out["virtual_s"], out["stats_a"], out["stats_b"], out["trace"]))
        finally:
            halt(a, b)
    assert runs[0] == runs[1]
    assert runs[0][1]["retrans_segs"] > 0


def test_connections_closed_and_reopened_under_loss() -> None:
    world, a, b = two_kernels(21, 0.05)
    Sa, Sb = a.socket, b.socket

    def main() -> int:
        srv = Sb.socket(Sb.AF_INET, Sb.SOCK_STREAM)
        srv.setsockopt(Sb.SOL_SOCKET, Sb.SO_REUSEADDR, 1)
        srv.bind((B_IP, 7))
        srv.listen(8)
        rounds = 30

        def echo() -> None:
            for _ in range(rounds):
                s, _ = srv.accept()
                with s:
                    data = b""
                    while not data.endswith(b"\n"):
                        d = s.recv(4096)
                        assert d
                        data += d
                    s.sendall(data.upper())

        def client() -> int:
            ok = 0
            for i in range(rounds):
                with Sa.create_connection((B_IP, 7)) as c:
                    msg = f"round {i} ".encode() * (1 + i * 37) + b"\n"
                    c.sendall(msg)
                    c.shutdown(Sa.SHUT_WR)
                    assert drain(c) == (len(msg), hashlib.sha256(msg.upper()).hexdigest())
                    ok += 1
            return ok

        ok = parallel(world, echo, client)[1]
        srv.close()
        return ok

    try:
        assert netkit.drive(a, main) == 30
        st = a.net.inet.tcp.stack.stats
        assert st.active_opens == 30 and st.retrans_segs > 0
    finally:
        halt(a, b)


@pytest.mark.parametrize("nconn,each", [(200, 16 << 10)])
def test_hundreds_of_concurrent_connections(nconn: int, each: int) -> None:
    world, a, b = two_kernels(31, 0.01)
    Sa, Sb = a.socket, b.socket

    def main() -> list[bool]:
        srv = Sb.socket(Sb.AF_INET, Sb.SOCK_STREAM)
        srv.bind((B_IP, 9000))
        srv.listen(128)

        def serve_one() -> bool:
            s, _ = srv.accept()
            with s:
                n, _h = drain(s)
                s.sendall(n.to_bytes(8, "big"))
            return True

        def client(i: int) -> bool:
            data = random.Random(i).randbytes(each)
            with Sa.create_connection((B_IP, 9000)) as c:
                c.sendall(data)
                c.shutdown(Sa.SHUT_WR)
                assert c.recv(8) == each.to_bytes(8, "big")
                assert c.recv(8) == b""
            return True

        fns = [serve_one] * nconn + [lambda i=i: client(i) for i in range(nconn)]
        out = parallel(world, *fns)
        srv.close()
        return out

    try:
        assert all(netkit.drive(a, main))
        assert a.net.inet.tcp.stack.stats.active_opens == nconn
        assert b.net.inet.tcp.stack.stats.passive_opens == nconn
    finally:
        halt(a, b)


def test_keepalive_detects_a_dead_peer_and_connect_times_out() -> None:
    world, a, b = two_kernels(41)
    Sa, Sb = a.socket, b.socket

    def main() -> tuple[int, float, float]:
        srv = Sb.socket(Sb.AF_INET, Sb.SOCK_STREAM)
        srv.bind((B_IP, 22))
        srv.listen(1)
        c = Sa.create_connection((B_IP, 22))
        s, _ = srv.accept()
        c.setsockopt(Sa.SOL_SOCKET, Sa.SO_KEEPALIVE, 1)
        c.setsockopt(Sa.IPPROTO_TCP, Sa.TCP_KEEPIDLE, 10)
        c.setsockopt(Sa.IPPROTO_TCP, Sa.TCP_KEEPINTVL, 2)
        c.setsockopt(Sa.IPPROTO_TCP, Sa.TCP_KEEPCNT, 3)
        a.sys.nanosleep(25)                      # answered probes (10 s, 20 s) keep it up
        assert c.getsockopt(Sa.SOL_SOCKET, Sa.SO_ERROR) == 0
        netkit.faults(a, "tcpwire-41", loss=1.0)  # the peer vanishes
        t1 = world.now_ns
        with pytest.raises(TimeoutError):
            c.recv(10)
        dead_after = (world.now_ns - t1) / 1e9
        c.close()
        s.close()
        srv.close()
        a.sys.sysctl("net.inet.tcp.syn_retries", 2)
        with Sa.socket(Sa.AF_INET, Sa.SOCK_STREAM) as c2:
            t2 = world.now_ns
            e = c2.connect_ex((B_IP, 22))
            return e, dead_after, (world.now_ns - t2) / 1e9

    try:
        e, dead_after, connect_s = netkit.drive(a, main)
        assert e == errno.ETIMEDOUT
        assert connect_s == pytest.approx(1 + 2 + 4)         # SYN, 2 retries, backoff
        assert dead_after == pytest.approx(30 - 25 + 3 * 2, abs=0.01)  # next probe + 3 more
        st = a.net.inet.tcp.stack.stats
        assert st.keepalive_drops == 1 and st.keepalive_probes == 2 + 3
    finally:
        halt(a, b)
