"""Components: the units a kernel is built from, and the boot phases that order them.

A component is an init function registered with ``@component(name, phase=..., faction=...,
requires=(...))``.  The registry holds definitions only (the link set of the dissertation), never
kernel state; ``boot`` picks the components asked for, adds what they require, and runs their
init functions in phase order with the kernel as argument.

Factions (vfs, dev, net) are optional and orthogonal: each is a component that the drivers of
that faction require; ``kern`` is always there.

Discovery (the link set): the kernel names no driver.  ``catalog()`` imports each faction's
``rumpkernel.<faction>.component`` module and every module of the ``components`` packages
(``rumpkernel.fs.components``, ``rumpkernel.dev.components``, ``rumpkernel.net.components``), so a
new driver is one module there.  Out-of-tree drivers register through the
``rumpkernel.components`` entry-point group (each entry names a module defining components);
they are loaded when a boot asks for a name the tree does not have, or by ``load_plugins()``.
A component may declare ``test_images``: how the shipped testing kit makes images for its
file-system matrix (see ``rumpkernel.testing``).

Alternatives: a component may declare ``conflicts`` (components it replaces, such as sockin and
the kernel's own inet stack, which both serve AF_INET) and ``default=False`` (left out of "every
component").  A set that holds two conflicting components, directly or through what they
require, is refused with EINVAL.  ``resolve(None)`` is every default component; the name
``"all"`` inside a list means the same, minus whatever conflicts with a component named
explicitly (``["all", "net_sockin"]``: everything, with sockin instead of inet and the
interfaces that need inet).

Interface:  Phase; component(...); catalog() -> dict[str, Component]; resolve(names) -> list;
            load_plugins() -> list of module names; TestImage
"""

from __future__ import annotations

import enum
import importlib
import pkgutil
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
class TestImage:
    """A recipe, as data, for one test image of a file system: ``command`` is the host program
    and arguments that make it, ``{image}`` standing for the image path (empty for a memory
    file system, mounted by type alone); ``mount_options`` as for mount_image.  The testing kit
    runs the command (drivers never touch the host)."""

    __test__ = False         # not a pytest test class

    name: str
    fstype: str
    command: tuple[str, ...] = ()
    mount_options: dict[str, str] | None = None


@dataclass(frozen=True)
class Component:
    name: str
    phase: Phase
    faction: str
    requires: tuple[str, ...]
    init: Callable[[Kernel], None]
    desc: str = ""
    test_images: tuple[TestImage, ...] = ()
    conflicts: tuple[str, ...] = ()
    default: bool = True


_REGISTRY: dict[str, Component] = {}

FACTIONS = ("vfs", "dev", "net")
DRIVER_PACKAGES = ("rumpkernel.fs.components", "rumpkernel.dev.components",
                   "rumpkernel.net.components")
PLUGIN_GROUP = "rumpkernel.components"


def component(name: str, *, phase: Phase, faction: str = "kern",
              requires: Iterable[str] = (), desc: str = "",
              test_images: Iterable[TestImage] = (), conflicts: Iterable[str] = (),
              default: bool = True) -> Callable:
    def register(fn: Callable[[Kernel], None]) -> Callable[[Kernel], None]:
        _REGISTRY[name] = Component(name, phase, faction, tuple(requires), fn, desc,
                                    tuple(test_images), tuple(conflicts), default)
        return fn
    return register


def _import_optional(mod: str) -> bool:
    try:
        importlib.import_module(mod)
    except ModuleNotFoundError as e:
        if e.name is None or not mod.startswith(e.name):
            raise
        return False
    return True


_loaded = False
_plugins_loaded = False


def catalog() -> dict[str, Component]:
    global _loaded
    if not _loaded:
        for faction in FACTIONS:
            _import_optional(f"rumpkernel.{faction}.component")
        for pkgname in DRIVER_PACKAGES:
            try:
                pkg = importlib.import_module(pkgname)
            except ModuleNotFoundError:
                continue
            for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
                importlib.import_module(f"{pkgname}.{info.name}")
        _loaded = True
    return dict(_REGISTRY)


def load_plugins() -> list[str]:
    """Import the modules of installed out-of-tree drivers (entry-point group
    ``rumpkernel.components``); returns their names.  Costs an entry-point scan, so it runs
    only when asked or when a boot names a component the tree lacks."""
    global _plugins_loaded
    if _plugins_loaded:
        return []
    _plugins_loaded = True
    from importlib.metadata import entry_points

    names = []
    for ep in entry_points(group=PLUGIN_GROUP):
        importlib.import_module(ep.value)
        names.append(ep.value)
    return names


def resolve(names: Iterable[str] | None) -> list[Component]:
    """The components to init, dependencies included, in phase order.  ``None`` = every
    default component; "all" in a list = the same, minus what conflicts with the others named.
    EINVAL when two chosen components conflict."""
    cat = catalog()
    asked = ["all"] if names is None else list(names)
    explicit = [n for n in asked if n != "all"]
    chosen = _closure(cat, explicit)
    if "all" in asked:
        for c in cat.values():
            if c.default and c.name not in chosen:
                extra = _closure(cat, [c.name])
                if not _conflict(cat, {**chosen, **extra}):
                    chosen.update(extra)
    clash = _conflict(cat, chosen)
    if clash:
        raise KernelError(Errno.EINVAL, f"components {clash[0]!r} and {clash[1]!r} conflict: "
                          "a kernel has one or the other")
    return sorted(chosen.values(), key=lambda c: (c.phase, c.name))


def _closure(cat: dict[str, Component], names: list[str]) -> dict[str, Component]:
    wanted = list(names)
    chosen: dict[str, Component] = {}
    while wanted:
        n = wanted.pop()
        if n in chosen or n == "kern":
            continue
        c = cat.get(n)
        if c is None and not _plugins_loaded and load_plugins():
            cat.update(catalog())
            c = cat.get(n)
        if c is None:
            raise KernelError(Errno.ENOENT, f"unknown component {n!r}; known: {sorted(cat)}")
        chosen[n] = c
        wanted.extend(c.requires)
    return chosen


def _conflict(cat: dict[str, Component], chosen: dict[str, Component]) -> tuple[str, str] | None:
    for c in chosen.values():
        for other in c.conflicts:
            if other in chosen:
                return c.name, other
    return None
