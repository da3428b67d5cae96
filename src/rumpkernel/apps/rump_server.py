"""rump_server: host a kernel and serve it to remote clients (rump_server(1)).

    rump_server [-c NCPU] [-r MEMLIMIT] [-l COMPONENT]... [-m MODULE.py]...
                [-d key=KEY,hostpath=PATH,size=SIZE[,offset=N][,type=blk|chr|reg]]...
                [-n MAX_CLIENTS] [--handshake-timeout SECONDS]
                [-s] [-v] [--auth-file FILE] URL

URL is ``unix://PATH`` (socket mode 0600) or ``tcp://HOST:PORT`` (``tcp://0:PORT`` = every
address; requires a shared secret: ``--auth-file``, $RUMP_AUTH_FILE or $RUMP_AUTH).  With no
``-l`` every available component is loaded (rump_allserver).  ``-d`` maps a host file as an etfs
device (created 0644 if missing, extended if smaller; SIZE takes k/m/g/t suffixes, ``b`` = 512
bytes, or ``host`` = the file's size).  ``-m`` runs ``rump_modinit(k)`` of a Python file after
boot (a loadable module).  ``-n`` caps the connections served at once (default 256): one more
is told "server full" (EUSERS) and closed.  ``--handshake-timeout`` (default 5 s) closes a
connection that has not completed the handshake (authentication) in time.  Without ``-s`` the
server detaches once it is listening (the parent exits 0, or 1 with the error); ``-s`` stays in
the foreground.  ``-v`` logs every connection.  SIGTERM, SIGINT or a client's reboot
(rump.halt) shut down cleanly: connections end, file systems are flushed and unmounted, the
socket file is removed.  A kernel panic dumps every thread's stack and exits 70.

Library use (tests, embedding): ``Server(k, url).start()`` ... ``server.stop()``.  Connection
handling -- threads, the read token, the watchdog, limits -- is the sysproxy transport
(``client/sysproxy/transport.py``); this module is the command line and the shutdown policy.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from rumpkernel.client.sysproxy.transport import HANDSHAKE_TIMEOUT_S, MAX_CLIENTS, SpService
from rumpkernel.hypercall import spsock
from rumpkernel.kern.errno import KernelPanic

EXIT_PANIC = 70
RB_NOSYNC = 0x4


def _stderr_log(msg: str) -> None:
    sys.stderr.write(f"rump_server: {msg}\n")
    sys.stderr.flush()


class Server(SpService):
    """Serve kernel ``k`` at ``url`` and stop on a signal, a client's reboot or a panic.
    ``secret`` (bytes) enables challenge-response authentication (required for tcp://);
    the other keywords are the transport's (``max_clients``, ``handshake_timeout`` ...)."""

    def __init__(self, k: Any, url: str, *, secret: bytes | None = None, verbose: bool = False,
                 mode: int = 0o600, log: Callable[[str], None] | None = None,
                 **transport: Any) -> None:
        kind = spsock.parse_url(url)[0]
        if getattr(k.host, "needs_sched_hooks", False):
            raise ValueError("a served kernel needs a host with real threads (PosixHost); the "
                             "deterministic sim host schedules only its own threads")
        if kind == "tcp" and secret is None:
            raise ValueError("tcp:// needs a shared secret (RUMP_AUTH_FILE or RUMP_AUTH)")
        super().__init__(k, url, secret=secret, verbose=verbose, mode=mode,
                         log=log or _stderr_log, **transport)
        self.sp.on_reboot = self._on_reboot
        self.sp.on_panic = self._on_panic
        self.stop_requested = threading.Event()
        self.exit_code = 0
        self.halt_sync = True

    def _on_reboot(self, howto: int) -> None:
        self.log_always(f"reboot requested by a client (howto 0x{howto:x})")
        self.request_stop(sync=not howto & RB_NOSYNC)

    def _on_panic(self, exc: KernelPanic | None) -> None:
        self.log_always("kernel panic: shutting down")
        self.request_stop(code=EXIT_PANIC)

    def request_stop(self, code: int = 0, sync: bool = True) -> None:
        if not self.stop_requested.is_set():
            self.exit_code = code
            self.halt_sync = sync
        self.stop_requested.set()

    def wait(self) -> int:
        """Block until a stop is requested (signal, reboot, panic), then stop; the exit code."""
        while not self.stop_requested.wait(0.5):
            pass
        self.stop(sync=self.halt_sync)
        return self.exit_code

    def stop(self, sync: bool = True, halt: bool = True,  # type: ignore[override]
             timeout: float = 10.0) -> None:
        """End every connection, halt the kernel (flushing unless ``sync`` is False; not at
        all with ``halt=False``), remove the socket file."""
        if self.stopped:
            return
        self.stop_requested.set()
        super().stop(timeout)
        if halt and not self.k.dead:
            self.k.halt(sync=sync)
        spsock.remove_socket(self.url)


# ---- command line ------------------------------------------------------------------------------
_SUFFIX = {"": 1, "b": 512, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    t = text.strip().lower()
    num = t.rstrip("bkmgt")
    suffix = t[len(num):]
    if not num.isdigit() or suffix not in _SUFFIX:
        raise ValueError(f"bad size {text!r} (e.g. 4096, 64k, 16m, 1g)")
    return int(num) * _SUFFIX[suffix]


def parse_drivespec(spec: str) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "blk", "offset": 0}
    for part in spec.split(","):
        name, eq, value = part.partition("=")
        if not eq or name not in ("key", "hostpath", "size", "offset", "type"):
            raise ValueError(f"drivespec {spec!r}: unknown or malformed field {part!r}")
        out[name] = value
    for need in ("key", "hostpath"):
        if need not in out:
            raise ValueError(f"drivespec {spec!r}: missing {need}=")
    out.setdefault("size", "host")  # the host file's own size (NetBSD's size=host)
    if out["type"] not in ("blk", "chr", "reg"):
        raise ValueError(f"drivespec {spec!r}: type must be blk, chr or reg")
    out["offset"] = parse_size(str(out["offset"]))
    return out


def register_drive(k: Any, spec: dict[str, Any]) -> None:
    path = spec["hostpath"]
    if not os.path.exists(path):
        if spec["size"] == "host":
            raise ValueError(f"{path}: no such file (give size= to create it)")
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
        os.close(fd)
    have = os.path.getsize(path)
    size = have - spec["offset"] if spec["size"] == "host" else parse_size(spec["size"])
    if size <= 0:
        raise ValueError(f"{path}: nothing to map (size {size})")
    if os.path.isfile(path) and have < spec["offset"] + size:
        os.truncate(path, spec["offset"] + size)
    k.etfs_register(spec["key"], path, spec["type"], offset=spec["offset"], size=size)


def component_name(lib: str) -> str:
    """Accept NetBSD library names too: librumpfs_tmpfs / rumpfs_tmpfs -> tmpfs, rumpvfs ->
    vfs, rumpdev_xxx -> xxx, rumpnet / rumpnet_net / rumpnet_local -> net, rumpnet_netinet ->
    net_inet, rumpnet_shmif -> net_shmif."""
    n = lib.removeprefix("lib").removesuffix(".so")
    net = {"rumpnet": "net", "rumpnet_net": "net", "rumpnet_local": "net",
           "rumpnet_netinet": "net_inet"}
    if n in net:
        return net[n]
    if n.startswith("rumpnet_"):
        return "net_" + n[len("rumpnet_"):]
    for prefix, repl in (("rumpfs_", ""), ("rumpdev_", ""), ("rumpkern_", "")):
        if n.startswith(prefix):
            return repl + n[len(prefix):]
    return {"rumpvfs": "vfs", "rumpdev": "dev", "rumpkern": "kern"}.get(n, n)


def load_module(k: Any, path: str) -> None:
    spec = importlib.util.spec_from_file_location(f"rumpmod_{abs(hash(path))}", path)
    if spec is None or spec.loader is None:
        raise ValueError(f"{path}: not a Python module")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    init = getattr(mod, "rump_modinit", None)
    if init is None:
        raise ValueError(f"{path}: no rump_modinit(k)")
    init(k)


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be at least 1")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: not a number") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"{text}: must be positive")
    return v


def _drivespec_arg(spec: str) -> dict[str, Any]:
    """parse_drivespec for argparse: its message, not "invalid parse_drivespec value"."""
    try:
        return parse_drivespec(spec)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _size_arg(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="rump_server", description="Serve a rump kernel to "
                                "remote clients (sysproxy) at URL: unix:///path/to/socket or "
                                "tcp://HOST:PORT (tcp needs a shared secret).")
    p.add_argument("-c", dest="ncpu", type=int, default=os.cpu_count() or 1, metavar="N",
                   help="virtual CPUs (default: the host's count)")
    p.add_argument("-r", dest="memlimit", type=_size_arg, default=None, metavar="SIZE",
                   help="kernel memory limit (e.g. 64m)")
    p.add_argument("-l", dest="libs", action="append", default=[], metavar="COMPONENT",
                   help="component to load, repeatable (vfs, ext2, msdos, tmpfs, dev; "
                        "librumpfs_NAME is accepted; default: all)")
    p.add_argument("-m", dest="modules", action="append", default=[], metavar="MODULE",
                   help="Python file whose rump_modinit(k) runs after boot, repeatable")
    p.add_argument("-d", dest="drives", action="append", default=[], type=_drivespec_arg,
                   metavar="DRIVESPEC",
                   help="host file as a device, repeatable: key=KEY,hostpath=PATH[,size=SIZE]"
                        "[,offset=N][,type=blk|chr|reg] (size=host: the file's own size)")
    p.add_argument("-n", "--max-clients", type=_positive_int, default=MAX_CLIENTS, metavar="N",
                   help=f"connections served at once, those in the handshake included; one "
                        f"more is told 'server full' and closed (default {MAX_CLIENTS})")
    p.add_argument("--handshake-timeout", type=_positive_float, default=HANDSHAKE_TIMEOUT_S,
                   metavar="SECONDS", help="close a connection that has not completed the "
                   f"handshake (authentication) in time (default {HANDSHAKE_TIMEOUT_S:g})")
    p.add_argument("-s", dest="foreground", action="store_true",
                   help="stay in the foreground (do not detach)")
    p.add_argument("-v", dest="verbose", action="store_true", help="log to stderr")
    p.add_argument("--auth-file", metavar="FILE",
                   help="file whose first line is the shared secret (also RUMP_AUTH_FILE, "
                        "RUMP_AUTH)")
    p.add_argument("url", metavar="URL", help="where to listen: unix://PATH or tcp://HOST:PORT")
    return p.parse_args(argv)


def _boot(a: argparse.Namespace) -> Any:
    import rumpkernel

    comps = [component_name(c) for c in a.libs] or None
    if comps is not None:
        comps = [c for c in comps if c != "kern"]
    k = rumpkernel.boot(components=comps, ncpu=max(1, a.ncpu), memlimit=a.memlimit,
                        verbose=a.verbose)
    for d in a.drives:
        register_drive(k, d)
    for m in a.modules:
        load_module(k, m)
    return k


def main(argv: list[str] | None = None) -> int:
    a = _args(argv)
    try:
        if a.auth_file:
            os.environ["RUMP_AUTH_FILE"] = a.auth_file
        secret = spsock.secret_from_env()
        spsock.parse_url(a.url)
        if spsock.parse_url(a.url)[0] == "tcp" and secret is None:
            raise ValueError("tcp:// needs a shared secret: --auth-file, RUMP_AUTH_FILE or "
                             "RUMP_AUTH")
        lsock = spsock.listen(a.url)
    except (OSError, ValueError) as e:
        print(f"rump_server: {e}", file=sys.stderr)
        return 1
    ready_w = None
    if not a.foreground:
        ready_r, ready_w = os.pipe()
        if os.fork():
            os.close(ready_w)
            lsock.close()
            msg = os.read(ready_r, 4096)
            if msg == b"ok":
                return 0
            sys.stderr.write(msg.decode(errors="replace") or "rump_server: failed\n")
            return 1
        os.close(ready_r)
        os.setsid()
    try:
        k = _boot(a)
    except Exception as e:
        spsock.remove_socket(a.url)
        lsock.close()
        text = f"rump_server: boot failed: {e}\n"
        if ready_w is not None:       # the parent prints it (once), from the pipe
            os.write(ready_w, text.encode())
        else:
            sys.stderr.write(text)
        return 1
    server = Server(k, a.url, secret=secret, verbose=a.verbose, listener=lsock,
                    max_clients=a.max_clients, handshake_timeout=a.handshake_timeout)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: server.request_stop())
    server.start()
    server.log(f"serving {k.hostname} at {a.url}")
    if ready_w is not None:
        os.write(ready_w, b"ok")
        os.close(ready_w)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):      # a daemon has no terminal: run with -s to see diagnostics
            os.dup2(devnull, fd)
        os.close(devnull)
    code = server.wait()
    if code == EXIT_PANIC:
        sys.stderr.write("rump_server: kernel panic, exiting\n")
    sys.stderr.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
