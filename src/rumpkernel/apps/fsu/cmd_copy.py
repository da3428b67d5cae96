"""``fsu put`` (host -> image), ``fsu get`` (image -> host) and ``fsu cp`` (inside the image).

    fsu put [-r] [-p] [-v] [--sync] [--owner U:G] IMAGE HOSTSRC ... IMAGEDEST
    fsu put IMAGE - IMAGEFILE              standard input into IMAGEFILE
    fsu get [-r] [-p] [-v] IMAGE IMAGESRC ... HOSTDEST
    fsu get IMAGE IMAGEFILE ... -          the files to standard output
    fsu cp  [-r] [-p] [-a] [-v] [--sync] IMAGE SRC ... DEST

cp semantics (``client.files.copy``): a directory destination receives the sources by name;
several sources need a directory; ``-r`` copies trees (symlinks as symlinks); ``-p`` keeps
modes, owners, times and hard links (``-a`` = ``-r -p``).  Each file is written under a
temporary name and renamed into place, so an error (ENOSPC ...) leaves no partial file.
A killed ``fsu put`` (SIGKILL, a CI job timing out) leaves a consistent image (after journal
replay on ext3/4, after ``e2fsck -p``/``fsck.fat -a`` on ext2/FAT) in which every file under its
final name is complete; which files got there is decided by the file system's own commits.
``--sync`` makes each entry durable before the next one starts (the file fsync'd under its
temporary name, renamed, its directory fsync'd), so a killed copy keeps every entry it finished;
with ``-v`` each entry is named on stderr (``fsu put: DEST``) once it is in place (and durable,
with ``--sync``), then the totals.
A progress line appears on stderr for copies that take more than a second when stderr is a
terminal (``--progress`` / ``--no-progress`` force it).
"""

from __future__ import annotations

import errno
import stat
import sys
from typing import Any

from rumpkernel.apps.fsu.commands import command, new_parser
from rumpkernel.apps.fsu.common import Ctx, Usage
from rumpkernel.apps.fsu.progress import Progress, wanted
from rumpkernel.client.files.copy import Copier, HostSide, KernelSide, tree_size


def _copy_parser(prog: str, summary: str, srcs: str, dest: str, owner: bool = False,
                 sync: bool = False) -> Any:
    p = new_parser(prog, summary, f"{prog} IMAGE [-rpv] {srcs} ... {dest}")
    p.add_argument("-r", "-R", "--recursive", dest="recursive", action="store_true",
                   help="copy directories recursively")
    p.add_argument("-p", "--preserve", dest="preserve", action="store_true",
                   help="keep modes, owners, times and hard links")
    p.add_argument("-a", "--archive", dest="archive", action="store_true", help="same as -rp")
    p.add_argument("-v", "--verbose", dest="verbose", action="store_true",
                   help="name each entry copied, then the totals")
    if sync:
        p.add_argument("--sync", dest="sync", action="store_true",
                       help="make each file durable before the next (fsync file and "
                            "directory): a killed copy keeps every file it finished")
    if owner:
        p.add_argument("--owner", dest="owner", metavar="USER:GROUP",
                       help="give everything copied this owner")
    p.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="always show progress")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="never show progress")
    p.add_argument("paths", nargs="+", metavar="PATH")
    return p


def _put_parser(prog: str) -> Any:
    return _copy_parser(prog, "Copy host files into the image.", "HOSTSRC", "IMAGEDEST", True,
                        sync=True)


def _get_parser(prog: str) -> Any:
    return _copy_parser(prog, "Copy files out of the image to the host.", "IMAGESRC",
                        "HOSTDEST")


def _cp_parser(prog: str) -> Any:
    return _copy_parser(prog, "Copy files inside the image.", "SRC", "DEST", True, sync=True)


def _put_stdin(ctx: Ctx, dest: str) -> None:
    """``fsu put IMAGE - DEST``: standard input becomes the file DEST (whole or not at all)."""
    from rumpkernel.apps.fsu.cmd_modify import _replace

    if ctx.batch:
        raise Usage("no input: standard input is the batch script (put a host file)")
    if dest.endswith("/") or ctx.files.isdir(dest):
        raise Usage(f"standard input needs a file name in the image, not the directory "
                    f"'{dest}'")
    try:
        _replace(ctx, dest, sys.stdin.buffer.read())
    except OSError as e:
        ctx.err(dest, e)


def _get_stdout(ctx: Ctx, srcs: list[str]) -> None:
    """``fsu get IMAGE SRC... -``: the files' contents on standard output."""
    out = ctx.bout
    for src in srcs:
        try:
            with ctx.files.open(src, "rb", buffering=0) as f:
                while chunk := f.read(1 << 20):
                    out.write(chunk)
        except OSError as e:
            ctx.err(src, e)
    out.flush()


def _run(ctx: Ctx, ns: Any, src_side: Any, dst_side: Any, label: str) -> None:
    if len(ns.paths) < 2:
        raise Usage(f"missing destination operand after '{ns.paths[0]}'")
    *srcs, dest = ns.paths
    if label == "put" and "-" in srcs:
        if srcs != ["-"]:
            raise Usage("'-' (standard input) must be the only source")
        _put_stdin(ctx, dest)
        return
    if label == "get" and dest == "-":
        _get_stdout(ctx, srcs)
        return
    recursive = ns.recursive or ns.archive
    preserve = ns.preserve or ns.archive
    if len(srcs) > 1:
        try:
            is_dir = stat.S_ISDIR(dst_side.stat(dest).st_mode)
        except OSError:
            is_dir = False
        if not is_dir:
            raise Usage(f"target '{dest}' is not a directory")
    owners = None
    if getattr(ns, "owner", None):
        user, _, group = ns.owner.partition(":")
        owners = (ctx.names.uid(user) if user else -1, ctx.names.gid(group) if group else -1)
    show = wanted(ns.progress)
    total = sum(tree_size(src_side, s, recursive)[1] for s in srcs) if show else None
    bar = Progress(label, total, enabled=show, delay=0.0 if ns.progress else 1.0)

    failed = [0]

    def onerror(e: OSError) -> None:
        failed[0] += 1
        bar.finish()
        where = e.filename if e.filename is not None else ""
        if e.errno == errno.EISDIR and "use -r" in str(e.strerror):
            ctx.err(where, "omitting directory (use -r)")
        else:
            ctx.err(where, e)

    def done(dst: Any) -> None:
        bar.finish()
        ctx.warn(dst if isinstance(dst, str) else dst.decode(errors="replace"))

    copier = Copier(src_side, dst_side, recursive=recursive, preserve=preserve, owners=owners,
                    progress=bar, onerror=onerror, sync=getattr(ns, "sync", False),
                    done=done if ns.verbose else None)
    try:
        for s in srcs:
            copier.copy(s, dest)
    finally:
        bar.finish()
    if ns.verbose:
        n = copier.files
        ctx.warn(f"copied {n} file{'' if n == 1 else 's'} ({copier.bytes} bytes)" +
                 (f"; {failed[0]} failed" if failed[0] else ""))


@command("put", writes=True, summary="copy host files into the image", parser=_put_parser)
def run_put(ctx: Ctx, ns: Any) -> None:
    _run(ctx, ns, HostSide(), KernelSide(ctx.sys), "put")


@command("get", summary="copy files out of the image", parser=_get_parser)
def run_get(ctx: Ctx, ns: Any) -> None:
    _run(ctx, ns, KernelSide(ctx.sys), HostSide(), "get")


@command("cp", writes=True, summary="copy inside the image", parser=_cp_parser)
def run_cp(ctx: Ctx, ns: Any) -> None:
    side = KernelSide(ctx.sys)
    _run(ctx, ns, side, side, "cp")

