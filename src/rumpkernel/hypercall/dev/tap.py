"""Host side of virtif: a Linux TAP device (``/dev/net/tun``), plain Ethernet frames.

The TAP is opened by name in the network namespace the process runs in: an existing
(persistent) TAP is attached to, a missing one is created and disappears when closed.  Frame
I/O is two calls, ``send`` and ``recv``, so a later offload mode (IFF_VNET_HDR, TSO/GSO
super-frames) changes only this module.

Interface (``host.companion("tap", 1)``):
    attach(name) -> Port        EPERM without CAP_NET_ADMIN, ENODEV without /dev/net/tun,
                                EINVAL for a bad name, EBUSY if another process has it
    Port.send(frame)            one frame; waits (bounded) when the device queue is full and
                                drops it after WRITE_WAIT_S (counted)
    Port.recv() -> bytes | None one frame; None once closed
    Port.close() (wakes recv) / Port.release() / Port.info()
"""

from __future__ import annotations

import errno as _errno
import fcntl
import os
import select
import struct
from typing import Any

from rumpkernel.hypercall.interface import HostError

VERSION = 1
HOSTS = ("posix",)
TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000
IFNAMSIZ = 16
MAX_FRAME = 65536
WRITE_WAIT_S = 1.0


def _err(e: OSError, what: str) -> HostError:
    return HostError(_errno.errorcode.get(e.errno or 0, "EIO"), f"tap {what}: {e.strerror}")


class Port:
    def __init__(self, name: str) -> None:
        raw = name.encode()
        if not raw or len(raw) >= IFNAMSIZ or b"/" in raw or b"\0" in raw:
            raise HostError("EINVAL", f"tap: bad device name {name!r}")
        try:
            self.fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as e:
            raise _err(e, "open /dev/net/tun") from None
        try:
            ifr = fcntl.ioctl(self.fd, TUNSETIFF, struct.pack("16sH", raw, IFF_TAP | IFF_NO_PI))
        except OSError as e:
            os.close(self.fd)
            raise _err(e, f"attach {name}") from None
        self.name = ifr[:IFNAMSIZ].split(b"\0", 1)[0].decode()
        self.wake_r, self.wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.closed = False
        self.sent = self.received = self.dropped = 0

    def send(self, frame: bytes) -> None:
        try:
            os.write(self.fd, frame)
        except BlockingIOError:
            if not select.select([], [self.fd], [], WRITE_WAIT_S)[1]:
                self.dropped += 1
                return
            try:
                os.write(self.fd, frame)
            except BlockingIOError:
                self.dropped += 1
                return
            except OSError as e:
                raise _err(e, "write") from None
        except OSError as e:
            raise _err(e, "write") from None
        self.sent += 1

    def recv(self) -> bytes | None:
        while not self.closed:
            try:
                frame = os.read(self.fd, MAX_FRAME)
            except BlockingIOError:
                select.select([self.fd, self.wake_r], [], [], 1.0)
                continue
            except OSError as e:
                if self.closed:
                    return None
                raise _err(e, "read") from None
            self.received += 1
            return frame
        return None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                os.write(self.wake_w, b"x")
            except OSError:
                pass

    def release(self) -> None:
        for fd in (self.fd, self.wake_r, self.wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def info(self) -> dict[str, Any]:
        return {"tap": self.name, "sent": self.sent, "received": self.received,
                "dropped": self.dropped}


class TapCompanion:
    def attach(self, name: str) -> Port:
        return Port(name)


def companion(host: Any) -> TapCompanion:
    return TapCompanion()
