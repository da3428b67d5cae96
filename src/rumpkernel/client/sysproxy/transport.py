"""The server transport of sysproxy: connections, host threads and each connection's read token.

    svc = SpService(k, url, secret=None, max_clients=256, handshake_timeout=5.0, log=print)
    svc.start()         listen (or use ``listener=``), start the IO thread; returns svc
    svc.stop(timeout)   stop accepting, end every connection (calls in the kernel get EINTR),
                        stop the threads -- the kernel itself is left running
    svc.stats()         connections, handshaking, active, refused, timeouts, threads
                        (also the sysctl nodes ``kern.sysproxy.*``)

``svc.sp`` is the kernel side (``session.SpServer``): set ``on_reboot`` / ``on_panic`` there.
Host sockets, the poller and threads come from ``hypercall/spsock`` (the only host code).

Threads -- none per idle connection:

* **One IO thread** owns a poller.  It accepts (a connection past ``max_clients`` gets a BANNER
  and a HANDSHAKE_REPLY with EUSERS and the reason, then is closed), sends each new connection
  its banner, and watches every connection that has no reader: idle ones and ones still in
  the handshake.  A connection that has not completed the handshake ``handshake_timeout``
  seconds after it was accepted gets HANDSHAKE_REPLY(ETIMEDOUT) and is closed.  While any
  connection has a reader, the IO thread also ticks every ``TICK_S`` as the watchdog (below).
* **Readers.**  When an idle connection becomes readable the IO thread hands it to a pool
  thread, which takes the connection's *read token*: it alone reads the socket.  It runs the
  system calls it reads itself, inline -- so the fast path of a call is one frame in, one
  ``k.syscall`` on the thread that read it, one frame out, with no hand-off between threads.
  After ``linger`` seconds without a frame (one ``recv`` with a receive timeout, no extra
  system call per frame) it gives the connection back to the IO thread and returns to the pool.
* **The watchdog.**  A reader running a call is *busy*.  If the same call is still running at
  two consecutive ticks (it blocked in the kernel, e.g. a pipe read), the IO thread takes the
  token from it and gives it to a new pool thread, so the client's other threads are served;
  the blocked call's thread leaves when its call ends.  Calls read by a thread that is itself in
  the middle of a call run on pool threads.  A thread whose call waits for COPY_DATA (its
  vCPU given back with ``k.unscheduled()`` for the whole round trip) takes the token when it
  is free or its holder is busy, and reads its own reply; otherwise it sleeps and the reader
  delivers.
* **The pool** keeps at most ``MAX_IDLE_WORKERS`` idle threads.  Threads in use are bounded by
  the calls in flight (at most ``session.MAX_INFLIGHT`` per connection) plus one reader per
  connection that had traffic in the last ``linger`` seconds.

Token states (``_Conn``, all changes under its lock): *parked* (the IO thread watches it),
*dispatched* (no holder; a reader job is queued), *held* (``holder`` reads), *busy* (the holder
runs a call).  Only the holder reads, finishes the connection, or parks it.
"""

from __future__ import annotations

import contextlib
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any

from rumpkernel.client.sysproxy.protocol import refusal
from rumpkernel.client.sysproxy.session import SpServer, SpSession, SpSlot
from rumpkernel.client.sysproxy.wire import ProtocolError
from rumpkernel.hypercall import spsock
from rumpkernel.kern.errno import Errno, KernelError, KernelPanic

MAX_CLIENTS = 256           # connections at once (rump_server --max-clients)
HANDSHAKE_TIMEOUT_S = 5.0   # from accept to a completed handshake (--handshake-timeout)
LINGER_S = 0.02             # a reader waits this long for the next frame before parking
TICK_S = 0.002              # watchdog period: a call running 1-2 ticks loses the read token
MAX_IDLE_WORKERS = 16
ACCEPT_PAUSE_S = 0.1        # after accept fails (EMFILE ...): stop accepting this long

_get_ident = spsock.current_thread_ident
_monotonic = spsock.monotonic


class HandshakeTimeout(Exception):
    """The peer did not complete the handshake in time."""


class WorkerPool:
    """Host threads for readers and calls: an idle worker takes the next job (a lock
    hand-off); when none is idle a new one starts.  At most ``max_idle`` stay around."""

    def __init__(self, log: Callable[[str], None], max_idle: int = MAX_IDLE_WORKERS) -> None:
        self.max_idle = max_idle
        self._log = log
        self._lock = spsock.allocate_lock()
        self._idle: list[list[Any]] = []
        self._threads: dict[int, Any] = {}
        self._stopping = False

    def submit(self, fn: Callable[[], None]) -> bool:
        """Run ``fn`` on a pool thread; False (and nothing runs) once the pool is stopping."""
        with self._lock:
            if self._stopping:
                return False
            if self._idle:
                w = self._idle.pop()
                w[1] = fn
                w[0].release()
                return True
            w = [spsock.allocate_lock(), fn]
            w[0].acquire()
        try:
            spsock.start_thread(lambda: self._loop(w), "sp-worker")
        except RuntimeError as e:       # the host is out of threads
            self._log(f"cannot start a worker thread: {e}")
            return False
        return True

    def _loop(self, w: list[Any]) -> None:
        me = _get_ident()
        with self._lock:
            self._threads[me] = w
        try:
            while True:
                fn, w[1] = w[1], None
                if fn is None:
                    return
                try:
                    fn()
                except BaseException:  # a bug in the transport or session: report, keep going
                    self._log(f"internal error in a sysproxy worker:\n{traceback.format_exc()}")
                with self._lock:
                    if self._stopping or len(self._idle) >= self.max_idle:
                        return
                    self._idle.append(w)
                w[0].acquire()
        finally:
            with self._lock:
                self._threads.pop(me, None)

    @property
    def threads(self) -> int:
        return len(self._threads)

    @property
    def idle(self) -> int:
        return len(self._idle)

    def stop(self, timeout: float = 5.0) -> None:
        """Let idle workers exit and wait (up to ``timeout``) for busy ones to finish."""
        with self._lock:
            self._stopping = True
            idle, self._idle = self._idle, []
        for w in idle:
            w[1] = None
            w[0].release()
        deadline = _monotonic() + timeout
        while self._threads and _monotonic() < deadline:
            spsock.sleep(0.005)


class _Conn:
    """One client connection: its channel, its session, and its read token (module doc)."""

    def __init__(self, svc: SpService, chan: spsock.Channel) -> None:
        self.svc = svc
        self.chan = chan
        self.session: SpSession = svc.sp.new_session(self, chan.peer)
        self.lock = spsock.allocate_lock()
        self._wlock = spsock.allocate_lock()
        self.holder: int | None = None
        self.busy = False
        self.parked = False
        self.seq = 0                    # calls started by token holders (the watchdog's clock)
        self.seen = -1                  # seq at the watchdog's last tick
        self.waiting: list[SpSlot] = []  # calls asleep until a reader delivers their copy data
        self.failure: str | None = None
        self.closed = False
        self.deadline = _monotonic() + svc.handshake_timeout
        self._done = spsock.allocate_lock()
        self._done.acquire()

    # ---- Transport (for the session) ------------------------------------------------------
    def send(self, data: bytes) -> None:
        with self._wlock:
            self.chan.sendall(data)

    def close(self) -> None:
        self.chan.shutdown()

    def await_copy(self, slot: SpSlot) -> None:
        """A call asked for client memory (its vCPU given back meanwhile): return once
        ``slot.reply`` is there or the connection is dead, reading the socket itself when it
        may."""
        me = _get_ident()
        s = self.session
        while slot.reply is None and not s.dead:
            with self.lock:
                take = self.holder is None or self.holder == me or self.busy
                if take:
                    woke = self.parked
                    self.holder, self.busy, self.parked = me, False, False
                    self.svc.active.add(self)
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
            if woke:
                self.svc.poller.wake()          # the IO thread starts its watchdog ticks
            self._read_some()
        self._go_busy(me)

    # ---- the token -------------------------------------------------------------------------
    def lead(self) -> None:
        """Pool job: become this connection's reader, unless someone else already is."""
        me = _get_ident()
        with self.lock:
            if self.holder is not None or self.parked or self.closed:
                return
            self.holder = me
        self._serve(me)

    def _go_busy(self, me: int) -> None:
        """The holder starts (or resumes) running kernel code.  No lock: while the holder is
        not busy nobody else changes ``holder`` (taking needs *busy* or no holder), so only
        this thread writes here; ``seq`` moves before ``busy`` so that a tick never sees the
        new busy period with the old count.  A caller that sleeps for copy data just as this
        runs is served by the next reader."""
        if self.holder != me:
            return
        self.seq += 1
        self.busy = True
        if self.waiting:              # a call waiting for copy data may take the token now
            with contextlib.suppress(IndexError):
                self.waiting[0].wake()

    def _end_busy(self, me: int) -> bool:
        """The holder's call ended: True if it still holds the token (and reads on)."""
        self.lock.acquire()
        mine = self.holder == me
        if mine:
            self.busy = False
        self.lock.release()
        return mine

    def check_stuck(self) -> None:
        """Watchdog tick (IO thread): a call running since the last tick loses the token."""
        with self.lock:
            if not self.busy or self.seq != self.seen:
                self.seen = self.seq
                return
            self.holder, self.busy = None, False
        self.svc.pool.submit(self.lead)

    def _park(self, me: int) -> bool:
        """Nothing to read for a while: hand the connection to the IO thread (True), unless a
        call waits for copy data (False: read on).  HandshakeTimeout past the deadline of a
        connection still in its handshake."""
        if not self.session.ready and _monotonic() >= self.deadline:
            raise HandshakeTimeout()
        with self.lock:
            if self.holder != me:
                return True
            if self.waiting:            # a call waits for copy data: keep reading for it
                return False
            self.holder = None
            self.parked = True
            self.svc.active.discard(self)
        self.svc.poller.rearm(self.chan.fd)
        return True

    def dispatch(self) -> bool:
        """IO thread: the parked connection is readable; False if someone took it already."""
        with self.lock:
            if not self.parked:
                return False
            self.parked = False
            self.svc.active.add(self)
        return True

    def repark(self) -> None:
        """IO thread: a dispatch found no thread to run the reader; watch the connection
        again (it is readable, so the poller reports it at once: a retry)."""
        with self.lock:
            if self.holder is not None or self.closed:
                return
            self.parked = True
            self.svc.active.discard(self)
        self.svc.poller.rearm(self.chan.fd)

    def expire(self) -> None:
        """IO thread: the handshake deadline passed while parked: refuse and close."""
        with self.lock:
            if not self.parked or self.closed:
                return          # a reader has it: it checks the deadline when it parks
            self.parked = False
            self.holder = _get_ident()
        self._fail(HandshakeTimeout())
        self._finish()

    # ---- reading -------------------------------------------------------------------------------
    def _serve(self, me: int) -> None:
        """As the token holder: read, run calls inline, park when idle; end the connection
        when it is over."""
        s = self.session
        proto = s.proto
        chan = self.chan
        has_events, fast_syscall = proto.has_events, proto.fast_syscall   # every call's path
        go_busy, end_busy = self._go_busy, self._end_busy
        while self.failure is None:
            call = job = None
            try:
                ev = proto.next_event() if has_events() else None
                if ev is not None:
                    job = s.handle(*ev)
                else:
                    data = chan.recv() if s.ready else chan.recv_nowait()
                    if data is None:
                        if self._park(me):
                            return
                        continue
                    call = fast_syscall(data) if data else None
                    if call is None:
                        proto.receive_data(data)
                        continue
                    s.begin_call()
            except BaseException as e:
                self._fail(e)
                break
            if call is not None:        # the fast path: one plain call, run right here
                go_busy(me)
                s.run_call(*call, ints=True)
            elif job is not None:
                go_busy(me)
                job()
            else:
                continue
            if not end_busy(me):
                return
        self._finish()

    def _read_some(self) -> None:
        """The holder is in the middle of a call: handle what is buffered (the frame it waits
        for may have come in the chunk its call was read from) or else read one chunk; deliver
        copy data, hand new calls to the pool."""
        s = self.session
        try:
            ev = s.next_event()
            if ev is None:
                data = self.chan.recv()
                if data is None:
                    return
                s.feed(data)
                ev = s.next_event()
            while ev is not None:
                job = s.handle(*ev)
                if job is not None and not self.svc.pool.submit(self._pooled(job)):
                    self._fail(OSError("server stopping"))
                    job()               # the session is dead: it only balances the count
                ev = s.next_event()
        except BaseException as e:
            self._fail(e)

    def _pooled(self, job: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            job()
            me = _get_ident()
            if self._end_busy(me):     # it took the token on the way (a copy): read on
                self._serve(me)
        return run

    # ---- the end -------------------------------------------------------------------------------
    def _fail(self, e: BaseException) -> None:
        if self.failure is not None:
            return
        s = self.session
        svc = self.svc
        if isinstance(e, EOFError):
            self.failure = "closed by client"
        elif isinstance(e, HandshakeTimeout):
            svc.timeouts += 1
            self.failure = f"no handshake within {svc.handshake_timeout:g} s"
            self.chan.send_nowait(s.proto.send_handshake_reply(Errno.ETIMEDOUT, 0, b"",
                                                               self.failure))
        elif isinstance(e, ProtocolError):
            self.failure = f"protocol error: {e}"
            svc.log_always(f"conn {s.id}{s.peer}: closing: {self.failure}")
        elif isinstance(e, OSError):
            self.failure = f"connection error: {e}"
        elif isinstance(e, KernelPanic):
            self.failure = f"kernel panic: {e.message}"
        else:  # pragma: no cover - a bug in the session code
            self.failure = f"internal error: {type(e).__name__}: {e}"
            svc.log_always(f"conn {s.id}: {self.failure}\n{traceback.format_exc()}")
        self.close()
        s.kill()

    def _finish(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
        try:
            self.session.connection_lost(self.failure or "closed")
        finally:
            self.svc._conn_done(self)
            self.chan.close()
            self._done.release()

    def wait_finished(self, timeout: float) -> bool:
        if self._done.acquire(True, timeout):
            self._done.release()
            return True
        return False


class SpService:
    """Serve kernel ``k`` at ``url`` (``unix://`` or ``tcp://``; ``secret`` enables the
    challenge-response handshake).  ``listener``: an already listening socket to use."""

    def __init__(self, k: Any, url: str, *, secret: bytes | None = None,
                 log: Callable[[str], None] | None = None, verbose: bool = False,
                 max_clients: int = MAX_CLIENTS, handshake_timeout: float = HANDSHAKE_TIMEOUT_S,
                 linger: float = LINGER_S, tick: float = TICK_S, mode: int = 0o600,
                 listener: Any = None) -> None:
        if max_clients < 1:
            raise ValueError("max_clients must be at least 1")
        if handshake_timeout <= 0 or linger <= 0 or tick <= 0:
            raise ValueError("timeouts must be positive")
        self.k = k
        self.url = url
        self.mode = mode
        self.verbose = verbose
        self.max_clients = max_clients
        self.handshake_timeout = handshake_timeout
        self.linger = linger
        self.tick = tick
        self._log = log or (lambda m: None)
        self.sp = SpServer(k, secret, self.log)
        self.pool = WorkerPool(self.log_always)
        self.poller = spsock.Poller()
        self.conns: set[_Conn] = set()
        self.active: set[_Conn] = set()      # connections with a reader (watchdog scope)
        self._handshaking: deque[tuple[float, _Conn]] = deque()
        self._lock = spsock.allocate_lock()
        self._listener = listener
        self._io_thread: Any = None
        self._io_stop = False
        self._next_tick = 0.0
        self._accept_resume: float | None = None
        self.refused = 0
        self.timeouts = 0
        self.stopped = False

    # ---- logging ------------------------------------------------------------------------------
    def log(self, msg: str) -> None:
        if self.verbose:
            self._log(msg)

    def log_always(self, msg: str) -> None:
        self._log(msg)

    # ---- life cycle ---------------------------------------------------------------------------
    def start(self) -> SpService:
        if not isinstance(self._listener, spsock.Listener):
            self._listener = spsock.Listener(self._listener or self.url, self.mode)
        self.poller.add(self._listener.fileno(), self._listener, oneshot=False)
        self._add_sysctl_nodes()
        self._io_thread = spsock.start_thread(self._io_loop, "sp-io")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, end every connection, stop the IO thread and the pool."""
        if self.stopped:
            return
        self.stopped = True
        listener = self._listener
        if isinstance(listener, spsock.Listener):
            self.poller.remove(listener.fileno())
            listener.close()
        with self._lock:
            conns = list(self.conns)
        for c in conns:
            c.close()
            c.session.kill()        # calls blocked in the kernel unwind now (EINTR)
        for c in conns:
            c.wait_finished(timeout)
        with contextlib.suppress(KernelError, KernelPanic):
            self.sp.reap_forks(everything=True)
        self._io_stop = True
        self.poller.wake()
        if self._io_thread is not None:
            self._io_thread.join(timeout)
        self.pool.stop(timeout)
        self.poller.close()

    def stats(self) -> dict[str, int]:
        with self._lock:
            conns = list(self.conns)
        return {"connections": len(conns),
                "handshaking": sum(1 for c in conns if not c.session.ready),
                "active": len(self.active), "refused": self.refused,
                "timeouts": self.timeouts, "threads": spsock.thread_count(),
                "max_clients": self.max_clients}

    def _add_sysctl_nodes(self) -> None:
        sysctl = getattr(self.k, "sysctl", None)
        if sysctl is None:
            return
        for key in self.stats():
            sysctl.add(f"kern.sysproxy.{key}", "int",
                       getter=lambda key=key: self.stats()[key],
                       desc=f"sysproxy server: {key}")

    # ---- the IO thread -------------------------------------------------------------------------
    def _io_loop(self) -> None:
        while not self._io_stop:
            try:
                self._io_step()
            except BaseException:    # a bug: report it, but never leave connections unwatched
                self.log_always(f"internal error in the IO thread:\n{traceback.format_exc()}")
                spsock.sleep(0.01)

    def _io_step(self) -> None:
        """One round of the IO thread: readiness, then the watchdog tick and the handshake
        deadlines that are due."""
        listener = self._listener
        for key in self.poller.wait(self._io_timeout()):
            if key is listener:
                self._accept_all()
            elif key.dispatch() and not self.pool.submit(key.lead):
                key.repark()                   # no thread now: watch it again
        now = _monotonic()
        if self.active and now >= self._next_tick:
            self._next_tick = now + self.tick
            for c in list(self.active):
                c.check_stuck()
        hs = self._handshaking
        while hs and (hs[0][0] <= now or hs[0][1].session.ready or hs[0][1].closed):
            _, c = hs.popleft()
            if not c.session.ready:
                c.expire()
        if self._accept_resume is not None and now >= self._accept_resume:
            self._accept_resume = None
            self.poller.add(listener.fileno(), listener, oneshot=False)

    def _io_timeout(self) -> float | None:
        now = _monotonic()
        waits = []
        if self.active:
            waits.append(self._next_tick - now)
        if self._handshaking:
            waits.append(self._handshaking[0][0] - now)
        if self._accept_resume is not None:
            waits.append(self._accept_resume - now)
        return max(0.0, min(waits)) if waits else None

    def _accept_all(self) -> None:
        listener = self._listener
        while not self._io_stop:
            try:
                got = listener.accept()
            except OSError as e:
                if self.stopped:
                    return
                self.log_always(f"accept: {e}; pausing for {ACCEPT_PAUSE_S:g} s")
                self.poller.remove(listener.fileno())
                self._accept_resume = _monotonic() + ACCEPT_PAUSE_S
                return
            if got is None:
                return
            self._admit(*got)

    def _admit(self, sock: Any, peer: str) -> None:
        chan = spsock.Channel(sock, peer, self.linger)
        if len(self.conns) >= self.max_clients:
            self.refused += 1
            why = (f"server full ({len(self.conns)} connections, rump_server --max-clients "
                   f"{self.max_clients})")
            chan.send_nowait(refusal(Errno.EUSERS, why))
            chan.shutdown()
            chan.close()
            self.log(f"refused a connection{peer}: {why}")
            return
        with contextlib.suppress(KernelError, KernelPanic):
            self.sp.reap_forks()
        conn = _Conn(self, chan)
        with self._lock:
            self.conns.add(conn)
        if not chan.send_nowait(conn.session.start()):
            conn._fail(OSError("cannot send the banner"))
            conn._finish()
            return
        conn.parked = True
        self._handshaking.append((conn.deadline, conn))
        self.poller.add(chan.fd, conn)

    def _conn_done(self, conn: _Conn) -> None:
        self.poller.remove(conn.chan.fd)
        with conn.lock:
            self.active.discard(conn)
        with self._lock:
            self.conns.discard(conn)
