"""Host side of virtif: a Linux TAP device (``/dev/net/tun``) with virtio-net offloads.

The TAP is opened by name in the network namespace the process runs in: an existing
(persistent) TAP is attached to, a missing one is created and disappears when closed.

Offloads: unless ``offload="off"``, the TAP is opened with IFF_VNET_HDR, the header size set to
10 bytes (TUNSETVNETHDRSZ) and TUNSETOFFLOAD asked for checksum, TSO4 and TSO6 (``"csum"``:
checksum only); what the host kernel refuses is dropped step by step (TSO6, then TSO4, then
checksum), so ``Port.offloads`` is what it took.  Then every frame read or written starts with
a struct virtio_net_hdr, which the driver (net/if_virtif.py) builds and parses: this module
moves bytes only.

Interface (``host.companion("tap", 2)``):
    attach(name, offload="on"|"csum"|"off") -> Port
                                EPERM without CAP_NET_ADMIN, ENODEV without /dev/net/tun,
                                EINVAL for a bad name or option, EBUSY if another process has it
    Port.vnet                   frames carry a virtio_net_hdr (VNET_HDR_LEN bytes)
    Port.offloads               set of "csum", "tso4", "tso6" in use
    Port.send(data) / send_many([data])   frames (``data`` bytes, or a tuple of parts written
                                with one writev); each waits (bounded) when the device queue is
                                full and is dropped after WRITE_WAIT_S (counted)
    Port.recv_batch() -> [data] | None   every frame waiting (at least one, at most RX_BATCH),
                                so one host call serves a burst; None once closed
    Port.recv() -> bytes | None one frame without its header (the version 1 shape)
    Port.close() (wakes recv) / Port.release() / Port.info()
Test hook: ``set_offload(fd, flags)`` is the one TUNSETOFFLOAD call (a test replaces it to
simulate a host that refuses offloads).
"""

from __future__ import annotations

import errno as _errno
import fcntl
import os
import select
import struct
from typing import Any

from rumpkernel.hypercall.interface import HostError

VERSION = 2
HOSTS = ("posix",)
TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
IFF_TAP, IFF_NO_PI, IFF_VNET_HDR = 0x0002, 0x1000, 0x4000
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 = 0x01, 0x02, 0x04
IFNAMSIZ = 16
VNET_HDR_LEN = 10                   # struct virtio_net_hdr (net/wire/gso.py parses it)
MAX_FRAME = 65536 + VNET_HDR_LEN + 14
WRITE_WAIT_S = 1.0
RX_BATCH = 64
_TRIES = ((TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6), (TUN_F_CSUM | TUN_F_TSO4), TUN_F_CSUM, 0)
_NAMES = ((TUN_F_CSUM, "csum"), (TUN_F_TSO4, "tso4"), (TUN_F_TSO6, "tso6"))


def _err(e: OSError, what: str) -> HostError:
    return HostError(_errno.errorcode.get(e.errno or 0, "EIO"), f"tap {what}: {e.strerror}")


def gso_hdr_len(vnet: bool) -> int:
    return VNET_HDR_LEN if vnet else 0


def set_offload(fd: int, flags: int) -> None:
    fcntl.ioctl(fd, TUNSETOFFLOAD, flags)


class Port:
    def __init__(self, name: str, offload: str = "on") -> None:
        raw = name.encode()
        if not raw or len(raw) >= IFNAMSIZ or b"/" in raw or b"\0" in raw:
            raise HostError("EINVAL", f"tap: bad device name {name!r}")
        if offload not in ("on", "csum", "off"):
            raise HostError("EINVAL", f"tap: offload={offload!r} (on, csum or off)")
        self.vnet = offload != "off"
        try:
            self.fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as e:
            raise _err(e, "open /dev/net/tun") from None
        mode = IFF_TAP | IFF_NO_PI | (IFF_VNET_HDR if self.vnet else 0)
        try:
            ifr = fcntl.ioctl(self.fd, TUNSETIFF, struct.pack("16sH", raw, mode))
            if self.vnet:
                fcntl.ioctl(self.fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
        except OSError as e:
            os.close(self.fd)
            raise _err(e, f"attach {name}") from None
        self.flags = self._negotiate(offload) if self.vnet else 0
        self.offloads = {n for bit, n in _NAMES if self.flags & bit}
        self.name = ifr[:IFNAMSIZ].split(b"\0", 1)[0].decode()
        self.wake_r, self.wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.closed = False
        self.sent = self.received = self.dropped = 0

    def _negotiate(self, offload: str) -> int:
        tries = _TRIES if offload == "on" else (TUN_F_CSUM, 0)
        for flags in tries:
            try:
                set_offload(self.fd, flags)
                return flags
            except OSError:
                continue
        return 0

    # ---- transmit -----------------------------------------------------------------------------
    def send(self, data: bytes | tuple[bytes, ...]) -> None:
        """One frame (with its virtio_net_hdr when ``vnet``); a tuple of parts is written
        with one writev (no copy to join a header to a 64 KiB frame)."""
        self._write(data)

    def send_many(self, frames: list[bytes]) -> None:
        for data in frames:
            self._write(data)

    def _write(self, data: Any) -> None:
        put = os.writev if type(data) is tuple else os.write
        try:
            put(self.fd, data)
        except BlockingIOError:
            if not select.select([], [self.fd], [], WRITE_WAIT_S)[1]:
                self.dropped += 1
                return
            try:
                put(self.fd, data)
            except BlockingIOError:
                self.dropped += 1
                return
            except OSError as e:
                raise _err(e, "write") from None
        except OSError as e:
            raise _err(e, "write") from None
        self.sent += 1

    # ---- receive ------------------------------------------------------------------------------
    def _read(self) -> bytes | None:
        """One frame without waiting (None: nothing there)."""
        try:
            data = os.read(self.fd, MAX_FRAME)
        except BlockingIOError:
            return None
        except OSError as e:
            if self.closed:
                return None
            raise _err(e, "read") from None
        self.received += 1
        return data

    def recv_batch(self) -> list[bytes] | None:
        while not self.closed:
            got = self._read()
            if got is None:
                select.select([self.fd, self.wake_r], [], [], 1.0)
                continue
            batch = [got]
            while len(batch) < RX_BATCH:
                more = self._read()
                if more is None:
                    break
                batch.append(more)
            return batch
        return None

    def recv(self) -> bytes | None:
        while not self.closed:
            got = self._read()
            if got is None:
                select.select([self.fd, self.wake_r], [], [], 1.0)
                continue
            return got[gso_hdr_len(self.vnet):]
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
                "dropped": self.dropped, "offloads": sorted(self.offloads)}


class TapCompanion:
    def attach(self, name: str, offload: str = "on") -> Port:
        return Port(name, offload)


def companion(host: Any) -> TapCompanion:
    return TapCompanion()
