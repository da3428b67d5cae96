"""Remote clients (rumpclient(3)): system calls to a kernel in another process.

    conn = rumpkernel.connect("unix:///tmp/rump")     # or $RUMP_SERVER
    fd = conn.sys.open("/x", os.O_CREAT | os.O_RDWR, 0o644)   # the same Sys facade as k.sys
    conn.close()

One connection is one process in the server's kernel (pid ``conn.pid``, root credentials, a clean
descriptor table).  Calls are thread-safe and several threads may have calls in flight: each call
has a request id; whichever waiting thread holds the *reader* role reads the socket and hands
frames to the thread they belong to (no extra thread, no hand-off for a single-threaded caller).
The kernel's COPYIN/COPYINSTR requests are answered from the caller's buffers on the calling
thread; COPYOUT writes into them.

Per call (fast path, one thread): one ``sendall`` of the SYSCALL frame, then the calling thread
itself ``recv``s the reply; a system call without pointer arguments allocates no buffer list
and no lock.  A thread that has to wait for another thread's reader sleeps on a lock made for
that wait only.

Reconnect policy (``retry=``, rumpclient_setconnretry(3)): ``0`` (default) no reconnect: calls
fail with ENOTCONN once the connection is lost; ``"once"`` one attempt; ``"inftime"`` forever;
a number: keep trying for that many seconds; ``"die"``: print a message and exit(1).  A call
that was in flight when the connection broke fails with ENOTCONN; after a reconnect the client is
a *new* process -- descriptors and cwd are gone, as in the dissertation.

fork: ``conn.prefork()`` asks the kernel to fork this process and returns a cookie;
``conn.postfork_child(cookie)`` (in the host child) opens a new connection attached to the forked
process.  With ``autofork=True`` (default) both run from ``os.register_at_fork``, so a plain
``os.fork()`` gives the child its own kernel process with copies of the parent's descriptors.
"""

from __future__ import annotations

import contextlib
import weakref
from collections import deque
from typing import Any

from rumpkernel.client.abi import oserror
from rumpkernel.client.sys import Sys
from rumpkernel.client.sysproxy.marshal import MarshalError, encode_args
from rumpkernel.client.sysproxy.messages import (
    Banner,
    Copyin,
    Copyinstr,
    Copyout,
    HandshakeReply,
    Message,
    PreforkReply,
    Raise,
    SyscallReply,
)
from rumpkernel.client.sysproxy.protocol import ClientProtocol
from rumpkernel.client.sysproxy.wire import HandshakeKind, ProtocolError
from rumpkernel.hypercall import spsock
from rumpkernel.kern.errno import Errno, KernelPanic

RECV_SIZE = spsock.RECV_SIZE
_FINAL = (SyscallReply, PreforkReply)


class _Call:
    """A request in flight: its buffers, frames routed to it by another thread's reader, and
    the lock it sleeps on while another thread reads (made only then)."""

    __slots__ = ("abandoned", "bufs", "queue", "reading", "rid", "wake")

    def __init__(self, bufs: list[Any]) -> None:
        self.rid = 0
        self.bufs = bufs
        self.queue: deque[Message] | None = None
        self.wake: Any = None
        self.reading = False        # it holds the reader role (taken when it was sent)
        self.abandoned = False


class ConnectionLost(Exception):
    pass


def _retry_policy(retry: Any) -> Any:
    if retry in (0, "0", None):
        return 0
    if retry in ("once", "die", "inftime"):
        return retry
    try:
        v = float(retry)
    except (TypeError, ValueError):
        raise ValueError(f"retry policy {retry!r}: 0, once, die, inftime or seconds") from None
    if v < 0:
        raise ValueError("retry seconds must be >= 0")
    return v


class RemoteClient:
    """A connection to a sysproxy server; ``.sys`` is the libc-shaped facade."""

    def __init__(self, url: str | None = None, *, retry: Any = 0, piggyback: bool = False,
                 progname: str | None = None, secret: bytes | str | None = None,
                 autofork: bool = True, timeout: float | None = 10.0) -> None:
        url = url or spsock.getenv("RUMP_SERVER")
        if not url:
            raise ValueError("no server: pass a URL or set RUMP_SERVER")
        spsock.parse_url(url)
        self.url = url
        self.retry = _retry_policy(retry)
        self.piggyback = piggyback
        self.progname = progname or "python"
        if isinstance(secret, str):
            secret = secret.encode()
        self.secret = secret if secret is not None else spsock.secret_from_env()
        self.timeout = timeout
        self.pid = 0
        self.server_name = ""
        self.on_signal = spsock.raise_signal
        self.stats = {"calls": 0, "copyin": 0, "copyinstr": 0, "copyout": 0, "raise": 0}
        self.sys = Sys(self._call)
        self._closed = False
        self._fork_cookie: bytes | None = None
        self._sock: Any = None
        self._reset_state()
        self._connect(HandshakeKind.GUEST)
        if autofork:
            ref = weakref.ref(self)

            def before() -> None:
                c = ref()
                if c is not None:
                    c._before_fork()

            def child() -> None:
                c = ref()
                if c is not None:
                    c._after_fork_child()

            def parent() -> None:
                c = ref()
                if c is not None:
                    c._fork_cookie = None

            spsock.register_at_fork(before, child, parent)

    # ---- connection ------------------------------------------------------------------------
    def _reset_state(self) -> None:
        self._state = spsock.allocate_lock()     # pending, reader role, broken
        self._wlock = spsock.allocate_lock()     # socket writes and proto output
        self._pending: dict[int, _Call] = {}
        self._sleepers: dict[int, _Call] = {}    # calls asleep until routed a frame / resign
        self._reader: _Call | None = None
        self._broken: str | None = None
        self._next_rid = 0
        self._proto = ClientProtocol(self.secret)

    def _connect(self, kind: int, cookie: bytes = b"") -> None:
        self._reset_state()
        sock = spsock.connect(self.url, self.timeout)
        try:
            sock.settimeout(self.timeout)
            banner = self._recv_msg(sock)
            if not isinstance(banner, Banner):
                raise ProtocolError("no banner")
            rep = self._handshake(sock, kind, cookie)
            if not isinstance(rep, HandshakeReply):
                raise ProtocolError("no handshake reply")
            if rep.errno:
                raise oserror(rep.errno, f"handshake refused: {rep.detail}")
            self._proto.check_handshake_reply(rep)
            sock.settimeout(None)
        except ProtocolError as e:
            sock.close()
            raise ConnectionRefusedError(f"{self.url}: {e}") from None
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self.pid = rep.pid
        self.server_name = banner.server

    def _handshake(self, sock: Any, kind: int, cookie: bytes) -> Message:
        """Send the handshake and return the server's answer.  A server that will not serve
        us at all (full, ...) sends its HANDSHAKE_REPLY right after the banner and closes:
        take that reason rather than a broken pipe."""
        early = self._proto.next_event()
        if early is not None:
            return early[1]
        data = self._proto.send_handshake(kind, self.progname, cookie, spsock.random_nonce())
        try:
            with self._wlock:
                sock.sendall(data)
        except OSError as e:
            try:
                return self._recv_msg(sock)
            except (OSError, ProtocolError):
                raise e from None
        return self._recv_msg(sock)

    def _recv_msg(self, sock: Any) -> Message:
        while True:
            ev = self._proto.next_event()
            if ev is not None:
                return ev[1]
            data = sock.recv(RECV_SIZE)
            self._proto.receive_data(data)
            if not data:
                try:
                    self._proto.next_event()
                except EOFError:
                    pass
                raise ProtocolError("server closed the connection during the handshake")

    def close(self) -> None:
        """Close the connection: the server ends this process and frees what it held."""
        self._closed = True
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(2)
            sock.close()
        self._lost("closed")

    def __enter__(self) -> RemoteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _lost(self, why: str) -> None:
        with self._state:
            if self._broken is None:
                self._broken = why
            sleepers = list(self._sleepers.values())
            self._sleepers.clear()
            for c in sleepers:
                c.wake.release()

    def _reconnect(self) -> None:
        """Apply the retry policy after a lost connection (ENOTCONN if it gives up)."""
        policy = self.retry
        if self._closed or policy == 0:
            raise oserror(Errno.ENOTCONN, f"connection to {self.url} lost: {self._broken}")
        if policy == "die":
            spsock.die(f"rump_sp: connection to kernel lost ({self._broken}), exiting")
        old = self._sock
        if old is not None:
            old.close()
            self._sock = None
        spsock.warn("rump_sp: connection to kernel lost, trying to reconnect ...")
        deadline = None if policy in ("inftime", "once") else spsock.monotonic() + policy
        delay = 0.05
        while True:
            try:
                self._connect(HandshakeKind.GUEST)
                spsock.warn("rump_sp: reconnected!")
                return
            except OSError as e:
                last = e
            if policy == "once" or (deadline is not None and spsock.monotonic() >= deadline):
                raise oserror(Errno.ENOTCONN, f"reconnect to {self.url} failed: {last}")
            spsock.sleep(delay)
            delay = min(delay * 2, 1.0)

    # ---- calls -------------------------------------------------------------------------------
    def _start(self, build: Any, bufs: list[Any], resend: bool = True) -> _Call:
        """Register a request and send its frame: ``build(protocol, rid)``, or for a system
        call ``build = (num, wire args)``.  ENOTCONN if it cannot."""
        if self._broken is not None:
            self._reconnect()
        call = _Call(bufs)
        st = self._state
        st.acquire()
        self._next_rid = rid = self._next_rid + 1
        call.rid = rid
        self._pending[rid] = call
        if self._reader is None:          # nobody reads: this call will read its own reply
            self._reader = call
            call.reading = True
        st.release()
        try:
            proto = self._proto
            data = proto.send_syscall(rid, *build) if type(build) is tuple else build(proto, rid)
            w = self._wlock
            w.acquire()
            try:
                self._sock.sendall(data)
            finally:
                w.release()
        except (OSError, AttributeError) as e:
            self._unstart(call)
            self._lost(f"send: {e}")
            if resend and self.retry != 0 and not self._closed:
                return self._start(build, bufs, False)   # never sent: safe to send again
            raise oserror(Errno.ENOTCONN, f"connection to {self.url} lost: {e}") from None
        except BaseException:
            self._unstart(call)
            raise
        return call

    def _unstart(self, call: _Call) -> None:
        """Forget a call that was never sent (and give up the reader role it took)."""
        if call.reading:
            call.reading = False
            self._resign(call, True)
        else:
            with self._state:
                self._pending.pop(call.rid, None)

    def _call(self, num: int, args: tuple[Any, ...]) -> Any:
        if not 0 <= num < 1 << 32:
            raise oserror(Errno.ENOSYS, f"no system call {num}")
        try:
            wargs, bufs = encode_args(num, args, self.piggyback)
        except MarshalError as e:
            raise oserror(Errno[e.errno_name], str(e)) from None
        self.stats["calls"] += 1
        call = self._start((num, wargs), bufs)
        rep: SyscallReply = self._wait(call)  # type: ignore[assignment]
        if rep.errno:
            if rep.panic:
                raise KernelPanic(rep.detail)
            raise oserror(rep.errno, rep.detail or None)
        return rep.value

    def prefork(self) -> bytes:
        """Fork this client's kernel process; the cookie lets the host child attach to it."""
        call = self._start(lambda p, rid: p.send_prefork(rid), [])
        rep: PreforkReply = self._wait(call)  # type: ignore[assignment]
        if rep.errno:
            raise oserror(rep.errno, "prefork")
        return rep.cookie

    def postfork_child(self, cookie: bytes) -> None:
        """In the host child after fork: drop the parent's connection (without disturbing it)
        and attach to the process ``prefork`` made."""
        old = self._sock
        self._sock = None
        if old is not None:
            old.close()
        self._connect(HandshakeKind.FORK, cookie)

    def _before_fork(self) -> None:
        self._fork_cookie = None
        if self._sock is not None and self._broken is None and not self._closed:
            try:
                self._fork_cookie = self.prefork()
            except OSError:
                self._fork_cookie = None

    def _after_fork_child(self) -> None:
        cookie, self._fork_cookie = self._fork_cookie, None
        if self._closed:
            return
        try:
            if cookie is None:
                raise OSError("no fork cookie")
            self.postfork_child(cookie)
        except OSError as e:
            old, self._sock = self._sock, None
            if old is not None:
                old.close()
            self._reset_state()
            self._broken = f"fork: {e}"

    # ---- waiting: leader/follower over one socket ----------------------------------------------
    def _wait(self, call: _Call) -> Message:
        """The final reply of ``call``: read it (and route other calls' frames) as the reader,
        or sleep while another thread reads; serve the kernel's copy requests on the way."""
        st = self._state
        try:
            if call.reading:                  # the fast path: read our own reply
                call.reading = False
                final = None
                try:
                    final = self._read_until(call)
                finally:
                    self._resign(call, final is not None)
                if final is not None:
                    return final
            while True:
                st.acquire()
                q = call.queue
                if q:
                    msg = q.popleft()
                    st.release()
                    if type(msg) in _FINAL:
                        with st:
                            self._pending.pop(call.rid, None)
                        return msg
                    self._serve(call, msg)
                    continue
                if self._broken is not None:
                    self._pending.pop(call.rid, None)
                    st.release()
                    raise oserror(Errno.ENOTCONN, f"connection to {self.url} lost: "
                                                  f"{self._broken}")
                if self._reader is None:
                    self._reader = call
                    st.release()
                    final = None
                    try:
                        final = self._read_until(call)
                    finally:
                        self._resign(call, final is not None)
                    if final is not None:
                        return final
                    continue
                wake = call.wake = spsock.allocate_lock()
                wake.acquire()
                self._sleepers[call.rid] = call
                st.release()
                wake.acquire()
        except BaseException:
            call.abandoned = True
            raise

    def _resign(self, call: _Call, done: bool) -> None:
        """Give up the reader role (wake a sleeping call to take it); forget a finished call."""
        with self._state:
            self._reader = None
            if done:
                self._pending.pop(call.rid, None)
            if self._sleepers:
                rid = next(iter(self._sleepers))
                self._sleepers.pop(rid).wake.release()

    def _read_until(self, call: _Call) -> Message | None:
        """As the reader: ``call``'s final reply, or None when the connection broke."""
        proto = self._proto
        sock = self._sock
        rid_me = call.rid
        while self._broken is None:
            try:
                ev = proto.next_event() if proto.has_events() else None
            except EOFError:
                self._lost("server closed the connection")
                return None
            except ProtocolError as e:
                self._lost(f"protocol error: {e}")
                with contextlib.suppress(OSError, AttributeError):
                    sock.shutdown(2)
                return None
            if ev is None:
                try:
                    data = sock.recv(RECV_SIZE)
                except (OSError, AttributeError) as e:
                    self._lost(f"recv: {e}")
                    return None
                if data:
                    rep = proto.fast_reply(data, rid_me)
                    if rep is not None:
                        return rep
                proto.receive_data(data)
                continue
            rid, msg = ev
            if rid == rid_me:
                if type(msg) in _FINAL:
                    return msg
                self._serve(call, msg)
            else:
                try:
                    self._route(rid, msg)
                except ProtocolError as e:
                    self._lost(f"protocol error: {e}")
                    with contextlib.suppress(OSError, AttributeError):
                        sock.shutdown(2)
                    return None
        return None

    def _route(self, rid: int, msg: Message) -> None:
        """A frame for another call: queue it and wake that call (or, for a call whose caller
        gave up, refuse its copies so the kernel moves on)."""
        with self._state:
            c = self._pending.get(rid)
            if c is None:
                raise ProtocolError(f"frame for unknown request {rid}")
            if c.abandoned:
                if type(msg) in _FINAL:
                    del self._pending[rid]
                    return
            else:
                if c.queue is None:
                    c.queue = deque()
                c.queue.append(msg)
                if self._sleepers.pop(rid, None) is not None:
                    c.wake.release()
                return
        self._serve(c, msg)

    def _serve(self, call: _Call, msg: Message) -> None:
        t = type(msg)
        stats = self.stats
        if t is Copyout:
            stats["copyout"] += 1
            if not call.abandoned:
                _copyout(call.bufs, msg)  # type: ignore[arg-type]
            return
        if t is Raise:
            stats["raise"] += 1
            self.on_signal(msg.signo)  # type: ignore[attr-defined]
            return
        errno, data = 0, b""
        if call.abandoned:
            errno = Errno.EFAULT
        elif t is Copyin:
            stats["copyin"] += 1
            errno, data = _copyin(call.bufs, msg)  # type: ignore[arg-type]
        elif t is Copyinstr:
            stats["copyinstr"] += 1
            errno, data = _copyinstr(call.bufs, msg)  # type: ignore[arg-type]
        try:
            with self._wlock:
                self._sock.sendall(self._proto.send_copy_data(call.rid, errno, data))
        except (OSError, AttributeError) as e:
            self._lost(f"send: {e}")


def _buf(bufs: list[Any], handle: int) -> memoryview | None:
    if not 0 <= handle < len(bufs):
        return None
    try:
        return memoryview(bufs[handle]).cast("B")
    except TypeError:
        return None


def _copyin(bufs: list[Any], m: Copyin) -> tuple[int, bytes]:
    mv = _buf(bufs, m.handle)
    if mv is None or m.offset + m.length > mv.nbytes:
        return Errno.EFAULT, b""
    return 0, mv[m.offset : m.offset + m.length].tobytes()


def _copyinstr(bufs: list[Any], m: Copyinstr) -> tuple[int, bytes]:
    mv = _buf(bufs, m.handle)
    if mv is None:
        return Errno.EFAULT, b""
    raw = mv.tobytes()
    nul = raw.find(b"\0")
    if nul >= 0:
        raw = raw[:nul]
    return 0, raw[: m.maxlen]


def _copyout(bufs: list[Any], m: Copyout) -> None:
    mv = _buf(bufs, m.handle)
    end = m.offset + len(m.data)
    if mv is None or mv.readonly or end > mv.nbytes:
        return  # the kernel checked the range and mode already; a liar gets nothing
    mv[m.offset : end] = m.data


def connect(url: str | None = None, **kw: Any) -> RemoteClient:
    """Connect to the sysproxy server at ``url`` (default ``$RUMP_SERVER``).  Keyword arguments
    as ``RemoteClient``.  ConnectionRefusedError / FileNotFoundError if nobody listens,
    PermissionError if authentication fails.  The connection also carries the file API
    (``conn.open``, ``conn.path``, ``conn.listdir`` ...) and the socket module (``conn.socket``),
    exactly as a local kernel does."""
    from rumpkernel.client.files import bind
    from rumpkernel.client.socket import SocketModule

    conn = RemoteClient(url, **kw)
    bind(conn, conn.sys)
    conn.socket = SocketModule(conn.sys)    # type: ignore[attr-defined]
    return conn
