#!/usr/bin/env python3
"""Regenerate the man pages and shell completion (src/rumpkernel/apps/data/) from the
programs' argparse definitions: ``python scripts/gen_docs.py`` (``--check`` only reports
stale files, exit 1).  tests/fsu/test_docgen.py fails when they are not current."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from rumpkernel.apps import docgen


def main() -> int:
    if "--check" in sys.argv[1:]:
        stale = docgen.check_all()
        for rel in stale:
            print(f"stale: {rel}")
        return 1 if stale else 0
    for rel in docgen.write_all():
        print(f"wrote {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
