"""Man pages and shell completion, generated from the programs' own argparse definitions.

Interface:
    PAGES                       page name -> (section, summary) of every page made
    parsers() -> dict[str, argparse.ArgumentParser]     every program's parser, by page name
    man_page(name) -> str       a roff page (fsu.1 also documents every subcommand)
    bash_completion() -> str    completion for fsu, fsu_NAME, rump-makefs, rump_server, rump.*
    zsh_completion() -> str
    generated() -> dict[str, str]   relative path under ``apps/data`` -> text, for all of them
    write_all(root) / check_all(root) -> list of stale files

The files live in the package (``rumpkernel/apps/data/man/*.1``, ``.../completion/fsu.bash``
and ``_fsu``); ``scripts/gen_docs.py`` rewrites them and a test checks they are current.
``fsu --print-man PAGE`` and ``fsu --print-completion bash|zsh`` print them for installing
(see docs/fsu.md).  Programs whose ``main`` builds its parser inline are read by running that
``main`` with a ``parse_args`` that hands the parser back instead of parsing.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

VERSION = "rumpkernel 0.1.0"
RUMP_TOOLS = ("halt", "sysctl", "ls", "cat", "cp", "df", "mount", "umount")
PAGES: dict[str, tuple[int, str]] = {
    "fsu": (1, "file system utilities for disk images, without root or a mount"),
    "rump-makefs": (1, "build an ext2/3/4 or FAT image from a directory"),
    "rump_server": (1, "serve a rump kernel to remote clients"),
    **{f"rump.{t}": (1, f"the {t} tool for a rump kernel served by rump_server")
       for t in RUMP_TOOLS},
}


class _Got(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__()
        self.parser = parser


def _capture(main: Callable[..., Any]) -> argparse.ArgumentParser:
    """The parser ``main`` builds, taken at its first parse_args call."""
    def grab(self: argparse.ArgumentParser, *a: Any, **kw: Any) -> Any:
        raise _Got(self)

    saved = (argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args)
    argparse.ArgumentParser.parse_args = grab  # type: ignore[method-assign]
    argparse.ArgumentParser.parse_known_args = grab  # type: ignore[method-assign]
    try:
        main([])
    except _Got as got:
        return got.parser
    finally:
        argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args = saved
    raise RuntimeError(f"{main.__qualname__} parsed no arguments")


def fsu_parsers() -> dict[str, argparse.ArgumentParser]:
    """``fsu COMMAND`` parsers, by command name (makefs included)."""
    from rumpkernel.apps.fsu.commands import all_commands
    from rumpkernel.apps.fsu.makefs import _parser as makefs_parser

    out = {name: cmd.make_parser(f"fsu {name}") for name, cmd in sorted(all_commands().items())
           if cmd.make_parser is not None}
    out["makefs"] = makefs_parser("fsu makefs")
    return dict(sorted(out.items()))


def parsers() -> dict[str, argparse.ArgumentParser]:
    from rumpkernel.apps import rump_server, rumptools
    from rumpkernel.apps.fsu.makefs import _parser as makefs_parser

    out: dict[str, argparse.ArgumentParser] = {"rump-makefs": makefs_parser("rump-makefs"),
                                               "rump_server": _capture(rump_server.main)}
    for tool in RUMP_TOOLS:
        out[f"rump.{tool}"] = _capture(getattr(rumptools, f"{tool}_main"))
    return out


# ---- roff ---------------------------------------------------------------------------------
def _roff(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line[:1] in (".", "'") else line
                     for line in text.splitlines())


def _options(p: argparse.ArgumentParser) -> list[str]:
    out = []
    for a in p._actions:
        if a.help == argparse.SUPPRESS:
            continue
        if a.option_strings:
            meta = "" if a.nargs == 0 else " " + (a.metavar or a.dest.upper())
            head = ", ".join(f"\\fB{_roff(o)}\\fR" for o in a.option_strings) + \
                (f" \\fI{_roff(meta.strip())}\\fR" if meta else "")
        else:
            head = f"\\fI{_roff(str(a.metavar or a.dest))}\\fR"
        out += [".TP", head, _roff((a.help or "").replace("%%", "%"))]
    return out


def _usage(p: argparse.ArgumentParser) -> str:
    return " ".join(p.format_usage().removeprefix("usage: ").split())


def _section(title: str, body: list[str]) -> list[str]:
    return [f".SH {title}", *body] if body else []


def _page(name: str, parsers_: list[tuple[str, argparse.ArgumentParser]], intro: str) -> str:
    section, summary = PAGES[name]
    lines = [f'.TH "{name.upper()}" "{section}" "" "{VERSION}" "User Commands"',
             ".SH NAME", f"{_roff(name)} \\- {_roff(summary)}", ".SH SYNOPSIS"]
    for _title, p in parsers_:
        lines += [".PP", f"\\fB{_roff(_usage(p))}\\fR"]
    lines += _section("DESCRIPTION", [_roff(intro)] if intro else [])
    multi = len(parsers_) > 1
    lines.append(".SH COMMANDS" if multi else ".SH OPTIONS")
    for title, p in parsers_:
        if multi:
            lines += [f'.SS "{_roff(title)}"', _roff(p.description or "")]
        lines += _options(p)
        if p.epilog:
            lines += [".PP", ".nf", _roff(p.epilog.rstrip()), ".fi"]
    lines += [".SH SEE ALSO", _roff(", ".join(f"{n}({s})" for n, (s, _) in PAGES.items()
                                              if n != name))]
    return "\n".join(lines) + "\n"


def man_page(name: str) -> str:
    if name == "fsu":
        from rumpkernel.apps.fsu import main as fsu_main

        intro = (fsu_main.__doc__ or "").split("Interface:")[0].strip()
        items = [(f"fsu {n}", p) for n, p in fsu_parsers().items()]
        return _page("fsu", items, intro)
    p = parsers()[name]
    return _page(name, [(name, p)], p.description or "")


# ---- completion ---------------------------------------------------------------------------
def _flags(p: argparse.ArgumentParser) -> list[str]:
    return sorted({o for a in p._actions for o in a.option_strings})


GLOBAL_FLAGS = ["-t", "--type", "-r", "--read-only", "-o", "--options", "-v", "--verbose",
                "-b", "--batch", "--help", "--version", "--print-completion", "--print-man"]


def bash_completion() -> str:
    subs = fsu_parsers()
    lines = ["# bash completion for fsu, fsu_NAME, rump-makefs, rump_server and rump.*",
             "# generated by scripts/gen_docs.py from the argparse definitions: do not edit",
             "_rumpkernel_fsu() {",
             '    local cur="${COMP_WORDS[COMP_CWORD]}" cmd="" i',
             '    case "${COMP_WORDS[0]##*/}" in',
             '        fsu_*) cmd="${COMP_WORDS[0]##*/fsu_}"; cmd="${cmd#fsu_}" ;;',
             "        rump-makefs) cmd=makefs ;;",
             "        *) for ((i = 1; i < COMP_CWORD; i++)); do",
             '               case "${COMP_WORDS[i]}" in',
             "                   -t|-o|--type|--options) ((i++)) ;;",
             "                   -*) ;;",
             '                   *) cmd="${COMP_WORDS[i]}"; break ;;',
             "               esac",
             "           done ;;",
             "    esac",
             '    if [[ -z "$cmd" ]]; then',
             f'        COMPREPLY=($(compgen -W "{" ".join([*subs, *GLOBAL_FLAGS])}" -- "$cur"))',
             "        return",
             "    fi",
             '    local flags=""',
             '    case "$cmd" in']
    for name, p in subs.items():
        lines.append(f'        {name}) flags="{" ".join(_flags(p))}" ;;')
    lines += ["    esac",
              '    if [[ "$cur" == -* ]]; then',
              '        COMPREPLY=($(compgen -W "$flags" -- "$cur"))',
              "    else",
              '        COMPREPLY=($(compgen -f -- "$cur"))',
              "    fi",
              "}",
              "_rumpkernel_tool() {",
              '    local cur="${COMP_WORDS[COMP_CWORD]}" flags=""',
              '    case "${COMP_WORDS[0]##*/}" in']
    for name, p in parsers().items():
        if name != "rump-makefs":
            lines.append(f'        {name}) flags="{" ".join(_flags(p))}" ;;')
    lines += ["    esac",
              '    if [[ "$cur" == -* ]]; then',
              '        COMPREPLY=($(compgen -W "$flags" -- "$cur"))',
              "    else",
              '        COMPREPLY=($(compgen -f -- "$cur"))',
              "    fi",
              "}",
              "complete -o filenames -F _rumpkernel_fsu fsu rump-makefs " +
              " ".join(f"fsu_{n}" for n in subs),
              "complete -o filenames -F _rumpkernel_tool rump_server " +
              " ".join(f"rump.{t}" for t in RUMP_TOOLS)]
    return "\n".join(lines) + "\n"


def _zsh_quote(text: str) -> str:
    return re.sub(r"([\[\]:'\\])", r"\\\1", text)


def zsh_completion() -> str:
    subs = fsu_parsers()
    lines = ["#compdef fsu rump-makefs rump_server " +
             " ".join(f"fsu_{n}" for n in subs) + " " +
             " ".join(f"rump.{t}" for t in RUMP_TOOLS),
             "# zsh completion, generated by scripts/gen_docs.py from the argparse "
             "definitions: do not edit",
             "_rumpkernel_flags() {",
             '    case "$1" in']
    for name, p in [*subs.items(), *((n, q) for n, q in parsers().items()
                                     if n != "rump-makefs")]:
        specs = []
        for a in p._actions:
            for o in a.option_strings:
                specs.append(f"'{o}[{_zsh_quote(a.help or '')}]'")
        lines.append(f"        {name}) _arguments -s {' '.join(specs)} '*:file:_files' ;;")
    lines += ["    esac",
              "}",
              "_rumpkernel() {",
              "    local prog=${words[1]:t} cmd",
              '    case "$prog" in',
              "        fsu_*) _rumpkernel_flags ${prog#fsu_}; return ;;",
              "        rump-makefs) _rumpkernel_flags makefs; return ;;",
              '        rump_server|rump.*) _rumpkernel_flags "$prog"; return ;;',
              "    esac",
              "    local -a subcommands",
              "    subcommands=(" + " ".join(
                  f"'{n}:{_zsh_quote(p.description or '')}'" for n, p in subs.items()) + ")",
              "    local i",
              "    for ((i = 2; i < CURRENT; i++)); do",
              '        case "${words[i]}" in',
              "            -t|-o|--type|--options) ((i++)) ;;",
              "            -*) ;;",
              '            *) cmd="${words[i]}"; break ;;',
              "        esac",
              "    done",
              '    if [[ -z "$cmd" ]]; then',
              "        _describe -t commands 'fsu command' subcommands",
              "        _files",
              "    else",
              '        _rumpkernel_flags "$cmd"',
              "    fi",
              "}",
              '_rumpkernel "$@"']
    return "\n".join(lines) + "\n"


# ---- the files ----------------------------------------------------------------------------
DATA = Path(__file__).resolve().parent / "data"


def generated() -> dict[str, str]:
    out = {f"man/{name}.{sec}": man_page(name) for name, (sec, _) in PAGES.items()}
    out["completion/fsu.bash"] = bash_completion()
    out["completion/_fsu"] = zsh_completion()
    return out


def write_all(root: Path = DATA) -> list[str]:
    changed = check_all(root)
    for rel, text in generated().items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel in changed:
            path.write_text(text, encoding="utf-8")
    return changed


def check_all(root: Path = DATA) -> list[str]:
    stale = []
    for rel, text in generated().items():
        path = root / rel
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            stale.append(rel)
    return stale


def read_installed(rel: str) -> str:
    """A generated file as installed with the package."""
    return (DATA / rel).read_text(encoding="utf-8")
