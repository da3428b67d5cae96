"""mtree(5) specification files, as NetBSD's makefs ``-F`` reads them.

Interface:
    parse_spec(text, *, source="spec") -> dict[str, dict[str, str]]
        path (relative, "." for the root, "bin/sh") -> keywords ({"type": "file", "mode":
        "0555", "uname": "root", ...}); later entries for one path update earlier ones
    SpecError(message)  -- with the file name and line number

Both layouts are read: the hierarchical one ``mtree -c`` writes (a bare name is an entry in
the current directory; a ``type=dir`` entry becomes the current directory; ``..`` goes up) and
the full-path one (``./bin/sh type=file ...``; any name containing ``/``).  ``/set`` and
``/unset`` set defaults for the entries that follow; ``#`` starts a comment; a line ending in
``\\`` continues on the next.  Names use vis(3) escapes (``\\s`` space, ``\\040`` octal, ``\\\\``).
Keywords kept: type, mode, uid, gid, uname, gname, link, time, device, size, flags, optional,
nochange, ignore, contents; unknown keywords (checksums, nlink ...) are accepted and ignored by
makefs.  Types: file, dir, link, char, block, fifo, socket.
"""

from __future__ import annotations

import re

TYPES = frozenset({"file", "dir", "link", "char", "block", "fifo", "socket"})
FLAG_KEYWORDS = frozenset({"optional", "nochange", "ignore"})


class SpecError(ValueError):
    pass


_VIS = re.compile(r"\\(\\|s|t|n|r|[0-7]{3}|M-.|M\^.|\^.|.)")


def unvis(name: str) -> str:
    def rep(m: re.Match[str]) -> str:
        e = m.group(1)
        if e == "\\":
            return "\\"
        if e == "s":
            return " "
        if e in ("t", "n", "r"):
            return {"t": "\t", "n": "\n", "r": "\r"}[e]
        if len(e) == 3 and e.isdigit():
            return chr(int(e, 8))
        return e[-1]
    raw = _VIS.sub(rep, name)
    try:
        return raw.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return raw


def _logical_lines(text: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    buf, start = "", 0
    for no, line in enumerate(text.splitlines(), 1):
        stripped = line.rstrip()
        if not buf:
            start = no
        if stripped.endswith("\\") and not stripped.endswith("\\\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        out.append((start, buf))
        buf = ""
    if buf:
        out.append((start, buf))
    return out


def _keywords(words: list[str], where: str) -> dict[str, str]:
    kw: dict[str, str] = {}
    for w in words:
        key, eq, value = w.partition("=")
        if not eq:
            if key in FLAG_KEYWORDS:
                kw[key] = "1"
                continue
            raise SpecError(f"{where}: keyword {w!r} needs a value (key=value)")
        kw[key] = value
    if "type" in kw and kw["type"] not in TYPES:
        raise SpecError(f"{where}: unknown type {kw['type']!r} "
                        f"(one of {', '.join(sorted(TYPES))})")
    return kw


def _norm(path: str) -> str:
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise SpecError(f"path {path!r} may not contain '..'")
    return "/".join(parts) or "."


def parse_spec(text: str, *, source: str = "spec") -> dict[str, dict[str, str]]:
    entries: dict[str, dict[str, str]] = {}
    defaults: dict[str, str] = {}
    cwd: list[str] = []
    for no, line in _logical_lines(text):
        where = f"{source}:{no}"
        body = line.split("#", 1)[0] if line.lstrip().startswith("#") else line
        words = body.split()
        if not words:
            continue
        head = words[0]
        if head == "/set":
            defaults.update(_keywords(words[1:], where))
            continue
        if head == "/unset":
            for k in words[1:]:
                if k == "all":
                    defaults.clear()
                defaults.pop(k, None)
            continue
        if head == "..":
            if not cwd:
                continue
            cwd.pop()
            continue
        name = unvis(head)
        kw = dict(defaults)
        kw.update(_keywords(words[1:], where))
        if "/" in name:
            path = _norm(name)
        elif name == ".":
            path = "."
        else:
            path = "/".join([*cwd, name])
            if name == "..":
                raise SpecError(f"{where}: bad name {head!r}")
        merged = entries.setdefault(path, {})
        merged.update(kw)
        if "/" not in name and name != "." and merged.get("type") == "dir":
            cwd.append(name)
        elif name == "." and not cwd:
            cwd = []
    return entries
