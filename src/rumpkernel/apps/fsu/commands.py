"""The subcommand registry: name -> Command (parser, whether it writes, what it does).

Interface:
    Command(name, run, parser, writes, summary)
    command(name, *, writes=False, summary="")      decorator over ``run(ctx, ns)`` taking a
                                                    ``parser_factory(prog) -> ArgParser``
    COMMANDS                                        filled by importing the command modules
    MODULE_OF                                       command name -> the module defining it
    get_command(name) -> Command | None             imports only that command's module (a
                                                    one-shot ``fsu ls`` loads cmd_list alone)
    all_commands() -> dict[str, Command]            imports them all and returns the registry

A command's ``parse(prog, args)`` turns the arguments after IMAGE into a namespace (raising
Usage); commands with grammar argparse cannot take (find, chmod) give their own ``parse``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rumpkernel.apps.fsu.common import ArgParser, Ctx

COMMANDS: dict[str, Command] = {}
_MARK = "\0"
MODULE_OF = {
    "ls": "cmd_list", "tree": "cmd_list",
    "cat": "cmd_inspect", "stat": "cmd_inspect", "du": "cmd_inspect", "df": "cmd_inspect",
    "info": "cmd_inspect", "parts": "cmd_parts",
    "find": "cmd_find", "diff": "cmd_diff",
    "mkdir": "cmd_modify", "rmdir": "cmd_modify", "rm": "cmd_modify", "mv": "cmd_modify",
    "ln": "cmd_modify", "chmod": "cmd_modify", "chown": "cmd_modify", "chgrp": "cmd_modify",
    "touch": "cmd_modify", "write": "cmd_modify",
    "put": "cmd_copy", "get": "cmd_copy", "cp": "cmd_copy",
}
MODULES = tuple(dict.fromkeys(MODULE_OF.values()))


@dataclass
class Command:
    name: str
    run: Callable[[Ctx, Any], None]
    make_parser: Callable[[str], ArgParser] | None
    writes: bool
    summary: str
    custom_parse: Callable[[str, list[str]], Any] | None = field(default=None)
    own_options: tuple[str, ...] = ()
    session: bool = True  # False: runs on the host file alone, no kernel (fsu parts)

    def parse(self, prog: str, args: list[str]) -> Any:
        """The arguments after IMAGE as a namespace.  ``--`` ends the options: every word
        after it is an operand, even one starting with ``-``."""
        if self.custom_parse is not None:
            return self.custom_parse(prog, args)
        assert self.make_parser is not None
        if "--" not in args:
            return self.make_parser(prog).parse_intermixed_args(args)
        # argparse's intermixed parsing mishandles "--"; mark the operands after it instead
        # (a NUL cannot occur in an argument) and unmark them in the result
        i = args.index("--")
        marked = args[:i] + [_MARK + a for a in args[i + 1:]]
        ns = self.make_parser(prog).parse_intermixed_args(marked)
        for key, value in vars(ns).items():
            if isinstance(value, str):
                setattr(ns, key, value.removeprefix(_MARK))
            elif isinstance(value, list):
                setattr(ns, key, [v.removeprefix(_MARK) if isinstance(v, str) else v
                                  for v in value])
        return ns

    def option_table(self, prog: str) -> tuple[set[str], set[str]]:
        """(every option string the command knows, those that take a value)."""
        if self.make_parser is None:
            return set(self.own_options), set()
        own: set[str] = set()
        value: set[str] = set()
        for action in self.make_parser(prog)._actions:
            own.update(action.option_strings)
            if action.option_strings and action.nargs != 0:
                value.update(action.option_strings)
        return own, value

    def help(self, prog: str) -> str:
        if self.make_parser is not None:
            return self.make_parser(prog).format_help()
        return f"usage: {prog} IMAGE ...\n\n{self.summary}\n"


def command(name: str, *, writes: bool = False, summary: str = "",
            parser: Callable[[str], ArgParser] | None = None,
            parse: Callable[[str, list[str]], Any] | None = None, options: tuple[str, ...] = (),
            session: bool = True
            ) -> Callable[[Callable[[Ctx, Any], None]], Callable[[Ctx, Any], None]]:
    def register(fn: Callable[[Ctx, Any], None]) -> Callable[[Ctx, Any], None]:
        COMMANDS[name] = Command(name, fn, parser, writes, summary, parse, options, session)
        return fn
    return register


def new_parser(prog: str, summary: str, usage: str | None = None, *,
               short_help: bool = True) -> ArgParser:
    """A parser with ``--help`` (and ``-h`` unless the command uses it, as ls/du/df do)."""
    p = ArgParser(prog=prog, description=summary, usage=usage, add_help=False,
                  allow_abbrev=False)
    flags = ("-h", "--help") if short_help else ("--help",)
    p.add_argument(*flags, action="help", help="show this help and exit")
    return p


_loaded = False


def get_command(name: str) -> Command | None:
    """The command called ``name`` (None if there is none), importing its module only."""
    module = MODULE_OF.get(name)
    if module is None:
        return None
    if name not in COMMANDS:
        import importlib

        importlib.import_module(f"rumpkernel.apps.fsu.{module}")
    return COMMANDS[name]


def all_commands() -> dict[str, Command]:
    global _loaded
    if not _loaded:
        import importlib

        for m in MODULES:
            importlib.import_module(f"rumpkernel.apps.fsu.{m}")
        _loaded = True
    return COMMANDS
