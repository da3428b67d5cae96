"""Batch mode and the interactive prompt: many fsu commands against one kernel boot.

    fsu [-r] IMAGE --batch < script       one command per line, without the image:
                                          ``mkdir -p /etc``, ``put -r build/ /srv``, ``ls -l /``;
                                          ``#`` starts a comment; ``exit`` stops
    fsu [-r] IMAGE                        a prompt when standard input is a terminal

Besides the commands: ``cd DIR`` and ``pwd`` (relative paths in later commands start there),
``help`` and ``help COMMAND``, ``set -e`` (stop at the first failing line), ``exit``/``quit``.
At the prompt, Tab completes command names and paths inside the image.

The image is opened writable when a command of the script writes (a script is read whole
before the boot), or always at the prompt unless ``-r`` is given.  Every line runs even after
a failure (unless ``set -e``); the exit status is the worst status of any line.  Messages
from a script name the line (``fsu: line 3: mkdir: /x: File exists``).  In a script standard
input is the script itself, so ``write PATH`` needs its data from a host file
(``write PATH FILE``).  The image is unmounted and the kernel halted at the end, also after
errors and interrupts.
"""

from __future__ import annotations

import shlex
import sys
from typing import Any

from rumpkernel.apps.fsu.common import EXIT_FAIL, EXIT_OK, EXIT_TROUBLE, Ctx, Trouble, Usage

BUILTINS = {"cd": "change the working directory in the image",
            "pwd": "print the working directory in the image",
            "help": "list commands, or describe one: help COMMAND",
            "exit": "leave (also quit, end of input)"}


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
    from rumpkernel.apps.fsu.main import _say, _spec
    from rumpkernel.apps.fsu.session import open_session

    interactive = not g.batch and sys.stdin.isatty()
    lines: list[str] = [] if interactive else \
        sys.stdin.buffer.read().decode("utf-8", "surrogateescape").splitlines()
    readonly = g.readonly or (not interactive and not _writes(lines))
    status = EXIT_OK
    try:
        with open_session(_spec(image), fstype=g.fstype, readonly=readonly,
                          options=g.options, best_effort=g.best_effort) as session:
            if session.ro_reason and not readonly:
                _say(prog, f"{image}: mounted read-only: {session.ro_reason}")
            source = _prompt(session) if interactive else enumerate(lines, 1)
            stop_on_error = False
            for lineno, line in source:
                word = line.strip()
                if word in ("exit", "quit"):
                    break
                if word in ("set -e",):
                    stop_on_error = True
                    continue
                st = run_line(line, session, g, prog, None if interactive else lineno)
                if st is None:
                    continue
                status = max(status, st)
                if st and stop_on_error:
                    break
    except Trouble as e:
        _say(prog, str(e))
        return EXIT_TROUBLE
    return status


def run_line(line: str, session: Any, g: Any, prog: str, lineno: int | None = None
             ) -> int | None:
    """One batch line; None for blank lines and comments.  Usage mistakes give 2 and the
    batch goes on."""
    from rumpkernel.apps.fsu.commands import all_commands
    from rumpkernel.apps.fsu.main import _run, _say

    where = f"{prog}: line {lineno}" if lineno is not None else prog
    if "\0" in line:
        _say(where, "a NUL byte in the line (names cannot contain NUL)")
        return EXIT_TROUBLE
    try:
        words = shlex.split(line, comments=True)
    except ValueError as e:
        _say(where, f"cannot parse line: {e}")
        return EXIT_TROUBLE
    if not words:
        return None
    name, args = words[0], words[1:]
    cmds = all_commands()
    sub = f"{where}: {name}" if lineno is not None else f"{prog} {name}"
    if name in BUILTINS:
        return _builtin(name, args, session, sub, prog)
    if name not in cmds:
        _say(where, f"unknown command {name!r} (commands: {', '.join(sorted(cmds))}; "
                    "help lists them)")
        return EXIT_TROUBLE
    cmd = cmds[name]
    try:
        ns = cmd.parse(sub, args)
        if cmd.writes and session.readonly:
            _say(sub, "the image is open read-only")
            return EXIT_FAIL
        ctx = Ctx(sub, session, verbose=g.verbose)
        ctx.batch = lineno is not None
        _run(cmd, ctx, ns)
        return ctx.status
    except Usage as e:
        _say(sub, str(e))
        return EXIT_TROUBLE
    except SystemExit as e:
        return int(e.code or 0)


def _builtin(name: str, args: list[str], session: Any, sub: str, prog: str) -> int:
    from rumpkernel.apps.fsu.commands import all_commands
    from rumpkernel.apps.fsu.main import _say

    if name == "help":
        cmds = all_commands()
        if args and args[0] in cmds:
            sys.stdout.write(cmds[args[0]].help(args[0]))
            return EXIT_OK
        if args and args[0] not in BUILTINS:
            _say(sub, f"no command {args[0]!r}")
            return EXIT_TROUBLE
        rows = [(n, c.summary) for n, c in cmds.items()] + list(BUILTINS.items())
        for n, text in sorted(rows):
            sys.stdout.write(f"  {n:<8} {text}\n")
        return EXIT_OK
    if name == "pwd":
        sys.stdout.write(session.sys.getcwd() + "\n")
        return EXIT_OK
    if name == "cd":
        if len(args) > 1:
            _say(sub, "too many arguments")
            return EXIT_TROUBLE
        target = args[0] if args else "/"
        try:
            session.sys.chdir(target)
        except OSError as e:
            Ctx(sub, session).err(target, e)
            return EXIT_FAIL
        return EXIT_OK
    return EXIT_OK


# ---- the interactive prompt -------------------------------------------------------------------
def _prompt(session: Any) -> Any:
    try:
        import readline
    except ImportError:
        readline = None  # type: ignore[assignment]
    if readline is not None:
        readline.set_completer(Completer(session).complete)
        readline.set_completer_delims(" \t\n")
        readline.parse_and_bind("tab: complete")
    mode = "ro" if session.readonly else "rw"
    n = 0
    while True:
        try:
            line = input(f"fsu {session.spec.text} ({session.display_type()}, {mode})> ")
        except EOFError:
            sys.stderr.write("\n")
            return
        n += 1
        yield n, line


class Completer:
    """readline completion: command names first, then paths inside the image."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.matches: list[str] = []

    def candidates(self, line: str, text: str) -> list[str]:
        from rumpkernel.apps.fsu.commands import all_commands

        before = line[:len(line) - len(text)]
        if not before.strip():
            names = [*all_commands(), *BUILTINS]
            return sorted(n + " " for n in names if n.startswith(text))
        head, _, stem = text.rpartition("/")
        base = (head or "/") if text.startswith("/") else (head or ".")
        try:
            with self.session.files.scandir(base) as it:
                entries = [(e.name, e.is_dir()) for e in it]
        except (OSError, ValueError):
            return []
        prefix = f"{head}/" if head or text.startswith("/") else ""
        return sorted(prefix + name + ("/" if is_dir else " ") for name, is_dir in entries
                      if name.startswith(stem) and (stem.startswith(".") or
                                                    not name.startswith(".")))

    def complete(self, text: str, state: int) -> str | None:
        if state == 0:
            try:
                import readline

                line = readline.get_line_buffer()
            except ImportError:
                line = text
            self.matches = self.candidates(line, text)
        return self.matches[state] if state < len(self.matches) else None
