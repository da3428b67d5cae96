"""The hypercall interface (rumpuser): everything a kernel may ask of its host.

A kernel receives one ``Hypercalls`` object at boot and touches the host only through it
(DESIGN rule 1).  ``VERSION`` is checked at boot: a kernel refuses a host whose interface version
it does not know.

Interface (every implementation provides all of it):

    memory      mem_alloc(nbytes) -> bytearray      MemoryError when the host refuses
                mem_free(buf)
    threads     thread_create(fn, name) -> handle    a new host thread running fn()
                thread_join(handle)
    locks       mutex_create(recursive=False)        enter() / tryenter() -> bool / exit();
                                                     a recursive one may be re-entered by its owner
                cv_create() -> HostCondVar           wait(mutex, timeout_ns=None) -> bool (False
                                                     on timeout) / signal() / broadcast()
                rw_create() -> HostRWLock            enter(write) / tryenter(write) / exit()
    lwp slot    curlwp_get() -> object | None        per host thread, per host object
                curlwp_set(lwp | None)
    clock       clock_monotonic_ns(), clock_wall_ns(), sleep_ns(ns)
    files       file_open(path, writable, create=False) -> handle;  file_pread(h, off, n),
                file_pwrite(h, off, data), file_fsync(h), file_close(h), file_size(h),
                file_truncate(h, size), file_kind(path) -> "reg" | "dir" | "blk" | "chr" | None,
                file_listdir(path) -> list[str]
                Errors are ``HostError(name, detail)`` with the host errno's symbolic name
                ("ENOENT"); the kernel translates it into its own numbering at one point
                (``kern/errno.py: from_host``), as NetBSD's rumpuser returns errno values.
    random      random_bytes(n)
    console     console_write(text)
    scheduling  sched_enter() / sched_leave(): a host thread starts / stops running kernel code.
                Only a deterministic host needs them (``needs_sched_hooks``); the kernel does not
                call them otherwise.
    companions  companion(name, version) -> object: the host side of a virtual device or
                service (a TAP device, a shared bus file, host sockets for sockin), each with its
                own versioned interface in ``hypercall/dev/`` (NetBSD's rumpcomp_user files).
                ``HostError("ENODEV")`` where this host has none, ``HostError("EPROTO")`` for a
                version it does not speak.

Blocking calls (mutex enter, cv wait, sleep, thread join, file I/O) may take arbitrarily long;
the kernel releases its virtual CPU around them.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, Protocol

VERSION = 1


class HostError(Exception):
    """A hypercall failed.  ``name`` is the host errno's symbolic name ("ENOENT", "EIO");
    ``detail`` says what failed.  The hypercall layer knows nothing of the kernel's numbers."""

    __slots__ = ("detail", "name")

    def __init__(self, name: str, detail: str = "") -> None:
        super().__init__(name, detail)
        self.name = name
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.name}: {self.detail}" if self.detail else self.name


class HostMutex(Protocol):
    def enter(self) -> Any: ...

    def tryenter(self) -> bool: ...

    def exit(self) -> None: ...


class HostCondVar(Protocol):
    def wait(self, mutex: HostMutex, timeout_ns: int | None = None) -> bool: ...

    def signal(self) -> None: ...

    def broadcast(self) -> None: ...


class HostRWLock(Protocol):
    def enter(self, write: bool) -> None: ...

    def tryenter(self, write: bool) -> bool: ...

    def exit(self) -> None: ...


class Hypercalls(abc.ABC):
    """Abstract host.  See the module docstring for the contract of each call."""

    version: int = VERSION
    name: str = "abstract"
    needs_sched_hooks: bool = False
    deterministic: bool = False

    # memory
    def mem_alloc(self, nbytes: int) -> bytearray:
        return bytearray(nbytes)

    def mem_free(self, buf: bytearray) -> None:
        return None

    # threads
    @abc.abstractmethod
    def thread_create(self, fn: Callable[[], None], name: str) -> Any: ...

    @abc.abstractmethod
    def thread_join(self, handle: Any) -> None: ...

    # locks
    @abc.abstractmethod
    def mutex_create(self, recursive: bool = False) -> HostMutex: ...

    @abc.abstractmethod
    def cv_create(self) -> HostCondVar: ...

    def rw_create(self) -> HostRWLock:
        from rumpkernel.hypercall.rwlock import RWLock

        return RWLock(self.mutex_create(), self.cv_create())

    # per-thread lwp slot
    @abc.abstractmethod
    def curlwp_get(self) -> Any: ...

    @abc.abstractmethod
    def curlwp_set(self, lwp: Any) -> None: ...

    # clock
    @abc.abstractmethod
    def clock_monotonic_ns(self) -> int: ...

    @abc.abstractmethod
    def clock_wall_ns(self) -> int: ...

    @abc.abstractmethod
    def sleep_ns(self, ns: int) -> None: ...

    # files
    @abc.abstractmethod
    def file_open(self, path: str, writable: bool, create: bool = False) -> Any: ...

    @abc.abstractmethod
    def file_pread(self, handle: Any, offset: int, length: int) -> bytes: ...

    @abc.abstractmethod
    def file_pwrite(self, handle: Any, offset: int, data: bytes) -> None: ...

    @abc.abstractmethod
    def file_fsync(self, handle: Any) -> None: ...

    @abc.abstractmethod
    def file_close(self, handle: Any) -> None: ...

    @abc.abstractmethod
    def file_size(self, handle: Any) -> int: ...

    @abc.abstractmethod
    def file_truncate(self, handle: Any, size: int) -> None: ...

    @abc.abstractmethod
    def file_kind(self, path: str) -> str | None: ...

    @abc.abstractmethod
    def file_listdir(self, path: str) -> list[str]: ...

    # randomness and console
    @abc.abstractmethod
    def random_bytes(self, n: int) -> bytes: ...

    @abc.abstractmethod
    def console_write(self, text: str) -> None: ...

    # scheduling hooks (deterministic hosts only)
    def sched_enter(self) -> None:
        return None

    def sched_leave(self) -> None:
        return None

    # host sides of virtual devices
    def companion(self, name: str, version: int) -> Any:
        from rumpkernel.hypercall.dev import lookup

        return lookup(self, name, version)

    # introspection for panics: stacks of every host thread this host created
    def thread_stacks(self) -> str:
        return ""
