"""Components: the units a kernel is built from, and the boot phases that order them.

A component is an init function registered with ``@component(name, phase=..., faction=...,
requires=(...))``.  The registry holds definitions only (the link set of the dissertation), never
kernel state; ``boot`` picks the components asked for, adds what they require, and runs their
init functions in phase order with the kernel as argument.

Factions (vfs, dev, net) are optional and orthogonal: each is a component that the drivers of
that faction require; ``kern`` is always there.

Interface:  Phase; component(...); catalog() -> dict[str, Component]; resolve(names) -> list
"""

from __future__ import annotations

import enum
import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rumpkernel.kern.errno import Errno, KernelError

if TYPE_CHECKING:
    from rumpkernel.kern.kernel import Kernel


class Phase(enum.IntEnum):
    KERN = 10
    VFS = 20
    VFS_FS = 25
    DEV = 30
    NET = 40
    NET_IF = 50
    POSTINIT = 90


@dataclass(frozen=True)
class Component:
    name: str
    phase: Phase
    faction: str
    requires: tuple[str, ...]
    init: Callable[[Kernel], None]
    desc: str = ""


_REGISTRY: dict[str, Component] = {}

# The modules that define components (the "link set"); imported on first boot.
CATALOG_MODULES = (
    "rumpkernel.vfs.component",
    "rumpkernel.dev.component",
    "rumpkernel.fs.tmpfs",
    "rumpkernel.fs.components.ext2",
    "rumpkernel.fs.components.msdos",
    "rumpkernel.net.component",
    "rumpkernel.net.if_wire",
    "rumpkernel.net.if_shmif",
    "rumpkernel.net.if_virtif",
)

FACTIONS = ("vfs", "dev", "net")


def component(name: str, *, phase: Phase, faction: str = "kern",
              requires: Iterable[str] = (), desc: str = "") -> Callable:
    def register(fn: Callable[[Kernel], None]) -> Callable[[Kernel], None]:
        _REGISTRY[name] = Component(name, phase, faction, tuple(requires), fn, desc)
        return fn
    return register


_loaded = False


def catalog() -> dict[str, Component]:
    global _loaded
    if not _loaded:
        for mod in CATALOG_MODULES:
            try:
                importlib.import_module(mod)
            except ModuleNotFoundError as e:
                if e.name is None or not mod.startswith(e.name):
                    raise
        _loaded = True
    return dict(_REGISTRY)


def resolve(names: Iterable[str] | None) -> list[Component]:
    """The components to init, dependencies included, in phase order.  ``None`` = all."""
    cat = catalog()
    wanted = list(cat) if names is None else list(names)
    chosen: dict[str, Component] = {}
    while wanted:
        n = wanted.pop()
        if n in chosen or n == "kern":
            continue
        c = cat.get(n)
        if c is None:
            raise KernelError(Errno.ENOENT, f"unknown component {n!r}; known: {sorted(cat)}")
        chosen[n] = c
        wanted.extend(c.requires)
    return sorted(chosen.values(), key=lambda c: (c.phase, c.name))
