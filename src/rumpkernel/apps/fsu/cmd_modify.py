"""Commands that change names and attributes inside the image: mkdir, rmdir, rm, mv, ln,
chmod, chown, chgrp, touch, write.

mkdir -p -m MODE -v; rmdir -p -v; rm -r/-R -f -d -v (refuses to remove /); mv -f -n -v;
ln -s -f -v; chmod -R -v MODE (octal or symbolic); chown -R -h OWNER[:GROUP] (names from the
image's /etc/passwd and /etc/group, then the host's, or numbers); chgrp -R -h GROUP;
touch -a -m -c -d DATE -t STAMP -r REF; write -a (standard input to a file; without -a the file
is replaced whole through a temporary name; with -a a failed append is cut back).
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
import sys
from typing import Any

from rumpkernel.apps.fsu.commands import command, new_parser
from rumpkernel.apps.fsu.common import Ctx, Usage, join, reason
from rumpkernel.apps.fsu.modes import parse_date, parse_mode, parse_stamp
from rumpkernel.client.files.names import temp_name, temp_path

UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2


def _flag(p: Any, *flags: str, dest: str, help: str) -> None:
    p.add_argument(*flags, dest=dest, action="store_true", help=help)


def _umask(ctx: Ctx) -> int:
    old = ctx.sys.umask(0o022)
    ctx.sys.umask(old)
    return old


# ---- mkdir / rmdir --------------------------------------------------------------------------
def _mkdir_parser(prog: str) -> Any:
    p = new_parser(prog, "Make directories in the image.", f"{prog} IMAGE [-pv] [-m MODE] DIR ...")
    _flag(p, "-p", "--parents", dest="parents", help="make parents, no error if existing")
    _flag(p, "-v", "--verbose", dest="verbose", help="print each directory made")
    p.add_argument("-m", "--mode", dest="mode", help="permission bits (octal or symbolic)")
    p.add_argument("paths", nargs="+", metavar="DIR")
    return p


@command("mkdir", writes=True, summary="make directories", parser=_mkdir_parser)
def run_mkdir(ctx: Ctx, ns: Any) -> None:
    try:
        change = parse_mode(ns.mode) if ns.mode else None
    except ValueError as e:
        raise Usage(str(e)) from None
    umask = _umask(ctx)
    mode = change.apply(0o777 & ~umask, True, umask) if change is not None else 0o777
    for p in ns.paths:
        made = []
        try:
            if ns.parents:
                parts = [c for c in p.split("/") if c]
                for i in range(1, len(parts) + 1):
                    sub = "/" + "/".join(parts[:i])
                    try:
                        ctx.sys.mkdir(sub, mode if i == len(parts) else 0o777)
                        made.append(sub)
                    except FileExistsError:
                        if not stat.S_ISDIR(ctx.sys.stat(sub).st_mode):
                            raise
            else:
                ctx.sys.mkdir(p, mode)
                made.append(p)
            if change is not None and made and mode & ~0o777 | (mode & umask):
                ctx.sys.chmod(made[-1], mode)  # bits mkdir's umask or mode could not give
        except OSError as e:
            ctx.err(p, e)
        if ns.verbose:
            for m in made:
                ctx.out.write(f"{ctx.prog}: created directory '{m}'\n")


def _rmdir_parser(prog: str) -> Any:
    p = new_parser(prog, "Remove empty directories.", f"{prog} IMAGE [-pv] DIR ...")
    _flag(p, "-p", "--parents", dest="parents", help="remove the empty ancestors too")
    _flag(p, "-v", "--verbose", dest="verbose", help="print each directory removed")
    p.add_argument("paths", nargs="+", metavar="DIR")
    return p


@command("rmdir", writes=True, summary="remove empty directories", parser=_rmdir_parser)
def run_rmdir(ctx: Ctx, ns: Any) -> None:
    for p in ns.paths:
        path = p.rstrip("/") or "/"
        while True:
            try:
                ctx.sys.rmdir(path)
            except OSError as e:
                ctx.err(path, e)
                break
            if ns.verbose:
                ctx.out.write(f"{ctx.prog}: removing directory, '{path}'\n")
            path = posixpath.dirname(path)
            if not ns.parents or path in ("/", ""):
                break


# ---- rm ---------------------------------------------------------------------------------------
def _rm_parser(prog: str) -> Any:
    p = new_parser(prog, "Remove files or directories in the image.",
                   f"{prog} IMAGE [-rfdv] PATH ...")
    _flag(p, "-r", "-R", "--recursive", dest="recursive", help="remove directories and contents")
    _flag(p, "-f", "--force", dest="force", help="ignore missing files, never fail on them")
    _flag(p, "-d", "--dir", dest="dir", help="remove empty directories")
    _flag(p, "-v", "--verbose", dest="verbose", help="print each name removed")
    p.add_argument("paths", nargs="*", metavar="PATH")
    return p


@command("rm", writes=True, summary="remove files or directories", parser=_rm_parser)
def run_rm(ctx: Ctx, ns: Any) -> None:
    if not ns.paths and not ns.force:
        raise Usage("missing operand")
    for p in ns.paths:
        if ns.recursive and posixpath.normpath(p) in ("/", "//"):
            ctx.err(p, "it is dangerous to operate recursively on '/' (refused)")
            continue
        try:
            st = ctx.sys.lstat(p)
        except OSError as e:
            if not (ns.force and e.errno == errno.ENOENT):
                ctx.err(p, e)
            continue
        if stat.S_ISDIR(st.st_mode):
            if ns.recursive:
                _rm_tree(ctx, p, ns)
            elif ns.dir:
                _rm_one(ctx, p, True, ns)
            else:
                ctx.err(p, "cannot remove: Is a directory")
        else:
            _rm_one(ctx, p, False, ns)


def _rm_one(ctx: Ctx, path: str, is_dir: bool, ns: Any) -> bool:
    try:
        (ctx.sys.rmdir if is_dir else ctx.sys.unlink)(path)
    except OSError as e:
        if not (ns.force and e.errno == errno.ENOENT):
            ctx.err(path, e)
        return False
    if ns.verbose:
        ctx.out.write(f"removed {'directory ' if is_dir else ''}'{path}'\n")
    return True


def _rm_tree(ctx: Ctx, path: str, ns: Any) -> bool:
    ok = True
    try:
        with ctx.files.scandir(path) as it:
            entries = [(e.path, e.is_dir(follow_symlinks=False)) for e in it]
    except OSError as e:
        ctx.err(path, e)
        return False
    for child, is_dir in entries:
        ok &= _rm_tree(ctx, child, ns) if is_dir else _rm_one(ctx, child, False, ns)
    return _rm_one(ctx, path, True, ns) if ok else False


# ---- mv ---------------------------------------------------------------------------------------
def _mv_parser(prog: str) -> Any:
    p = new_parser(prog, "Move (rename) files inside the image.",
                   f"{prog} IMAGE [-fnv] SOURCE ... DEST")
    _flag(p, "-f", "--force", dest="force", help="overwrite without asking (the default)")
    _flag(p, "-n", "--no-clobber", dest="no_clobber", help="do not overwrite existing files")
    _flag(p, "-v", "--verbose", dest="verbose", help="explain what is done")
    p.add_argument("paths", nargs="+", metavar="PATH")
    return p


def _is_dir(ctx: Ctx, path: str) -> bool:
    try:
        return stat.S_ISDIR(ctx.sys.stat(path).st_mode)
    except OSError:
        return False


def _targets(ctx: Ctx, paths: list[str]) -> list[tuple[str, str]]:
    if len(paths) < 2:
        raise Usage(f"missing destination file operand after '{paths[0]}'")
    *srcs, dest = paths
    into = _is_dir(ctx, dest)
    if len(srcs) > 1 and not into:
        raise Usage(f"target '{dest}' is not a directory")
    return [(s, join(dest, posixpath.basename(s.rstrip("/")) or s) if into else dest)
            for s in srcs]


@command("mv", writes=True, summary="move or rename", parser=_mv_parser)
def run_mv(ctx: Ctx, ns: Any) -> None:
    for src, dst in _targets(ctx, ns.paths):
        if ns.no_clobber:
            try:
                ctx.sys.lstat(dst)
                continue
            except OSError:
                pass
        try:
            ctx.sys.rename(src, dst)
        except OSError as e:
            ctx.err(src if e.errno != errno.EISDIR else dst, e)
            continue
        if ns.verbose:
            ctx.out.write(f"renamed '{src}' -> '{dst}'\n")


# ---- ln -------------------------------------------------------------------------------------
def _ln_parser(prog: str) -> Any:
    p = new_parser(prog, "Make links inside the image.", f"{prog} IMAGE [-sfv] TARGET ... LINK")
    _flag(p, "-s", "--symbolic", dest="symbolic", help="make symbolic links")
    _flag(p, "-f", "--force", dest="force", help="replace existing destination files")
    _flag(p, "-v", "--verbose", dest="verbose", help="print each link made")
    p.add_argument("paths", nargs="+", metavar="PATH")
    return p


@command("ln", writes=True, summary="make links", parser=_ln_parser)
def run_ln(ctx: Ctx, ns: Any) -> None:
    for target, link in _targets(ctx, ns.paths):
        tmp = temp_path(link, "fsu-ln~") if ns.force else link
        try:
            if ns.symbolic:
                ctx.sys.symlink(target, tmp)
            else:
                ctx.sys.link(target, tmp, follow_symlinks=False)
            if ns.force:
                try:
                    ctx.sys.rename(tmp, link)
                except OSError:
                    ctx.sys.unlink(tmp)
                    raise
        except OSError as e:
            if ns.symbolic:
                ctx.err(None, f"cannot create symbolic link '{link}' -> '{target}': "
                              f"{reason(e, link)}")
            elif e.errno in (errno.ENOENT, errno.ENOTDIR) and not ctx.files.exists(target) \
                    and not ctx.files.islink(target):
                ctx.err(target, e)
            else:
                ctx.err(None, f"cannot create hard link '{link}' => '{target}': "
                              f"{reason(e, link)}")
            continue
        if ns.verbose:
            ctx.out.write(f"'{link}' -> '{target}'\n")


# ---- chmod / chown / chgrp --------------------------------------------------------------------
CHMOD_MODES = """\
MODE is octal (755, 4755) or symbolic as chmod(1): comma-separated clauses
[ugoa...][+-=][rwxXst...] or [ugoa...][+-=][ugo] (u+x, go-w, a=rX, g=u, +t).  A mode may
start with '-' (-w).  Octal modes of fewer than five digits keep a directory's set-id bits.
"""


def _chmod_parser(prog: str) -> Any:
    """chmod's options for --help, the man page and completion (parse_chmod parses)."""
    from rumpkernel.apps.fsu.common import RawHelpFormatter

    p = new_parser(prog, "Change the permission bits of files in the image.",
                   f"{prog} IMAGE [-Rv] MODE PATH ...", short_help=False)
    p.epilog = CHMOD_MODES
    p.formatter_class = RawHelpFormatter
    _flag(p, "-R", "--recursive", dest="recursive", help="change trees")
    _flag(p, "-v", "--verbose", dest="verbose", help="report every change")
    p.add_argument("mode", metavar="MODE", help="octal or symbolic mode")
    p.add_argument("paths", nargs="+", metavar="PATH")
    return p


def parse_chmod(prog: str, args: list[str]) -> Any:
    """chmod's own grammar: a mode may start with '-' ("-w"), so only known flags are flags."""
    if any(a in ("-h", "--help") for a in args):
        sys.stdout.write(_chmod_parser(prog).format_help())
        raise SystemExit(0)
    recursive = verbose = False
    rest = []
    for i, a in enumerate(args):
        if a in ("-R", "--recursive"):
            recursive = True
        elif a in ("-v", "--verbose"):
            verbose = True
        elif a == "--":
            rest.extend(args[i + 1:])
            break
        else:
            rest.append(a)
    if len(rest) < 2:
        raise Usage(f"missing operand\nusage: {prog} IMAGE [-Rv] MODE PATH ...")
    try:
        change = parse_mode(rest[0])
    except ValueError as e:
        raise Usage(str(e)) from None
    return _NS(recursive=recursive, verbose=verbose, change=change, mode=rest[0],
               paths=rest[1:])


class _NS:
    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


def _each(ctx: Ctx, path: str, recursive: bool, fn: Any) -> None:
    try:
        st = ctx.sys.lstat(path)
        if stat.S_ISLNK(st.st_mode) and not recursive:
            st = ctx.sys.stat(path)
    except OSError as e:
        ctx.err(path, e)
        return
    fn(path, st)
    if recursive and stat.S_ISDIR(st.st_mode):
        try:
            with ctx.files.scandir(path) as it:
                children = [e.path for e in it]
        except OSError as e:
            ctx.err(path, e)
            return
        for c in sorted(children, key=os.fsencode):
            _each(ctx, c, True, fn)


@command("chmod", writes=True, summary="change permission bits", parse=parse_chmod,
         parser=_chmod_parser)
def run_chmod(ctx: Ctx, ns: Any) -> None:
    umask = _umask(ctx)

    def one(path: str, st: os.stat_result) -> None:
        if stat.S_ISLNK(st.st_mode):
            return
        new = ns.change.apply(st.st_mode, stat.S_ISDIR(st.st_mode), umask)
        try:
            ctx.sys.chmod(path, new)
        except OSError as e:
            ctx.err(path, e)
            return
        if ns.verbose:
            ctx.out.write(f"mode of '{path}' changed from {stat.S_IMODE(st.st_mode):04o} to "
                          f"{new:04o}\n")

    for p in ns.paths:
        _each(ctx, p, ns.recursive, one)


def _owner_parser(prog: str, what: str) -> Any:
    p = new_parser(prog, f"Change the {what} of files in the image.",
                   f"{prog} IMAGE [-Rhv] {'OWNER[:GROUP]' if what == 'owner' else 'GROUP'} "
                   "PATH ...", short_help=False)
    _flag(p, "-R", "--recursive", dest="recursive", help="operate on trees")
    p.add_argument("--no-dereference", dest="nofollow", action="store_true",
                   help="change symbolic links themselves (-h)")
    p.add_argument("-h", dest="nofollow", action="store_true", help="same as --no-dereference")
    _flag(p, "-v", "--verbose", dest="verbose", help="explain what is done")
    p.add_argument("spec", metavar="OWNER[:GROUP]" if what == "owner" else "GROUP",
                   help="a name (from the image's /etc/passwd or /etc/group, then the "
                        "host's) or a number")
    p.add_argument("paths", nargs="+", metavar="PATH")
    return p


def _chown_parser(prog: str) -> Any:
    return _owner_parser(prog, "owner")


def _chgrp_parser(prog: str) -> Any:
    return _owner_parser(prog, "group")


def _own(ctx: Ctx, ns: Any, uid: int, gid: int) -> None:
    def one(path: str, st: os.stat_result) -> None:
        follow = not ns.nofollow and not (ns.recursive and stat.S_ISLNK(st.st_mode))
        try:
            ctx.sys.chown(path, uid, gid, follow_symlinks=follow)
        except OSError as e:
            ctx.err(path, e)
            return
        if ns.verbose:
            ctx.out.write(f"ownership of '{path}' retained or changed\n")

    for p in ns.paths:
        _each(ctx, p, ns.recursive, one)


@command("chown", writes=True, summary="change owner and group", parser=_chown_parser)
def run_chown(ctx: Ctx, ns: Any) -> None:
    user, _sep, group = ns.spec.partition(":")
    uid = ctx.names.uid(user) if user else -1
    gid = ctx.names.gid(group) if group else -1
    _own(ctx, ns, uid, gid)


@command("chgrp", writes=True, summary="change group", parser=_chgrp_parser)
def run_chgrp(ctx: Ctx, ns: Any) -> None:
    _own(ctx, ns, -1, ctx.names.gid(ns.spec))


# ---- touch ------------------------------------------------------------------------------------
def _touch_parser(prog: str) -> Any:
    p = new_parser(prog, "Change file timestamps in the image (creating files).",
                   f"{prog} IMAGE [-acm] [-d DATE | -t STAMP | -r REF] PATH ...")
    _flag(p, "-a", dest="atime", help="change only the access time")
    _flag(p, "-m", dest="mtime", help="change only the modification time")
    _flag(p, "-c", "--no-create", dest="no_create", help="do not create files")
    p.add_argument("-d", "--date", dest="date", help="@EPOCH, now, or ISO 8601 date")
    p.add_argument("-t", dest="stamp", help="[[CC]YY]MMDDhhmm[.ss]")
    p.add_argument("-r", "--reference", dest="ref", help="use this image file's times")
    p.add_argument("paths", nargs="+", metavar="PATH")
    return p


def _touch_times(ctx: Ctx, ns: Any) -> tuple[int, int]:
    if sum(x is not None for x in (ns.date, ns.stamp, ns.ref)) > 1:
        raise Usage("cannot specify times from more than one source")
    try:
        if ns.ref is not None:
            st = ctx.sys.stat(ns.ref)
            at, mt = st.st_atime_ns, st.st_mtime_ns
        elif ns.date is not None:
            at = mt = parse_date(ns.date)
        elif ns.stamp is not None:
            at = mt = parse_stamp(ns.stamp)
        else:
            at = mt = UTIME_NOW
    except ValueError as e:
        raise Usage(str(e)) from None
    if ns.atime and not ns.mtime:
        mt = UTIME_OMIT
    if ns.mtime and not ns.atime:
        at = UTIME_OMIT
    return at, mt


@command("touch", writes=True, summary="change timestamps, create files", parser=_touch_parser)
def run_touch(ctx: Ctx, ns: Any) -> None:
    try:
        times = _touch_times(ctx, ns)
    except OSError as e:
        ctx.err(ns.ref, e)
        return
    for p in ns.paths:
        try:
            try:
                ctx.sys.stat(p)
            except FileNotFoundError:
                if ns.no_create:
                    continue
                fd = ctx.sys.open(p, os.O_WRONLY | os.O_CREAT, 0o666)
                ctx.sys.close(fd)
            ctx.sys.utime(p, ns=times)
        except OSError as e:
            ctx.err(p, e)


# ---- write ------------------------------------------------------------------------------------
def _write_parser(prog: str) -> Any:
    p = new_parser(prog, "Write standard input (or a host file) to a file in the image.",
                   f"{prog} IMAGE [-a] PATH [FILE|-]")
    _flag(p, "-a", "--append", dest="append", help="append instead of replacing")
    p.add_argument("path", metavar="PATH", help="the file in the image")
    p.add_argument("source", metavar="FILE", nargs="?", default="-",
                   help="host file to read (default -: standard input; in a batch script "
                        "standard input is the script, so FILE is needed)")
    return p


def _read_input(ctx: Ctx, source: str) -> bytes:
    if source != "-":
        with open(source, "rb") as f:
            return f.read()
    if ctx.batch:
        raise Usage("no input: standard input is the batch script (give a host file: "
                    "write PATH FILE)")
    return sys.stdin.buffer.read()


@command("write", writes=True, summary="write standard input to a file", parser=_write_parser)
def run_write(ctx: Ctx, ns: Any) -> None:
    path = ns.path
    try:
        data = _read_input(ctx, ns.source)
    except OSError as e:
        ctx.err(ns.source, e)
        return
    try:
        if ctx.files.islink(path):
            path = str(ctx.files.path(path).resolve())
        if ns.append:
            _append(ctx, path, data)
        else:
            _replace(ctx, path, data)
    except OSError as e:
        ctx.err(ns.path, e)


def _append(ctx: Ctx, path: str, data: bytes) -> None:
    fd = ctx.sys.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = ctx.sys.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[ctx.sys.write(fd, view):]
        except OSError:
            ctx.sys.ftruncate(fd, size)
            raise
    finally:
        ctx.sys.close(fd)


def _replace(ctx: Ctx, path: str, data: bytes) -> None:
    head, tail = posixpath.split(path)
    if not tail:
        raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
    try:
        old = ctx.sys.stat(path)
    except FileNotFoundError:
        old = None
    if old is not None and stat.S_ISDIR(old.st_mode):
        raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
    tmp = posixpath.join(head or "/", temp_name(tail, "fsu-write~"))
    fd = ctx.sys.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[ctx.sys.write(fd, view):]
            if old is not None:
                ctx.sys.fchmod(fd, stat.S_IMODE(old.st_mode))
                ctx.sys.fchown(fd, old.st_uid, old.st_gid)
        finally:
            ctx.sys.close(fd)
        ctx.sys.rename(tmp, path)
    except BaseException:
        try:
            ctx.sys.unlink(tmp)
        except OSError:
            pass
        raise
