"""sysctl: the kernel's tree of named parameters.

Interface:
    Sysctl(k).add(name, kind, value=None, *, getter=None, setter=None, writable=False,
                  desc="")        kind is "int" or "str"; names are dotted ("kern.hostname")
    read(name) -> int | str;  write(name, value, cred);  names() -> sorted list
Errors: ENOENT unknown name, EPERM writing a read-only node or as non-root, EINVAL bad value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rumpkernel.kern.errno import Errno, KernelError

INT, STR = "int", "str"
TYPE_CODES = {INT: 1, STR: 2}


@dataclass
class SysctlNode:
    name: str
    kind: str
    value: Any = None
    getter: Callable[[], Any] | None = None
    setter: Callable[[Any], None] | None = None
    writable: bool = False
    desc: str = ""

    def get(self) -> Any:
        return self.getter() if self.getter is not None else self.value


class Sysctl:
    def __init__(self) -> None:
        self.nodes: dict[str, SysctlNode] = {}

    def add(self, name: str, kind: str, value: Any = None, *,
            getter: Callable[[], Any] | None = None,
            setter: Callable[[Any], None] | None = None,
            writable: bool = False, desc: str = "") -> SysctlNode:
        if kind not in TYPE_CODES:
            raise KernelError(Errno.EINVAL, f"sysctl kind {kind}")
        node = SysctlNode(name, kind, value, getter, setter, writable, desc)
        self.nodes[name] = node
        return node

    def lookup(self, name: str) -> SysctlNode:
        node = self.nodes.get(name)
        if node is None:
            raise KernelError(Errno.ENOENT, f"sysctl {name}")
        return node

    def read(self, name: str) -> Any:
        return self.lookup(name).get()

    def write(self, name: str, value: Any, is_root: bool) -> None:
        node = self.lookup(name)
        if not node.writable:
            raise KernelError(Errno.EPERM, f"sysctl {name} is read-only")
        if not is_root:
            raise KernelError(Errno.EPERM, f"sysctl {name}: not root")
        if node.kind == INT and not isinstance(value, int):
            raise KernelError(Errno.EINVAL, f"sysctl {name} takes an integer")
        if node.kind == STR:
            if not isinstance(value, str) or len(value) > 255 or "\0" in value:
                raise KernelError(Errno.EINVAL, f"sysctl {name}: bad string")
        if node.setter is not None:
            node.setter(value)
        else:
            node.value = value

    def names(self, prefix: str = "") -> list[str]:
        return sorted(n for n in self.nodes if n.startswith(prefix))
