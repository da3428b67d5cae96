"""What a file system driver registers, and what it gets at mount time.

Interface:
    FileSystemType  -- a driver's class-level entry points: ``name``, ``needs_device``,
                       ``probe(dev) -> bool``, ``mount(ctx) -> FileSystem``, optional
                       ``newfs(dev, **options)``, and ``option_names`` it accepts.
    MountContext    -- everything a driver may use from the kernel, passed explicitly: the block
                       device (raw, and a ``BlockIO`` factory over the kernel's buffer cache), the
                       read-only flag, parsed mount options, the kernel clock, randomness, logging
                       and memory accounting.  Drivers import nothing else from the kernel.

Rules: ``probe`` reads at most a few sectors and never raises for a foreign image (it returns
False); ``mount`` validates the image and raises KernelError (EINVAL for "not this file system",
EUCLEAN for corruption, EROFS when the image needs a read-only mount it was not given).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.kern.kmem import KMem
from rumpkernel.vfs.bio import BlockDevice, BlockIO
from rumpkernel.vfs.vnode_if import FileSystem


def _no_log(msg: str) -> None:
    return None


@dataclass
class MountContext:
    """What a driver receives at mount.  ``options`` maps option names to strings (``"ro"`` →
    ``""``); ``now_ns()`` is the kernel's wall clock in ns; ``random_bytes(n)`` comes from the
    kernel's entropy; ``log(msg)`` writes to the kernel log."""

    dev: BlockDevice | None
    readonly: bool = False
    options: dict[str, str] = field(default_factory=dict)
    now_ns: Callable[[], int] = lambda: 0
    random_bytes: Callable[[int], bytes] = lambda n: bytes(n)
    log: Callable[[str], None] = _no_log
    kmem: KMem | None = None
    cache_bytes: int = 32 * 1024 * 1024

    def blockio(self, block_size: int, *, first_byte: int = 0) -> BlockIO:
        """A cached block view of the device (the kernel's buffer cache)."""
        if self.dev is None:
            raise KernelError(Errno.ENOTBLK, "this file system needs a block device")
        return BlockIO(self.dev, block_size, kmem=self.kmem, cache_bytes=self.cache_bytes,
                       first_byte=first_byte)


class FileSystemType:
    """Base for a driver's registration record (subclass and set the class attributes)."""

    name: ClassVar[str] = ""
    needs_device: ClassVar[bool] = True
    option_names: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def probe(cls, dev: BlockDevice) -> bool:
        return False

    @classmethod
    def mount(cls, ctx: MountContext) -> FileSystem:
        raise KernelError(Errno.EOPNOTSUPP, f"{cls.name}: mount not implemented")

    @classmethod
    def newfs(cls, dev: BlockDevice, **options: object) -> None:
        raise KernelError(Errno.EOPNOTSUPP, f"{cls.name}: newfs not implemented")


class LazyFileSystemType:
    """Stands in for a driver until it is first needed, so a kernel that never meets an ext or
    FAT image never imports those drivers.  ``quick_probe(dev)`` is a cheap test written in the
    driver's component module: False means "certainly not mine" (the driver stays unloaded),
    True means "load the driver and ask its real probe"."""

    def __init__(self, name: str, loader: Callable[[], type[FileSystemType]],
                 quick_probe: Callable[[BlockDevice], bool], needs_device: bool = True) -> None:
        self.name = name
        self.loader = loader
        self.quick_probe = quick_probe
        self.needs_device = needs_device
        self._cls: type[FileSystemType] | None = None

    def load(self) -> type[FileSystemType]:
        if self._cls is None:
            self._cls = self.loader()
        return self._cls
