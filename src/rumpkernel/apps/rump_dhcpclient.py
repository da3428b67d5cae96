"""rump.dhcpclient: configure an interface of a rump_server from a DHCPv4 server (a client of
the kernel, as dhcpcd is a program on NetBSD; client/dhcp.py does the work).

    rump.dhcpclient [-u URL] [-t TIMEOUT] [-1] [-q] IF
        take a lease (address, prefix, default route, MTU, /etc/resolv.conf in the kernel),
        print it, then keep it -- renewing at T1, rebinding at T2 -- until SIGINT/SIGTERM,
        when it is released.  -1: configure and exit, keeping the lease (a later -x
        releases it); -t: seconds to wait for a lease (default 30)
    rump.dhcpclient [-u URL] -x IF      release the lease a previous -1 run saved

Also a function: ``dhcpclient(api, argv, out)`` on a kernel object or a connection.
Exit status 0; 1 with ``rump.dhcpclient: why`` (no lease in time: "timed out").
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any, TextIO

from rumpkernel.apps.cli import restore_sigpipe
from rumpkernel.client.dhcp import DhcpSession, release_saved


def ip4str(b: bytes) -> str:
    return ".".join(str(x) for x in b)


def _describe(lease: Any) -> str:
    parts = [f"address {ip4str(lease.address)}/{lease.prefix_len}",
             f"lease {lease.lease_ns // 10**9} s", f"server {ip4str(lease.server)}"]
    if lease.routers:
        parts.append("router " + ",".join(ip4str(r) for r in lease.routers))
    if lease.dns:
        parts.append("dns " + ",".join(ip4str(d) for d in lease.dns))
    if lease.domain:
        parts.append("domain " + lease.domain.decode("ascii", "replace"))
    return ", ".join(parts)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rump.dhcpclient", description="DHCPv4 client for an "
                                "interface of a rump kernel")
    p.add_argument("-t", type=float, default=30.0, help="seconds to wait for a lease")
    p.add_argument("-1", dest="oneshot", action="store_true",
                   help="configure and exit, keeping the lease")
    p.add_argument("-x", dest="release", action="store_true",
                   help="release the lease a previous -1 run saved")
    p.add_argument("-q", action="store_true", help="quiet")
    p.add_argument("interface")
    return p


def dhcpclient(api: Any, argv: list[str], out: TextIO = sys.stdout,
               stop: threading.Event | None = None) -> int:
    a = _parser().parse_args(argv)
    if a.release:
        if not release_saved(api, a.interface):
            out.write(f"{a.interface}: no saved lease\n")
            return 1
        if not a.q:
            out.write(f"{a.interface}: released\n")
        return 0
    s = DhcpSession(api, a.interface)
    lease = s.acquire(a.t)
    if not a.q:
        out.write(f"{a.interface}: {_describe(lease)}\n")
        out.flush()
    if a.oneshot:
        s.close()
        return 0
    stop = stop or threading.Event()
    try:
        while not stop.is_set():
            s.step(0.5)
    finally:
        s.release()
        if not a.q:
            out.write(f"{a.interface}: released\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    from rumpkernel.client.remote import connect

    restore_sigpipe()
    args = list(sys.argv[1:] if argv is None else argv)
    url = None
    if len(args) >= 2 and args[0] == "-u":
        url, args = args[1], args[2:]
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        conn = connect(url, progname="rump.dhcpclient", autofork=False)
    except (OSError, ValueError) as e:
        print(f"rump.dhcpclient: cannot reach the server {url or '$RUMP_SERVER'}: {e}",
              file=sys.stderr)
        return 1
    try:
        with conn:
            return dhcpclient(conn, args, sys.stdout, stop)
    except TimeoutError:
        print("rump.dhcpclient: timed out waiting for a DHCP server", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"rump.dhcpclient: {e.strerror or e}", file=sys.stderr)
        return 1
    except SystemExit as e:
        return int(e.code or 0)


if __name__ == "__main__":
    sys.exit(main())
