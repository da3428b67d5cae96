"""Write and check the files generated from the kernel's tables (DESIGN rule 6).

A generated file's first line says it is generated and by what; ``check_generated`` lets a test
regenerate it and diff against the file on disk.  Generation is a developer action
(``python -m rumpkernel.testing.codegen``), never an import-time one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

GENERATORS: dict[str, tuple[str, str]] = {
    # output path (relative to the package)       -> (module, function returning the text)
    "vfs/vnode_if.py": ("rumpkernel.vfs.vnode_table", "render"),
    "kern/syscall/sysent.py": ("rumpkernel.kern.syscall.master", "render_sysent"),
    "client/sys_stubs.py": ("rumpkernel.kern.syscall.master", "render_stubs"),
    "../../docs/syscalls.md": ("rumpkernel.kern.syscall.master", "render_docs"),
}

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def _renderer(relpath: str) -> Callable[[], str]:
    module, func = GENERATORS[relpath]
    return getattr(importlib.import_module(module), func)


def render(relpath: str) -> str:
    return _renderer(relpath)()


def check_generated(relpath: str) -> bool:
    """True when the file on disk equals what its generator renders now."""
    return (PACKAGE_ROOT / relpath).read_text() == render(relpath)


def write_all() -> list[str]:
    changed = []
    for relpath in GENERATORS:
        text = render(relpath)
        path = PACKAGE_ROOT / relpath
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            changed.append(relpath)
    return changed


if __name__ == "__main__":
    for name in write_all():
        print("regenerated", name)
