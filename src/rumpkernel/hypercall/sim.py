"""The simulated host: virtual clock, seeded randomness, in-memory files, replayable scheduling.

Every host thread that runs kernel code under a SimHost is a *sim thread*.  Exactly one sim thread
runs at a time: it holds the baton.  The baton changes hands only when the running thread blocks
(mutex, condition variable, sleep, join), finishes, or leaves the kernel (``sched_leave``); the
next thread is drawn from the runnable set with the seeded RNG.  So with one seed, the order of
everything that happens inside the kernel is the same on every run, whatever the host's own
scheduler does (a test shows two runs with one seed produce the same event order).

The clock is virtual: it only moves when no sim thread is runnable and some blocked thread has a
deadline; then it jumps straight to the earliest deadline.  A 10-second timeout takes no real
time.  Threads outside the kernel (``sched_leave``) do not hold the clock back.

Worlds: the baton, the clock, the timers and the scheduling RNG belong to a ``SimWorld``; every
host made from one world shares them, so many kernels (a network of them, wired together by
in-process links) run one at a time in one seeded order and replay exactly.  Each host keeps its
own files, console, lwp slots and random stream (derived from the world's seed and its index).

Interface: everything in ``Hypercalls`` plus
    SimWorld(seed=0, wall_start_ns=...)     a world; ``world.host(name)`` -> SimHost in it
    SimHost(seed=0, wall_start_ns=..., world=None, name="")   a host (in a world of its own
                                            unless ``world`` is given)
    SimChannel(world)                       a message queue between sim threads of one world
                                            (send never blocks; recv blocks, with a timeout)
    add_file(path, data) / add_disk(path, size) / files[path]   in-memory host files
    trace                                   list of (virtual ns, thread name) dispatch events
    now_ns                                  the virtual monotonic clock
"""

from __future__ import annotations

import _thread
import heapq
import random
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any

from rumpkernel.hypercall.interface import HostError, Hypercalls

RUNNING, RUNNABLE, BLOCKED, OUTSIDE, DONE = "running", "runnable", "blocked", "outside", "done"


class SimThread:
    __slots__ = ("deadline", "depth", "go", "ident", "joiners", "name", "state", "timed_out")

    def __init__(self, name: str, state: str) -> None:
        self.name = name
        self.depth = 0
        self.state = state
        self.go = _thread.allocate_lock()
        self.go.acquire()
        self.deadline: int | None = None
        self.timed_out = False
        self.joiners: list[SimThread] = []
        self.ident: int | None = None


class SimMutex:
    __slots__ = ("depth", "host", "owner", "recursive", "waiters")

    def __init__(self, host: SimWorld, recursive: bool = False) -> None:
        self.host = host
        self.owner: SimThread | None = None
        self.waiters: deque[SimThread] = deque()
        self.recursive = recursive
        self.depth = 0

    def enter(self) -> bool:
        h = self.host
        me = h._running_self()
        h._meta.acquire()
        if self.owner is None:
            self.owner = me
            self.depth = 1
            h._meta.release()
            return True
        if self.owner is me:
            h._meta.release()
            if not self.recursive:
                raise RuntimeError("sim: mutex entered twice by one thread")
            self.depth += 1
            return True
        self.waiters.append(me)
        h._block(me)  # releases _meta; exit() hands ownership over before waking us
        return True

    def tryenter(self) -> bool:
        h = self.host
        me = h._running_self()
        with h._meta:
            if self.owner is None:
                self.owner = me
                self.depth = 1
                return True
            if self.owner is me and self.recursive:
                self.depth += 1
                return True
            return False

    def exit(self) -> None:
        with self.host._meta:
            if self.depth > 1:
                self.depth -= 1
                return
            self._release_locked()

    def _release_locked(self) -> None:
        self.depth = 1
        if self.waiters:
            t = self.waiters.popleft()
            self.owner = t
            self.host._wake(t)
        else:
            self.owner = None


class SimCondVar:
    __slots__ = ("host", "waiters")

    def __init__(self, host: SimWorld) -> None:
        self.host = host
        self.waiters: deque[SimThread] = deque()

    def wait(self, mutex: SimMutex, timeout_ns: int | None = None) -> bool:
        h = self.host
        me = h._running_self()
        h._meta.acquire()
        mutex._release_locked()
        self.waiters.append(me)
        if timeout_ns is not None:
            h._arm(me, h._now + max(0, timeout_ns))
        timed_out = h._block(me)
        if timed_out:
            with h._meta:
                try:
                    self.waiters.remove(me)
                except ValueError:
                    timed_out = False
        mutex.enter()
        return not timed_out

    def signal(self) -> None:
        with self.host._meta:
            if self.waiters:
                self.host._wake(self.waiters.popleft())

    def broadcast(self) -> None:
        with self.host._meta:
            while self.waiters:
                self.host._wake(self.waiters.popleft())


class SimFile:
    __slots__ = ("data", "path", "writable")

    def __init__(self, path: str, data: bytearray, writable: bool) -> None:
        self.path = path
        self.data = data
        self.writable = writable


class SimWorld:
    """One simulated world: the baton, the virtual clock, the timers and the scheduling RNG that
    every ``SimHost`` made from it shares, so a run of many kernels replays from one seed."""

    def __init__(self, seed: int = 0, *, wall_start_ns: int = 1_700_000_000 * 10**9) -> None:
        self.seed = seed
        self.wall_start_ns = wall_start_ns
        self._meta = threading.Lock()
        self._rng = random.Random(seed)
        self._now = 0
        self._current: SimThread | None = None
        self._runq: list[SimThread] = []
        self._timers: list[tuple[int, int, SimThread]] = []
        self._seq = 0
        self._tls = threading.local()
        self._all: list[SimThread] = []
        self.trace: list[tuple[int, str]] = []
        self.hosts: list[SimHost] = []

    def host(self, name: str = "") -> SimHost:
        """A new host in this world (its own files, console, lwp slots and random stream)."""
        return SimHost(world=self, name=name)

    @property
    def now_ns(self) -> int:
        return self._now

    # -- the baton ------------------------------------------------------------------------------
    def _self(self) -> SimThread:
        st = getattr(self._tls, "st", None)
        if st is None:
            st = SimThread(threading.current_thread().name, OUTSIDE)
            st.ident = threading.get_ident()
            self._tls.st = st
            self._all.append(st)
        return st

    def _running_self(self) -> SimThread:
        """The calling thread, which must hold the baton.  Safe without ``_meta``: only the
        holder can give the baton away, and nobody can hand it to a thread that is not waiting."""
        me = self._self()
        if self._current is not me:
            raise RuntimeError(f"sim: hypercall from {me.name}, which is not running kernel code")
        return me

    def _dispatch(self) -> None:
        """Hand the baton to the next runnable thread (``_meta`` held)."""
        if not self._runq and self._timers:
            self._fire_timers()
        if not self._runq:
            self._current = None
            return
        t = self._runq.pop(self._rng.randrange(len(self._runq)) if len(self._runq) > 1 else 0)
        self._current = t
        t.state = RUNNING
        self.trace.append((self._now, t.name))
        t.go.release()

    def _fire_timers(self) -> None:
        while self._timers:
            deadline, _, t = self._timers[0]
            if t.deadline != deadline or t.state != BLOCKED:
                heapq.heappop(self._timers)  # stale
                continue
            if self._runq and deadline > self._now:
                return
            heapq.heappop(self._timers)
            self._now = max(self._now, deadline)
            t.deadline = None
            t.timed_out = True
            t.state = RUNNABLE
            self._runq.append(t)

    def _arm(self, t: SimThread, deadline: int) -> None:
        t.deadline = deadline
        self._seq += 1
        heapq.heappush(self._timers, (deadline, self._seq, t))

    def _block(self, me: SimThread) -> bool:
        """Give up the baton until woken (``_meta`` held on entry, released on return).
        Returns True when the wake-up was the thread's deadline."""
        me.state = BLOCKED
        me.timed_out = False
        self._dispatch()
        self._meta.release()
        me.go.acquire()
        return me.timed_out

    def _wake(self, t: SimThread) -> None:
        if t.state == BLOCKED:
            t.deadline = None
            t.state = RUNNABLE
            self._runq.append(t)

    def sched_enter(self) -> None:
        """The calling thread starts running kernel code (of any kernel in this world): it
        waits for the baton.  Nested entries (a kernel calling into another) only count."""
        self._meta.acquire()
        me = self._self()
        me.depth += 1
        if me.state == RUNNING:
            self._meta.release()
            return
        me.state = RUNNABLE
        self._runq.append(me)
        if self._current is None:
            self._dispatch()
        self._meta.release()
        me.go.acquire()

    def sched_leave(self) -> None:
        with self._meta:
            me = self._self()
            if me.depth > 0:
                me.depth -= 1
            if self._current is not me or me.depth > 0:
                return
            me.state = OUTSIDE
            self._dispatch()

    # -- threads -------------------------------------------------------------------------------
    def thread_create(self, fn: Callable[[], None], name: str) -> SimThread:
        st = SimThread(name, RUNNABLE)
        st.depth = 1               # a kernel thread runs kernel code from birth to death

        def body() -> None:
            self._tls.st = st
            st.ident = threading.get_ident()
            st.go.acquire()
            try:
                fn()
            finally:
                with self._meta:
                    st.state = DONE
                    for j in st.joiners:
                        self._wake(j)
                    st.joiners.clear()
                    if self._current is st:
                        self._dispatch()

        with self._meta:
            self._all.append(st)
            self._runq.append(st)
        threading.Thread(target=body, name=name, daemon=True).start()
        return st

    def thread_join(self, handle: SimThread) -> None:
        me = self._running_self()
        self._meta.acquire()
        if handle.state == DONE:
            self._meta.release()
            return
        handle.joiners.append(me)
        self._block(me)

    def thread_stacks(self) -> str:
        frames = sys._current_frames()
        out = []
        for st in self._all:
            f = frames.get(st.ident or -1)
            if f is not None and st.state != DONE:
                out.append(f"--- sim thread {st.name} ({st.state}) ---\n"
                           + "".join(traceback.format_stack(f)))
        return "\n".join(out)

    def sleep_ns(self, ns: int) -> None:
        me = self._running_self()
        self._meta.acquire()
        self._arm(me, self._now + max(0, ns))
        self._block(me)


class SimHost(Hypercalls):
    """A host in a ``SimWorld``.  ``SimHost(seed)`` makes a world of its own; several kernels
    that must replay together take hosts of one world: ``w = SimWorld(seed); w.host("a")``."""

    name = "sim"
    needs_sched_hooks = True
    deterministic = True

    def __init__(self, seed: int = 0, *, wall_start_ns: int = 1_700_000_000 * 10**9,
                 world: SimWorld | None = None, name: str = "") -> None:
        if world is None:
            world = SimWorld(seed, wall_start_ns=wall_start_ns)
        self.world = world
        self.seed = world.seed
        self.index = len(world.hosts)
        self.label = name or f"host{self.index}"
        world.hosts.append(self)
        self._rng = random.Random(f"{world.seed}/{self.index}")
        self._tls = threading.local()        # lwp slots are per host object
        self.files: dict[str, bytearray] = {}
        self.dirs: dict[str, list[str]] = {}
        self.console: list[str] = []
        # the world's scheduling primitives, bound once
        self.sched_enter = world.sched_enter  # type: ignore[method-assign]
        self.sched_leave = world.sched_leave  # type: ignore[method-assign]

    @property
    def trace(self) -> list[tuple[int, str]]:
        return self.world.trace

    def thread_create(self, fn: Callable[[], None], name: str) -> SimThread:
        return self.world.thread_create(fn, name)

    def thread_join(self, handle: SimThread) -> None:
        self.world.thread_join(handle)

    def thread_stacks(self) -> str:
        return self.world.thread_stacks()

    def sleep_ns(self, ns: int) -> None:
        self.world.sleep_ns(ns)

    # -- locks -----------------------------------------------------------------------------------
    def mutex_create(self, recursive: bool = False) -> SimMutex:
        return SimMutex(self.world, recursive)

    def cv_create(self) -> SimCondVar:
        return SimCondVar(self.world)

    def curlwp_get(self) -> Any:
        return getattr(self._tls, "lwp", None)

    def curlwp_set(self, lwp: Any) -> None:
        self._tls.lwp = lwp

    # -- clock -----------------------------------------------------------------------------------
    @property
    def now_ns(self) -> int:
        return self.world._now

    def clock_monotonic_ns(self) -> int:
        return self.world._now

    def clock_wall_ns(self) -> int:
        return self.world.wall_start_ns + self.world._now

    # -- in-memory files -------------------------------------------------------------------------
    def add_file(self, path: str, data: bytes | bytearray) -> bytearray:
        buf = data if isinstance(data, bytearray) else bytearray(data)
        self.files[path] = buf
        return buf

    def add_disk(self, path: str, size: int) -> bytearray:
        return self.add_file(path, bytearray(size))

    def file_open(self, path: str, writable: bool, create: bool = False) -> SimFile:
        data = self.files.get(path)
        if data is None:
            if not create:
                raise HostError("ENOENT", f"sim: no file {path}")
            data = self.add_file(path, b"")
        return SimFile(path, data, writable)

    def file_pread(self, handle: SimFile, offset: int, length: int) -> bytes:
        return bytes(handle.data[offset : offset + length])

    def file_pwrite(self, handle: SimFile, offset: int, data: bytes) -> None:
        if not handle.writable:
            raise HostError("EBADF", "sim: file opened read-only")
        buf = handle.data
        if offset > len(buf):
            buf.extend(bytes(offset - len(buf)))
        buf[offset : offset + len(data)] = data

    def file_fsync(self, handle: SimFile) -> None:
        return None

    def file_close(self, handle: SimFile) -> None:
        return None

    def file_size(self, handle: SimFile) -> int:
        return len(handle.data)

    def file_truncate(self, handle: SimFile, size: int) -> None:
        buf = handle.data
        if size < len(buf):
            del buf[size:]
        else:
            buf.extend(bytes(size - len(buf)))

    def file_kind(self, path: str) -> str | None:
        if path in self.files:
            return "reg"
        if path in self.dirs:
            return "dir"
        return None

    def file_listdir(self, path: str) -> list[str]:
        if path not in self.dirs:
            raise HostError("ENOENT", f"sim: no directory {path}")
        return sorted(self.dirs[path])

    # -- randomness, console ---------------------------------------------------------------------
    def random_bytes(self, n: int) -> bytes:
        return self._rng.randbytes(n)

    def console_write(self, text: str) -> None:
        self.console.append(text)


class SimChannel:
    """A FIFO of messages between sim threads of one world (e.g. kernel threads of two kernels):
    ``send(msg)`` never blocks; ``recv(timeout_ns=None)`` blocks until a message arrives (None
    on timeout).  Kernel code calls ``recv`` through ``k.hostcall`` (it blocks)."""

    def __init__(self, world: SimWorld) -> None:
        self.world = world
        self._mtx = SimMutex(world)
        self._cv = SimCondVar(world)
        self._q: deque[Any] = deque()

    def send(self, msg: Any) -> None:
        self._mtx.enter()
        self._q.append(msg)
        self._cv.signal()
        self._mtx.exit()

    def recv(self, timeout_ns: int | None = None) -> Any:
        self._mtx.enter()
        try:
            while not self._q:
                if not self._cv.wait(self._mtx, timeout_ns):
                    return None
            return self._q.popleft()
        finally:
            self._mtx.exit()
