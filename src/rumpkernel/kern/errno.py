"""Kernel error numbers and the one exception kernel code raises.

Interface:
    Errno          -- IntEnum of the kernel's own error numbers (NetBSD numbering, plus EUCLEAN).
    KernelError    -- ``raise KernelError(Errno.ENOENT, "detail")``; the only way a kernel or driver
                      routine reports failure (DESIGN rule 5).
    KernelPanic    -- raised to a caller whose system call hit a kernel bug; the kernel is dead.

    from_host(e)   -- the KernelError for a failed hypercall (``HostError``, which names the host's
                      errno symbolically): the one point where host failures enter the kernel.

Rules: kernel code never raises OSError or host errno values.  Translation to the host's numbering
happens at the client boundary (``rumpkernel.client.abi``) from the names in this table.
"""

from __future__ import annotations

import enum

from rumpkernel.hypercall.interface import HostError


class Errno(enum.IntEnum):
    """Kernel errno values.  The numbers are NetBSD's, so they differ from Linux's on purpose:
    any place that forgets to translate shows up in tests."""

    EPERM = 1
    ENOENT = 2
    ESRCH = 3
    EINTR = 4
    EIO = 5
    ENXIO = 6
    E2BIG = 7
    ENOEXEC = 8
    EBADF = 9
    ECHILD = 10
    EDEADLK = 11
    ENOMEM = 12
    EACCES = 13
    EFAULT = 14
    ENOTBLK = 15
    EBUSY = 16
    EEXIST = 17
    EXDEV = 18
    ENODEV = 19
    ENOTDIR = 20
    EISDIR = 21
    EINVAL = 22
    ENFILE = 23
    EMFILE = 24
    ENOTTY = 25
    ETXTBSY = 26
    EFBIG = 27
    ENOSPC = 28
    ESPIPE = 29
    EROFS = 30
    EMLINK = 31
    EPIPE = 32
    EDOM = 33
    ERANGE = 34
    EAGAIN = 35
    EINPROGRESS = 36
    EALREADY = 37
    ENOTSOCK = 38
    EDESTADDRREQ = 39
    EMSGSIZE = 40
    EPROTOTYPE = 41
    ENOPROTOOPT = 42
    EPROTONOSUPPORT = 43
    ESOCKTNOSUPPORT = 44
    EOPNOTSUPP = 45
    EPFNOSUPPORT = 46
    EAFNOSUPPORT = 47
    EADDRINUSE = 48
    EADDRNOTAVAIL = 49
    ENETDOWN = 50
    ENETUNREACH = 51
    ENETRESET = 52
    ECONNABORTED = 53
    ECONNRESET = 54
    ENOBUFS = 55
    EISCONN = 56
    ENOTCONN = 57
    ESHUTDOWN = 58
    ETOOMANYREFS = 59
    ETIMEDOUT = 60
    ECONNREFUSED = 61
    ELOOP = 62
    ENAMETOOLONG = 63
    EHOSTDOWN = 64
    EHOSTUNREACH = 65
    ENOTEMPTY = 66
    EPROCLIM = 67
    EUSERS = 68
    EDQUOT = 69
    ESTALE = 70
    EREMOTE = 71
    ENOLCK = 77
    ENOSYS = 78
    EFTYPE = 79
    EAUTH = 80
    ENEEDAUTH = 81
    EIDRM = 82
    ENOMSG = 83
    EOVERFLOW = 84
    EILSEQ = 85
    ENOTSUP = 86
    ECANCELED = 87
    EBADMSG = 88
    ENODATA = 89
    ETIME = 92
    ENOATTR = 93
    EPROTO = 96
    # Not in NetBSD: Linux's "Structure needs cleaning", what ext4 reports for corruption.
    EUCLEAN = 97
    # Not in NetBSD: Linux's "Required key not available" (an encrypted file without its key).
    ENOKEY = 98


class KernelError(Exception):
    """A failed kernel operation: ``errno`` is an :class:`Errno`, ``detail`` an optional message
    for logs and for the client (e.g. ``"ext4: inode 12: extent header magic bad"``)."""

    __slots__ = ("detail", "errno")

    def __init__(self, errno: Errno, detail: str | None = None) -> None:
        super().__init__(errno, detail)
        self.errno = errno
        self.detail = detail

    def __str__(self) -> str:
        name = Errno(self.errno).name
        return f"{name}: {self.detail}" if self.detail else name

    def __reduce__(self):  # picklable across process boundaries (sysproxy, multiprocessing)
        return (KernelError, (self.errno, self.detail))


class KernelPanic(Exception):
    """The kernel hit a bug (an exception other than KernelError escaped kernel code).  The kernel
    that panicked is stopped; every later call into it raises KernelPanic too.  ``message`` is
    the panic string and ``stacks`` the dump of every kernel thread's stack at panic time."""

    def __init__(self, message: str, stacks: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.stacks = stacks


# Host errno names this kernel spells differently (Linux reports a missing xattr as ENODATA).
_HOST_NAMES = {"ENODATA": "ENOATTR", "EOPNOTSUPP": "EOPNOTSUPP", "ENOTSUP": "EOPNOTSUPP"}


def from_host(e: HostError) -> KernelError:
    """Translate a failed hypercall into the kernel's errno (EIO for names it lacks)."""
    name = _HOST_NAMES.get(e.name, e.name)
    try:
        num = Errno[name]
    except KeyError:
        num = Errno.EIO
    return KernelError(num, e.detail or e.name)


def corrupt(detail: str) -> KernelError:
    """Shorthand for on-disk or on-wire corruption: ``raise corrupt("bad extent magic")``."""
    return KernelError(Errno.EUCLEAN, detail)
