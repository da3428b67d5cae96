"""CRC-32C (Castagnoli), the kernel library routine file systems and protocols share.

Interface:  crc32c(data, value=0) -> int   -- the standard, chainable CRC-32C (same contract as
            the PyPI ``crc32c`` package, whose hardware-accelerated C code does the work).

The ``crc32c`` package's ``__init__`` asks ``importlib.metadata`` for its own version, which
costs ~15 ms at every process start; command-line tools start often, so the C extension is
loaded directly when it can be found, and through the package otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _load() -> Callable[..., int]:
    import importlib.machinery
    import importlib.util

    spec = importlib.util.find_spec("crc32c")
    for where in (spec.submodule_search_locations or []) if spec else []:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = f"{where}/_crc32c{suffix}"
            loader = importlib.machinery.ExtensionFileLoader("crc32c._crc32c", path)
            ext = importlib.util.spec_from_file_location("crc32c._crc32c", path, loader=loader)
            if ext is None:
                continue
            try:
                mod: Any = importlib.util.module_from_spec(ext)
                loader.exec_module(mod)
            except (ImportError, OSError):
                continue
            return mod.crc32c
    import crc32c as package

    return package.crc32c


crc32c: Callable[..., int] = _load()
