"""rump_server: host a kernel and serve it to remote clients (rump_server(1)).

    rump_server [-c NCPU] [-r MEMLIMIT] [-l COMPONENT]... [-m MODULE.py]...
                [-d key=KEY,hostpath=PATH,size=SIZE[,offset=N][,type=blk|chr|reg]]...
                [-s] [-v] [--auth-file FILE] URL

URL is ``unix://PATH`` (socket mode 0600) or ``tcp://HOST:PORT`` (``tcp://0:PORT`` = every
address; requires a shared secret: ``--auth-file``, $RUMP_AUTH_FILE or $RUMP_AUTH).  With no
``-l`` every available component is loaded (rump_allserver).  ``-d`` maps a host file as an etfs
device (created 0644 if missing, extended if smaller; SIZE takes k/m/g/t suffixes, ``b`` = 512
bytes, or ``host`` = the file's size).  ``-m`` runs ``rump_modinit(k)`` of a Python file after
boot (a loadable module).  Without ``-s`` the server detaches once it is listening (the parent
exits 0, or 1 with the error); ``-s`` stays in the foreground.  ``-v`` logs every connection.
SIGTERM, SIGINT or a client's reboot (rump.halt) shut down cleanly: connections end, file systems
are flushed and unmounted, the socket file is removed.  A kernel panic dumps every thread's stack
and exits 70.

Library use (tests, embedding): ``Server(k, url).start()`` ... ``server.stop()``.

Threads: one accept thread; per connection, whichever thread holds its read token reads and
runs the calls it reads inline (leader/follower, see ``_Conn``); a watchdog hands the token to a
pool worker when its holder stays blocked in the kernel; calls that arrive while their reader
is in the middle of another call run on the shared worker pool.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from rumpkernel.client.sysproxy.session import SpServer, SpSession
from rumpkernel.client.sysproxy.wire import ProtocolError
from rumpkernel.hypercall import spsock
from rumpkernel.kern.errno import KernelError, KernelPanic

RECV_SIZE = 1 << 18
BUSY_NS = 2_000_000     # a read-token holder busy in the kernel this long hands reading over
EXIT_PANIC = 70
RB_NOSYNC = 0x4


class WorkerPool:
    """Host threads for system calls: an idle worker takes the next job (a lock hand-off);
    when none is idle a new one starts.  At most ``max_idle`` stay around."""

    def __init__(self, max_idle: int = 16) -> None:
        self.max_idle = max_idle
        self._lock = threading.Lock()
        self._idle: list[list[Any]] = []
        self._threads: set[threading.Thread] = set()
        self._stopping = False

    def submit(self, fn: Callable[[], None]) -> None:
        with self._lock:
            if self._stopping:
                raise RuntimeError("worker pool stopped")
            if self._idle:
                w = self._idle.pop()
                w[1] = fn
                w[0].release()
                return
            w = [threading.Lock(), fn]
            w[0].acquire()
            t = threading.Thread(target=self._loop, args=(w,), name="sp-worker", daemon=True)
            self._threads.add(t)
        t.start()

    def _loop(self, w: list[Any]) -> None:
        try:
            while True:
                fn, w[1] = w[1], None
                if fn is None:
                    return
                try:
                    fn()
                except BaseException:  # a bug in the session code: report, keep serving
                    traceback.print_exc()
                with self._lock:
                    if self._stopping or len(self._idle) >= self.max_idle:
                        return
                    self._idle.append(w)
                w[0].acquire()
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._stopping = True
            idle, self._idle = self._idle, []
            threads = list(self._threads)
        for w in idle:
            w[1] = None
            w[0].release()
        for t in threads:
            t.join(timeout)


class _Conn:
    """One client connection: the socket, its session, and its read token.

    Leader/follower: at any time one thread holds the connection's *read token* and is the
    only one reading the socket.  The holder runs the system calls it reads itself, inline (no
    hand-off to another thread); while it runs kernel code the token is *busy*.  A thread
    whose call waits for a copy reply takes the token if it is free or busy (the busy holder
    simply finds, when its call ends, that it has lost it and leaves) and reads its own reply;
    otherwise it sleeps and the holder delivers.  A holder that stays busy longer than
    ``BUSY_NS`` (a call blocked in the kernel) loses the token to a fresh worker (the server's
    watchdog), so requests from the client's other threads are still read.  Calls read while
    their reader is itself in the middle of a call go to the worker pool.
    """

    def __init__(self, server: Server, sock: socket.socket, peer: str) -> None:
        self.server = server
        self.sock = sock
        self.wlock = threading.Lock()
        self.lock = threading.Lock()
        self.holder: int | None = None        # thread ident with the read token
        self.busy_since: int | None = None    # the holder runs kernel code since (ns)
        self.waiting: list[Any] = []          # slots asleep waiting for copy data
        self.failure: str | None = None
        self.finished = threading.Event()
        self.session: SpSession = server.sp.new_session(self, peer)
        self.thread = threading.Thread(target=self._first, name=f"sp-conn-{peer}",
                                       daemon=True)

    # ---- Transport ---------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        with self.wlock:
            self.sock.sendall(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def await_copy(self, slot: Any) -> None:
        """Called by a thread in the middle of a call (vCPU held) once it has asked for
        client memory: read until the answer is there, or sleep while another thread reads."""
        me = threading.get_ident()
        sched = self.server.k.sched
        l = slot.lwp
        while slot.reply is None and not self.session.dead:
            with self.lock:
                take = self.holder == me or self.holder is None or self.busy_since is not None
                if take:
                    self.holder, self.busy_since = me, None
                else:
                    self.waiting.append(slot)
            if not take:
                try:
                    slot.wait()
                finally:
                    with self.lock:
                        if slot in self.waiting:
                            self.waiting.remove(slot)
                continue
            held = l.cpu is not None
            if held:
                sched.unschedule(l)
            try:
                self._read_some(inline=False)
            finally:
                if held:
                    sched.schedule(l)
        self._go_busy(me)

    # ---- the token -----------------------------------------------------------------------------
    def _go_busy(self, me: int) -> None:
        """The holder starts (or resumes) running kernel code."""
        with self.lock:
            if self.holder != me:
                return
            self.busy_since = time.monotonic_ns()
            wake = self.waiting[:1]
        for slot in wake:            # someone wants to read: it may take the token now
            slot.wake()
        self.server.watch()

    def _still_holder(self, me: int) -> bool:
        with self.lock:
            if self.holder == me:
                self.busy_since = None
                return True
            return False

    def steal_if_stuck(self, now: int) -> bool:
        """Watchdog: a holder busy for too long loses the token to a new worker."""
        with self.lock:
            if self.busy_since is None or now - self.busy_since < BUSY_NS:
                return self.busy_since is not None
            self.holder, self.busy_since = None, None
        self.server.pool.submit(self._lead)
        return False

    # ---- reading -------------------------------------------------------------------------------
    def _first(self) -> None:
        with self.lock:
            self.holder = threading.get_ident()
        try:
            self.send(self.session.start())
        except OSError as e:
            self.failure = f"connection error: {e}"
        self._lead()

    def _lead(self) -> None:
        """Run as the token holder: read, handle, run calls inline; leave when the token has
        gone to another thread; end the connection when it is over."""
        me = threading.get_ident()
        with self.lock:
            if self.holder is None:
                self.holder = me
            elif self.holder != me:
                return
        while self.failure is None:
            job = self._next_job()
            if job is None:
                continue
            self._go_busy(me)
            job()
            if not self._still_holder(me):
                return
        self._finish()

    def _next_job(self) -> Any:
        """One step as holder (not busy): the next job to run inline, or None."""
        s = self.session
        try:
            ev = s.next_event()
            if ev is None:
                s.feed(self.sock.recv(RECV_SIZE))
                return None
            return s.handle(*ev)
        except BaseException as e:
            self._fail(e)
            return None

    def _read_some(self, inline: bool) -> None:
        """Holder in the middle of a call: read one chunk, deliver copy data, hand new calls to
        the pool."""
        s = self.session
        try:
            ev = s.next_event()
            if ev is None:
                s.feed(self.sock.recv(RECV_SIZE))
                ev = s.next_event()
            while ev is not None:
                job = s.handle(*ev)
                if job is not None:
                    self.server.pool.submit(self._pooled(job))
                ev = s.next_event()
        except BaseException as e:
            self._fail(e)

    def _pooled(self, job: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            job()
            if self._still_holder(threading.get_ident()):  # it took the token on the way
                self._lead()
        return run

    def _fail(self, e: BaseException) -> None:
        if self.failure is not None:
            return
        s = self.session
        if isinstance(e, EOFError):
            self.failure = "closed by client"
        elif isinstance(e, ProtocolError):
            self.failure = f"protocol error: {e}"
            self.server.log_always(f"conn {s.id}{s.peer}: closing: {self.failure}")
        elif isinstance(e, OSError):
            self.failure = f"connection error: {e}"
        elif isinstance(e, KernelPanic):
            self.failure = f"kernel panic: {e.message}"
        else:  # pragma: no cover - a bug in the session code
            self.failure = f"internal error: {type(e).__name__}: {e}"
            self.server.log_always(f"conn {s.id}: {self.failure}\n{traceback.format_exc()}")
        self.close()
        s.kill()

    def _finish(self) -> None:
        with self.lock:
            if self.finished.is_set():
                return
            self.finished.set()
        try:
            self.session.connection_lost(self.failure or "closed")
        finally:
            self.sock.close()
            self.server._conn_done(self)


class Server:
    """Serve kernel ``k`` at ``url``.  ``secret`` (bytes) enables challenge-response
    authentication (required for tcp://)."""

    def __init__(self, k: Any, url: str, *, secret: bytes | None = None, verbose: bool = False,
                 mode: int = 0o600, log: Callable[[str], None] | None = None) -> None:
        kind = spsock.parse_url(url)[0]
        if getattr(k.host, "needs_sched_hooks", False):
            raise ValueError("a served kernel needs a host with real threads (PosixHost); the "
                             "deterministic sim host schedules only its own threads")
        if kind == "tcp" and secret is None:
            raise ValueError("tcp:// needs a shared secret (RUMP_AUTH_FILE or RUMP_AUTH)")
        self.k = k
        self.url = url
        self.mode = mode
        self.verbose = verbose
        self._log = log or (lambda m: (sys.stderr.write(f"rump_server: {m}\n"),
                                       sys.stderr.flush()))
        self.sp = SpServer(k, secret, self.log)
        self.sp.on_reboot = self._on_reboot
        self.sp.on_panic = self._on_panic
        self.pool = WorkerPool()
        self.conns: set[_Conn] = set()
        self._lock = threading.Lock()
        self._lsock: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self.stop_requested = threading.Event()
        self.exit_code = 0
        self.halt_sync = True
        self.stopped = False
        self._busy = threading.Event()
        self._watchdog_thread = threading.Thread(target=self._watchdog, name="sp-watchdog",
                                                 daemon=True)

    def log(self, msg: str) -> None:
        if self.verbose:
            self._log(msg)

    def log_always(self, msg: str) -> None:
        self._log(msg)

    def listen(self) -> None:
        self._lsock = spsock.listen(self.url, self.mode)

    def start(self) -> Server:
        if self._lsock is None:
            self.listen()
        self._accept_thread = threading.Thread(target=self._accept_loop, name="sp-accept",
                                               daemon=True)
        self._accept_thread.start()
        self._watchdog_thread.start()
        return self

    def watch(self) -> None:
        """A connection's reader went busy: make sure the watchdog is looking."""
        if not self._busy.is_set():
            self._busy.set()

    def _watchdog(self) -> None:
        """Every BUSY_NS while some reader is busy: hand stuck connections a new reader."""
        while not self.stopped:
            self._busy.wait()
            if self.stopped:
                return
            time.sleep(BUSY_NS / 1e9)
            now = time.monotonic_ns()
            with self._lock:
                conns = list(self.conns)
            busy = [c.steal_if_stuck(now) for c in conns]
            if not any(busy):
                self._busy.clear()
                if self.stopped or any(c.busy_since is not None for c in conns):
                    self._busy.set()

    def _accept_loop(self) -> None:
        lsock = self._lsock
        assert lsock is not None
        while not self.stop_requested.is_set():
            try:
                sock, addr = lsock.accept()
            except OSError as e:
                if self.stop_requested.is_set() or self._lsock is None:
                    return
                self.log_always(f"accept: {e}")
                continue
            spsock.tune_accepted(sock)
            peer = f" from {addr[0]}:{addr[1]}" if isinstance(addr, tuple) else ""
            with contextlib.suppress(KernelError, KernelPanic):
                self.sp.reap_forks()
            with self._lock:
                if self.stop_requested.is_set():
                    sock.close()
                    return
                conn = _Conn(self, sock, peer)
                self.conns.add(conn)
            conn.thread.start()

    def _conn_done(self, conn: _Conn) -> None:
        with self._lock:
            self.conns.discard(conn)

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

    def stop(self, sync: bool = True, halt: bool = True, timeout: float = 10.0) -> None:
        """Stop accepting, end every connection, halt the kernel (flushing unless ``sync`` is
        False), remove the socket file."""
        if self.stopped:
            return
        self.stopped = True
        self.stop_requested.set()
        lsock, self._lsock = self._lsock, None
        if lsock is not None:
            with contextlib.suppress(OSError):
                lsock.shutdown(socket.SHUT_RDWR)
            lsock.close()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout)
        with self._lock:
            conns = list(self.conns)
        for c in conns:
            c.close()
            c.session.kill()      # calls blocked in the kernel unwind now (EINTR)
        for c in conns:
            c.finished.wait(timeout)
        with contextlib.suppress(KernelError, KernelPanic):
            self.sp.reap_forks(everything=True)
        self._busy.set()
        if self._watchdog_thread.is_alive():
            self._watchdog_thread.join(timeout)
        self.pool.stop()
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
        if ready_w is not None:
            os.write(ready_w, text.encode())
        sys.stderr.write(text)
        return 1
    server = Server(k, a.url, secret=secret, verbose=a.verbose)
    server._lsock = lsock
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
