"""``fsu ls`` and ``fsu tree``: listing directories inside an image.

ls: -l long, -a all (with . and ..), -A almost all, -R recursive, -d directories themselves,
-h human sizes, -i inode numbers, -n numeric owners, -t/-S sort by time/size, -r reverse,
-1 one per line, -F classify, --json (a list of entries: path, name, type, mode, nlink, uid,
gid, user, group, size, blocks, times in ns, symlink target).  Exit 2 when a command-line
operand cannot be listed, 1 when a subdirectory cannot be read (as GNU ls).
tree: -a, -d (directories only), -L LEVEL, --noreport, -f (full paths).
"""

from __future__ import annotations

import os
import stat
import sys
from typing import Any

from rumpkernel.apps.fsu.commands import command, new_parser
from rumpkernel.apps.fsu.common import (
    EXIT_TROUBLE,
    Ctx,
    filemode,
    fmt_time,
    human,
    join,
    stat_dict,
)


def _ls_parser(prog: str) -> Any:
    p = new_parser(prog, "List directory contents inside the image.",
                   f"{prog} IMAGE [-lahAdRinrtSF1] [--json] [PATH ...]", short_help=False)
    for flag, dest, hlp in (("-l", "long", "long listing"), ("-a", "all", "include . entries"),
                            ("-A", "almost_all", "include dot files, not . and .."),
                            ("-R", "recursive", "list subdirectories recursively"),
                            ("-d", "directory", "list directories themselves"),
                            ("-i", "inode", "print inode numbers"),
                            ("-n", "numeric", "numeric user and group ids"),
                            ("-t", "sort_time", "sort by modification time, newest first"),
                            ("-S", "sort_size", "sort by size, largest first"),
                            ("-r", "reverse", "reverse the sort order"),
                            ("-F", "classify", "append / * @ | to names"),
                            ("-1", "one", "one name per line")):
        p.add_argument(flag, dest=dest, action="store_true", help=hlp)
    p.add_argument("-h", "--human-readable", dest="human", action="store_true",
                   help="sizes like 1.5K 20M")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.add_argument("paths", nargs="*", metavar="PATH")
    return p


class _Entry:
    __slots__ = ("name", "path", "st", "target")

    def __init__(self, name: str, path: str, st: os.stat_result, target: str | None) -> None:
        self.name, self.path, self.st, self.target = name, path, st, target


def _sort(entries: list[_Entry], ns: Any) -> list[_Entry]:
    entries.sort(key=lambda e: os.fsencode(e.name))
    if ns.sort_time:
        entries.sort(key=lambda e: -e.st.st_mtime_ns)
    elif ns.sort_size:
        entries.sort(key=lambda e: -e.st.st_size)
    if ns.reverse:
        entries.reverse()
    return entries


def _entry(ctx: Ctx, name: str, path: str, follow: bool = False) -> _Entry:
    st = ctx.sys.stat(path) if follow else ctx.sys.lstat(path)
    target = ctx.sys.readlink(path) if stat.S_ISLNK(st.st_mode) else None
    return _Entry(name, path, st, target)


def _read_dir(ctx: Ctx, path: str, ns: Any) -> list[_Entry]:
    out = []
    if ns.all:
        for dot in (".", ".."):
            out.append(_entry(ctx, dot, join(path, dot)))
    with ctx.files.scandir(path) as it:
        names = [e.name for e in it]
    for name in names:
        if name.startswith(".") and not (ns.all or ns.almost_all):
            continue
        try:
            out.append(_entry(ctx, name, join(path, name)))
        except OSError as e:
            ctx.err(join(path, name), e)
    return _sort(out, ns)


def _suffix(st: os.stat_result) -> str:
    m = st.st_mode
    if stat.S_ISDIR(m):
        return "/"
    if stat.S_ISLNK(m):
        return "@"
    if stat.S_ISFIFO(m):
        return "|"
    if stat.S_ISSOCK(m):
        return "="
    if m & 0o111:
        return "*"
    return ""


def _long_lines(ctx: Ctx, entries: list[_Entry], ns: Any) -> list[str]:
    rows = []
    for e in entries:
        st = e.st
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            size = f"{os.major(st.st_rdev)}, {os.minor(st.st_rdev)}"
        else:
            size = human(st.st_size) if ns.human else str(st.st_size)
        user = str(st.st_uid) if ns.numeric else ctx.names.user(st.st_uid)
        group = str(st.st_gid) if ns.numeric else ctx.names.group(st.st_gid)
        name = e.name + (_suffix(st) if ns.classify and not e.target else "")
        if e.target is not None:
            name += f" -> {e.target}"
        rows.append(([str(st.st_ino)] if ns.inode else []) +
                    [filemode(st.st_mode), str(st.st_nlink), user, group, size,
                     fmt_time(st.st_mtime_ns), name])
    if not rows:
        return []
    ncol = len(rows[0])
    widths = [max(len(r[i]) for r in rows) for i in range(ncol)]
    right = {0, 1, 4, 5} if not ns.inode else {0, 1, 2, 5, 6}
    lines = []
    for r in rows:
        cells = [r[i].rjust(widths[i]) if i in right else r[i].ljust(widths[i])
                 for i in range(ncol - 1)]
        lines.append(" ".join([*cells, r[-1]]))
    return lines


def _short_lines(entries: list[_Entry], ns: Any) -> list[str]:
    names = [(f"{e.st.st_ino} " if ns.inode else "") + e.name +
             (_suffix(e.st) if ns.classify else "") for e in entries]
    if ns.one or not sys.stdout.isatty() or not names:
        return names
    import shutil

    width = shutil.get_terminal_size((80, 24)).columns
    colw = max(len(n) for n in names) + 2
    ncols = max(1, width // colw)
    nrows = -(-len(names) // ncols)
    lines = []
    for r in range(nrows):
        row = [names[c * nrows + r] for c in range(ncols) if c * nrows + r < len(names)]
        lines.append("".join(n.ljust(colw) for n in row).rstrip())
    return lines


def _show(ctx: Ctx, entries: list[_Entry], ns: Any, total: bool) -> None:
    if ns.long:
        if total:
            blocks = sum(e.st.st_blocks for e in entries) * 512
            ctx.out.write(f"total {human(blocks) if ns.human else -(-blocks // 1024)}\n")
        lines = _long_lines(ctx, entries, ns)
    else:
        lines = _short_lines(entries, ns)
    for line in lines:
        ctx.out.write(line + "\n")


@command("ls", summary="list directory contents", parser=_ls_parser)
def run_ls(ctx: Ctx, ns: Any) -> None:
    paths = ns.paths or [ctx.cwd()]
    follow = not (ns.long or ns.directory or ns.classify)
    files: list[_Entry] = []
    dirs: list[_Entry] = []
    for p in paths:
        try:
            e = _entry(ctx, p, p, follow=False)
            if follow and e.target is not None:
                try:
                    e = _entry(ctx, p, p, follow=True)
                except OSError:
                    pass
        except OSError as exc:
            ctx.err(p, exc, status=EXIT_TROUBLE)
            continue
        (dirs if stat.S_ISDIR(e.st.st_mode) and not ns.directory else files).append(e)
    if ns.json:
        ctx.json(_json_listing(ctx, _sort(files, ns), _sort(dirs, ns), ns))
        return
    _show(ctx, _sort(files, ns), ns, total=False)
    many = len(paths) > 1 or ns.recursive
    first = not files
    for d in _sort(dirs, ns):
        _list_dir(ctx, d.path, ns, many, first)
        first = False


def _list_dir(ctx: Ctx, path: str, ns: Any, header: bool, first: bool) -> None:
    try:
        entries = _read_dir(ctx, path, ns)
    except OSError as e:
        ctx.err(path, e)
        return
    if header:
        ctx.out.write(("" if first else "\n") + f"{path}:\n")
    _show(ctx, entries, ns, total=True)
    if ns.recursive:
        for e in entries:
            if stat.S_ISDIR(e.st.st_mode) and e.name not in (".", ".."):
                _list_dir(ctx, e.path, ns, True, False)


def _json_listing(ctx: Ctx, files: list[_Entry], dirs: list[_Entry], ns: Any) -> list[Any]:
    names = None if ns.numeric else ctx.names
    out = [stat_dict(e.path, e.st, names, e.target) for e in files]
    stack = list(reversed(dirs))
    while stack:
        d = stack.pop()
        try:
            entries = _read_dir(ctx, d.path, ns)
        except OSError as e:
            ctx.err(d.path, e)
            continue
        out.extend(stat_dict(e.path, e.st, names, e.target) for e in entries)
        if ns.recursive:
            stack.extend(reversed([e for e in entries if stat.S_ISDIR(e.st.st_mode)
                                   and e.name not in (".", "..")]))
    return out


# ---- tree ---------------------------------------------------------------------------------
def _tree_parser(prog: str) -> Any:
    p = new_parser(prog, "Show a directory tree inside the image.",
                   f"{prog} IMAGE [-adf] [-L LEVEL] [--noreport] [PATH ...]")
    p.add_argument("-a", dest="all", action="store_true", help="include dot files")
    p.add_argument("-d", dest="dirs_only", action="store_true", help="directories only")
    p.add_argument("-f", dest="full", action="store_true", help="print full paths")
    p.add_argument("-L", dest="level", type=int, default=None, help="descend at most LEVEL")
    p.add_argument("--noreport", action="store_true", help="omit the summary line")
    p.add_argument("paths", nargs="*", metavar="PATH")
    return p


@command("tree", summary="show a directory tree", parser=_tree_parser)
def run_tree(ctx: Ctx, ns: Any) -> None:
    counts = [0, 0]
    for root in ns.paths or [ctx.cwd()]:
        try:
            st = ctx.sys.stat(root)
        except OSError as e:
            ctx.err(root, e)
            continue
        ctx.out.write(root + "\n")
        if stat.S_ISDIR(st.st_mode):
            _tree(ctx, root, "", 1, ns, counts)
    if not ns.noreport:
        d, f = counts
        ctx.out.write(f"\n{d} director{'y' if d == 1 else 'ies'}" +
                      ("" if ns.dirs_only else f", {f} file{'' if f == 1 else 's'}") + "\n")


def _tree(ctx: Ctx, path: str, prefix: str, depth: int, ns: Any, counts: list[int]) -> None:
    if ns.level is not None and depth > ns.level:
        return
    try:
        with ctx.files.scandir(path) as it:
            entries = sorted(it, key=lambda e: os.fsencode(e.name))
    except OSError as e:
        ctx.err(path, e)
        return
    entries = [e for e in entries if ns.all or not e.name.startswith(".")]
    if ns.dirs_only:
        entries = [e for e in entries if e.is_dir(follow_symlinks=False)]
    for i, e in enumerate(entries):
        last = i == len(entries) - 1
        is_dir = e.is_dir(follow_symlinks=False)
        label = e.path if ns.full else e.name
        if e.is_symlink():
            try:
                label += f" -> {ctx.sys.readlink(e.path)}"
            except OSError:
                pass
        ctx.out.write(f"{prefix}{'└── ' if last else '├── '}{label}\n")
        counts[0 if is_dir else 1] += 1
        if is_dir:
            _tree(ctx, e.path, prefix + ("    " if last else "│   "), depth + 1, ns, counts)
