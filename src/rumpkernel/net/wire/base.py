"""Shared pieces of the sans-IO packet formats: the format error and address helpers.

Interface:
    FormatError(what, reason)   KernelError(EINVAL) with ``reason`` (a short word to count by:
                                "short", "version", "length", "checksum", "field" ...)
    ip4(text) -> bytes          "10.0.0.1" -> 4 bytes (FormatError on anything else)
    ip4str(b) -> str            4 bytes -> "10.0.0.1"
    mac(text) -> bytes / macstr(b) -> str    "02:00:00:00:00:01" <-> 6 bytes
    prefix_mask(n) -> bytes     /24 -> b"\\xff\\xff\\xff\\x00";  mask_len(mask) -> int (EINVAL
                                if the mask is not contiguous)
"""

from __future__ import annotations

from rumpkernel.kern.errno import Errno, KernelError


class FormatError(KernelError):
    """A malformed packet or address.  ``reason`` names the check that failed."""

    def __init__(self, what: str, reason: str = "field") -> None:
        super().__init__(Errno.EINVAL, what)
        self.reason = reason


def ip4(text: str) -> bytes:
    parts = text.split(".")
    if len(parts) != 4:
        raise FormatError(f"not an IPv4 address: {text!r}")
    out = bytearray()
    for p in parts:
        if not p.isdigit() or len(p) > 3 or int(p) > 255:
            raise FormatError(f"not an IPv4 address: {text!r}")
        out.append(int(p))
    return bytes(out)


def ip4str(b: bytes) -> str:
    return f"{b[0]}.{b[1]}.{b[2]}.{b[3]}"


def mac(text: str) -> bytes:
    parts = text.replace("-", ":").split(":")
    try:
        if len(parts) != 6 or any(not 1 <= len(p) <= 2 for p in parts):
            raise ValueError
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise FormatError(f"not a link-layer address: {text!r}") from None


def macstr(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def prefix_mask(n: int) -> bytes:
    if not 0 <= n <= 32:
        raise FormatError(f"prefix length {n} out of range")
    return ((0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF).to_bytes(4, "big")


def mask_len(mask: bytes) -> int:
    v = int.from_bytes(mask, "big")
    n = bin(v).count("1")
    if v != ((0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF):
        raise FormatError(f"netmask {ip4str(mask)} is not contiguous")
    return n
