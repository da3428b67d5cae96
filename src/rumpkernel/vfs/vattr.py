"""Records that cross the VFS/driver boundary: file attributes, attribute changes, file system
statistics, directory entries, driver capabilities.

Interface:
    S_IF*, S_ISDIR(...)   -- file type bits of ``mode`` (POSIX values; the same on every host).
    DT_*                  -- directory entry types, from ``dtype_of(mode)``.
    VAttr                 -- what ``getattr`` returns; times are integer ns since the epoch.
    SetAttr               -- what ``setattr`` receives; ``None`` means "leave alone".
    StatFS                -- what ``statfs`` returns (block counts in units of ``frsize``).
    DirEnt                -- one ``readdir`` entry with the cookie of the *next* entry.
    FsFeatures            -- what a driver supports, declared once so the VFS and the
                             FS-independent test suite can ask instead of guessing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

S_IFMT = 0o170000
S_IFSOCK = 0o140000
S_IFLNK = 0o120000
S_IFREG = 0o100000
S_IFBLK = 0o060000
S_IFDIR = 0o040000
S_IFCHR = 0o020000
S_IFIFO = 0o010000
S_ISUID = 0o4000
S_ISGID = 0o2000
S_ISVTX = 0o1000
ALLPERMS = 0o7777

DT_UNKNOWN, DT_FIFO, DT_CHR, DT_DIR, DT_BLK, DT_REG, DT_LNK, DT_SOCK = 0, 1, 2, 4, 6, 8, 10, 12

_DTYPES = {
    S_IFIFO: DT_FIFO,
    S_IFCHR: DT_CHR,
    S_IFDIR: DT_DIR,
    S_IFBLK: DT_BLK,
    S_IFREG: DT_REG,
    S_IFLNK: DT_LNK,
    S_IFSOCK: DT_SOCK,
}
VALID_TYPES = frozenset(_DTYPES)


def dtype_of(mode: int) -> int:
    """Directory-entry type (DT_*) for a full st_mode."""
    return _DTYPES.get(mode & S_IFMT, DT_UNKNOWN)


def S_ISDIR(mode: int) -> bool:
    return mode & S_IFMT == S_IFDIR


def S_ISREG(mode: int) -> bool:
    return mode & S_IFMT == S_IFREG


def S_ISLNK(mode: int) -> bool:
    return mode & S_IFMT == S_IFLNK


def S_ISCHR(mode: int) -> bool:
    return mode & S_IFMT == S_IFCHR


def S_ISBLK(mode: int) -> bool:
    return mode & S_IFMT == S_IFBLK


def S_ISFIFO(mode: int) -> bool:
    return mode & S_IFMT == S_IFIFO


@dataclass(slots=True)
class VAttr:
    """File attributes.  ``mode`` includes the S_IFMT type bits; ``blocks`` counts 512-byte units
    actually allocated; times are ns since the epoch (may be negative: pre-1970)."""

    ino: int
    mode: int
    nlink: int
    uid: int
    gid: int
    size: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    birthtime_ns: int = 0
    rdev: int = 0
    blocks: int = 0
    blksize: int = 4096
    gen: int = 0
    flags: int = 0


@dataclass(slots=True)
class SetAttr:
    """Attribute changes; ``None`` fields are left alone.  ``mode`` carries permission bits only
    (07777).  The VFS has already checked permissions; the driver also updates ctime."""

    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    size: int | None = None
    atime_ns: int | None = None
    mtime_ns: int | None = None


@dataclass(slots=True, frozen=True)
class StatFS:
    """File system statistics, ``statvfs``-shaped.  Block counts are in ``frsize`` units."""

    bsize: int
    frsize: int
    blocks: int
    bfree: int
    bavail: int
    files: int
    ffree: int
    favail: int
    namemax: int
    fsid: int = 0


@dataclass(slots=True, frozen=True)
class DirEnt:
    """One directory entry.  ``cookie`` is the offset to pass to ``readdir`` to continue *after*
    this entry; it must stay valid when other entries are removed (stable offsets)."""

    name: bytes
    ino: int
    dtype: int
    cookie: int


@dataclass(slots=True, frozen=True)
class FsFeatures:
    """What a file system can represent.  The VFS refuses unsupported operations with the errno
    named here before the driver is called, and the FS-independent test suite reads it to decide
    which behaviours to expect (FAT declares no symlinks, no hard links, fixed owners...)."""

    symlinks: bool = True
    hardlinks: bool = True
    special_files: bool = True      # fifos, device nodes, sockets
    owners: bool = True             # chown stores uid/gid
    permissions: bool = True        # chmod stores all 07777 bits
    link_max: int = 32767
    name_max: int = 255
    case_insensitive: bool = False
    sparse: bool = True             # holes are real (SEEK_HOLE finds them)
    xattr: bool = False
    time_resolution_ns: int = 1
    max_file_size: int = 2**63 - 1
    unsupported_errno: dict[str, int] = field(default_factory=dict)
