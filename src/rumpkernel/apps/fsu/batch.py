"""Batch mode and the interactive prompt: many fsu commands against one kernel boot.

    fsu [-r] IMAGE --batch < script       one command per line, without the image:
                                          ``mkdir -p /etc``, ``put -r build/ /srv``, ``ls -l /``;
                                          ``#`` starts a comment; ``exit`` stops
    fsu [-r] IMAGE                        a prompt when standard input is a terminal

The image is opened writable when a command of the script writes (a script is read whole
before the boot), or always at the prompt unless ``-r`` is given.  Every line runs even after
a failure (``set -e`` as the first line stops at the first failing one); the exit status is
the worst status of any line.  The image is unmounted and the kernel halted at the end, also
after errors and interrupts.
"""

from __future__ import annotations

import shlex
import sys
from typing import Any

from rumpkernel.apps.fsu.common import EXIT_OK, EXIT_TROUBLE, Trouble


def _writes(lines: list[str]) -> bool:
    from rumpkernel.apps.fsu.commands import all_commands

    cmds = all_commands()
    for line in lines:
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        if words and words[0] in cmds and cmds[words[0]].writes:
            return True
    return False


def run_batch(image: str, g: Any, prog: str) -> int:
    from rumpkernel.apps.fsu.main import _say, _spec, run_line
    from rumpkernel.apps.fsu.session import open_session

    interactive = not g.batch and sys.stdin.isatty()
    lines: list[str] = [] if interactive else sys.stdin.read().splitlines()
    readonly = g.readonly or (not interactive and not _writes(lines))
    status = EXIT_OK
    try:
        with open_session(_spec(image), fstype=g.fstype, readonly=readonly,
                          options=g.options) as session:
            source = _prompt(session) if interactive else iter(lines)
            stop_on_error = False
            for line in source:
                word = line.strip()
                if word in ("exit", "quit"):
                    break
                if word in ("set -e",):
                    stop_on_error = True
                    continue
                st = run_line(line, session, g, prog)
                if st is None:
                    continue
                status = max(status, st)
                if st and stop_on_error:
                    break
    except Trouble as e:
        _say(prog, str(e))
        return EXIT_TROUBLE
    return status


def _prompt(session: Any) -> Any:
    try:
        import readline  # noqa: F401 - line editing for input()
    except ImportError:
        pass
    mode = "ro" if session.readonly else "rw"
    while True:
        try:
            line = input(f"fsu {session.spec.text} ({session.display_type()}, {mode})> ")
        except EOFError:
            sys.stderr.write("\n")
            return
        yield line
