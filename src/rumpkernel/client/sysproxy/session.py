"""The kernel side of sysproxy: one ``SpSession`` per client connection (rump_sp in rumpkern).

The IO loop around a session (``client/sysproxy/transport.py``) owns the socket and the host
threads; it gives the session a transport:

    transport.send(data)        write bytes to the client (thread-safe, may block)
    transport.close()           drop the connection
    transport.await_copy(slot)  return once ``slot.reply`` is set or the session is dead: read
                                the socket itself when it may (see the server), else sleep in
                                ``slot.wait()`` until a reader delivers.  Called by a call in
                                the kernel that has given its vCPU back meanwhile.

and drives it from whichever thread holds the connection's read token: ``session.start()`` (the
banner to send), ``feed(data)`` (``b""`` at EOF), ``next_event()`` (ProtocolError / EOFError
end the connection), ``handle(reqid, msg)`` (returns the job of a SYSCALL/PREFORK, which the
caller runs inline or on another thread, or None), and finally ``connection_lost(reason)``.
``ready`` says whether the handshake has succeeded.

Per call (the fast path): the argument check against the table, an lwp from the session's free
list, ``k.syscall`` on the calling host thread, one SYSCALL_REPLY frame encoded in one go.

Semantics (dissertation section 3.12.5): a GUEST handshake creates a process, child of init, with
root credentials and a clean descriptor table; a FORK handshake attaches to the process PREFORK
made (cookie).  Each system call runs on a host thread of the server (the connection's reader or
a pool worker) bound to an lwp of that process (lwps are pooled per connection: one per
concurrently running call).  When the connection goes, every lwp
of the process is killed -- waits end with EINTR -- the session waits for its calls to unwind,
then frees the lwps, which ends the process and releases everything it held.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Protocol

from rumpkernel.client.sysproxy.marshal import INT_ARGC, INT_ONLY, check_args, encode_result
from rumpkernel.client.sysproxy.messages import (
    COOKIE_SIZE,
    NONCE_SIZE,
    CopyData,
    Copyin,
    Copyinstr,
    Copyout,
    Handshake,
    Message,
    Prefork,
    PreforkReply,
    PtrDesc,
    Raise,
    Syscall,
)
from rumpkernel.client.sysproxy.protocol import ServerProtocol
from rumpkernel.client.sysproxy.vmspace import RemotePtr, RemoteVmspace
from rumpkernel.client.sysproxy.wire import HandshakeKind, ProtocolError
from rumpkernel.kern.errno import Errno, KernelError, KernelPanic
from rumpkernel.kern.proc import RFCFDG, RFFDG, Lwp, Proc
from rumpkernel.kern.sync import KCondVar, KMutex

FORK_COOKIE_TTL_NS = 60 * 10**9
MAX_INFLIGHT = 256      # calls one connection may have running at once (each holds a thread)


class Transport(Protocol):
    def send(self, data: bytes) -> None: ...

    def close(self) -> None: ...

    def await_copy(self, slot: SpSlot) -> None: ...


class SpServer:
    """Per-kernel sysproxy state: live sessions, unclaimed fork cookies, what to do on reboot
    and panic (set ``on_reboot(howto)`` / ``on_panic(exc)``)."""

    def __init__(self, k: Any, secret: bytes | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.k = k
        self.secret = secret
        self.log = log or (lambda msg: None)
        self.lock = k.host.mutex_create()
        self.sessions: set[SpSession] = set()
        self.forks: dict[bytes, tuple[Proc, int]] = {}
        self.on_reboot: Callable[[int], None] = lambda howto: None
        self.on_panic: Callable[[KernelPanic], None] = lambda exc: None
        self._next_id = 0

    def new_session(self, transport: Transport, peer: str = "") -> SpSession:
        self.lock.enter()
        try:
            self._next_id += 1
            s = SpSession(self, transport, self._next_id, peer)
            self.sessions.add(s)
        finally:
            self.lock.exit()
        return s

    def _forget(self, s: SpSession) -> None:
        self.lock.enter()
        self.sessions.discard(s)
        self.lock.exit()

    def reap_forks(self, everything: bool = False) -> None:
        """End processes made by PREFORK that nobody claimed in time."""
        now = self.k.monotonic_ns()
        self.lock.enter()
        try:
            stale = [c for c, (_, t) in self.forks.items() if everything or t < now]
            procs = [self.forks.pop(c)[0] for c in stale]
        finally:
            self.lock.exit()
        if procs and not self.k.dead:
            with self.k.entered():
                for p in procs:
                    self.log(f"fork cookie for pid {p.pid} expired")
                    self.k.procs.exit(p)


class SpSlot:
    """One lwp of a session's process and the request it is running."""

    __slots__ = ("cv", "kicked", "lwp", "mtx", "reply", "reqid", "session")

    def __init__(self, session: SpSession, lwp: Lwp) -> None:
        k = session.k
        self.session = session
        self.lwp = lwp
        self.mtx = KMutex(k)
        self.cv = KCondVar(k)
        self.reply: CopyData | None = None
        self.reqid = 0
        self.kicked = False

    def _send_unscheduled(self, data: bytes) -> None:
        with self.session.k.unscheduled():
            self.session.send(data)

    def roundtrip(self, msg: Copyin | Copyinstr) -> CopyData:
        s = self.session
        if s.dead:
            raise KernelError(Errno.EFAULT, "client is gone")
        self.reply = None
        data = s.proto.send_copy_request(self.reqid, msg)
        with s.k.unscheduled():          # one vCPU release for the whole round trip
            s.send(data)
            s.transport.await_copy(self)
        with self.mtx:
            rep, self.reply = self.reply, None
        if rep is None:
            raise KernelError(Errno.EFAULT, "client went away during a copy")
        return rep

    def wait(self) -> None:
        """Sleep until a reply is delivered, ``wake()`` is called or the session dies
        (EINTR if the lwp is killed)."""
        with self.mtx:
            while self.reply is None and not self.kicked and not self.session.dead:
                self.cv.wait(self.mtx)
            self.kicked = False

    def oneway(self, msg: Copyout | Raise) -> None:
        s = self.session
        if s.dead:
            raise KernelError(Errno.EFAULT, "client is gone")
        self._send_unscheduled(s.proto.send_copyout(self.reqid, msg))

    def deliver(self, rep: CopyData) -> None:
        with self.mtx:
            self.reply = rep
            self.cv.signal()

    def wake(self) -> None:
        with self.mtx:
            self.kicked = True
            self.cv.broadcast()


class SpSession:
    def __init__(self, server: SpServer, transport: Transport, sid: int, peer: str) -> None:
        self.server = server
        self.k = server.k
        self.transport = transport
        self.id = sid
        self.peer = peer
        self.proto = ServerProtocol(self.k.random_bytes(NONCE_SIZE), server.secret)
        self.plock = self.k.host.mutex_create()       # with idle_cv: waiting for calls to end
        self.idle_cv = self.k.host.cv_create()        # the last call in flight ended
        self._set_curlwp = self.k.host.curlwp_set
        self.proc: Proc | None = None
        self.ready = False          # the handshake succeeded: this connection is a process
        self.progname = ""
        self.free_slots: list[SpSlot] = []
        self.active: dict[int, SpSlot] = {}
        self.calls: list[None] = []    # one entry per call in flight (append/pop: atomic)
        self.dead = False
        self.reason = ""

    def __repr__(self) -> str:
        pid = self.proc.pid if self.proc is not None else "-"
        return f"<SpSession {self.id} pid={pid} {self.progname}>"

    # ---- output ----
    def send(self, data: bytes) -> None:
        try:
            self.transport.send(data)
        except OSError as e:
            self.dead = True
            raise KernelError(Errno.EFAULT, f"client connection: {e}") from None

    def start(self) -> bytes:
        return self.proto.banner()

    # ---- input (whoever holds the connection's read token) ----
    def feed(self, data: bytes) -> None:
        """Bytes from the socket (``b""``: the client closed)."""
        self.proto.receive_data(data)

    def next_event(self) -> tuple[int, Message] | None:
        """The next message, or None.  ProtocolError: close with that reason; EOFError: the
        client closed."""
        return self.proto.next_event()

    def handle(self, reqid: int, msg: Message) -> Callable[[], None] | None:
        """Act on a message; for a SYSCALL or PREFORK return the job that runs it."""
        t = type(msg)
        if t is CopyData:
            slot = self.active.get(reqid)
            if slot is None:  # pragma: no cover - the protocol checked it
                raise ProtocolError(f"copy data for unknown request {reqid}")
            slot.deliver(msg)  # type: ignore[arg-type]
        elif t is Syscall:
            return self.call_job(reqid, msg.num, msg.args)  # type: ignore[attr-defined]
        elif t is Prefork:
            self._begin()
            return lambda: self._prefork(reqid)
        elif t is Handshake:
            self._handshake(msg)  # type: ignore[arg-type]
        return None

    def call_job(self, reqid: int, num: int, args: tuple[Any, ...]) -> Callable[[], None]:
        """Count a new call in flight (ProtocolError past MAX_INFLIGHT) and return the job that
        runs it (``handle`` does this for a SYSCALL message)."""
        self._begin()
        return lambda: self.run_call(reqid, num, args)

    def begin_call(self) -> None:
        """The transport's fast path: count a call it parsed itself (``fast_syscall``) before
        it runs it inline with ``run_call(reqid, num, args)``.  ProtocolError past
        MAX_INFLIGHT."""
        if len(self.calls) >= MAX_INFLIGHT:
            raise ProtocolError(f"more than {MAX_INFLIGHT} calls in flight")
        self.calls.append(None)

    def kill(self) -> None:
        """The connection is gone: every wait of the process ends (EINTR / EFAULT)."""
        self.dead = True
        proc = self.proc
        if proc is not None:
            for l in list(proc.lwps):
                l.killed = True
            for l in list(proc.lwps):
                with contextlib.suppress(Exception):
                    l.kill()
        for slot in list(self.active.values()):
            slot.wake()

    @property
    def inflight(self) -> int:
        return len(self.calls)

    def _begin(self) -> None:
        """A call is read (only the token holder reads: no race between two _begin)."""
        if len(self.calls) >= MAX_INFLIGHT:
            raise ProtocolError(f"more than {MAX_INFLIGHT} calls in flight")
        self.calls.append(None)

    def _end(self) -> None:
        """A call ended.  Pop first, then look at ``reason``: connection_lost sets ``reason``
        first, then looks at ``calls`` under plock, so one of the two sees the other."""
        self.calls.pop()
        if self.reason and not self.calls:
            self.plock.enter()
            self.idle_cv.broadcast()
            self.plock.exit()

    # ---- handshake ----
    def _handshake(self, hs: Handshake) -> None:
        why = self.proto.check_auth(hs)
        k = self.k
        if why is None:
            try:
                with k.entered():
                    self.proc = self._make_proc(hs)
                    self.free_slots.append(self._new_slot())
            except KernelError as e:
                why = e.detail or e.errno.name
                self._reply_handshake(hs, e.errno, why)
                raise ProtocolError(f"handshake refused: {why}") from None
            self.progname = hs.progname
            self.proc.name = (hs.progname or "rumpclient")[:32]
            self.ready = True
            self._reply_handshake(hs, 0, "")
            self.server.log(f"conn {self.id}{self.peer}: {self.progname or '?'} is pid "
                            f"{self.proc.pid}")
            return
        self._reply_handshake(hs, Errno.EAUTH, why)
        raise ProtocolError(why)

    def _reply_handshake(self, hs: Handshake, errno: int, detail: str) -> None:
        pid = self.proc.pid if self.proc is not None and not errno else 0
        data = self.proto.send_handshake_reply(errno, pid, hs.nonce, detail)
        with contextlib.suppress(OSError):
            self.transport.send(data)

    def _make_proc(self, hs: Handshake) -> Proc:
        k = self.k
        if hs.kind == HandshakeKind.GUEST:
            p = k.procs.fork(k.proc1, RFCFDG)
        elif hs.kind == HandshakeKind.FORK:
            srv = self.server
            srv.lock.enter()
            try:
                entry = srv.forks.pop(hs.cookie, None)
            finally:
                srv.lock.exit()
            if entry is None:
                raise KernelError(Errno.ESRCH, "unknown or expired fork cookie")
            p = entry[0]
        else:
            raise KernelError(Errno.EINVAL, f"unknown handshake kind {hs.kind}")
        p.vm = RemoteVmspace(self)
        return p

    def _new_slot(self) -> SpSlot:
        assert self.proc is not None
        return SpSlot(self, self.k.lwproc.newlwp_in(self.proc, name="sp"))

    # ---- requests (worker threads) ----
    def _take_slot(self) -> SpSlot:
        try:
            return self.free_slots.pop()          # atomic under the interpreter lock
        except IndexError:
            pass
        with self.k.entered():
            slot = self._new_slot()
        if self.dead:
            slot.lwp.killed = True
        return slot

    def _bind(self, args: tuple[Any, ...], slot: SpSlot) -> tuple[Any, ...]:
        def ptr(p: PtrDesc | None) -> RemotePtr | None:
            return None if p is None else RemotePtr(p.handle, p.size, p.flags, p.data, slot)

        out = []
        for a in args:
            t = type(a)
            if t is PtrDesc:
                out.append(ptr(a))
            elif t is list:
                out.append([(ptr(p), n) for p, n in a])
            else:
                out.append(a)
        return tuple(out)

    def run_call(self, reqid: int, num: int, args: tuple[Any, ...], ints: bool = False) -> None:
        """Run one system call on this host thread as an lwp of the process and send its
        reply.  ``ints``: the caller knows every argument is an int (the fast parse), so only
        the count is checked against the table.  Straight-line on purpose: this is every
        remote call's path."""
        k = self.k
        try:
            if self.dead:
                return
            why = None if ints and INT_ARGC.get(num) == len(args) else check_args(num, args)
            if why is not None:
                self._reply(reqid, Errno.EINVAL, None, why)
                return
            try:
                slot = self.free_slots.pop()      # atomic under the interpreter lock
            except IndexError:
                slot = self._take_slot()
            slot.reqid = reqid
            self.active[reqid] = slot
            if num not in INT_ONLY:
                args = self._bind(args, slot)
            errno, detail, panic = 0, "", False
            set_curlwp = self._set_curlwp
            set_curlwp(slot.lwp)
            try:
                value = k.syscall(num, args)
            except KernelError as e:
                errno, value, detail = e.errno, None, e.detail or ""
            except KernelPanic as e:
                errno, value, detail, panic = Errno.EIO, None, f"kernel panic: {e.message}", True
            finally:
                set_curlwp(None)
                del self.active[reqid]
                self.free_slots.append(slot)
            if type(value) is not int and value is not None:
                try:
                    value = encode_result(value)
                except ValueError as e:
                    errno, value, detail = Errno.EIO, None, str(e)
            if not self.dead:
                data = self.proto.send_syscall_reply(reqid, errno, value, detail, panic)
                try:
                    self.transport.send(data)
                except OSError:
                    self.dead = True
            if panic:
                self.server.on_panic(k.panicked)
            elif k.reboot_requested is not None:
                self.server.on_reboot(k.reboot_requested)
        except KernelError as e:   # no slot (the kernel halted or the process is gone)
            self._reply(reqid, e.errno, None, e.detail or "")
        finally:
            self._end()

    def _reply(self, reqid: int, errno: int, value: Any, detail: str = "",
               panic: bool = False) -> None:
        if self.dead:
            return
        data = self.proto.send_syscall_reply(reqid, errno, value, detail, panic)
        with contextlib.suppress(KernelError):
            self.send(data)

    def _reply_msg(self, reqid: int, rep: PreforkReply) -> None:
        if self.dead:
            return
        data = self.proto.send_reply(reqid, rep)
        with contextlib.suppress(KernelError):
            self.send(data)

    def _prefork(self, reqid: int) -> None:
        k = self.k
        try:
            with k.entered():
                assert self.proc is not None
                child = k.procs.fork(self.proc, RFFDG)
                child.vm = RemoteVmspace(None)
                child.name = self.proc.name
            cookie = k.random_bytes(COOKIE_SIZE)
            srv = self.server
            srv.lock.enter()
            srv.forks[cookie] = (child, k.monotonic_ns() + FORK_COOKIE_TTL_NS)
            srv.lock.exit()
            self._reply_msg(reqid, PreforkReply(0, cookie))
        except KernelError as e:
            self._reply_msg(reqid, PreforkReply(e.errno, b""))
        finally:
            self._end()

    def raise_signal(self, l: Lwp, signo: int) -> None:
        """Deliver host signal ``signo`` to the client (from a system call of this session)."""
        for slot in list(self.active.values()):
            if slot.lwp is l:
                slot.oneway(Raise(signo))
                return
        raise KernelError(Errno.ESRCH, "raise: not running a call of this session")

    # ---- the end ----
    def connection_lost(self, reason: str) -> None:
        """Kill the process: wake every wait, let the calls unwind, free what it held."""
        if self.reason:
            return
        self.reason = reason or "closed"
        proc = self.proc
        self.server.log(f"conn {self.id}{self.peer} (pid {proc.pid if proc else '-'}): "
                        f"{self.reason}")
        self.kill()
        self.plock.enter()
        try:
            while self.calls:
                self.idle_cv.wait(self.plock)
        finally:
            self.plock.exit()
        if proc is not None and isinstance(proc.vm, RemoteVmspace):
            proc.vm.session = None
        if proc is not None and not self.k.dead:
            with contextlib.suppress(KernelError), self.k.entered():
                for slot in self.free_slots:
                    self.k.lwproc.free(slot.lwp)
                if proc.pid in self.k.procs.procs and not proc.lwps:
                    self.k.procs.exit(proc)
        self.free_slots.clear()
        self.server._forget(self)
