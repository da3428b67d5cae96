"""What every fsu subcommand shares: the command context (messages, exit status, output),
number and mode formatting, owner names, and usage errors.

Interface:
    Ctx(prog, session)          ``err(path, exc_or_reason, status=1)``, ``warn(msg)``,
                                ``out`` (text stdout), ``bout`` (binary stdout), ``status``,
                                ``json(obj)``, ``names`` (owner names, see Names)
    Usage(message)              raised for a command-line mistake (exit status 2)
    Trouble(message)            raised when the image cannot be used at all (exit status 2)
    human(n), filemode(mode), fmt_time(ns), reason(exc)
    Names(files)                uid/gid <-> name, from the image's /etc/passwd and /etc/group
                                first, then the host's databases

Exit status (as coreutils): 0 success, 1 an operand failed, 2 usage errors and trouble
(the image missing or unreadable); ``ls`` uses 2 for a missing command-line operand, ``diff``
1 for "different".
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import stat
import sys
import time
from typing import Any, NoReturn

EXIT_OK, EXIT_FAIL, EXIT_TROUBLE = 0, 1, 2


class Usage(Exception):
    """A command-line mistake; the message is printed after ``prog:``."""


class Trouble(Exception):
    """The image (or the kernel) cannot be used at all."""


def _columns() -> int:
    """The terminal width as argparse wants it, without importing shutil (which brings bz2,
    lzma and fnmatch: milliseconds of start-up for every one-shot command)."""
    try:
        return int(os.environ["COLUMNS"]) - 2
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns - 2  # type: ignore[union-attr]
    except (AttributeError, OSError, ValueError):
        return 78


class HelpFormatter(argparse.HelpFormatter):
    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position, width or _columns())


class RawHelpFormatter(argparse.RawDescriptionHelpFormatter, HelpFormatter):
    """Descriptions and epilogs kept as written (option lists, examples)."""


class ArgParser(argparse.ArgumentParser):
    """argparse that raises Usage instead of exiting, so batch mode survives mistakes."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        kw.setdefault("formatter_class", HelpFormatter)
        super().__init__(*a, **kw)

    def error(self, message: str) -> NoReturn:
        raise Usage(f"{message}\n{self.format_usage().rstrip()}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise SystemExit(status)


def reason(exc: BaseException | str, path: Any = None) -> str:
    """The reason part of a message: the host's words for the errno, then the kernel's own
    detail in parentheses when it says more than they do ("No space left on device (ext: no
    free inodes)", "Operation not permitted (msdos has no symbolic links)").  Details that only
    repeat the errno's words or a name already in ``path`` are dropped; a message of our own
    (one not starting with the errno's words) is kept whole."""
    if isinstance(exc, str):
        return exc
    if isinstance(exc, OSError) and exc.errno:
        std = os.strerror(exc.errno)
        text = exc.strerror or std
        if not text.startswith(std):
            return text
        detail = text[len(std):].strip()
        if detail.startswith("(") and detail.endswith(")"):
            detail = detail[1:-1].strip()
        if detail and not _repeats(detail, std, path):
            return f"{std} ({detail})"
        return std
    return str(exc) or type(exc).__name__


def _repeats(detail: str, std: str, path: Any) -> bool:
    low = detail.lower().rstrip(".")
    if low == std.lower() or low in std.lower():
        return True
    if path in (None, ""):
        return False
    text = os.fsdecode(path)
    parts = {p for p in text.split("/") if p}
    return detail in parts or detail.strip("'\"") in parts or detail == text


def human(n: float) -> str:
    """Sizes as ``ls -h`` / ``du -h`` print them: powers of 1024, rounded up, one decimal
    below 10 (``1.0K``, ``4.5M``, ``12G``)."""
    if n < 1024:
        return str(int(n))
    v = float(n)
    for unit in "KMGTPE":
        v /= 1024
        if v < 10:
            tenths = math.ceil(v * 10 - 1e-9)
            return f"{tenths / 10:.1f}{unit}" if tenths < 100 else f"10{unit}"
        whole = math.ceil(v - 1e-9)
        if whole < 1024 or unit == "E":
            return f"{whole}{unit}"
    return str(int(n))  # pragma: no cover


def filemode(mode: int) -> str:
    return stat.filemode(mode)


def fmt_time(ns: int, *, full: bool = False, now: float | None = None) -> str:
    """``ls -l`` dates: ``Mon dd HH:MM`` within six months of now, else ``Mon dd  YYYY``;
    ``full`` gives ``stat``'s ``YYYY-MM-DD HH:MM:SS.nnnnnnnnn +zzzz``."""
    secs = ns // 1_000_000_000
    try:
        t = time.localtime(secs)
    except (OverflowError, OSError, ValueError):
        return str(secs)
    if full:
        return time.strftime("%Y-%m-%d %H:%M:%S", t) + f".{ns % 1_000_000_000:09d} " + \
            time.strftime("%z", t)
    now = time.time() if now is None else now
    if now - 182 * 86400 < secs < now + 3600:
        return time.strftime("%b %e %H:%M", t)
    return time.strftime("%b %e  %Y", t)


class Names:
    """Owner names for an image: its own /etc/passwd and /etc/group when it has them (a root
    file system image), else the host's user database."""

    def __init__(self, files: Any) -> None:
        self.files = files
        self._db: dict[str, tuple[dict[int, str], dict[str, int]]] = {}

    def _load(self, which: str) -> tuple[dict[int, str], dict[str, int]]:
        if which not in self._db:
            by_id: dict[int, str] = {}
            by_name: dict[str, int] = {}
            try:
                with self.files.open(f"/etc/{which}", "r", encoding="utf-8",
                                     errors="replace") as f:
                    for line in f:
                        parts = line.rstrip("\n").split(":")
                        if len(parts) >= 3 and parts[2].isdigit():
                            by_id.setdefault(int(parts[2]), parts[0])
                            by_name.setdefault(parts[0], int(parts[2]))
            except (OSError, ValueError):
                pass
            self._db[which] = (by_id, by_name)
        return self._db[which]

    def user(self, uid: int) -> str:
        name = self._load("passwd")[0].get(uid)
        if name is None:
            try:
                import pwd

                name = pwd.getpwuid(uid).pw_name
            except (KeyError, ImportError):
                name = str(uid)
        return name

    def group(self, gid: int) -> str:
        name = self._load("group")[0].get(gid)
        if name is None:
            try:
                import grp

                name = grp.getgrgid(gid).gr_name
            except (KeyError, ImportError):
                name = str(gid)
        return name

    def uid(self, name: str) -> int:
        if name.isdigit():
            return int(name)
        v = self._load("passwd")[1].get(name)
        if v is None:
            try:
                import pwd

                v = pwd.getpwnam(name).pw_uid
            except (KeyError, ImportError):
                raise Usage(f"invalid user: {name!r}") from None
        return v

    def gid(self, name: str) -> int:
        if name.isdigit():
            return int(name)
        v = self._load("group")[1].get(name)
        if v is None:
            try:
                import grp

                v = grp.getgrnam(name).gr_gid
            except (KeyError, ImportError):
                raise Usage(f"invalid group: {name!r}") from None
        return v


class Ctx:
    """One command's run: where messages and output go, and the exit status so far."""

    def __init__(self, prog: str, session: Any = None, *, verbose: bool = False) -> None:
        self.prog = prog
        self.session = session
        self.status = EXIT_OK
        self.verbose = verbose
        self.batch = False  # a line of a script: standard input is the script
        self.image: Any = getattr(session, "spec", None)
        self.out = sys.stdout
        self._names: Names | None = None

    @property
    def files(self) -> Any:
        return self.session.files

    @property
    def sys(self) -> Any:
        return self.session.sys

    def cwd(self) -> str:
        """The working directory in the image ("/" unless a script or the prompt did cd)."""
        try:
            return str(self.session.sys.getcwd())
        except (OSError, AttributeError):
            return "/"

    @property
    def names(self) -> Names:
        if self._names is None:
            self._names = Names(self.session.files)
        return self._names

    @property
    def bout(self) -> Any:
        self.out.flush()
        return sys.stdout.buffer

    def err(self, path: Any, exc: BaseException | str, status: int = EXIT_FAIL) -> None:
        """``prog: path: reason`` on stderr (see ``reason``; ``-v`` gives the kernel's words
        unedited); the exit status becomes at least ``status``."""
        msg = reason(exc, path)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            msg = self._nospace(msg)
        elif isinstance(exc, OSError) and exc.errno == errno.EROFS:
            why = getattr(self.session, "ro_reason", None)
            if why:
                msg = f"{os.strerror(errno.EROFS)} (the image was mounted read-only: {why})"
        if self.verbose and isinstance(exc, OSError) and exc.strerror and \
                exc.strerror != msg and exc.strerror.startswith(msg.split(" (")[0]):
            msg = exc.strerror
        where = f"{os.fsdecode(path)}: " if path not in (None, "") else ""
        sys.stderr.write(f"{self.prog}: {where}{msg}\n")
        self.status = max(self.status, status)

    def _nospace(self, msg: str) -> str:
        """Say which of blocks or inodes ran out, from the file system's own counts."""
        if "inode" in msg or "block" in msg or self.session is None:
            return msg
        try:
            v = self.session.sys.statvfs("/")
        except (OSError, AttributeError):
            return msg
        if v.f_files and not v.f_ffree:
            return f"{msg} (no free inodes: all {v.f_files} are in use)"
        if not v.f_bavail:
            return f"{msg} (no free blocks)"
        return msg

    def warn(self, msg: str) -> None:
        sys.stderr.write(f"{self.prog}: {msg}\n")

    def json(self, obj: Any) -> None:
        import json

        json.dump(obj, self.out, indent=2, sort_keys=False, default=str)
        self.out.write("\n")


def stat_dict(path: str, st: os.stat_result, names: Names | None = None,
              target: str | None = None) -> dict[str, Any]:
    """A stat result as the JSON object ``ls --json`` and ``stat --json`` print."""
    d: dict[str, Any] = {
        "path": path, "name": os.path.basename(path.rstrip("/")) or "/",
        "type": file_type(st.st_mode), "mode": stat.S_IMODE(st.st_mode),
        "mode_string": stat.filemode(st.st_mode), "ino": st.st_ino, "nlink": st.st_nlink,
        "uid": st.st_uid, "gid": st.st_gid, "size": st.st_size,
        "blocks": st.st_blocks, "atime_ns": st.st_atime_ns, "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
        "mtime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.st_mtime_ns // 10**9)),
    }
    if names is not None:
        d["user"], d["group"] = names.user(st.st_uid), names.group(st.st_gid)
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        d["rdev"] = [os.major(st.st_rdev), os.minor(st.st_rdev)]
    if target is not None:
        d["target"] = target
    return d


_TYPES = [(stat.S_ISREG, "file"), (stat.S_ISDIR, "directory"), (stat.S_ISLNK, "symlink"),
          (stat.S_ISCHR, "char device"), (stat.S_ISBLK, "block device"),
          (stat.S_ISFIFO, "fifo"), (stat.S_ISSOCK, "socket")]


def file_type(mode: int) -> str:
    for test, name in _TYPES:
        if test(mode):
            return name
    return "unknown"


def join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name if base != "/" else "/" + name


def require_absolute(path: str) -> str:
    if not path.startswith("/"):
        raise Usage(f"{path}: paths inside the image are absolute (start with /)")
    return path


def is_enoent(e: OSError) -> bool:
    return e.errno in (errno.ENOENT, errno.ENOTDIR)
