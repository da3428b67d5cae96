"""``fsu diff IMAGE [-q] [--meta] [--in-image] A B``: compare a tree in the image with one on
the host (or, with ``--in-image``, two paths in the image), as ``diff -r`` does;
``fsu diff IMAGE1 A IMAGE2 B`` compares trees in two images (each with its own kernel, both
read-only).

A is always in the image; B is a host path unless ``--in-image`` or a second image is given.
Regular files are compared by content (a unified diff for text, "Binary files ... differ"
otherwise; ``-q`` only names them), symlinks by target, directories entry by entry ("Only in
..."); paths in images are shown as IMAGE:PATH when both sides are images.  ``--meta`` also
compares permission bits, owners and modification times (to the second).
Exit status: 0 no differences, 1 differences, 2 trouble.
"""

from __future__ import annotations

import difflib
import os
import stat
import sys
from typing import Any

from rumpkernel.apps.fsu.cmd_inspect import kind_name
from rumpkernel.apps.fsu.commands import command, new_parser
from rumpkernel.apps.fsu.common import EXIT_FAIL, EXIT_TROUBLE, Ctx, Usage
from rumpkernel.client.files.copy import HostSide, KernelSide

TEXT_LIMIT = 4 << 20


def _diff_parser(prog: str) -> Any:
    p = new_parser(prog, "Compare a path in the image with a host path, another path in the "
                   "image (--in-image), or a path in a second image.",
                   f"{prog} IMAGE [-q] [--meta] [--in-image] IMAGEPATH HOSTPATH\n"
                   f"       {prog} IMAGE1 [-q] [--meta] PATH1 IMAGE2 PATH2")
    p.add_argument("-q", "--brief", dest="brief", action="store_true",
                   help="report only whether files differ")
    p.add_argument("-r", "--recursive", action="store_true",
                   help="accepted for diff compatibility (directories are always compared)")
    p.add_argument("--meta", action="store_true", help="compare modes, owners and mtimes too")
    p.add_argument("--in-image", dest="in_image", action="store_true",
                   help="the second path is in the image too")
    p.add_argument("a", metavar="IMAGEPATH")
    p.add_argument("b", metavar="HOSTPATH", nargs="+",
                   help="a host path, or IMAGE2 PATH2 (a path in a second image)")
    return p


class _Diff:
    def __init__(self, ctx: Ctx, a_side: Any, b_side: Any, ns: Any,
                 labels: tuple[str, str] = ("", "")) -> None:
        self.ctx, self.a, self.b, self.ns = ctx, a_side, b_side, ns
        self.labels = labels  # "IMAGE:" prefixes when both sides are images
        self.differ = False

    def na(self, p: str) -> str:
        return self.labels[0] + p

    def nb(self, p: str) -> str:
        return self.labels[1] + p

    def say(self, text: str) -> None:
        self.differ = True
        self.ctx.out.write(text + "\n")

    def compare(self, pa: str, pb: str, top: bool = False) -> None:
        try:
            sa = self.a.lstat(pa)
        except OSError as e:
            self.ctx.err(pa, e, EXIT_TROUBLE)
            return
        try:
            sb = self.b.lstat(pb)
        except OSError as e:
            self.ctx.err(pb, e, EXIT_TROUBLE)
            return
        if top and stat.S_ISLNK(sb.st_mode) and not stat.S_ISLNK(sa.st_mode):
            try:
                sb = self.b.stat(pb)
            except OSError:
                pass
        fa, fb = stat.S_IFMT(sa.st_mode), stat.S_IFMT(sb.st_mode)
        if fa != fb:
            self.say(f"File {self.na(pa)} is a {kind_name(sa)} while file {self.nb(pb)} is a "
                     f"{kind_name(sb)}")
            return
        if self.ns.meta:
            self.meta(pa, sa, pb, sb)
        if stat.S_ISDIR(sa.st_mode):
            self.dirs(pa, pb)
        elif stat.S_ISLNK(sa.st_mode):
            ta, tb = self.a.readlink(pa), self.b.readlink(pb)
            if ta != tb:
                self.say(f"Symbolic links {self.na(pa)} -> {ta} and {self.nb(pb)} -> {tb} "
                         "differ")
        elif stat.S_ISREG(sa.st_mode):
            self.files(pa, sa, pb, sb)
        elif sa.st_rdev != sb.st_rdev:
            self.say(f"Device numbers of {self.na(pa)} and {self.nb(pb)} differ")

    def meta(self, pa: str, sa: os.stat_result, pb: str, sb: os.stat_result) -> None:
        notes = []
        if stat.S_IMODE(sa.st_mode) != stat.S_IMODE(sb.st_mode) and \
                not stat.S_ISLNK(sa.st_mode):
            notes.append(f"mode {stat.S_IMODE(sa.st_mode):04o} != "
                         f"{stat.S_IMODE(sb.st_mode):04o}")
        if (sa.st_uid, sa.st_gid) != (sb.st_uid, sb.st_gid):
            notes.append(f"owner {sa.st_uid}:{sa.st_gid} != {sb.st_uid}:{sb.st_gid}")
        if sa.st_mtime_ns // 10**9 != sb.st_mtime_ns // 10**9:
            notes.append(f"mtime {sa.st_mtime_ns // 10**9} != {sb.st_mtime_ns // 10**9}")
        if notes:
            self.say(f"Attributes of {self.na(pa)} and {self.nb(pb)} differ: "
                     f"{', '.join(notes)}")

    def dirs(self, pa: str, pb: str) -> None:
        try:
            na = set(self.a.names(pa))
            nb = set(self.b.names(pb))
        except OSError as e:
            self.ctx.err(pa, e, EXIT_TROUBLE)
            return
        for name in sorted(na | nb, key=os.fsencode):
            ca, cb = os.path.join(pa, name), os.path.join(pb, name)
            if name not in nb:
                self.say(f"Only in {self.na(pa)}: {name}")
            elif name not in na:
                self.say(f"Only in {self.nb(pb)}: {name}")
            else:
                self.compare(ca, cb)

    def read(self, side: Any, path: str, limit: int | None = None) -> bytes:
        chunks, total = [], 0
        buf = bytearray(1 << 20)
        with side.open_read(path) as f:
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                chunks.append(bytes(buf[:n]))
                total += n
                if limit is not None and total > limit:
                    break
        return b"".join(chunks)

    def same_content(self, pa: str, pb: str) -> bool:
        ba, bb = bytearray(1 << 20), bytearray(1 << 20)
        with self.a.open_read(pa) as fa, self.b.open_read(pb) as fb:
            while True:
                na = _fill(fa, ba)
                nb = _fill(fb, bb)
                if na != nb or ba[:na] != bb[:nb]:
                    return False
                if not na:
                    return True

    def files(self, pa: str, sa: os.stat_result, pb: str, sb: os.stat_result) -> None:
        try:
            if sa.st_size == sb.st_size and self.same_content(pa, pb):
                return
            if self.ns.brief or max(sa.st_size, sb.st_size) > TEXT_LIMIT:
                self.say(f"Files {self.na(pa)} and {self.nb(pb)} differ")
                return
            da, db = self.read(self.a, pa), self.read(self.b, pb)
        except OSError as e:
            self.ctx.err(pa, e, EXIT_TROUBLE)
            return
        if b"\0" in da[:8192] or b"\0" in db[:8192]:
            self.say(f"Binary files {self.na(pa)} and {self.nb(pb)} differ")
            return
        la = da.decode("utf-8", "surrogateescape").splitlines(keepends=True)
        lb = db.decode("utf-8", "surrogateescape").splitlines(keepends=True)
        self.differ = True
        for line in difflib.unified_diff(la, lb, self.na(pa), self.nb(pb)):
            self.ctx.out.write(line if line.endswith("\n") else line + "\n\\ No newline at "
                               "end of file\n")


def _fill(f: Any, buf: bytearray) -> int:
    mv = memoryview(buf)
    got = 0
    while got < len(buf):
        n = f.readinto(mv[got:])
        if not n:
            break
        got += n
    return got


@command("diff", summary="compare trees: image and host, or two images", parser=_diff_parser)
def run_diff(ctx: Ctx, ns: Any) -> None:
    if len(ns.b) > 2:
        raise Usage("too many operands (IMAGEPATH HOSTPATH, or PATH1 IMAGE2 PATH2)")
    if len(ns.b) == 2:
        _diff_images(ctx, ns, *ns.b)
        return
    a_side = KernelSide(ctx.sys)
    b_side = a_side if ns.in_image else HostSide()
    _compare(ctx, ns, a_side, b_side, ns.b[0])


def _compare(ctx: Ctx, ns: Any, a_side: Any, b_side: Any, b: str,
             labels: tuple[str, str] = ("", "")) -> None:
    d = _Diff(ctx, a_side, b_side, ns, labels)
    d.compare(ns.a, b, top=True)
    if d.differ:
        ctx.status = max(ctx.status, EXIT_FAIL)
    sys.stdout.flush()


def _diff_images(ctx: Ctx, ns: Any, image2: str, path2: str) -> None:
    """Both paths in images: the second image gets its own kernel, read-only; messages name
    paths as IMAGE:PATH."""
    from rumpkernel.apps.fsu.main import _spec
    from rumpkernel.apps.fsu.session import open_session

    with open_session(_spec(image2), readonly=True) as other:
        labels = (f"{ctx.session.spec.text}:", f"{other.spec.text}:")
        _compare(ctx, ns, KernelSide(ctx.sys), KernelSide(other.sys), path2, labels)
