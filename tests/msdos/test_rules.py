"""DESIGN rules checked on the msdos package itself: no host access, module size, docstrings."""

from __future__ import annotations

import ast
from pathlib import Path

import rumpkernel.fs.msdos as pkg

FORBIDDEN = {"os", "socket", "threading", "time", "select", "mmap", "fcntl", "signal",
             "subprocess", "random"}
MODULES = sorted(Path(pkg.__file__).parent.glob("*.py"))


def test_no_host_imports_and_short_modules():
    assert len(MODULES) >= 10
    for path in MODULES:
        tree = ast.parse(path.read_text())
        assert ast.get_docstring(tree), path.name
        assert len(path.read_text().splitlines()) < 800, path.name
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module.split(".")[0]]
            assert not FORBIDDEN & set(names), (path.name, names)
