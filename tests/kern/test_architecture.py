"""The anykernel rules that can be checked mechanically (DESIGN rules 1, 6 and the layers)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from rumpkernel.testing import codegen

SRC = Path(__file__).resolve().parents[2] / "src" / "rumpkernel"
HOST_MODULES = {"os", "socket", "threading", "time", "select", "mmap", "fcntl", "signal",
                "subprocess", "random", "_thread", "multiprocessing", "asyncio", "shutil",
                "tempfile", "io", "pathlib", "ctypes", "sys"}
HOST_ALLOWED = ("hypercall", "apps", "testing")
# which top-level folders each layer may import from
LAYERS = {
    "kern": {"kern", "hypercall"},
    "vfs": {"kern", "vfs", "hypercall"},
    "fs": {"kern", "vfs", "fs"},
    "dev": {"kern", "vfs", "dev", "hypercall"},
    "net": {"kern", "net", "vfs", "hypercall"},
    "client": {"kern", "client", "hypercall", "vfs"},
}


def modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append(node.module)
    return out


def test_there_are_modules_to_check() -> None:
    assert len(modules()) > 20


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_host_access_outside_hypercall(path: Path) -> None:
    rel = path.relative_to(SRC)
    if rel.parts[0] in HOST_ALLOWED or (rel.name == "__init__.py" and len(rel.parts) == 1):
        return
    bad = [m for m in imports(path) if m.split(".")[0] in HOST_MODULES]
    # kern/kernel.py fetches the exception being handled through sys.exc_info only
    if rel.as_posix() == "kern/kernel.py":
        bad = [m for m in bad if m != "sys"]
    assert not bad, f"{rel} imports host modules {bad} (DESIGN rule 1: use the hypercall layer)"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_layering(path: Path) -> None:
    rel = path.relative_to(SRC)
    layer = rel.parts[0] if len(rel.parts) > 1 else None
    allowed = LAYERS.get(layer or "")
    if allowed is None:
        return
    for m in imports(path):
        parts = m.split(".")
        if parts[0] != "rumpkernel" or len(parts) < 2:
            continue
        target = parts[1]
        if target == "hypercall" and layer in ("fs",):
            pytest.fail(f"{rel}: drivers reach the host only through MountContext")
        assert target in allowed, f"{rel} ({layer}) may not import rumpkernel.{target}"


@pytest.mark.parametrize("relpath", sorted(codegen.GENERATORS))
def test_generated_files_are_current(relpath: str) -> None:
    text = (codegen.PACKAGE_ROOT / relpath).read_text()
    first = text.splitlines()[0]
    assert "GENERATED" in first, f"{relpath} must say it is generated in its first line"
    assert codegen.check_generated(relpath), f"{relpath} is stale: regenerate it"
