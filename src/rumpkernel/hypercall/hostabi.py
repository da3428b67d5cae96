"""What the host calls things: the host's constant values by name, its errno names, its records.

This is the host half of ABI translation.  It knows nothing of the kernel: it answers "what is
``O_CREAT`` / ``POLLWRNORM`` / ``ENOENT`` on this host?" by name, from the host's own modules.
The kernel half (``kern/abi.py``) declares the kernel's values of the same names, and the client
layer (``client/abi.py``) derives the translation tables from the two.

Interface:
    host_value(module, name) -> int | None      e.g. host_value("os", "O_CREAT")
    errno_name(num) -> str | None / errno_value(name) -> int | None / strerror(num)
    stat_result(seq, extra) / statvfs_result(seq, extra)   the host's os records
    fsencode / fsdecode / fspath / terminal_size
    HostError                                   what hypercalls raise (see interface.py)
"""

from __future__ import annotations

import errno as _errno
import importlib
import os

from rumpkernel.hypercall.interface import HostError

__all__ = ["HostError", "errno_name", "errno_value", "fsdecode", "fsencode", "fspath",
           "host_value", "makedev", "stat_result", "statvfs_result", "strerror", "terminal_size"]

_MODULES = {"os", "select", "socket", "errno", "fcntl", "time", "stat", "resource"}


def host_value(module: str, name: str) -> int | None:
    """The host's value of constant ``name`` from ``module`` (one of the host's standard
    modules), or None where the host has no such constant."""
    if module not in _MODULES:
        raise ValueError(f"not a host constant module: {module}")
    try:
        mod = importlib.import_module(module)
    except ImportError:  # pragma: no cover - non-POSIX host
        return None
    v = getattr(mod, name, None)
    return int(v) if isinstance(v, int) else None


def errno_name(num: int | None) -> str | None:
    return _errno.errorcode.get(num or 0)


def errno_value(name: str) -> int | None:
    return getattr(_errno, name, None)


strerror = os.strerror
stat_result = os.stat_result
statvfs_result = os.statvfs_result
fsencode = os.fsencode
fsdecode = os.fsdecode
fspath = os.fspath
terminal_size = os.get_terminal_size
makedev = os.makedev
