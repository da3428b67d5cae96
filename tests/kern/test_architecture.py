"""The anykernel rules that can be checked mechanically (DESIGN rules 1, 6 and the layer table).

The layer table (DESIGN.md, "Layers"): which parts of the package each layer may import.  An
import is allowed when the imported module is, or is inside, one of the listed names.  ``kern``
reaches the host only through the hypercall *interface*; the hypercall layer imports nothing of
the kernel; clients use the kernel's public API only; apps are built on clients.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from rumpkernel.testing import codegen

SRC = Path(__file__).resolve().parents[2] / "src" / "rumpkernel"
HOST_MODULES = {"os", "socket", "threading", "time", "select", "mmap", "fcntl", "signal",
                "subprocess", "random", "_thread", "multiprocessing", "asyncio", "shutil",
                "tempfile", "io", "pathlib", "ctypes", "sys", "atexit", "resource"}
HOST_ALLOWED = ("hypercall", "apps", "testing")
# The kernel's public API: what clients (and the kernel halves of client protocols, such as the
# sysproxy server) may use.  Everything else in kern/ is internal.  "=name" allows that module
# only; a plain name allows the module and everything inside it.
KERN_PUBLIC = {"=kern", "=kern.abi", "=kern.errno", "=kern.kernel", "=kern.proc", "=kern.sync",
               "=kern.vm", "=kern.syscall", "=kern.syscall.master", "=kern.syscall.sysent",
               "=kern.syscall.structs", "=kern.disklabel"}
LAYERS: dict[str, set[str]] = {
    "hypercall": {"hypercall"},
    "kern": {"kern", "hypercall.interface"},
    "vfs": {"kern", "vfs", "hypercall.interface"},
    "fs": {"kern", "vfs", "fs"},
    "dev": {"kern", "dev", "vfs", "hypercall.interface"},
    "net": {"kern", "net", "dev", "vfs", "hypercall.interface"},
    # + the pure sans-IO DNS modules: the resolver is the client's (libc's), as in NetBSD
    "client": KERN_PUBLIC | {"client", "hypercall", "=net.inet.resolv", "=net.inet.resolv_conf",
                             "=net.wire.dns", "=net.wire.base", "=net.wire.ipv6",
                             "=net.wire.checksum",
                             # and DHCP's: the client is a program (dhcpcd), as in NetBSD
                             "=net.inet.dhcp_client", "=net.wire.dhcp"},
    "apps": {"client", "apps", "hypercall", "=kern.abi", "=kern.errno", "=kern.disklabel"},
}
# a few modules sit at the package top: the public entry points
TOP_LEVEL = {"__init__", "__main__"}


def modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _is_module(dotted: str) -> bool:
    base = SRC.parent.joinpath(*dotted.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def imports(path: Path) -> list[str]:
    """Every module ``path`` imports (``from pkg import sub`` counts as ``pkg.sub`` when
    ``sub`` is a module)."""
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            mod = node.module
            subs = [f"{mod}.{a.name}" for a in node.names
                    if mod.startswith("rumpkernel") and _is_module(f"{mod}.{a.name}")]
            out += subs or [node.module]
    return out


def allowed(target: str, layer: str) -> bool:
    """``target`` is one of the layer's names or inside one ("=name": that module only)."""
    return any(target == p[1:] if p.startswith("=") else
               target == p or target.startswith(p + ".") for p in LAYERS[layer])


def test_there_are_modules_to_check() -> None:
    assert len(modules()) > 20


def test_every_layer_is_in_the_table() -> None:
    layers = {p.relative_to(SRC).parts[0] for p in modules() if len(p.relative_to(SRC).parts) > 1}
    assert layers - {"testing"} <= set(LAYERS), f"no layer rule for {layers - set(LAYERS)}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_host_access_outside_hypercall(path: Path) -> None:
    rel = path.relative_to(SRC)
    if rel.parts[0] in HOST_ALLOWED or (len(rel.parts) == 1 and rel.stem in TOP_LEVEL):
        return
    bad = [m for m in imports(path) if m.split(".")[0] in HOST_MODULES]
    assert not bad, f"{rel} imports host modules {bad} (DESIGN rule 1: use the hypercall layer)"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_layering(path: Path) -> None:
    rel = path.relative_to(SRC)
    layer = rel.parts[0] if len(rel.parts) > 1 else None
    if layer is None or layer == "testing":
        return
    for m in imports(path):
        parts = m.split(".")
        if parts[0] != "rumpkernel" or len(parts) < 2:
            continue
        target = ".".join(parts[1:])
        if layer == "fs" and parts[1] == "hypercall":
            pytest.fail(f"{rel}: drivers reach the host only through MountContext")
        assert allowed(target, layer), \
            f"{rel} ({layer}) may not import rumpkernel.{target} (layer table: " \
            f"{sorted(LAYERS[layer])})"


def test_the_rule_refuses_upward_imports() -> None:
    assert not allowed("vfs.mount", "kern") and not allowed("hypercall.posix", "kern")
    assert not allowed("kern.errno", "hypercall") and not allowed("kern.pipe", "client")
    assert not allowed("kern.kernel", "apps") and not allowed("vfs.vnode", "client")
    assert allowed("hypercall.interface", "kern") and allowed("kern.abi", "client")


@pytest.mark.parametrize("relpath", sorted(codegen.GENERATORS))
def test_generated_files_are_current(relpath: str) -> None:
    text = (codegen.PACKAGE_ROOT / relpath).read_text()
    first = text.splitlines()[0]
    assert "GENERATED" in first, f"{relpath} must say it is generated in its first line"
    assert codegen.check_generated(relpath), f"{relpath} is stale: regenerate it"
