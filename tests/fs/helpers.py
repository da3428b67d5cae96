from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any

import pytest

E = errno
RW = os.O_RDWR
CREAT = os.O_CREAT | os.O_RDWR


def err(fn: Callable[..., Any], *args: Any, **kw: Any) -> int:
    """The errno ``fn`` fails with (the test fails if it succeeds)."""
    with pytest.raises(OSError) as ei:
        fn(*args, **kw)
    return ei.value.errno


def mkfile(sys: Any, path: str, data: bytes = b"", mode: int = 0o644) -> None:
    fd = sys.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, mode)
    try:
        if data:
            assert sys.write(fd, data) == len(data)
    finally:
        sys.close(fd)


def readfile(sys: Any, path: str) -> bytes:
    fd = sys.open(path, os.O_RDONLY)
    try:
        out = []
        while True:
            b = sys.read(fd, 1 << 20)
            if not b:
                return b"".join(out)
            out.append(b)
    finally:
        sys.close(fd)


def need(cond: bool, why: str) -> None:
    if not cond:
        pytest.skip(why)
