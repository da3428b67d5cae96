"""The POSIX host: real threads, real clock, real files.

Rules: every method here is thin; anything with policy belongs in the kernel.  Host errors are
reported as HostError with the host errno's name; the kernel translates it.
"""

from __future__ import annotations

import _thread
import errno
import functools
import os
import stat
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from rumpkernel.hypercall.interface import HostError, Hypercalls


class PosixMutex:
    """A host mutex: ``enter``, ``tryenter``, ``exit`` bound straight to a host lock (C calls,
    no Python frame on the uncontended path).  ``recursive`` gives an owner-reentrant lock."""

    __slots__ = ("enter", "exit", "lock", "tryenter")

    def __init__(self, recursive: bool = False) -> None:
        self.lock = _thread.RLock() if recursive else _thread.allocate_lock()
        self.enter = self.lock.acquire
        self.exit = self.lock.release
        self.tryenter = functools.partial(self.lock.acquire, False)


class PosixCondVar:
    """A condition variable usable with any PosixMutex (like rumpuser_cv)."""

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: deque[Any] = deque()

    def wait(self, mutex: PosixMutex, timeout_ns: int | None = None) -> bool:
        waiter = _thread.allocate_lock()
        waiter.acquire()
        self._waiters.append(waiter)
        mutex.exit()
        try:
            if timeout_ns is None or timeout_ns / 1e9 >= threading.TIMEOUT_MAX:
                got = waiter.acquire()
            else:
                got = waiter.acquire(True, max(0.0, timeout_ns / 1e9))
        finally:
            mutex.enter()
        if not got:
            try:
                self._waiters.remove(waiter)
            except ValueError:
                got = True  # signalled just as the wait timed out: the wakeup is ours
        return got

    def signal(self) -> None:
        try:
            self._waiters.popleft().release()
        except IndexError:
            pass

    def broadcast(self) -> None:
        waiters = self._waiters
        while waiters:
            try:
                waiters.popleft().release()
            except IndexError:
                break


def _oserr(e: OSError, what: str) -> HostError:
    return HostError(errno.errorcode.get(e.errno or 0, "EIO"), f"host: {what}: {e.strerror}")


class PosixHost(Hypercalls):
    name = "posix"

    def __init__(self) -> None:
        self._tls = threading.local()
        self._threads: list[threading.Thread] = []

    # threads
    def thread_create(self, fn: Callable[[], None], name: str) -> threading.Thread:
        t = threading.Thread(target=fn, name=name, daemon=True)
        self._threads.append(t)
        t.start()
        return t

    def thread_join(self, handle: threading.Thread) -> None:
        handle.join()
        if handle in self._threads:
            self._threads.remove(handle)

    def thread_stacks(self) -> str:
        import traceback

        frames = sys._current_frames()
        out = []
        for t in threading.enumerate():
            f = frames.get(t.ident or -1)
            if f is None:
                continue
            out.append(f"--- host thread {t.name} ---\n" + "".join(traceback.format_stack(f)))
        return "\n".join(out)

    # locks
    def mutex_create(self, recursive: bool = False) -> PosixMutex:
        return PosixMutex(recursive)

    def cv_create(self) -> PosixCondVar:
        return PosixCondVar()

    # lwp slot
    def curlwp_get(self) -> Any:
        return getattr(self._tls, "lwp", None)

    def curlwp_set(self, lwp: Any) -> None:
        self._tls.lwp = lwp

    # clock
    def clock_monotonic_ns(self) -> int:
        return time.monotonic_ns()

    def clock_wall_ns(self) -> int:
        return time.time_ns()

    def sleep_ns(self, ns: int) -> None:
        time.sleep(min(max(0, ns) / 1e9, threading.TIMEOUT_MAX))

    # files
    def file_open(self, path: str, writable: bool, create: bool = False) -> int:
        flags = (os.O_RDWR if writable else os.O_RDONLY) | (os.O_CREAT if create else 0)
        try:
            return os.open(path, flags | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as e:
            raise _oserr(e, f"open {path}") from None

    def file_pread(self, handle: int, offset: int, length: int) -> bytes:
        try:
            return os.pread(handle, length, offset)
        except OSError as e:
            raise _oserr(e, "pread") from None

    def file_pwrite(self, handle: int, offset: int, data: bytes) -> None:
        try:
            mv = memoryview(data)
            while mv:
                n = os.pwrite(handle, mv, offset)
                mv = mv[n:]
                offset += n
        except OSError as e:
            raise _oserr(e, "pwrite") from None

    def file_fsync(self, handle: int) -> None:
        try:
            os.fsync(handle)
        except OSError as e:
            if e.errno not in (22, 95):  # EINVAL/EOPNOTSUPP: not syncable (pipes, special files)
                raise _oserr(e, "fsync") from None

    def file_close(self, handle: int) -> None:
        try:
            os.close(handle)
        except OSError as e:
            raise _oserr(e, "close") from None

    def file_size(self, handle: int) -> int:
        try:
            st = os.fstat(handle)
            if stat.S_ISBLK(st.st_mode):
                return os.lseek(handle, 0, os.SEEK_END)
            return st.st_size
        except OSError as e:
            raise _oserr(e, "fstat") from None

    def file_truncate(self, handle: int, size: int) -> None:
        try:
            os.ftruncate(handle, size)
        except OSError as e:
            raise _oserr(e, "ftruncate") from None

    def file_kind(self, path: str) -> str | None:
        try:
            m = os.stat(path).st_mode
        except OSError:
            return None
        for test, kind in ((stat.S_ISREG, "reg"), (stat.S_ISDIR, "dir"),
                           (stat.S_ISBLK, "blk"), (stat.S_ISCHR, "chr")):
            if test(m):
                return kind
        return "other"

    def file_listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(path))
        except OSError as e:
            raise _oserr(e, f"listdir {path}") from None

    # randomness and console
    def random_bytes(self, n: int) -> bytes:
        return os.urandom(n)

    def console_write(self, text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()

