"""The kernel's ABI constants, declared once (DESIGN rule 6): the rumpdefs of this kernel.

Every number a system call takes or returns that is not a plain count lives here: open flags,
``AT_*``, poll bits, file types and permission bits, ``makedev``, seek and fcntl commands, clocks,
xattr and reboot flags, and (with the net faction) socket constants.  Values are NetBSD's where
NetBSD has the name (so a missing translation shows up as a wrong number, not a silent match);
errno values are the ``Errno`` enum in ``kern/errno.py``.

Each family is a ``Group``: a name prefix, whether its members are bit flags or an enumeration,
and which host module knows the host's values of the same names.  Translation to and from the
host's numbers is derived from the groups by name, in the client layer (``client/abi.py``), the
only place where host and kernel numbers meet; nothing else ever writes a literal.

Interface:
    O_* AT_* POLL* S_IF* SEEK_* F_* FD_CLOEXEC CLOCK_* UTIME_* XATTR_* RB_* ...   the values
    GROUPS                         name -> Group (prefix, members, bits, host module)
    makedev(major, minor) / major(dev) / minor(dev)      the kernel's dev_t (64-bit encoding:
                                   12+20 low bits as Linux's old/new encodings, the rest above)
"""

from __future__ import annotations

from dataclasses import dataclass

# ---- open(2) --------------------------------------------------------------------------------
O_RDONLY, O_WRONLY, O_RDWR, O_ACCMODE = 0, 1, 2, 3
O_NONBLOCK = 0x4
O_APPEND = 0x8
O_SYNC = 0x80
O_NOFOLLOW = 0x100
O_CREAT = 0x200
O_TRUNC = 0x400
O_EXCL = 0x800
O_NOCTTY = 0x8000
O_DSYNC = 0x10000
O_DIRECTORY = 0x200000
O_CLOEXEC = 0x400000
O_NOATIME = 0x2000000   # private to this kernel (NetBSD has none)

# ---- *at(2) --------------------------------------------------------------------------------
AT_FDCWD = -100
AT_EACCESS = 0x100
AT_SYMLINK_NOFOLLOW = 0x200
AT_SYMLINK_FOLLOW = 0x400
AT_REMOVEDIR = 0x800

# ---- poll(2) --------------------------------------------------------------------------------
POLLIN = 0x1
POLLPRI = 0x2
POLLOUT = 0x4
POLLERR = 0x8
POLLHUP = 0x10
POLLNVAL = 0x20
POLLRDNORM = 0x40
POLLRDBAND = 0x80
POLLWRNORM = POLLOUT     # NetBSD: the same bit as POLLOUT (Linux: 0x100)
POLLWRBAND = 0x100

# ---- file types and permission bits (the same on every Unix) ---------------------------------
S_IFMT = 0o170000
S_IFIFO = 0o010000
S_IFCHR = 0o020000
S_IFDIR = 0o040000
S_IFBLK = 0o060000
S_IFREG = 0o100000
S_IFLNK = 0o120000
S_IFSOCK = 0o140000
S_ISUID = 0o4000
S_ISGID = 0o2000
S_ISVTX = 0o1000
ALLPERMS = 0o7777

# ---- lseek(2), fcntl(2) -----------------------------------------------------------------------
SEEK_SET, SEEK_CUR, SEEK_END, SEEK_DATA, SEEK_HOLE = 0, 1, 2, 3, 4
F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL = 0, 1, 2, 3, 4
F_DUPFD_CLOEXEC = 12
FD_CLOEXEC = 1

# ---- clocks, times ------------------------------------------------------------------------------
CLOCK_REALTIME = 0
CLOCK_MONOTONIC = 3
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2

# ---- xattrs, access, reboot ------------------------------------------------------------------
XATTR_CREATE, XATTR_REPLACE = 1, 2
XATTR_NOFOLLOW = 0x100   # flag of the *xattr system calls (the l* variants)
F_OK, X_OK, W_OK, R_OK = 0, 1, 2, 4
RB_AUTOBOOT, RB_NOSYNC, RB_HALT, RB_POWERDOWN = 0, 0x4, 0x8, 0x808

# ---- resource limits (getrlimit/setrlimit) ------------------------------------------------------
RLIMIT_NOFILE = 8
RLIM_INFINITY = (1 << 63) - 1

# ---- limits -------------------------------------------------------------------------------------
PATH_MAX = 4096          # bytes in a path, with its NUL (Linux's value)
NAME_MAX = 255           # bytes in one name
SYMLINK_MAX = PATH_MAX - 1


# ---- device numbers ---------------------------------------------------------------------------
def makedev(major: int, minor: int) -> int:
    """The kernel's dev_t (glibc's 64-bit layout, 32-bit major and minor): 8 low minor bits,
    12 major bits, 12 more minor bits (Linux's "new" 32-bit encoding), then the high 12 minor
    and 20 major bits above."""
    return ((minor & 0xFF) | ((major & 0xFFF) << 8) | ((minor & 0xFFFFFF00) << 12)
            | ((major & 0xFFFFF000) << 32))


def major(dev: int) -> int:
    return ((dev >> 8) & 0xFFF) | ((dev >> 32) & 0xFFFFF000)


def minor(dev: int) -> int:
    return (dev & 0xFF) | ((dev >> 12) & 0xFFFFFF00)


# ---- the groups translations are derived from ------------------------------------------------
@dataclass(frozen=True)
class Group:
    """A family of constants: ``members`` maps names (as the host spells them) to kernel
    values; ``bits`` says whether values combine as flags; ``host`` names the Python module
    where the host's values of the same names live ("os", "select", "socket", "errno" ...)."""

    name: str
    members: dict[str, int]
    bits: bool
    host: str


def _collect(prefix: str, *, exclude: tuple[str, ...] = ()) -> dict[str, int]:
    return {n: v for n, v in globals().items()
            if n.startswith(prefix) and n not in exclude and type(v) is int}


GROUPS: dict[str, Group] = {
    "open": Group("open", _collect("O_", exclude=("O_ACCMODE", "O_RDONLY", "O_WRONLY",
                                                   "O_RDWR")), True, "os"),
    "poll": Group("poll", _collect("POLL"), True, "select"),
    "seek": Group("seek", _collect("SEEK_"), False, "os"),
    "fcntl": Group("fcntl", {n: v for n, v in _collect("F_").items()
                             if n not in ("F_OK",)}, False, "fcntl"),
    "clock": Group("clock", _collect("CLOCK_"), False, "time"),
    "rlimit": Group("rlimit", {"RLIMIT_NOFILE": RLIMIT_NOFILE}, False, "resource"),
    "access": Group("access", {"F_OK": F_OK, "X_OK": X_OK, "W_OK": W_OK, "R_OK": R_OK},
                    True, "os"),
}

