"""``KernelPath``: a ``pathlib.PosixPath`` look-alike whose I/O goes to a kernel.

Interface:  ``api.path("/mnt/x")`` (``FileAPI.path``) or ``KernelPath(api, *segments)``.
Pure part (as ``PurePosixPath``): ``/`` joining, ``str``/``os.fspath``, equality and ordering
(within one kernel), ``parts``, ``name``, ``stem``, ``suffix``, ``suffixes``, ``parent``,
``parents``, ``anchor``, ``is_absolute``, ``joinpath``, ``with_name``, ``with_stem``,
``with_suffix``, ``relative_to``, ``is_relative_to``, ``match``.
Concrete part: ``stat``/``lstat``, ``exists``, ``is_dir``, ``is_file``, ``is_symlink``,
``is_fifo``, ``is_block_device``, ``is_char_device``, ``is_socket``, ``samefile``,
``iterdir``, ``glob``/``rglob`` (``*``, ``?``, ``[..]``, ``**``), ``walk``, ``open``,
``read_bytes``/``read_text``/``write_bytes``/``write_text``, ``touch``, ``mkdir(mode,
parents, exist_ok)``, ``rmdir``, ``unlink(missing_ok)``, ``rename``/``replace`` (return the new
path), ``symlink_to``, ``hardlink_to``, ``readlink``, ``chmod``/``lchmod``, ``resolve``,
``absolute``, ``cwd``.
Errors are the host's OSError subclasses, as from pathlib.
"""

from __future__ import annotations

import errno
import fnmatch
import re
import stat as S
from collections.abc import Iterator
from typing import Any

from rumpkernel.client import abi as H
from rumpkernel.kern import abi as K


def _parse(segments: tuple[Any, ...]) -> tuple[str, list[str]]:
    root = ""
    parts: list[str] = []
    for seg in segments:
        if isinstance(seg, KernelPath):
            s = str(seg)
        else:
            s = H.fspath(seg)
            if isinstance(s, bytes):
                raise TypeError("argument should be a str or an os.PathLike object returning "
                                f"str, not {type(seg)!r}")
        if s.startswith("/"):
            root, parts = "/", []
        parts.extend(p for p in s.split("/") if p and p != ".")
    return root, parts


class KernelPath:
    """A path in a kernel's name space (see the module docstring)."""

    __slots__ = ("_api", "_parts", "_root", "_str")

    def __init__(self, api: Any, *segments: Any) -> None:
        self._api = api
        self._root, self._parts = _parse(segments)
        self._str = (self._root + "/".join(self._parts)) or "."

    def _new(self, *segments: Any) -> KernelPath:
        return KernelPath(self._api, *segments)

    @property
    def _sys(self) -> Any:
        return self._api.sys

    # ---- pure path ---------------------------------------------------------------------------
    def __str__(self) -> str:
        return self._str

    def __fspath__(self) -> str:
        return self._str

    def __repr__(self) -> str:
        return f"KernelPath({self._str!r})"

    def __hash__(self) -> int:
        return hash((id(self._api), self._str))

    def _key(self, other: Any) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        if not isinstance(other, KernelPath) or other._api is not self._api:
            return None
        return (self._root, *self._parts), (other._root, *other._parts)

    def __eq__(self, other: object) -> bool:
        k = self._key(other)
        return NotImplemented if k is None else k[0] == k[1]  # type: ignore[return-value]

    def __lt__(self, other: object) -> bool:
        k = self._key(other)
        return NotImplemented if k is None else k[0] < k[1]  # type: ignore[return-value]

    def __le__(self, other: object) -> bool:
        k = self._key(other)
        return NotImplemented if k is None else k[0] <= k[1]  # type: ignore[return-value]

    def __gt__(self, other: object) -> bool:
        k = self._key(other)
        return NotImplemented if k is None else k[0] > k[1]  # type: ignore[return-value]

    def __ge__(self, other: object) -> bool:
        k = self._key(other)
        return NotImplemented if k is None else k[0] >= k[1]  # type: ignore[return-value]

    def __truediv__(self, other: Any) -> KernelPath:
        try:
            return self._new(self, other)
        except TypeError:
            return NotImplemented

    def __rtruediv__(self, other: Any) -> KernelPath:
        try:
            return self._new(other, self)
        except TypeError:
            return NotImplemented

    def joinpath(self, *others: Any) -> KernelPath:
        return self._new(self, *others)

    @property
    def parts(self) -> tuple[str, ...]:
        return ((self._root,) if self._root else ()) + tuple(self._parts)

    @property
    def anchor(self) -> str:
        return self._root

    @property
    def root(self) -> str:
        return self._root

    @property
    def drive(self) -> str:
        return ""

    @property
    def name(self) -> str:
        return self._parts[-1] if self._parts else ""

    @property
    def suffix(self) -> str:
        name = self.name
        i = name.rfind(".")
        return name[i:] if 0 < i < len(name) - 1 else ""

    @property
    def suffixes(self) -> list[str]:
        name = self.name
        if name.endswith("."):
            return []
        name = name.lstrip(".")
        return ["." + s for s in name.split(".")[1:]]

    @property
    def stem(self) -> str:
        name, suffix = self.name, self.suffix
        return name[: len(name) - len(suffix)] if suffix else name

    @property
    def parent(self) -> KernelPath:
        if not self._parts:
            return self
        return self._new(self._root + "/".join(self._parts[:-1]) or ".")

    @property
    def parents(self) -> tuple[KernelPath, ...]:
        out, p = [], self
        while p._parts:
            p = p.parent
            out.append(p)
        return tuple(out)

    def is_absolute(self) -> bool:
        return bool(self._root)

    def with_name(self, name: str) -> KernelPath:
        if not self._parts:
            raise ValueError(f"{self!r} has an empty name")
        if not name or "/" in name or name == ".":
            raise ValueError(f"Invalid name {name!r}")
        return self._new(self.parent, name)

    def with_stem(self, stem: str) -> KernelPath:
        return self.with_name(stem + self.suffix)

    def with_suffix(self, suffix: str) -> KernelPath:
        if suffix and (not suffix.startswith(".") or suffix == "." or "/" in suffix):
            raise ValueError(f"Invalid suffix {suffix!r}")
        if not self.name:
            raise ValueError(f"{self!r} has an empty name")
        return self.with_name(self.stem + suffix)

    def relative_to(self, other: Any) -> KernelPath:
        o = other if isinstance(other, KernelPath) else self._new(other)
        mine, theirs = self.parts, o.parts
        if mine[: len(theirs)] != theirs:
            raise ValueError(f"{str(self)!r} is not in the subpath of {str(o)!r}")
        return self._new(*mine[len(theirs):]) if len(mine) > len(theirs) else self._new(".")

    def is_relative_to(self, other: Any) -> bool:
        try:
            self.relative_to(other)
        except ValueError:
            return False
        return True

    def match(self, pattern: str) -> bool:
        pat = _parse((pattern,))
        pparts = pat[1]
        if pat[0]:
            if not self._root or len(pparts) != len(self._parts):
                return False
        elif len(pparts) > len(self._parts):
            return False
        tail = self._parts[len(self._parts) - len(pparts):]
        return all(fnmatch.fnmatchcase(n, p) for n, p in zip(tail, pparts))

    # ---- status -----------------------------------------------------------------------------
    def stat(self, *, follow_symlinks: bool = True) -> Any:
        return self._sys.stat(self._str, follow_symlinks=follow_symlinks)

    def lstat(self) -> Any:
        return self._sys.lstat(self._str)

    def _mode(self, follow: bool = True) -> int | None:
        try:
            return self.stat(follow_symlinks=follow).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENAMETOOLONG, errno.EBADF):
                return None
            raise
        except ValueError:
            return None

    def exists(self, *, follow_symlinks: bool = True) -> bool:
        return self._mode(follow_symlinks) is not None

    def is_dir(self) -> bool:
        m = self._mode()
        return m is not None and S.S_ISDIR(m)

    def is_file(self) -> bool:
        m = self._mode()
        return m is not None and S.S_ISREG(m)

    def is_symlink(self) -> bool:
        m = self._mode(False)
        return m is not None and S.S_ISLNK(m)

    def is_fifo(self) -> bool:
        m = self._mode()
        return m is not None and S.S_ISFIFO(m)

    def is_socket(self) -> bool:
        m = self._mode()
        return m is not None and S.S_ISSOCK(m)

    def is_block_device(self) -> bool:
        m = self._mode()
        return m is not None and S.S_ISBLK(m)

    def is_char_device(self) -> bool:
        m = self._mode()
        return m is not None and S.S_ISCHR(m)

    def is_mount(self) -> bool:
        try:
            st, pst = self.stat(), self.parent.stat()
        except OSError:
            return False
        return st.st_dev != pst.st_dev or st.st_ino == pst.st_ino

    def samefile(self, other: Any) -> bool:
        st = self.stat()
        o = other.stat() if isinstance(other, KernelPath) else self._sys.stat(other)
        return (st.st_dev, st.st_ino) == (o.st_dev, o.st_ino)

    # ---- directories -----------------------------------------------------------------------
    def iterdir(self) -> Iterator[KernelPath]:
        for name in self._sys.listdir(self._str):
            yield self._new(self, name)

    def glob(self, pattern: str) -> Iterator[KernelPath]:
        if not pattern:
            raise ValueError(f"Unacceptable pattern: {pattern!r}")
        root, parts = _parse((pattern,))
        if root:
            raise NotImplementedError("Non-relative patterns are unsupported")
        yield from self._glob(self, parts)

    def rglob(self, pattern: str) -> Iterator[KernelPath]:
        yield from self.glob("**/" + pattern)

    def _glob(self, base: KernelPath, parts: list[str]) -> Iterator[KernelPath]:
        if not parts:
            yield base
            return
        head, rest = parts[0], parts[1:]
        if head == "**":
            seen: set[str] = set()
            for d in base._walk_dirs():
                for p in self._glob(d, rest):
                    if p._str not in seen:
                        seen.add(p._str)
                        yield p
            return
        if head == "..":
            yield from self._glob(base._new(base, ".."), rest)
            return
        if not any(c in head for c in "*?["):
            p = base._new(base, head)
            if (p.exists() or p.is_symlink()) if not rest else p.is_dir():
                yield from self._glob(p, rest)
            return
        rx = re.compile(fnmatch.translate(head))
        try:
            with self._api.scandir(base._str) as it:
                entries = [e for e in it if rx.match(e.name)
                           and (not e.name.startswith(".") or head.startswith("."))]
        except OSError:
            return
        for e in sorted(entries, key=lambda e: e.name):
            if rest and not _safe_is_dir(e):
                continue
            yield from self._glob(base._new(base, e.name), rest)

    def _walk_dirs(self) -> Iterator[KernelPath]:
        yield self
        try:
            with self._api.scandir(self._str) as it:
                entries = sorted((e for e in it if _safe_is_dir(e, follow=False)),
                                 key=lambda e: e.name)
        except OSError:
            return
        for e in entries:
            yield from self._new(self, e.name)._walk_dirs()

    def walk(self, top_down: bool = True, on_error: Any = None,
             follow_symlinks: bool = False) -> Iterator[tuple[KernelPath, list[str], list[str]]]:
        for dirpath, dirs, files in self._api.walk(self._str, topdown=top_down,
                                                   onerror=on_error, followlinks=follow_symlinks):
            yield self._new(dirpath), dirs, files

    def mkdir(self, mode: int = 0o777, parents: bool = False, exist_ok: bool = False) -> None:
        try:
            self._sys.mkdir(self._str, mode)
        except FileNotFoundError:
            if not parents or self.parent == self:
                raise
            self.parent.mkdir(parents=True, exist_ok=True)
            self.mkdir(mode, parents=False, exist_ok=exist_ok)
        except OSError:
            if not exist_ok or not self.is_dir():
                raise

    def rmdir(self) -> None:
        self._sys.rmdir(self._str)

    # ---- files ------------------------------------------------------------------------------
    def open(self, mode: str = "r", buffering: int = -1, encoding: str | None = None,
             errors: str | None = None, newline: str | None = None) -> Any:
        return self._api.open(self._str, mode, buffering, encoding, errors, newline)

    def read_bytes(self) -> bytes:
        with self.open("rb") as f:
            return f.read()

    def read_text(self, encoding: str | None = None, errors: str | None = None) -> str:
        with self.open("r", encoding=encoding, errors=errors) as f:
            return f.read()

    def write_bytes(self, data: Any) -> int:
        view = memoryview(data)
        with self.open("wb") as f:
            return f.write(view)

    def write_text(self, data: str, encoding: str | None = None, errors: str | None = None,
                   newline: str | None = None) -> int:
        if not isinstance(data, str):
            raise TypeError(f"data must be str, not {type(data).__name__}")
        with self.open("w", encoding=encoding, errors=errors, newline=newline) as f:
            return f.write(data)

    def touch(self, mode: int = 0o666, exist_ok: bool = True) -> None:
        if exist_ok:
            try:
                self._sys.utime(self._str, None)
                return
            except FileNotFoundError:
                pass
        flags = K.O_CREAT | K.O_WRONLY | (0 if exist_ok else K.O_EXCL)
        fd = self._sys.open(self._str, H.open_flags_to_host(flags), mode)
        self._sys.close(fd)

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self._sys.unlink(self._str)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def rename(self, target: Any) -> KernelPath:
        self._sys.rename(self._str, str(target))
        return target if isinstance(target, KernelPath) else self._new(target)

    def replace(self, target: Any) -> KernelPath:
        return self.rename(target)

    def symlink_to(self, target: Any, target_is_directory: bool = False) -> None:
        self._sys.symlink(str(target) if isinstance(target, KernelPath) else target, self._str)

    def hardlink_to(self, target: Any) -> None:
        self._sys.link(str(target), self._str)

    def readlink(self) -> KernelPath:
        return self._new(self._sys.readlink(self._str))

    def chmod(self, mode: int, *, follow_symlinks: bool = True) -> None:
        self._sys.chmod(self._str, mode, follow_symlinks=follow_symlinks)

    def lchmod(self, mode: int) -> None:
        self.chmod(mode, follow_symlinks=False)

    def cwd(self) -> KernelPath:
        return self._new(self._sys.getcwd())

    def absolute(self) -> KernelPath:
        return self if self._root else self._new(self._sys.getcwd(), self)

    def resolve(self, strict: bool = False) -> KernelPath:
        """The absolute path with symlinks and ``..`` resolved (``ELOOP`` after 40 links)."""
        path = self.absolute()
        done: list[str] = []
        todo = list(path._parts)
        hops = 0
        while todo:
            name = todo.pop(0)
            if name == "..":
                if done:
                    done.pop()
                continue
            cand = "/" + "/".join([*done, name])
            try:
                st = self._sys.lstat(cand)
            except OSError:
                if strict:
                    raise
                done.append(name)
                continue
            if S.S_ISLNK(st.st_mode):
                hops += 1
                if hops > 40:
                    raise OSError(errno.ELOOP, "Too many levels of symbolic links", str(self))
                target = self._sys.readlink(cand)
                if target.startswith("/"):
                    done = []
                todo = [p for p in target.split("/") if p and p != "."] + todo
            else:
                done.append(name)
        return self._new("/" + "/".join(done))

    def expanduser(self) -> KernelPath:
        return self


def _safe_is_dir(entry: Any, follow: bool = True) -> bool:
    try:
        return entry.is_dir(follow_symlinks=follow)
    except OSError:
        return False

