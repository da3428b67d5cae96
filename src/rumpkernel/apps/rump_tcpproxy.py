"""rump_tcpproxy: terminate TCP from an untrusted network in a rump kernel and relay each
connection to a host address through the host's own sockets (the seed's Figure 3).

    rump_tcpproxy --tap TAP (--addr A.B.C.D/LEN [--gateway G] | --dhcp) [--mtu N]
                  --listen [ADDR:]PORT=HOST:PORT [--listen ...]
                  [--max-conns N] [--idle-timeout S] [--connect-timeout S] [--buffer BYTES]
                  [--stats S] [-v]

The kernel gets interface ``virt0`` on the host TAP device ``TAP`` (opened, or created, in the
proxy's network namespace; the host side of the TAP is configured by the operator) and
listens on kernel TCP sockets; the peers on the TAP talk TCP only to the kernel.  Each
accepted connection is relayed to HOST:PORT through a host socket, both ways, and a
half-close (FIN) is passed on in each direction.

Policies:
    connection limit  ``--max-conns`` connections at once (default 256); one more is accepted
                      and reset at once (RST, SO_LINGER 0), so its client sees
                      ECONNRESET instead of waiting in a backlog; counted as "refused"
    idle timeout      ``--idle-timeout`` seconds (default 300, 0 = none) without a byte in
                      either direction reset both sides
    errors            a reset on one side resets the other; a host connect that fails or
                      takes longer than ``--connect-timeout`` resets the client
    memory            at most ``--buffer`` bytes (default 256 KiB) wait per direction and
                      connection; a full buffer stops reading that side (backpressure)

Once serving it says ``rump_tcpproxy: listening ADDR:PORT -> HOST:PORT`` (and with --dhcp
``rump_tcpproxy: virt0 A.B.C.D from DHCP``) on stderr.
Statistics -- totals, and one line per open connection with its bytes each way and age --
go to stdout on SIGUSR1, every ``--stats`` seconds, and at exit.  ``-v`` also logs each
connection as it closes.  SIGTERM/SIGINT close every connection, halt the kernel and exit 0.
Arguments that cannot be satisfied -- bad syntax or address, a host name that does not
resolve, a TAP that cannot be opened, a port in use -- exit 2 with ``rump_tcpproxy: why`` (one
line); no DHCP lease in time or a failure while running exits 1.

How: one kernel thread polls every kernel socket (the kernel's poll, through
``k.socket.selector()``); the main thread runs a host ``selectors`` loop over the host sockets;
each direction of a connection is one bounded buffer between them, and each loop wakes the
other through a socket pair of its own kind when a buffer fills or drains.  Two threads in
all, however many connections (apps/tcprelay.py; library use: ``Proxy(k, mappings, opts)``).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from rumpkernel.apps.tcprelay import PROG, Mapping, Options, Proxy, Usage


def _port(text: str, what: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise Usage(f"{what}: bad port {text!r}")
    return int(text)


def _ipv4(text: str, what: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise Usage(f"{what}: bad IPv4 address {text!r}") from None


def parse_mapping(text: str) -> Mapping:
    """``[ADDR:]PORT=HOST:PORT`` (HOST may be ``[v6addr]``)."""
    left, sep, right = text.partition("=")
    if not sep:
        raise Usage(f"--listen {text}: expected [ADDR:]PORT=HOST:PORT")
    laddr, _, lport = left.rpartition(":")
    laddr = _ipv4(laddr, f"--listen {text}") if laddr else "0.0.0.0"
    host, _, hport = right.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise Usage(f"--listen {text}: expected [ADDR:]PORT=HOST:PORT")
    return Mapping(laddr, _port(lport, f"--listen {text}"), host,
                   _port(hport, f"--listen {text}"))


def _cidr(text: str) -> str:
    try:
        iface = ipaddress.IPv4Interface(text)
    except ValueError:
        raise Usage(f"--addr: bad address {text!r} (A.B.C.D/LEN)") from None
    if "/" not in text:
        raise Usage(f"--addr: {text!r} needs a prefix length (A.B.C.D/LEN)")
    return str(iface)


# ---- the command ---------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:       # one line, exit 2
        raise Usage(message)


def _positive(kind: Callable[[str], Any], what: str, zero: bool = False) -> Callable[[str], Any]:
    def conv(text: str) -> Any:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad {what} {text!r}") from None
        if v < 0 or (v == 0 and not zero) or v != v:
            raise argparse.ArgumentTypeError(f"bad {what} {text!r}")
        return v
    return conv


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Terminate TCP from a TAP network in a rump kernel and "
                "relay each connection to a host address through host sockets.",
                epilog="SIGUSR1 prints statistics; SIGTERM/SIGINT shut down cleanly.")
    p.add_argument("--tap", required=True, metavar="TAP",
                   help="host TAP device for the kernel's interface virt0 (created if missing)")
    p.add_argument("--addr", metavar="A.B.C.D/LEN", help="the kernel's address on the TAP")
    p.add_argument("--gateway", metavar="A.B.C.D", help="the kernel's default route")
    p.add_argument("--dhcp", action="store_true", help="take the address from a DHCP server")
    p.add_argument("--dhcp-timeout", type=_positive(float, "timeout"), default=30.0,
                   metavar="S", help="seconds to wait for a lease (default 30)")
    p.add_argument("--mtu", type=_positive(int, "MTU"), help="interface MTU")
    p.add_argument("--listen", action="append", required=True, type=_mapping,
                   metavar="[ADDR:]PORT=HOST:PORT",
                   help="listen on the kernel's PORT and relay to HOST:PORT (repeatable)")
    p.add_argument("--max-conns", type=_positive(int, "connection limit"), default=256,
                   metavar="N", help="connections at once; more are reset (default 256)")
    p.add_argument("--idle-timeout", type=_positive(float, "timeout", zero=True),
                   default=300.0, metavar="S",
                   help="reset a connection idle this long (default 300, 0: never)")
    p.add_argument("--connect-timeout", type=_positive(float, "timeout"), default=10.0,
                   metavar="S", help="host connect timeout (default 10)")
    p.add_argument("--buffer", type=_positive(int, "buffer size"), default=256 * 1024,
                   metavar="BYTES", help="buffered bytes per direction (default 262144)")
    p.add_argument("--stats", type=_positive(float, "interval"), default=0.0, metavar="S",
                   help="print statistics every S seconds")
    p.add_argument("-v", "--verbose", action="store_true", help="log every connection")
    return p


def _mapping(text: str) -> Mapping:
    try:
        return parse_mapping(text)
    except Usage as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix(f"--listen {text}: ")) from None


def _check_args(a: argparse.Namespace) -> None:
    if a.dhcp == (a.addr is not None):
        raise Usage("give exactly one of --addr and --dhcp")
    if a.addr is not None:
        a.addr = _cidr(a.addr)
    if a.gateway is not None:
        if a.dhcp:
            raise Usage("--gateway comes from the lease with --dhcp")
        a.gateway = _ipv4(a.gateway, "--gateway")
    raw = a.tap.encode()
    if not raw or len(raw) > 15 or b"/" in raw or any(ch <= 32 for ch in raw):
        raise Usage(f"--tap: bad interface name {a.tap!r}")


class _Startup(Exception):
    """What the arguments name cannot be had (a TAP, a port): exit 2."""


class _NoLease(Exception):
    """No DHCP lease in time: exit 1."""


def _configure(k: Any, a: argparse.Namespace) -> Any:
    """virt0 on the TAP with its address (or a DHCP lease: the session is returned)."""
    cfg = k.socket.config
    try:
        cfg.create("virt0")
        cfg.linkstr("virt0", a.tap)
    except OSError as e:
        raise _Startup(f"cannot open TAP {a.tap}: {e.strerror or e}") from None
    try:
        if a.mtu:
            cfg.set_mtu("virt0", a.mtu)
        if a.addr:
            cfg.address("virt0", a.addr)
        cfg.up("virt0")
        if a.gateway:
            cfg.route_add("default", gateway=a.gateway)
    except OSError as e:
        raise _Startup(f"configuring virt0: {e.strerror or e}") from None
    if not a.dhcp:
        return None
    from rumpkernel.client.dhcp import DhcpSession

    session = DhcpSession(k, "virt0")
    try:
        session.acquire(a.dhcp_timeout)
    except TimeoutError:
        session.close()
        raise _NoLease(f"no DHCP lease on {a.tap} within {a.dhcp_timeout:g} s") from None
    return session


def _keep_lease(session: Any, stop: threading.Event) -> threading.Thread:
    def loop() -> None:
        with contextlib.suppress(Exception):
            while not stop.is_set():
                session.step(0.5)
    t = threading.Thread(target=loop, name="tcpproxy-dhcp", daemon=True)
    t.start()
    return t


def _err(msg: str) -> None:
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    import rumpkernel

    try:
        a = parser().parse_args(argv)
        _check_args(a)
    except Usage as e:
        _err(str(e))
        return 2
    opts = Options(max_conns=a.max_conns, idle_timeout=a.idle_timeout,
                   connect_timeout=a.connect_timeout, buffer=a.buffer, verbose=a.verbose,
                   stats_interval=a.stats)
    k = rumpkernel.boot(components=["net", "net_inet", "net_lo", "net_virtif"],
                        hostname="tcpproxy")
    session = None
    stop_dhcp = threading.Event()
    proxy = Proxy(k, a.listen, opts)
    try:
        proxy.resolve()
        session = _configure(k, a)
        proxy.listen()
    except (Usage, _Startup, OSError) as e:
        proxy.close()
        k.halt()
        _err(str(e) if not isinstance(e, OSError) else (e.strerror or str(e)))
        return 2
    except _NoLease as e:
        proxy.close()
        k.halt()
        _err(str(e))
        return 1
    keeper = None
    if session is not None:
        keeper = _keep_lease(session, stop_dhcp)
        lease = session.lease
        where = ".".join(map(str, lease.address)) if lease else "?"
        _err(f"virt0 {where} from DHCP")
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: proxy.stop())
    signal.signal(signal.SIGUSR1, lambda *_: proxy.request_stats())
    for m in a.listen:
        _err(f"listening {m}")
    try:
        proxy.run()
    finally:
        proxy.print_stats()
        stop_dhcp.set()
        if keeper is not None:
            keeper.join(5)         # the session is not shared between threads
        if session is not None:
            with contextlib.suppress(Exception):
                session.release()
        with contextlib.suppress(Exception):
            k.halt()
    if proxy.kerror is not None:
        _err(f"kernel loop failed: {proxy.kerror!r}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
