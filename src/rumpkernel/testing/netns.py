"""A private network namespace for the calling thread (Linux, root), for tests of code that uses
the host's network -- sockin, hijacked programs on sockin -- so that parallel runs on one machine
never compete for the same port numbers.

    with private_netns():        # this thread (and threads/processes it starts) now see a
        ...                      # fresh namespace with only lo, up (127.0.0.1, ::1)
    with private_netns(ports=(49152, 65535)):   # ... and this ephemeral port range (BSD's and
        ...                                     # IANA's; Linux's default is 32768-60999)

Only the calling thread moves (setns/unshare are per thread); it moves back on exit, and the
namespace disappears once nothing inside it is left.  Sockets keep the namespace they were
created in.  ``available()`` says whether this host allows it (root, Linux); without it the
context manager raises OSError.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import os
import socket
import struct
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS = 0x8913, 0x8914
IFF_UP = 0x1

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def _lo_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = struct.pack("16sh14x", b"lo", 0)
        flags = struct.unpack("16sh14x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, ifr))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sh14x", b"lo", flags | IFF_UP))


@contextlib.contextmanager
def private_netns(ports: tuple[int, int] | None = None) -> Iterator[None]:
    orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        try:
            _lo_up()
            if ports is not None:
                with open("/proc/sys/net/ipv4/ip_local_port_range", "w") as f:
                    f.write(f"{ports[0]} {ports[1]}\n")
            yield
        finally:
            _check(_libc.setns(orig, CLONE_NEWNET), "setns back")
    finally:
        os.close(orig)


def available() -> bool:
    if not os.path.exists("/proc/thread-self/ns/net") or os.geteuid() != 0:
        return False
    try:
        with private_netns():
            return True
    except OSError:
        return False
