"""rump.* tools: ordinary utilities that are remote clients of a rump_server.

Each takes ``-u URL`` (default ``$RUMP_SERVER``):

    rump.halt [-d] [-n]                       halt the kernel (-n: do not flush caches;
                                              -d: ask for a core dump -- recorded, no dump)
    rump.sysctl [-a] [-n] [-w name=value]... [name...]   read / write / list sysctl nodes
    rump.ls [-l] [-a] [path...]               list directories
    rump.cat path...                          copy kernel files to stdout
    rump.cp [-p] SRC... DST                   copy between host and kernel: a kernel path is
                                              written ``rump:/path``, anything else is a host
                                              path (host->kernel, kernel->host, kernel->kernel)
    rump.df [-k] [path...]                    file system usage (all mounts without paths)
    rump.mount [-t type] [-o opts] [-r] DEVICE DIR    mount (DEVICE: an etfs key given to
                                              rump_server -d; ``-t tmpfs tmpfs DIR`` for tmpfs)
    rump.umount [-f] DIR

Also ``python -m rumpkernel.apps.rumptools TOOL args...``.  Exit status 0, or 1 after printing
``rump.TOOL: what: why`` for a failure.
"""

from __future__ import annotations

import argparse
import errno
import os
import stat as st
import sys
import time
from collections.abc import Callable
from typing import Any

from rumpkernel.apps.cli import restore_sigpipe
from rumpkernel.client.remote import RemoteClient, connect

RB_NOSYNC, RB_HALT, RB_DUMP = 0x4, 0x8, 0x100
MNT_RDONLY, MNT_FORCE = 0x1, 0x80000
RUMP_PREFIX = "rump:"
CHUNK = 1 << 20


class ToolError(Exception):
    pass


def _parser(tool: str, desc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"rump.{tool}", description=desc)
    p.add_argument("-u", dest="url", default=None, help="server URL (default $RUMP_SERVER)")
    return p


def _connect(a: argparse.Namespace, tool: str) -> RemoteClient:
    return connect(a.url, progname=f"rump.{tool}", autofork=False)


def _run(tool: str, fn: Callable[[argparse.Namespace, RemoteClient], int],
         a: argparse.Namespace) -> int:
    restore_sigpipe()
    try:
        conn = _connect(a, tool)
    except (OSError, ValueError) as e:
        where = a.url or os.environ.get("RUMP_SERVER")
        what = f"cannot reach the server {where}: " if where else ""
        why = getattr(e, "detail", None)          # the server's reason (full, auth, ...)
        print(f"rump.{tool}: {what}{_describe(e)}{f' ({why})' if why else ''}",
              file=sys.stderr)
        return 1
    try:
        with conn as c:
            return fn(a, c)
    except (OSError, ValueError, ToolError) as e:
        print(f"rump.{tool}: {_describe(e)}", file=sys.stderr)
        return 1


def _describe(e: BaseException) -> str:
    if isinstance(e, OSError) and e.filename is not None:
        return f"{e.filename}: {os.strerror(e.errno) if e.errno else e.strerror}"
    if isinstance(e, OSError) and e.errno:
        return os.strerror(e.errno)
    return str(e)


# ---- rump.halt ----------------------------------------------------------------------------------
def halt_main(argv: list[str] | None = None) -> int:
    p = _parser("halt", "Halt a rump kernel (flush file systems and stop the server).")
    p.add_argument("-d", action="store_true", help="ask for a core dump")
    p.add_argument("-n", action="store_true", help="do not flush file system caches")
    a = p.parse_args(argv)

    def go(a: argparse.Namespace, c: RemoteClient) -> int:
        howto = RB_HALT | (RB_NOSYNC if a.n else 0) | (RB_DUMP if a.d else 0)
        c.sys.reboot(howto)
        return 0
    return _run("halt", go, a)


# ---- rump.sysctl --------------------------------------------------------------------------------
def sysctl_main(argv: list[str] | None = None) -> int:
    p = _parser("sysctl", "Read and write kernel parameters.")
    p.add_argument("-a", action="store_true", help="list every node")
    p.add_argument("-n", action="store_true", help="print values only")
    p.add_argument("-w", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("names", nargs="*")
    a = p.parse_args(argv)

    def show(c: RemoteClient, name: str) -> None:
        v = c.sys.sysctl(name)
        text = str(v).replace("\n", "\n\t") if isinstance(v, str) else str(v)
        print(text if a.n else f"{name} = {text}")

    def go(a: argparse.Namespace, c: RemoteClient) -> int:
        for spec in a.w:
            name, eq, value = spec.partition("=")
            if not eq:
                raise ToolError(f"-w {spec}: expected name=value")
            old = c.sys.sysctl(name)
            new: int | str = int(value, 0) if isinstance(old, int) else value
            c.sys.sysctl(name, new)
            if not a.n:
                print(f"{name}: {old} -> {new}")
        names = list(a.names)
        if a.a or (not names and not a.w):
            names = c.sys.sysctl_names("")
        for name in names:
            try:
                show(c, name)
            except FileNotFoundError:
                under = c.sys.sysctl_names(name + ".")
                if not under:
                    raise ToolError(f"{name}: no such node") from None
                for n in under:
                    show(c, n)
        return 0
    return _run("sysctl", go, a)


# ---- rump.ls ------------------------------------------------------------------------------------
def ls_main(argv: list[str] | None = None) -> int:
    p = _parser("ls", "List kernel directories.")
    p.add_argument("-l", action="store_true", help="long format")
    p.add_argument("-a", action="store_true", help="include names starting with .")
    p.add_argument("paths", nargs="*", default=["/"])
    a = p.parse_args(argv)

    def line(c: RemoteClient, path: str, name: str) -> str:
        if not a.l:
            return name
        s = c.sys.lstat(path)
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(s.st_mtime))
        tail = name
        if st.S_ISLNK(s.st_mode):
            tail += " -> " + c.sys.readlink(path)
        return (f"{st.filemode(s.st_mode)} {s.st_nlink:3d} {s.st_uid:5d} {s.st_gid:5d} "
                f"{s.st_size:10d} {when} {tail}")

    def go(a: argparse.Namespace, c: RemoteClient) -> int:
        status = 0
        for i, path in enumerate(a.paths):
            try:
                s = c.sys.stat(path)
                if not st.S_ISDIR(s.st_mode):
                    print(line(c, path, path))
                    continue
                if len(a.paths) > 1:
                    print(("\n" if i else "") + f"{path}:")
                names = sorted(c.sys.listdir(path))
                if a.a:
                    names = [".", "..", *names]
                for n in names:
                    if n.startswith(".") and not a.a:
                        continue
                    print(line(c, path.rstrip("/") + "/" + n, n))
            except OSError as e:
                print(f"rump.ls: {_describe(e)}", file=sys.stderr)
                status = 1
        return status
    return _run("ls", go, a)


# ---- rump.cat -----------------------------------------------------------------------------------
def cat_main(argv: list[str] | None = None) -> int:
    p = _parser("cat", "Copy kernel files to standard output.")
    p.add_argument("paths", nargs="+")
    a = p.parse_args(argv)

    def go(a: argparse.Namespace, c: RemoteClient) -> int:
        out = sys.stdout.buffer
        for path in a.paths:
            fd = c.sys.open(path, os.O_RDONLY)
            try:
                while True:
                    data = c.sys.read(fd, CHUNK)
                    if not data:
                        break
                    out.write(data)
            finally:
                c.sys.close(fd)
        out.flush()
        return 0
    return _run("cat", go, a)


# ---- rump.cp ------------------------------------------------------------------------------------
class _Side:
    """One end of a copy: the host (``os``) or the kernel (``conn.sys``)."""

    def __init__(self, c: RemoteClient, spec: str) -> None:
        self.kernel = spec.startswith(RUMP_PREFIX)
        self.path = spec[len(RUMP_PREFIX):] if self.kernel else spec
        self.ops: Any = c.sys if self.kernel else os
        if self.kernel and not self.path.startswith("/"):
            self.path = "/" + self.path

    def label(self) -> str:
        return (RUMP_PREFIX if self.kernel else "") + self.path

    def isdir(self) -> bool:
        try:
            return st.S_ISDIR(self.ops.stat(self.path).st_mode)
        except FileNotFoundError:
            return False

    def join(self, name: str) -> _Side:
        other = object.__new__(_Side)
        other.kernel, other.ops = self.kernel, self.ops
        other.path = self.path.rstrip("/") + "/" + name
        return other


def _copy_file(src: _Side, dst: _Side, preserve: bool) -> None:
    s = src.ops.stat(src.path)
    if st.S_ISDIR(s.st_mode):
        raise ToolError(f"{src.label()}: is a directory (not copied)")
    rfd = src.ops.open(src.path, os.O_RDONLY)
    try:
        wfd = dst.ops.open(dst.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, s.st_mode & 0o777)
        try:
            while True:
                data = src.ops.read(rfd, CHUNK)
                if not data:
                    break
                view = memoryview(data)
                while view:
                    view = view[dst.ops.write(wfd, view):]
        finally:
            dst.ops.close(wfd)
    finally:
        src.ops.close(rfd)
    if preserve:
        dst.ops.chmod(dst.path, s.st_mode & 0o7777)
        dst.ops.utime(dst.path, ns=(s.st_atime_ns, s.st_mtime_ns))


def cp_main(argv: list[str] | None = None) -> int:
    p = _parser("cp", "Copy files between the host and the kernel; kernel paths are written "
                "rump:/path.")
    p.add_argument("-p", action="store_true", help="preserve mode and times")
    p.add_argument("operands", nargs="+", metavar="SRC... DST")
    a = p.parse_args(argv)

    def go(a: argparse.Namespace, c: RemoteClient) -> int:
        if len(a.operands) < 2:
            raise ToolError("need a source and a destination")
        srcs = [_Side(c, s) for s in a.operands[:-1]]
        dst = _Side(c, a.operands[-1])
        into = dst.isdir()
        if len(srcs) > 1 and not into:
            raise ToolError(f"{dst.label()}: not a directory")
        for src in srcs:
            target = dst.join(os.path.basename(src.path.rstrip("/"))) if into else dst
            _copy_file(src, target, a.p)
        return 0
    return _run("cp", go, a)


# ---- rump.df ------------------------------------------------------------------------------------
def _mounts(c: RemoteClient) -> list[tuple[int, str, str, str]]:
    out = []
    for ln in str(c.sys.sysctl("vfs.mounts")).splitlines():
        mid, fstype, source, mode = ln.split(" ", 3)
        out.append((int(mid), fstype, source, mode))
    return out


def _mount_points(c: RemoteClient, want: set[int], limit: int = 4000) -> dict[int, str]:
    """Find each mount's directory: breadth-first from /, a directory whose st_dev differs from
    its parent's is the root of the mount with that id."""
    found = {c.sys.stat("/").st_dev: "/"}
    queue = ["/"]
    seen = 0
    while queue and not want <= set(found) and seen < limit:
        d = queue.pop(0)
        try:
            names = c.sys.listdir(d)
            pdev = c.sys.stat(d).st_dev
        except OSError:
            continue
        for n in names:
            path = d.rstrip("/") + "/" + n
            seen += 1
            try:
                s = c.sys.lstat(path)
            except OSError:
                continue
            if st.S_ISDIR(s.st_mode):
                if s.st_dev != pdev:
                    found.setdefault(s.st_dev, path)
                queue.append(path)
    return found


def df_main(argv: list[str] | None = None) -> int:
    p = _parser("df", "File system usage.")
    p.add_argument("-k", action="store_true", help="1024-byte blocks (the default)")
    p.add_argument("paths", nargs="*")
    a = p.parse_args(argv)

    def go(a: argparse.Namespace, c: RemoteClient) -> int:
        mounts = _mounts(c)
        by_id = {m[0]: m for m in mounts}
        if a.paths:
            rows = [(c.sys.stat(path).st_dev, path) for path in a.paths]
            where = {dev: None for dev, _ in rows}
            where.update(_mount_points(c, set(where)))
            rows = [(dev, where.get(dev) or path) for dev, path in rows]
        else:
            where = _mount_points(c, set(by_id))
            rows = [(m[0], where[m[0]]) for m in mounts if m[0] in where]
        print(f"{'Filesystem':<16} {'Type':<7} {'1K-blocks':>10} {'Used':>10} {'Avail':>10} "
              f"{'Cap':>4}  Mounted on")
        for dev, mnt in rows:
            sv = c.sys.statvfs(mnt)
            k = sv.f_frsize / 1024
            total, free, avail = sv.f_blocks * k, sv.f_bfree * k, sv.f_bavail * k
            used = total - free
            cap = f"{100 * used / (used + avail):.0f}%" if used + avail else "-"
            _, fstype, source, _ = by_id.get(dev, (dev, "?", "?", ""))
            print(f"{source:<16} {fstype:<7} {int(total):>10} {int(used):>10} {int(avail):>10} "
                  f"{cap:>4}  {mnt}")
        return 0
    return _run("df", go, a)


# ---- rump.mount / rump.umount ---------------------------------------------------------------
PROBE_ORDER = ("ext2", "msdos")


def mount_main(argv: list[str] | None = None) -> int:
    p = _parser("mount", "Mount a file system; DEVICE is an etfs key registered with "
                "rump_server -d (or 'tmpfs' with -t tmpfs).  DIR is created when missing (a "
                "fresh kernel's root is empty).  Without arguments: list mounts.")
    p.add_argument("-t", dest="fstype", help="file system type (default: try ext2, msdos)")
    p.add_argument("-o", dest="options", default="", help="options, e.g. ro,uid=5")
    p.add_argument("-r", action="store_true", help="read-only")
    p.add_argument("device", nargs="?")
    p.add_argument("dir", nargs="?")
    a = p.parse_args(argv)

    def go(a: argparse.Namespace, c: RemoteClient) -> int:
        if a.device is None:
            where = _mount_points(c, {m[0] for m in _mounts(c)})
            for mid, fstype, source, mode in _mounts(c):
                print(f"{source} on {where.get(mid, '?')} type {fstype} ({mode})")
            return 0
        if a.dir is None:
            raise ToolError("need DEVICE and DIR")
        c.makedirs(a.dir, exist_ok=True)
        opts = [o for o in a.options.split(",") if o]
        flags = MNT_RDONLY if a.r else 0
        types = [a.fstype] if a.fstype else list(PROBE_ORDER)
        if (a.fstype or "") != "tmpfs":
            opts.append(f"from={a.device}")
        last: OSError | None = None
        for t in types:
            try:
                c.sys.mount(t, a.dir, flags, ",".join(opts))
                return 0
            except OSError as e:
                last = e
                if a.fstype or e.errno not in (errno.EINVAL, errno.EUCLEAN, errno.ENODEV):
                    raise
        assert last is not None
        raise ToolError(f"{a.device}: no file system recognised ({', '.join(types)}): "
                        f"{_describe(last)}")
    return _run("mount", go, a)


def umount_main(argv: list[str] | None = None) -> int:
    p = _parser("umount", "Unmount a file system.")
    p.add_argument("-f", action="store_true", help="force")
    p.add_argument("dirs", nargs="+")
    a = p.parse_args(argv)

    def go(a: argparse.Namespace, c: RemoteClient) -> int:
        for d in a.dirs:
            c.sys.unmount(d, MNT_FORCE if a.f else 0)
        return 0
    return _run("umount", go, a)


TOOLS: dict[str, Callable[[list[str] | None], int]] = {
    "halt": halt_main, "sysctl": sysctl_main, "ls": ls_main, "cat": cat_main, "cp": cp_main,
    "df": df_main, "mount": mount_main, "umount": umount_main,
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0].removeprefix("rump.") not in TOOLS:
        print(f"usage: python -m rumpkernel.apps.rumptools {{{','.join(TOOLS)}}} ...",
              file=sys.stderr)
        return 2
    return TOOLS[argv[0].removeprefix("rump.")](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
