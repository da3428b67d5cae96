"""The source tree of ``fsu makefs``: scanned from a host directory, merged with an mtree spec.

Interface:
    Node                 one file system object to create (kind, mode, owner, times, size,
                         symlink target, device number, host file with the contents, hard-link
                         identity, children)
    scan(root, *, follow_symlinks=False, warn) -> dict[str, Node]
        relative path ("" for the root) -> Node, parents before children, names in byte order
    apply_spec(nodes, spec, root, *, exclude_unlisted, users) -> dict[str, Node]
        NetBSD makefs -F semantics: a spec entry overrides an existing node's attributes
        (a type conflict is an error); a spec entry with no node creates one (``optional``
        ones are skipped; regular files are empty unless ``contents=``); ``-x`` drops nodes
        the spec does not list
    owners_and_times(nodes, *, keep_owner, fixed_ns, clamp_ns)

Rules: sockets are skipped with a warning; with ``follow_symlinks`` (FAT, which has no
symbolic links) a link is replaced by what it points to, and a dangling or looping one is
skipped with a warning.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

KINDS = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "link",
         stat.S_IFCHR: "char", stat.S_IFBLK: "block", stat.S_IFIFO: "fifo",
         stat.S_IFSOCK: "socket"}
IFMT = {v: k for k, v in KINDS.items()}


class TreeError(Exception):
    pass


@dataclass
class Node:
    rel: str
    kind: str
    mode: int
    uid: int = 0
    gid: int = 0
    size: int = 0
    atime_ns: int = 0
    mtime_ns: int = 0
    rdev: int = 0
    target: str | None = None
    host: str | None = None
    link_key: tuple[int, int] | None = None
    src_uid: int = 0
    src_gid: int = 0
    children: list[str] = field(default_factory=list)
    owner_set: bool = False
    time_set: bool = False
    data: int | None = None  # bytes a sparse file's data takes (None: all of ``size``)

    @property
    def name(self) -> str:
        return self.rel.rsplit("/", 1)[-1]


def _key(name: str) -> bytes:
    return os.fsencode(name)


def _node(rel: str, host: str, st: os.stat_result) -> Node:
    kind = KINDS.get(stat.S_IFMT(st.st_mode), "socket")
    n = Node(rel, kind, stat.S_IMODE(st.st_mode), size=st.st_size if kind == "file" else 0,
             atime_ns=st.st_atime_ns, mtime_ns=st.st_mtime_ns, src_uid=st.st_uid,
             src_gid=st.st_gid)
    if kind in ("char", "block"):
        n.rdev = st.st_rdev
    if kind == "file":
        n.host = host
        if st.st_blocks * 512 < st.st_size:
            n.data = st.st_blocks * 512
        if st.st_nlink > 1:
            n.link_key = (st.st_dev, st.st_ino)
    return n


def resolve_inside(root: str, path: str, limit: int = 40) -> str | None:
    """Where the symlink ``path`` leads when ``root`` is taken as ``/`` (as it will be in the
    image): absolute targets start at ``root``, ``..`` never leaves it.  None for a dangling
    link or a loop."""
    root = os.path.abspath(root)
    rel = os.path.relpath(os.path.abspath(path), root).split(os.sep)
    done: list[str] = []
    todo = [p for p in rel if p not in ("", ".")]
    hops = 0
    while todo:
        name = todo.pop(0)
        if name == "..":
            if done:
                done.pop()
            continue
        cand = os.path.join(root, *done, name)
        try:
            st = os.lstat(cand)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > limit:
                return None
            target = os.readlink(cand)
            if target.startswith("/"):
                done = []
            todo = [p for p in target.split("/") if p not in ("", ".")] + todo
        else:
            done.append(name)
    return os.path.join(root, *done)


def scan(root: str, *, follow_symlinks: bool = False,
         warn: Callable[[str], None] = lambda m: None) -> dict[str, Node]:
    try:
        st = os.stat(root)
    except OSError as e:
        raise TreeError(f"{root}: {os.strerror(e.errno or 0)}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise TreeError(f"{root}: Not a directory")
    nodes: dict[str, Node] = {"": _node("", root, st)}
    active = {(st.st_dev, st.st_ino)}
    _scan_dir(root, "", nodes, follow_symlinks, warn, active, root)
    return nodes


def _scan_dir(host: str, rel: str, nodes: dict[str, Node], follow: bool,
              warn: Callable[[str], None], active: set[tuple[int, int]], top: str) -> None:
    try:
        names = sorted(os.listdir(host), key=_key)
    except OSError as e:
        raise TreeError(f"{host}: {os.strerror(e.errno or 0)}") from None
    parent = nodes[rel]
    for name in names:
        path = os.path.join(host, name)
        crel = f"{rel}/{name}" if rel else name
        try:
            st = os.lstat(path)
            if follow and stat.S_ISLNK(st.st_mode):
                real = resolve_inside(top, path)
                try:
                    if real is None:
                        raise FileNotFoundError
                    st = os.stat(real)
                except OSError:
                    warn(f"{path}: dangling symbolic link skipped (the file system has no "
                         "symbolic links)")
                    continue
                warn(f"{path}: symbolic link stored as a copy of its target (the file system "
                     "has no symbolic links)")
                path = real
        except OSError as e:
            raise TreeError(f"{path}: {os.strerror(e.errno or 0)}") from None
        node = _node(crel, path, st)
        if node.kind == "socket":
            warn(f"{path}: socket skipped")
            continue
        if node.kind == "link":
            node.target = os.readlink(path)
        if follow and node.link_key is not None:
            node.link_key = None  # FAT has no hard links: each name gets its own copy
        nodes[crel] = node
        parent.children.append(name)
        if node.kind == "dir":
            key = (st.st_dev, st.st_ino)
            if key in active:
                warn(f"{path}: directory loop through a symbolic link skipped")
                del nodes[crel]
                parent.children.pop()
                continue
            active.add(key)
            _scan_dir(path, crel, nodes, follow, warn, active, top)
            active.discard(key)


# ---- mtree specs ------------------------------------------------------------------------------
def _ids(kw: dict[str, str], users: Any, where: str) -> tuple[int | None, int | None]:
    uid = gid = None
    try:
        if "uid" in kw:
            uid = int(kw["uid"])
        elif "uname" in kw:
            uid = users.uid(kw["uname"])
        if "gid" in kw:
            gid = int(kw["gid"])
        elif "gname" in kw:
            gid = users.gid(kw["gname"])
    except ValueError as e:
        raise TreeError(f"{where}: {e}") from None
    return uid, gid


def _device(text: str, where: str) -> int:
    parts = text.split(",")
    try:
        if len(parts) == 1:
            return int(parts[0], 0)
        major, minor = int(parts[-2], 0), int(parts[-1], 0)
    except ValueError:
        raise TreeError(f"{where}: bad device {text!r} (major,minor or format,major,minor)"
                        ) from None
    return os.makedev(major, minor)


def _time(text: str, where: str) -> int:
    sec, _, frac = text.partition(".")
    try:
        return int(sec) * 10**9 + (int(frac.ljust(9, "0")[:9]) if frac else 0)
    except ValueError:
        raise TreeError(f"{where}: bad time {text!r}") from None


def _apply(node: Node, kw: dict[str, str], users: Any, where: str) -> None:
    if "mode" in kw:
        try:
            node.mode = int(kw["mode"], 8) & 0o7777
        except ValueError:
            raise TreeError(f"{where}: bad mode {kw['mode']!r} (octal)") from None
    uid, gid = _ids(kw, users, where)
    if uid is not None:
        node.uid, node.owner_set = uid, True
        node.src_uid = uid
    if gid is not None:
        node.gid, node.owner_set = gid, True
        node.src_gid = gid
    if "time" in kw:
        node.mtime_ns = node.atime_ns = _time(kw["time"], where)
        node.time_set = True
    if "link" in kw and node.kind == "link":
        from rumpkernel.apps.fsu.mtree import unvis

        node.target = unvis(kw["link"])
    if "device" in kw and node.kind in ("char", "block"):
        node.rdev = _device(kw["device"], where)


def apply_spec(nodes: dict[str, Node], spec: dict[str, dict[str, str]], root: str, *,
               exclude_unlisted: bool, users: Any) -> dict[str, Node]:
    for path in spec:
        rel = "" if path == "." else path
        kw = spec[path]
        where = f"spec entry {path!r}"
        if "ignore" in kw or ("nochange" in kw and rel in nodes):
            continue
        node = nodes.get(rel)
        if node is not None:
            if "type" in kw and kw["type"] != node.kind:
                raise TreeError(f"{where}: type {kw['type']} but {os.path.join(root, rel)} is "
                                f"a {node.kind}")
            _apply(node, kw, users, where)
            continue
        if "optional" in kw:
            continue
        _create(nodes, rel, kw, root, users, where)
    if exclude_unlisted:
        listed = {"" if p == "." else p for p in spec}
        for rel in [r for r in nodes if r and r not in listed]:
            parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
            del nodes[rel]
            if parent in nodes:
                nodes[parent].children.remove(rel.rsplit("/", 1)[-1])
    return _ordered(nodes)


def _create(nodes: dict[str, Node], rel: str, kw: dict[str, str], root: str, users: Any,
            where: str) -> None:
    kind = kw.get("type")
    if kind is None:
        raise TreeError(f"{where}: not in {root} and has no type=")
    if kind == "socket":
        return
    parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
    if parent not in nodes or nodes[parent].kind != "dir":
        raise TreeError(f"{where}: parent directory {parent or '.'!r} does not exist")
    if kind == "link" and "link" not in kw:
        raise TreeError(f"{where}: a symbolic link needs link=")
    if kind in ("char", "block") and "device" not in kw:
        raise TreeError(f"{where}: a device node needs device=")
    node = Node(rel, kind, 0o755 if kind == "dir" else 0o644)
    if kind == "file" and "contents" in kw:
        src = kw["contents"] if os.path.isabs(kw["contents"]) else \
            os.path.join(root, kw["contents"])
        try:
            node.size = os.stat(src).st_size
        except OSError as e:
            raise TreeError(f"{where}: contents {src}: {os.strerror(e.errno or 0)}") from None
        node.host = src
    _apply(node, kw, users, where)
    nodes[rel] = node
    nodes[parent].children.append(node.name)
    nodes[parent].children.sort(key=_key)


def _ordered(nodes: dict[str, Node]) -> dict[str, Node]:
    out: dict[str, Node] = {}

    def visit(rel: str) -> None:
        out[rel] = nodes[rel]
        n = nodes[rel]
        if n.kind == "dir":
            for name in n.children:
                visit(f"{rel}/{name}" if rel else name)
    visit("")
    return out


def owners_and_times(nodes: dict[str, Node], *, keep_owner: bool, fixed_ns: int | None,
                     clamp_ns: int | None) -> None:
    for n in nodes.values():
        if not n.owner_set:
            n.uid, n.gid = (n.src_uid, n.src_gid) if keep_owner else (0, 0)
        if fixed_ns is not None and not n.time_set:
            n.atime_ns = n.mtime_ns = fixed_ns
        elif clamp_ns is not None:
            n.atime_ns = min(n.atime_ns, clamp_ns)
            n.mtime_ns = min(n.mtime_ns, clamp_ns)
