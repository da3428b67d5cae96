"""Names the tools make up (temporaries beside a file) that respect NAME_MAX in bytes.

Interface:
    NAME_MAX = 255
    temp_name(name, tag) -> same type as ``name``
        ``.NAME.TAG`` with NAME shortened, at a character boundary, so that the whole name's
        UTF-8 (surrogateescape) encoding is at most NAME_MAX bytes
    temp_path(path, tag) -> ``temp_name`` of the last component, in the same directory

A name of 255 bytes of multi-byte characters is legal on ext4 and FAT (long names count
UTF-16 units, of which 255 bytes of UTF-8 are at most 255); its temporary must be too.
"""

from __future__ import annotations

import posixpath
from typing import Any

NAME_MAX = 255


def _shorten(raw: bytes, limit: int) -> bytes:
    if len(raw) <= limit:
        return raw
    cut = raw[:limit]
    # do not end inside a UTF-8 sequence: drop continuation bytes and their lead byte
    end = len(cut)
    while end and 0x80 <= cut[end - 1] < 0xC0:
        end -= 1
    if end and cut[end - 1] >= 0xC0:
        end -= 1
        need = 2 if raw[end] < 0xE0 else 3 if raw[end] < 0xF0 else 4
        if limit - end >= need:
            end += need
    return cut[:end]


def temp_name(name: Any, tag: str) -> Any:
    as_bytes = isinstance(name, bytes)
    raw = name if as_bytes else name.encode("utf-8", "surrogateescape")
    extra = b"." + tag.encode()
    out = b"." + _shorten(raw, NAME_MAX - 1 - len(extra)) + extra
    return out if as_bytes else out.decode("utf-8", "surrogateescape")


def temp_path(path: Any, tag: str) -> Any:
    head, tail = posixpath.split(path)
    return posixpath.join(head, temp_name(tail, tag))
