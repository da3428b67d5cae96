"""``fsu cat``, ``stat``, ``du``, ``df`` and ``info``: reading files and facts from an image.

cat: -n numbers lines.  stat: GNU stat's default layout, -L follows symlinks, -c FORMAT
(%a %A %b %B %d %f %F %g %G %h %i %n %N %o %s %t %T %u %U %w %W %x %X %y %Y %z %Z %%),
--json.  du: sizes in KiB of allocated blocks, -s, -h, -a, -c, -b (apparent bytes),
-d DEPTH; hard-linked files count once.  df: -h, -i (inodes), -T (type), --json.
info: the file system's type, label, UUID, geometry, usage and features, --json.
"""

from __future__ import annotations

import math
import os
import re
import stat
import sys
from typing import Any

from rumpkernel.apps.fsu.commands import command, new_parser
from rumpkernel.apps.fsu.common import (
    Ctx,
    filemode,
    fmt_time,
    human,
    join,
    stat_dict,
)

CHUNK = 1 << 20


# ---- cat ------------------------------------------------------------------------------------
def _cat_parser(prog: str) -> Any:
    p = new_parser(prog, "Write files from the image to standard output.",
                   f"{prog} IMAGE [-n] PATH ...")
    p.add_argument("-n", dest="number", action="store_true", help="number all output lines")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files in the image (- is "
                   "standard input)")
    return p


@command("cat", summary="print files", parser=_cat_parser)
def run_cat(ctx: Ctx, ns: Any) -> None:
    out = ctx.bout
    line_no = [1, True]
    for p in ns.paths:
        if p == "-":
            _cat_stdin(ctx, out, ns, line_no)
            continue
        try:
            with ctx.files.open(p, "rb", buffering=0) as f:
                while True:
                    data = f.read(CHUNK)
                    if not data:
                        break
                    out.write(_number(data, line_no) if ns.number else data)
        except OSError as e:
            ctx.err(p, e)
    out.flush()


def _cat_stdin(ctx: Ctx, out: Any, ns: Any, line_no: list[Any]) -> None:
    """``-`` is standard input, as cat(1) has it."""
    if ctx.batch:
        ctx.err("-", "standard input is the batch script")
        return
    while data := sys.stdin.buffer.read1(CHUNK):
        out.write(_number(data, line_no) if ns.number else data)


def _number(data: bytes, state: list[Any]) -> bytes:
    parts = []
    for line in data.splitlines(keepends=True):
        if state[1]:
            parts.append(f"{state[0]:6d}\t".encode())
            state[0] += 1
        parts.append(line)
        state[1] = line.endswith(b"\n")
    return b"".join(parts)


# ---- stat -----------------------------------------------------------------------------------
def _stat_parser(prog: str) -> Any:
    p = new_parser(prog, "Show file status inside the image.",
                   f"{prog} IMAGE [-L] [-c FORMAT] [--json] PATH ...")
    p.add_argument("-L", "--dereference", dest="follow", action="store_true",
                   help="follow symbolic links")
    p.add_argument("-c", "--format", dest="format", help="print FORMAT (%%n %%s %%a ...)")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.add_argument("paths", nargs="+", metavar="PATH")
    return p


_KINDS = [(stat.S_ISDIR, "directory"), (stat.S_ISLNK, "symbolic link"),
          (stat.S_ISCHR, "character special file"), (stat.S_ISBLK, "block special file"),
          (stat.S_ISFIFO, "fifo"), (stat.S_ISSOCK, "socket")]


def kind_name(st: os.stat_result) -> str:
    for test, name in _KINDS:
        if test(st.st_mode):
            return name
    return "regular empty file" if st.st_size == 0 else "regular file"


def _birth(st: os.stat_result) -> int:
    b = getattr(st, "st_birthtime", 0) or 0
    return int(b * 1e9)


def _directive(ctx: Ctx, c: str, path: str, st: os.stat_result, target: str | None) -> str:
    table: dict[str, Any] = {
        "a": lambda: f"{stat.S_IMODE(st.st_mode):o}", "A": lambda: filemode(st.st_mode),
        "b": lambda: str(st.st_blocks), "B": lambda: "512",
        "d": lambda: str(st.st_dev), "f": lambda: f"{st.st_mode:x}",
        "F": lambda: kind_name(st), "g": lambda: str(st.st_gid),
        "G": lambda: ctx.names.group(st.st_gid), "h": lambda: str(st.st_nlink),
        "i": lambda: str(st.st_ino), "n": lambda: path,
        "N": lambda: f"'{path}'" + (f" -> '{target}'" if target is not None else ""),
        "o": lambda: str(st.st_blksize), "s": lambda: str(st.st_size),
        "t": lambda: f"{os.major(st.st_rdev):x}", "T": lambda: f"{os.minor(st.st_rdev):x}",
        "u": lambda: str(st.st_uid), "U": lambda: ctx.names.user(st.st_uid),
        "w": lambda: fmt_time(_birth(st), full=True) if _birth(st) else "-",
        "W": lambda: str(_birth(st) // 10**9), "x": lambda: fmt_time(st.st_atime_ns, full=True),
        "X": lambda: str(st.st_atime_ns // 10**9), "y": lambda: fmt_time(st.st_mtime_ns,
                                                                         full=True),
        "Y": lambda: str(st.st_mtime_ns // 10**9), "z": lambda: fmt_time(st.st_ctime_ns,
                                                                        full=True),
        "Z": lambda: str(st.st_ctime_ns // 10**9), "%": lambda: "%",
    }
    fn = table.get(c)
    return fn() if fn else "?" + c


def _format(ctx: Ctx, fmt: str, path: str, st: os.stat_result, target: str | None) -> str:
    return re.sub(r"%(.)", lambda m: _directive(ctx, m.group(1), path, st, target), fmt)


def _default_stat(ctx: Ctx, path: str, st: os.stat_result, target: str | None) -> str:
    name = path + (f" -> {target}" if target is not None else "")
    dev = f"{os.major(st.st_dev)},{os.minor(st.st_dev)}"
    lines = [f"  File: {name}",
             f"  Size: {st.st_size:<10d}\tBlocks: {st.st_blocks:<10d} IO Block: "
             f"{st.st_blksize:<6d} {kind_name(st)}"]
    third = f"Device: {dev}\tInode: {st.st_ino:<11d} Links: {st.st_nlink}"
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        third += f"\tDevice type: {os.major(st.st_rdev)},{os.minor(st.st_rdev)}"
    lines.append(third)
    lines.append(f"Access: ({stat.S_IMODE(st.st_mode):04o}/{filemode(st.st_mode)})  "
                 f"Uid: ({st.st_uid:5d}/{ctx.names.user(st.st_uid):>8s})   "
                 f"Gid: ({st.st_gid:5d}/{ctx.names.group(st.st_gid):>8s})")
    lines.append(f"Access: {fmt_time(st.st_atime_ns, full=True)}")
    lines.append(f"Modify: {fmt_time(st.st_mtime_ns, full=True)}")
    lines.append(f"Change: {fmt_time(st.st_ctime_ns, full=True)}")
    b = _birth(st)
    lines.append(f" Birth: {fmt_time(b, full=True) if b else '-'}")
    return "\n".join(lines) + "\n"


@command("stat", summary="show file status", parser=_stat_parser)
def run_stat(ctx: Ctx, ns: Any) -> None:
    results = []
    for p in ns.paths:
        try:
            st = ctx.sys.stat(p) if ns.follow else ctx.sys.lstat(p)
            target = ctx.sys.readlink(p) if stat.S_ISLNK(st.st_mode) else None
        except OSError as e:
            ctx.err(p, e)
            continue
        if ns.json:
            d = stat_dict(p, st, ctx.names, target)
            d["birthtime_ns"] = _birth(st)
            d["blksize"] = st.st_blksize
            results.append(d)
        elif ns.format is not None:
            ctx.out.write(_format(ctx, ns.format, p, st, target) + "\n")
        else:
            ctx.out.write(_default_stat(ctx, p, st, target))
    if ns.json:
        ctx.json(results)


# ---- du ---------------------------------------------------------------------------------------
def _du_parser(prog: str) -> Any:
    p = new_parser(prog, "Estimate space used inside the image.",
                   f"{prog} IMAGE [-sahcb] [-d DEPTH] [PATH ...]", short_help=False)
    p.add_argument("-s", dest="summarize", action="store_true", help="a total per argument")
    p.add_argument("-a", dest="all", action="store_true", help="show files too")
    p.add_argument("-h", "--human-readable", dest="human", action="store_true")
    p.add_argument("-c", dest="total", action="store_true", help="print a grand total")
    p.add_argument("-b", "--bytes", dest="bytes", action="store_true",
                   help="apparent size in bytes")
    p.add_argument("-d", "--max-depth", dest="depth", type=int, default=None)
    p.add_argument("paths", nargs="*", metavar="PATH")
    return p


@command("du", summary="disk usage", parser=_du_parser)
def run_du(ctx: Ctx, ns: Any) -> None:
    seen: set[tuple[int, int]] = set()
    grand = 0
    for p in ns.paths or [ctx.cwd()]:
        grand += _du(ctx, p, 0, ns, seen)
    if ns.total:
        _du_line(ctx, grand, "total", ns)


def _du_size(st: os.stat_result, ns: Any) -> int:
    return st.st_size if ns.bytes else st.st_blocks * 512


def _du_line(ctx: Ctx, n: int, path: str, ns: Any) -> None:
    shown = human(n) if ns.human else str(n) if ns.bytes else str(-(-n // 1024))
    ctx.out.write(f"{shown}\t{path}\n")


def _du(ctx: Ctx, path: str, depth: int, ns: Any, seen: set[tuple[int, int]]) -> int:
    try:
        st = ctx.sys.lstat(path)
    except OSError as e:
        ctx.err(path, e)
        return 0
    key = (st.st_dev, st.st_ino)
    if key in seen:
        return 0
    seen.add(key)
    total = _du_size(st, ns)
    show = not ns.summarize or depth == 0
    if ns.depth is not None and depth > ns.depth:
        show = False
    if stat.S_ISDIR(st.st_mode):
        try:
            with ctx.files.scandir(path) as it:
                names = sorted((e.name for e in it), key=os.fsencode)
        except OSError as e:
            ctx.err(path, e)
            names = []
        for name in names:
            total += _du(ctx, join(path, name), depth + 1, ns, seen)
        if show:
            _du_line(ctx, total, path, ns)
    elif show and (ns.all or depth == 0):
        _du_line(ctx, total, path, ns)
    return total


# ---- df -------------------------------------------------------------------------------------
def _df_parser(prog: str) -> Any:
    p = new_parser(prog, "Show the image's file system usage.",
                   f"{prog} IMAGE [-hiT] [--json]", short_help=False)
    p.add_argument("-h", "--human-readable", dest="human", action="store_true")
    p.add_argument("-i", "--inodes", dest="inodes", action="store_true")
    p.add_argument("-T", "--print-type", dest="type", action="store_true")
    p.add_argument("--json", action="store_true")
    p.add_argument("paths", nargs="*", metavar="PATH")
    return p


def fs_usage(ctx: Ctx, path: str = "/") -> dict[str, Any]:
    v = ctx.sys.statvfs(path)
    size = v.f_blocks * v.f_frsize
    free = v.f_bfree * v.f_frsize
    avail = v.f_bavail * v.f_frsize
    used = size - free
    pct = math.ceil(used * 100 / (used + avail)) if used + avail else 0
    iused = v.f_files - v.f_ffree
    return {"filesystem": ctx.session.spec.text, "type": display_type(ctx),
            "size": size, "used": used, "available": avail, "use_percent": pct,
            "block_size": v.f_frsize, "inodes": v.f_files, "inodes_used": iused,
            "inodes_free": v.f_ffree,
            "inodes_use_percent": math.ceil(iused * 100 / v.f_files) if v.f_files else 0,
            "readonly": bool(v.f_flag & 1), "mounted_on": "/"}


@command("df", summary="file system usage", parser=_df_parser)
def run_df(ctx: Ctx, ns: Any) -> None:
    try:
        u = fs_usage(ctx, (ns.paths or ["/"])[0])
    except OSError as e:
        ctx.err((ns.paths or ["/"])[0], e)
        return
    if ns.json:
        ctx.json(u)
        return
    if ns.inodes:
        head = ["Filesystem", "Inodes", "IUsed", "IFree", "IUse%", "Mounted on"]
        row = [u["filesystem"], str(u["inodes"]), str(u["inodes_used"]),
               str(u["inodes_free"]), f"{u['inodes_use_percent']}%", "/"]
    else:
        if ns.human:
            head = ["Filesystem", "Size", "Used", "Avail", "Use%", "Mounted on"]
            nums = [human(u[k]) for k in ("size", "used", "available")]
        else:
            head = ["Filesystem", "1K-blocks", "Used", "Available", "Use%", "Mounted on"]
            nums = [str(-(-u[k] // 1024)) for k in ("size", "used", "available")]
        row = [u["filesystem"], *nums, f"{u['use_percent']}%", "/"]
    if ns.type:
        head.insert(1, "Type")
        row.insert(1, u["type"])
    widths = [max(len(a), len(b)) for a, b in zip(head, row)]
    for r in (head, row):
        cells = [r[0].ljust(max(widths[0], 14))] + \
            [c.rjust(w) if i < len(r) - 1 else c for i, (c, w) in
             enumerate(zip(r[1:], widths[1:]), start=1)]
        ctx.out.write(" ".join(cells).rstrip() + "\n")


# ---- info -----------------------------------------------------------------------------------
def display_type(ctx: Ctx) -> str:
    return ctx.session.display_type()


def _fsinfo(ctx: Ctx) -> dict[str, Any]:
    return ctx.session.fsinfo()


def iec(n: int) -> str:
    """``8.0 MiB``: sizes for people, in binary units."""
    if n < 1024:
        return f"{n} B"
    v = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        v /= 1024
        if v < 1024:
            return f"{v:.1f} {unit}"
    return f"{v:.1f} PiB"


def _info_parser(prog: str) -> Any:
    p = new_parser(prog, "Describe the image's file system.", f"{prog} IMAGE [--json]")
    p.add_argument("--json", action="store_true")
    return p


@command("info", summary="file system type, label, size, free space, features",
         parser=_info_parser)
def run_info(ctx: Ctx, ns: Any) -> None:
    info = _fsinfo(ctx)
    drv = dict(info.get("info", {}))
    u = fs_usage(ctx)
    spec = ctx.session.spec
    facts: dict[str, Any] = {
        "image": spec.path, "partition": spec.partition, "offset": spec.offset,
        "type": display_type(ctx), "driver": info.get("fstype"),
        "label": drv.pop("label", "") or "",
    }
    if "uuid" in drv:
        raw = drv.pop("uuid")
        facts["uuid"] = f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}" \
            if len(raw) == 32 else raw
    if "volume_id" in drv:
        vid = drv.pop("volume_id")
        facts["volume_id"] = f"{vid[:4]}-{vid[4:]}" if len(vid) == 8 else vid
    facts.update({"size": u["size"], "used": u["used"], "available": u["available"],
                  "block_size": u["block_size"], "inodes": u["inodes"],
                  "inodes_free": u["inodes_free"]})
    facts["features"] = drv.pop("features", [])
    drv.pop("type", None)
    drv.pop("readonly", None)
    facts["details"] = drv
    if ns.json:
        ctx.json(facts)
        return
    rows = [("image", spec.describe()), ("type", facts["type"]),
            ("label", facts["label"] or "(none)")]
    if "uuid" in facts:
        rows.append(("uuid", facts["uuid"]))
    if "volume_id" in facts:
        rows.append(("volume id", facts["volume_id"]))
    rows += [("size", f"{iec(u['size'])} ({u['size']} bytes, {u['block_size']}-byte "
                      "blocks)"),
             ("used", f"{iec(u['used'])} ({u['use_percent']}%)"),
             ("available", iec(u["available"])),
             ("inodes", f"{u['inodes_used']} used of {u['inodes']}"
                        if u["inodes"] else "(not fixed)")]
    if facts["features"]:
        rows.append(("features", " ".join(facts["features"])))
    for k, v in sorted(drv.items()):
        rows.append((k.replace("_", " "), str(v)))
    width = max(len(k) for k, _ in rows) + 1
    for k, v in rows:
        ctx.out.write(f"{k + ':':<{width}} {v}\n")
