"""The vnode-operation table: every operation a file system driver may implement, declared once.

This is the Python counterpart of NetBSD's ``vnode_if.src``.  ``vfs/vnode_if.py`` (the driver base
class ``FileSystem``) is generated from it by ``python -m rumpkernel.testing.codegen``, and a test
regenerates and diffs it.

Calling conventions every operation shares:
- ``node`` / ``dnode`` are the driver's own node objects (whatever ``vget`` returns; they carry an
  ``ino`` attribute).  ``dnode`` is always a directory.  ``name`` is one path component as
  ``bytes``: never empty, never ``.`` or ``..`` for operations that create or remove, never
  containing ``/`` or NUL, at most ``features.name_max`` bytes (the VFS checks all of that).
- The VFS holds the mount's lock around every call, so a driver needs no locking of its own.
- The VFS has already done permission checks, read-only checks (EROFS) and type checks
  (ENOTDIR/EISDIR, directory rename rules); a driver reports only what it alone can know:
  ENOENT, EEXIST, ENOTEMPTY, ENOSPC, EMLINK, EFBIG, corruption (EUCLEAN/EIO).
- Failure is ``raise KernelError(Errno.X)``.  An unimplemented operation raises EOPNOTSUPP.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

from rumpkernel.kern.codegen import header


@dataclass(frozen=True, slots=True)
class VOp:
    name: str
    args: tuple[tuple[str, str], ...]
    returns: str
    modifies: bool
    doc: str


def _a(spec: str) -> tuple[tuple[str, str], ...]:
    out = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, typ = (x.strip() for x in part.split(":"))
        out.append((name, typ))
    return tuple(out)


VOPS: tuple[VOp, ...] = (
    VOp("vget", _a("ino: int"), "Node", False,
        "Return the node for inode ``ino`` (load it from disk). EUCLEAN/EIO if it is corrupt, "
        "ENOENT if ``ino`` is out of range or unallocated."),
    VOp("reclaim", _a("node: Node"), "None", False,
        "The VFS forgets ``node`` (evicted from the vnode cache); drop any in-memory state."),
    VOp("inactive", _a("node: Node"), "None", False,
        "The last open reference to ``node`` went away.  If its link count is 0, free it now "
        "(this is how unlinked-but-open files are deleted)."),
    VOp("getattr", _a("node: Node"), "VAttr", False, "Return the node's attributes."),
    VOp("setattr", _a("node: Node, changes: SetAttr"), "None", True,
        "Apply ``changes`` (``None`` fields untouched); ``size`` truncates or extends with zeros, "
        "freeing blocks past the new end.  Update ctime."),
    VOp("lookup", _a("dnode: Node, name: bytes"), "int", False,
        "Return the inode number of ``name`` in ``dnode`` (``.`` and ``..`` included). ENOENT."),
    VOp("create", _a("dnode: Node, name: bytes, mode: int, uid: int, gid: int, rdev: int"),
        "int", True,
        "Create a non-directory, non-symlink node (``mode`` has S_IFREG, S_IFIFO, S_IFCHR, "
        "S_IFBLK or S_IFSOCK) and return its inode number. EEXIST, ENOSPC."),
    VOp("mkdir", _a("dnode: Node, name: bytes, mode: int, uid: int, gid: int"), "int", True,
        "Create a directory (with ``.`` and ``..``), return its inode number. EEXIST, EMLINK."),
    VOp("symlink", _a("dnode: Node, name: bytes, target: bytes, uid: int, gid: int"),
        "int", True, "Create a symbolic link to ``target`` and return its inode number."),
    VOp("link", _a("dnode: Node, name: bytes, node: Node"), "None", True,
        "Add a hard link ``name`` to non-directory ``node``. EEXIST, EMLINK."),
    VOp("unlink", _a("dnode: Node, name: bytes, node: Node"), "None", True,
        "Remove entry ``name`` (a non-directory ``node``); decrement its link count.  Do not free "
        "it: ``inactive`` does that when the last reference goes."),
    VOp("rmdir", _a("dnode: Node, name: bytes, node: Node"), "None", True,
        "Remove the empty directory ``node`` named ``name``. ENOTEMPTY."),
    VOp("rename",
        _a("sdnode: Node, sname: bytes, snode: Node, tdnode: Node, tname: bytes, "
           "tnode: Node | None"),
        "None", True,
        "Atomically move ``sname`` to ``tname``, replacing ``tnode`` if given (the VFS has "
        "checked type compatibility and that a directory is not moved under itself).  A moved "
        "directory's ``..`` must be updated.  ENOTEMPTY if ``tnode`` is a non-empty directory."),
    VOp("readlink", _a("node: Node"), "bytes", False, "Return a symlink's target."),
    VOp("read", _a("node: Node, offset: int, size: int"), "bytes", False,
        "Return up to ``size`` bytes at ``offset`` (short only at end of file; holes read as "
        "zeros)."),
    VOp("write", _a("node: Node, offset: int, data: bytes"), "int", True,
        "Write ``data`` at ``offset``, extending the file as needed; return bytes written. "
        "ENOSPC (write nothing, or a prefix and return its length), EFBIG.  Update mtime/ctime."),
    VOp("readdir", _a("dnode: Node, cookie: int"), "list[DirEnt]", False,
        "Return the next batch of entries starting at ``cookie`` (0 = start, ``.`` and ``..`` "
        "first); an empty list at the end.  Cookies stay valid across removal of other entries."),
    VOp("fsync", _a("node: Node, datasync: bool"), "None", False,
        "Write the node's dirty data (and metadata unless ``datasync``) to the device."),
    VOp("seek_data", _a("node: Node, offset: int"), "int", False,
        "First data offset >= ``offset``.  ENXIO past end of file.  Default: ``offset``."),
    VOp("seek_hole", _a("node: Node, offset: int"), "int", False,
        "First hole offset >= ``offset`` (end of file counts as a hole).  Default: file size."),
    VOp("getxattr", _a("node: Node, name: bytes"), "bytes", False,
        "Return an extended attribute (name includes its namespace, e.g. b'user.x'). ENOATTR."),
    VOp("setxattr", _a("node: Node, name: bytes, value: bytes, flags: int"), "None", True,
        "Set an extended attribute; ``flags`` is XATTR_CREATE (1) or XATTR_REPLACE (2) or 0."),
    VOp("listxattr", _a("node: Node"), "list[bytes]", False, "Names of extended attributes."),
    VOp("removexattr", _a("node: Node, name: bytes"), "None", True,
        "Remove an extended attribute. ENOATTR."),
    VOp("statfs", (), "StatFS", False, "File system statistics."),
    VOp("sync", (), "None", False,
        "Write every dirty buffer and the superblock to the device (the mount stays usable)."),
    VOp("unmount", (), "None", False,
        "Flush everything and mark the file system clean.  Called once; no call follows."),
)

# Operations with a useful generic default instead of EOPNOTSUPP.
_DEFAULTS = {
    "reclaim": "return None",
    "inactive": "return None",
    "fsync": "self.sync()",
    "sync": "return None",
    "unmount": "self.sync()",
    "seek_data": (
        "if offset >= self.getattr(node).size:\n"
        "            raise KernelError(Errno.ENXIO)\n"
        "        return offset"
    ),
    "seek_hole": (
        "size = self.getattr(node).size\n"
        "        if offset >= size:\n"
        "            raise KernelError(Errno.ENXIO)\n"
        "        return size"
    ),
    "listxattr": "return []",
    "getxattr": "raise KernelError(Errno.ENOATTR)",
}

MODIFYING = frozenset(v.name for v in VOPS if v.modifies)


def render() -> str:
    head = [
        header("rumpkernel.vfs.vnode_table"),
        '"""The driver base class ``FileSystem``: one method per vnode operation in\n'
        "``vnode_table.VOPS``.  A driver subclasses it and overrides what it supports.\n"
        '"""\n\n'
        "from __future__ import annotations\n\n"
        "from typing import Any, ClassVar\n\n"
        "from rumpkernel.kern.errno import Errno, KernelError\n"
        "from rumpkernel.vfs.vattr import DirEnt, FsFeatures, SetAttr, StatFS, VAttr\n\n"
        "Node = Any\n\n"
        "MODIFYING_OPS = frozenset(\n    {\n"
        + "".join(f"        {n!r},\n" for n in sorted(MODIFYING))
        + "    }\n)\n\n\n"
        "class FileSystem:\n"
        '    """A mounted file system instance.  Set ``root_ino`` and ``features`` in the\n'
        "    constructor; ``readonly`` is True when the driver can only read this image.\n"
        '    """\n\n'
        "    root_ino: int = 2\n"
        "    readonly: bool = False\n"
        "    features: ClassVar[FsFeatures] = FsFeatures()\n"
        '    label: str = ""\n'
        '    fstype: str = ""\n',
    ]
    out = ["".join(head)]
    for op in VOPS:
        params = "".join(f", {n}: {t}" for n, t in op.args)
        sig = f"    def {op.name}(self{params}) -> {op.returns}:"
        if len(sig) > 100:
            inner = "".join(f"        {n}: {t},\n" for n, t in op.args)
            sig = f"    def {op.name}(\n        self,\n{inner}    ) -> {op.returns}:"
        body = _DEFAULTS.get(op.name, "raise KernelError(Errno.EOPNOTSUPP)")
        doc = textwrap.fill(op.doc, 88, initial_indent="", subsequent_indent="        ")
        out.append(f'\n{sig}\n        """{doc}\n        """\n        {body}\n')
    out.append(
        "\n    def info(self) -> dict[str, object]:\n"
        '        """Free-form facts for ``fsu info`` (features, UUID, state...)."""\n'
        "        return {}\n"
    )
    return "".join(out)
