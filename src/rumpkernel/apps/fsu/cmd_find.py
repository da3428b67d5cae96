"""``fsu find IMAGE [PATH ...] [EXPRESSION]``: search a tree inside the image, as find(1).

Tests: -name/-iname/-path PATTERN, -type [fdlbcps] (comma lists), -size [+-]N[bckwMG],
-newer FILE (a file in the image), -mtime [+-]DAYS, -empty.  Options: -maxdepth N,
-mindepth N.  Actions: -print (default), -print0.  Operators: ! / -not, -a / -and
(implicit), -o / -or, ( ).  Symbolic links are not followed.
"""

from __future__ import annotations

import fnmatch
import os
import stat
import sys
import time
from collections.abc import Callable
from typing import Any

from rumpkernel.apps.fsu.commands import command
from rumpkernel.apps.fsu.common import Ctx, Usage, join

Pred = Callable[[Any, str, os.stat_result], bool]
_TYPES = {"f": stat.S_ISREG, "d": stat.S_ISDIR, "l": stat.S_ISLNK, "b": stat.S_ISBLK,
          "c": stat.S_ISCHR, "p": stat.S_ISFIFO, "s": stat.S_ISSOCK}
_SIZE_UNITS = {"b": 512, "c": 1, "w": 2, "k": 1024, "M": 1 << 20, "G": 1 << 30}
USAGE = ("usage: {prog} IMAGE [PATH ...] [-name P] [-iname P] [-path P] [-type T] "
         "[-size [+-]N[ckMG]] [-newer F] [-mtime [+-]N] [-empty] [-maxdepth N] [-mindepth N] "
         "[-print0] [! -o ( )]")


class Parsed:
    def __init__(self) -> None:
        self.paths: list[str] = []
        self.pred: Pred = lambda ctx, p, st: True
        self.print0 = False
        self.maxdepth: int | None = None
        self.mindepth = 0
        self.newer: list[tuple[str, list[int]]] = []


def _cmp(spec: str, what: str) -> tuple[str, int]:
    sign = spec[:1] if spec[:1] in "+-" else ""
    num = spec[len(sign):]
    if not num.isdigit():
        raise Usage(f"invalid argument {spec!r} to {what}")
    return sign, int(num)


def _test(sign: str, have: int, want: int) -> bool:
    return have > want if sign == "+" else have < want if sign == "-" else have == want


class _Parser:
    def __init__(self, toks: list[str], out: Parsed) -> None:
        self.toks = toks
        self.i = 0
        self.out = out
        self.printed = False

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, what: str) -> str:
        if self.i >= len(self.toks):
            raise Usage(f"missing argument to {what}")
        self.i += 1
        return self.toks[self.i - 1]

    def parse_or(self) -> Pred:
        left = self.parse_and()
        while self.peek() in ("-o", "-or"):
            self.i += 1
            right = self.parse_and()
            left = (lambda a, b: lambda c, p, s: a(c, p, s) or b(c, p, s))(left, right)
        return left

    def parse_and(self) -> Pred:
        left = self.parse_not()
        while self.peek() not in (None, "-o", "-or", ")"):
            if self.peek() in ("-a", "-and"):
                self.i += 1
            right = self.parse_not()
            left = (lambda a, b: lambda c, p, s: a(c, p, s) and b(c, p, s))(left, right)
        return left

    def parse_not(self) -> Pred:
        if self.peek() in ("!", "-not"):
            self.i += 1
            inner = self.parse_not()
            return lambda c, p, s: not inner(c, p, s)
        return self.primary()

    def primary(self) -> Pred:
        tok = self.take("expression")
        if tok == "(":
            inner = self.parse_or()
            if self.take("(") != ")":
                raise Usage("missing ')'")
            return inner
        handler = getattr(self, "p_" + tok.lstrip("-"), None) if tok.startswith("-") else None
        if handler is None:
            raise Usage(f"unknown predicate {tok!r}" if tok.startswith("-") else
                        f"paths must precede the expression: {tok!r}")
        return handler(tok)

    def p_name(self, tok: str) -> Pred:
        pat = self.take(tok)
        return lambda c, p, s: fnmatch.fnmatchcase(os.path.basename(p) or p, pat)

    def p_iname(self, tok: str) -> Pred:
        pat = self.take(tok).lower()
        return lambda c, p, s: fnmatch.fnmatchcase((os.path.basename(p) or p).lower(), pat)

    def p_path(self, tok: str) -> Pred:
        pat = self.take(tok)
        return lambda c, p, s: fnmatch.fnmatchcase(p, pat)

    p_wholename = p_path

    def p_type(self, tok: str) -> Pred:
        arg = self.take(tok)
        tests = []
        for t in arg.split(","):
            if t not in _TYPES:
                raise Usage(f"unknown argument to -type: {t!r}")
            tests.append(_TYPES[t])
        return lambda c, p, s: any(t(s.st_mode) for t in tests)

    def p_size(self, tok: str) -> Pred:
        arg = self.take(tok)
        unit = _SIZE_UNITS.get(arg[-1:]) if arg[-1:].isalpha() else 512
        if unit is None:
            raise Usage(f"invalid -size unit in {arg!r}")
        sign, n = _cmp(arg[:-1] if arg[-1:].isalpha() else arg, tok)
        return lambda c, p, s: _test(sign, -(-s.st_size // unit), n)

    def p_mtime(self, tok: str) -> Pred:
        sign, n = _cmp(self.take(tok), tok)
        now = time.time()
        return lambda c, p, s: _test(sign, int((now - s.st_mtime_ns / 1e9) // 86400), n)

    def p_newer(self, tok: str) -> Pred:
        ref = self.take(tok)
        cell: list[int] = []
        self.out.newer.append((ref, cell))
        return lambda c, p, s: s.st_mtime_ns > cell[0]

    def p_empty(self, tok: str) -> Pred:
        def empty(c: Any, p: str, s: os.stat_result) -> bool:
            if stat.S_ISREG(s.st_mode):
                return s.st_size == 0
            if stat.S_ISDIR(s.st_mode):
                try:
                    return not c.files.listdir(p)
                except OSError:
                    return False
            return False
        return empty

    def p_maxdepth(self, tok: str) -> Pred:
        self.out.maxdepth = _cmp(self.take(tok), tok)[1]
        return lambda c, p, s: True

    def p_mindepth(self, tok: str) -> Pred:
        self.out.mindepth = _cmp(self.take(tok), tok)[1]
        return lambda c, p, s: True

    def p_print(self, tok: str) -> Pred:
        self.printed = True
        return lambda c, p, s: True

    def p_print0(self, tok: str) -> Pred:
        self.out.print0 = True
        return self.p_print(tok)

    def p_true(self, tok: str) -> Pred:
        return lambda c, p, s: True

    def p_false(self, tok: str) -> Pred:
        return lambda c, p, s: False


FIND_HELP = """\
The expression is made of tests, options, actions and operators, as find(1):
  tests      -name PATTERN, -iname PATTERN, -path PATTERN, -type f|d|l|b|c|p|s (or a comma
             list), -size [+-]N[bckwMG], -newer FILE (a file in the image), -mtime [+-]DAYS,
             -empty, -true, -false
  options    -maxdepth N, -mindepth N
  actions    -print (the default), -print0
  operators  ! or -not, -a or -and (implicit), -o or -or, ( EXPR )
Symbolic links are not followed.  PATH defaults to the working directory (/).
"""


def _find_parser(prog: str) -> Any:
    """find's grammar for --help, the man page and completion (parse_find parses)."""
    from rumpkernel.apps.fsu.commands import new_parser
    from rumpkernel.apps.fsu.common import RawHelpFormatter

    p = new_parser(prog, "Search for files inside the image.",
                   f"{prog} IMAGE [PATH ...] [EXPRESSION]")
    p.epilog = FIND_HELP
    p.formatter_class = RawHelpFormatter
    for flag, meta, text in (("-name", "PATTERN", "base name matches (shell pattern)"),
                             ("-iname", "PATTERN", "the same, ignoring case"),
                             ("-path", "PATTERN", "whole path matches"),
                             ("-type", "TYPE", "file type: f d l b c p s"),
                             ("-size", "[+-]N[bckwMG]", "size in units (default 512 bytes)"),
                             ("-newer", "FILE", "modified after FILE in the image"),
                             ("-mtime", "[+-]DAYS", "modified DAYS days ago"),
                             ("-maxdepth", "N", "descend at most N levels"),
                             ("-mindepth", "N", "act only at depth N and below")):
        p.add_argument(flag, metavar=meta, help=text)
    for flag, text in (("-empty", "empty files and directories"),
                       ("-print", "print the path and a newline (the default)"),
                       ("-print0", "print the path and a NUL")):
        p.add_argument(flag, action="store_true", help=text)
    p.add_argument("paths", nargs="*", metavar="PATH")
    return p


def parse_find(prog: str, args: list[str]) -> Parsed:
    if args and args[0] in ("-h", "--help"):
        sys.stdout.write(_find_parser(prog).format_help())
        raise SystemExit(0)
    out = Parsed()
    i = 0
    while i < len(args) and not (args[i].startswith("-") or args[i] in ("!", "(")):
        out.paths.append(args[i])
        i += 1
    expr = args[i:]
    if expr:
        p = _Parser(expr, out)
        out.pred = p.parse_or()
        if p.i != len(expr):
            raise Usage(f"unexpected {expr[p.i]!r}\n{USAGE.format(prog=prog)}")
    return out


@command("find", summary="search for files", parse=parse_find, parser=_find_parser)
def run_find(ctx: Ctx, ns: Parsed) -> None:
    for ref, cell in ns.newer:
        try:
            cell.append(ctx.sys.stat(ref).st_mtime_ns)
        except OSError as e:
            ctx.err(ref, e)
            return
    end = "\0" if ns.print0 else "\n"
    for top in ns.paths or [ctx.cwd()]:
        try:
            st = ctx.sys.lstat(top)
        except OSError as e:
            ctx.err(top, e)
            continue
        stack = [(top, st, 0)]
        while stack:
            path, st, depth = stack.pop()
            if depth >= ns.mindepth and ns.pred(ctx, path, st):
                ctx.out.write(path + end)
            if stat.S_ISDIR(st.st_mode) and (ns.maxdepth is None or depth < ns.maxdepth):
                try:
                    with ctx.files.scandir(path) as it:
                        names = sorted((e.name for e in it), key=os.fsencode)
                except OSError as e:
                    ctx.err(path, e)
                    continue
                children = []
                for name in names:
                    child = join(path, name)
                    try:
                        children.append((child, ctx.sys.lstat(child), depth + 1))
                    except OSError as e:
                        ctx.err(child, e)
                stack.extend(reversed(children))
