"""Mount options of the msdos/vfat driver (the names Linux's vfat uses where they exist).

Interface:
    OPTION_NAMES                 -- what ``FileSystemType.option_names`` advertises
    MountOptions.parse(opts)     -- validated record; EINVAL on a bad value

Options:
    uid=N, gid=N        owner of every file (default 0)
    umask=OOO           permission bits removed from files and directories (default 022)
    dmask=OOO/fmask=OOO override umask for directories / regular files
    shortname=MODE      lower | win95 | winnt | mixed (default mixed), see ``names``
    quiet               chown/chmod that FAT cannot store succeed silently instead of EPERM
    tz=UTC              FAT times are UTC (the default)
    time_offset=MIN     FAT local time = UTC + MIN minutes (-1440..1440)
    codepage=N          OEM code page of short names (default 850, like mtools)
    offset=BYTES        file system starts this many bytes into the device
    partition=N         use MBR primary partition N (1-4); default: auto-detect when the
                        first sector is a partition table rather than a FAT boot sector
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from rumpkernel.fs.msdos.names import SHORT_MODES
from rumpkernel.kern.errno import Errno, KernelError

OPTION_NAMES = frozenset({
    "uid", "gid", "umask", "dmask", "fmask", "shortname", "quiet", "tz", "time_offset",
    "codepage", "offset", "partition", "ro", "rw",
})


def _int(opts: dict[str, str], name: str, default: int, base: int = 10,
         lo: int = 0, hi: int = 2**32 - 1) -> int:
    raw = opts.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw, base)
    except ValueError as e:
        raise KernelError(Errno.EINVAL, f"msdos: {name}={raw!r} is not a number") from e
    if not lo <= v <= hi:
        raise KernelError(Errno.EINVAL, f"msdos: {name}={raw} out of range")
    return v


@dataclass(frozen=True, slots=True)
class MountOptions:
    uid: int = 0
    gid: int = 0
    fmask: int = 0o022
    dmask: int = 0o022
    shortname: str = "mixed"
    quiet: bool = False
    time_offset_s: int = 0
    codepage: str = "cp850"
    offset: int = 0
    partition: int | None = None

    @classmethod
    def parse(cls, opts: dict[str, str]) -> MountOptions:
        unknown = set(opts) - OPTION_NAMES
        if unknown:
            raise KernelError(Errno.EINVAL, f"msdos: unknown options {sorted(unknown)}")
        umask = _int(opts, "umask", 0o022, 8, 0, 0o777)
        tz = opts.get("tz")
        if tz not in (None, "", "UTC"):
            raise KernelError(Errno.EINVAL, "msdos: tz= only accepts UTC")
        cp = f"cp{_int(opts, 'codepage', 850, 10, 1, 99999)}"
        try:
            codecs.lookup(cp)
        except LookupError as e:
            raise KernelError(Errno.EINVAL, f"msdos: code page {cp} unknown") from e
        mode = opts.get("shortname") or "mixed"
        if mode not in SHORT_MODES:
            raise KernelError(Errno.EINVAL, f"msdos: shortname={mode} unknown")
        part = opts.get("partition")
        return cls(
            uid=_int(opts, "uid", 0), gid=_int(opts, "gid", 0),
            fmask=_int(opts, "fmask", umask, 8, 0, 0o777),
            dmask=_int(opts, "dmask", umask, 8, 0, 0o777),
            shortname=mode, quiet="quiet" in opts,
            time_offset_s=60 * _int(opts, "time_offset", 0, 10, -1440, 1440),
            codepage=cp, offset=_int(opts, "offset", 0, 10, 0, 2**62),
            partition=None if part is None else _int(opts, "partition", 1, 10, 1, 4))
