"""Image specifications: ``IMAGE``, ``IMAGE@OFFSET``, ``IMAGE%N`` (what fsu and fsspec accept).

Interface:
    parse_image_spec(text, exists=None) -> ImageSpec(path, offset, partition, text)
    parse_size(text, *, name="size") -> int     "512", "4k", "1M", "2g", "0x1000", "8s" (sectors)

``IMAGE@OFFSET`` is the file system starting OFFSET bytes into the file (k/m/g suffixes, any
case, or ``s`` for 512-byte sectors); ``IMAGE%N`` is partition N (from 1) of an MBR or GPT table.
A file whose own name contains ``@`` or ``%`` is taken whole when it exists (``exists`` decides;
the default asks the host).  Bad offsets and partition numbers raise ValueError with a message
fit for a user.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

_UNITS = {"": 1, "b": 1, "s": 512, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"^\s*(0x[0-9a-f]+|\d+(?:\.\d+)?)\s*([bskmgt]?)(?:i?b)?\s*$", re.I)


@dataclass(frozen=True)
class ImageSpec:
    path: str
    offset: int = 0
    partition: int | None = None
    text: str = ""

    def describe(self) -> str:
        if self.partition is not None:
            return f"{self.path} (partition {self.partition})"
        if self.offset:
            return f"{self.path} (at byte offset {self.offset})"
        return self.path


def parse_size(text: str, *, name: str = "size") -> int:
    """Bytes from ``text`` with an optional k/m/g/t (powers of 1024) or s (512) suffix."""
    m = _SIZE.match(str(text))
    if not m:
        raise ValueError(f"invalid {name} {text!r} (a number with an optional k/m/g suffix)")
    num, unit = m.group(1), m.group(2).lower()
    value = int(num, 16) if num.lower().startswith("0x") else float(num) if "." in num \
        else int(num)
    out = int(value * _UNITS[unit])
    if out < 0:
        raise ValueError(f"invalid {name} {text!r}")
    return out


def _host_exists(path: str) -> bool:
    from rumpkernel.hypercall.hostio import HOST

    return HOST.exists(path)


def parse_image_spec(text: str, exists: Callable[[str], bool] | None = None) -> ImageSpec:
    """Split ``text`` into the host file and where in it the file system lies."""
    exists = exists or _host_exists
    if not text:
        raise ValueError("empty image name")
    if exists(text):
        return ImageSpec(text, 0, None, text)
    at, pct = text.rfind("@"), text.rfind("%")
    if at > 0 and at > pct:
        path, arg = text[:at], text[at + 1:]
        try:
            offset = parse_size(arg, name="offset")
        except ValueError:
            raise ValueError(f"{text}: invalid offset {arg!r} (bytes, or with a k/m/g/s "
                             "suffix)") from None
        return ImageSpec(path, offset, None, text)
    if pct > 0:
        path, arg = text[:pct], text[pct + 1:]
        if not arg.isdigit() or int(arg) < 1:
            raise ValueError(f"{text}: invalid partition number {arg!r} (1, 2, ...)")
        return ImageSpec(path, 0, int(arg), text)
    return ImageSpec(text, 0, None, text)
