"""``python -m rumpkernel.hijack [-p POLICY] [-u URL | --local | --sockin] script.py | -m
module ...``: run an unmodified Python program with its file system and socket calls routed to a
rump kernel.  The implementation (and the list of what is intercepted) is
``rumpkernel.apps.hijack``; docs/hijack.md."""

from __future__ import annotations

from rumpkernel.apps.hijack import Hijack, Policy, main

__all__ = ["Hijack", "Policy", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
