"""Console-script entry points: ``fsu`` and the fs-utils names ``fsu_ls``, ``fsu_cat`` ...

Each returns the exit status (the console-script wrapper passes it to ``sys.exit``).
"""

from __future__ import annotations

from rumpkernel.apps.fsu.main import classic, main

CLASSIC = ("ls", "cat", "stat", "find", "du", "df", "mkdir", "rmdir", "rm", "mv", "cp", "put",
           "get", "ln", "chmod", "chown", "chgrp", "touch", "write", "diff", "tree", "info",
           "makefs", "parts")


def fsu() -> int:
    return main()


def makefs() -> int:
    return classic("makefs", prog="rump-makefs")


def _make(name: str):  # type: ignore[no-untyped-def]
    def entry() -> int:
        return classic(name)
    entry.__name__ = entry.__qualname__ = f"fsu_{name}"
    entry.__doc__ = f"fsu_{name}: fsu {name} under its fs-utils name."
    return entry


for _name in CLASSIC:
    globals()[f"fsu_{_name}"] = _make(_name)
