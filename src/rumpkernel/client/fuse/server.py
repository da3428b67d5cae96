"""The FUSE file server (p2k): FUSE requests in, kernel system calls out, replies back.

Sans-IO: ``FuseServer.handle(request, worker)`` takes the bytes of one request and returns the
bytes of its reply (``None`` for requests that have none); the host loop that reads and writes
``/dev/fuse`` lives in ``hypercall/fusedev``.  Several worker threads may call ``handle`` at once.

Inodes are kernel vnodes.  Every FUSE node is an O_PATH descriptor in the server's kernel
process: a vnode reference that FUSE's lookup count keeps alive (lookup/create/mkdir/... add
one, FORGET removes them; the descriptor closes at zero), so hard links are one node, a file
unlinked while the host still uses it stays readable, and inode numbers are the kernel's.
Requests map to system calls on those handles:

    LOOKUP      openat(parent, name, O_PATH|O_NOFOLLOW) + fstat        (EEXIST-free: one node
                per (device, inode); a second handle on a known file is closed again)
    GETATTR     fstat(handle)          SETATTR  ftruncate / fchownat / fchmodat / utimensat
                                                 (AT_EMPTY_PATH), truncate through reopen
    OPEN        reopen(handle, flags)  CREATE   openat(O_CREAT) + reopen(fd, O_PATH)
    READ/WRITE  pread/pwrite on the open file; RELEASE closes it; FLUSH is ENOSYS (nothing is
                buffered here, so the host stops sending it)
    MKNOD/MKDIR/SYMLINK/LINK/UNLINK/RMDIR/RENAME(2)   the *at calls on parent handles
    READDIR     getdents on an open directory, entries buffered per handle
    STATFS, FSYNC(DIR), ACCESS, *XATTR, LSEEK (SEEK_DATA/SEEK_HOLE)
    FALLOCATE   EOPNOTSUPP (no driver preallocates); locks ENOSYS (the host locks locally)

Each request runs as its caller (``worker.caller(uid, gid, groups)``).  Supplementary groups
come from the host only when needed (``groups_of(pid)``): a request refused with EACCES/EPERM
by a caller with a partial group list is retried once with the full one (every refused
operation changed nothing), and a chmod setting set-group-id asks first.

Interface:
    Config(...)                                  timeouts, cache policy, ownership overrides
    FuseServer(kernel, config, groups_of, lock)  .handle(req, worker) / .close(worker)
                                                 / .stats() / .destroyed
"""

from __future__ import annotations

import contextlib
import errno
import struct
from dataclasses import dataclass
from typing import Any

from rumpkernel.client import abi as H
from rumpkernel.client.fuse import proto as P
from rumpkernel.client.fuse.proto import Op
from rumpkernel.kern import abi as K
from rumpkernel.kern.syscall.structs import STAT, STATVFS, TIMESPEC, iter_dirents

AT_FDCWD = K.AT_FDCWD
EMPTY = K.AT_EMPTY_PATH
HANDLE = K.O_PATH | K.O_NOFOLLOW | K.O_CLOEXEC
STAT_SIZE = STAT.size
GETDENTS_SIZE = 65536
XATTR_MAX = 65536
ENOENT, EACCES, EPERM = errno.ENOENT, errno.EACCES, errno.EPERM

# host open(2) bits a FUSE OPEN/CREATE may carry that the kernel does not take: the host kernel
# has done O_CREAT/O_EXCL/O_NOCTTY; O_LARGEFILE/O_DIRECT/FASYNC/FMODE_EXEC mean nothing here
_OPEN_KNOWN = H.open_flags_to_host(K.O_NONBLOCK | K.O_APPEND | K.O_SYNC | K.O_DSYNC | K.O_TRUNC
                                   | K.O_NOFOLLOW | K.O_DIRECTORY | K.O_NOATIME) | 3


@dataclass(frozen=True)
class Config:
    """Cache and presentation policy (see docs/fuse.md for why each is safe).

    entry_ttl / attr_ttl / negative_ttl   seconds the host may cache names, attributes and
                                          "no such name"
    exclusive       only this mount changes the file system (the kernel is this process's):
                    the host keeps file pages across opens, caches symlink targets and
                    directory listings, and the server remembers which xattrs a file lacks.
                    False (a shared, remote kernel): pages are kept only while a file's size
                    and times are unchanged since it was last opened (and AUTO_INVAL_DATA)
    uid / gid / umask   shown instead of the file's own (rump_mount -o uid=,gid=,umask=)
    max_write       largest WRITE accepted (and READ asked for), bytes
    chown_new       give new files their caller as owner (a remote kernel runs requests as
                    root)
    """

    entry_ttl: float = 1.0
    attr_ttl: float = 1.0
    negative_ttl: float = 1.0
    exclusive: bool = True
    uid: int | None = None
    gid: int | None = None
    umask: int = 0
    max_write: int = 1 << 20
    chown_new: bool = False


class Node:
    __slots__ = ("fd", "key", "nlookup", "nodeid", "noxattr", "stamp", "xgen")

    def __init__(self, nodeid: int, fd: int, key: tuple[int, int]) -> None:
        self.nodeid = nodeid
        self.fd = fd
        self.key = key
        self.nlookup = 1
        self.stamp: tuple[int, int, int] | None = None
        self.noxattr: frozenset[bytes] = frozenset()   # names known absent (exclusive mode)
        self.xgen = 0                                   # bumped by every xattr change


class DirHandle:
    """An open directory: entries read ahead from getdents, with the offset of the first."""

    __slots__ = ("base", "pending")

    def __init__(self) -> None:
        self.base = -1
        self.pending: list[tuple[bytes, int, int, int]] = []


class Request:
    __slots__ = ("body", "gid", "groups", "nodeid", "opcode", "pid", "uid", "unique")

    def __init__(self, data: memoryview) -> None:
        if len(data) < P.IN_HEADER.size:
            raise P.ProtocolError("short request")
        (_ln, self.opcode, self.unique, self.nodeid, self.uid, self.gid, self.pid, _e,
         _p) = P.IN_HEADER.unpack_from(data)
        self.body = data[P.IN_HEADER.size:]
        self.groups: tuple[int, ...] | None = None


def _kstat(buf: bytearray) -> tuple[int, ...]:
    return STAT.unpack(buf)


class FuseServer:
    def __init__(self, kernel: Any, config: Config, groups_of: Any, lock: Any) -> None:
        self.kernel = kernel
        self.cfg = config
        self.groups_of = groups_of
        self.lock = lock
        root = Node(P.ROOT_ID, kernel.root_fd, (-1, -1))
        root.nlookup = 1 << 62              # never forgotten
        self.nodes: dict[int, Node] = {P.ROOT_ID: root}
        self.bykey: dict[tuple[int, int], Node] = {}
        self.dirs: dict[int, DirHandle] = {}
        self.next_id = P.ROOT_ID + 1
        self.destroyed = False
        self.initialised = False
        self.proto_minor = 0
        self.counts: dict[int, int] = {}
        self._root_key_known = False
        self.handlers = {
            Op.LOOKUP: self.lookup, Op.GETATTR: self.getattr, Op.SETATTR: self.setattr,
            Op.READLINK: self.readlink, Op.SYMLINK: self.symlink, Op.MKNOD: self.mknod,
            Op.MKDIR: self.mkdir, Op.UNLINK: self.unlink, Op.RMDIR: self.rmdir,
            Op.RENAME: self.rename, Op.RENAME2: self.rename2, Op.LINK: self.link,
            Op.OPEN: self.open, Op.READ: self.read, Op.WRITE: self.write,
            Op.STATFS: self.statfs, Op.RELEASE: self.release, Op.FSYNC: self.fsync,
            Op.SETXATTR: self.setxattr, Op.GETXATTR: self.getxattr,
            Op.LISTXATTR: self.listxattr, Op.REMOVEXATTR: self.removexattr,
            Op.OPENDIR: self.opendir, Op.READDIR: self.readdir,
            Op.RELEASEDIR: self.releasedir, Op.FSYNCDIR: self.fsync, Op.ACCESS: self.access,
            Op.CREATE: self.create, Op.LSEEK: self.lseek, Op.FALLOCATE: self.fallocate,
            Op.INIT: self.init, Op.DESTROY: self.destroy,
        }

    # ---- dispatch -------------------------------------------------------------------------------
    def handle(self, data: memoryview | bytes, worker: Any) -> bytes | memoryview | None:
        """One request to its reply.  Raises only what must stop the server (a kernel panic,
        a bug here)."""
        try:
            req = Request(memoryview(data))
        except P.ProtocolError:
            return None                       # not even a header: nothing to answer
        op = req.opcode
        self.counts[op] = self.counts.get(op, 0) + 1
        if op == Op.FORGET or op == Op.BATCH_FORGET:
            with contextlib.suppress(P.ProtocolError, struct.error):
                if op == Op.FORGET:
                    self.forget_one(worker, req.nodeid, P.FORGET_IN.unpack_from(req.body)[0])
                else:
                    self.batch_forget(req, worker)
            return None
        if op == Op.INTERRUPT:
            return None                       # every call here runs to completion
        handler = self.handlers.get(op)
        if handler is None:
            return P.error(req.unique, errno.ENOSYS)
        try:
            try:
                return handler(req, worker)
            except OSError as e:
                if e.errno in (EACCES, EPERM) and self._may_retry(req):
                    return handler(req, worker)
                raise
        except OSError as e:
            return P.error(req.unique, e.errno or errno.EIO)
        except (P.ProtocolError, struct.error):   # a request too short for its opcode
            return P.error(req.unique, errno.EINVAL)

    def _may_retry(self, req: Request) -> bool:
        """Fetch the caller's supplementary groups once; True when a retry can differ."""
        if req.groups is not None or req.uid == 0 or self.kernel.remote:
            return False
        req.groups = self.groups_of(req.pid, req.gid)
        return bool(set(req.groups) - {req.gid})

    def _as(self, req: Request, worker: Any) -> Any:
        return worker.caller(req.uid, req.gid, req.groups or ())

    # ---- nodes ---------------------------------------------------------------------------------
    def node_fd(self, nodeid: int) -> int:
        node = self.nodes.get(nodeid)
        if node is None:
            raise OSError(errno.ESTALE, "unknown node")
        return node.fd

    def _remember(self, worker: Any, fd: int, st: tuple[int, ...]) -> Node:
        """The node for handle ``fd`` (a new lookup reference); a duplicate handle is closed."""
        key = (st[0], st[1])
        with self.lock:
            node = self.bykey.get(key)
            if node is not None:
                node.nlookup += 1
                dup = True
            else:
                node = Node(self.next_id, fd, key)
                self.next_id += 1
                self.nodes[node.nodeid] = node
                self.bykey[key] = node
                dup = False
        if dup:
            worker.sys.sys_close(fd)
        return node

    def forget_one(self, worker: Any, nodeid: int, n: int) -> None:
        with self.lock:
            node = self.nodes.get(nodeid)
            if node is None or nodeid == P.ROOT_ID:
                return
            node.nlookup -= n
            if node.nlookup > 0:
                return
            del self.nodes[nodeid]
            if self.bykey.get(node.key) is node:
                del self.bykey[node.key]
        worker.sys.sys_close(node.fd)

    def batch_forget(self, req: Request, worker: Any) -> None:
        count, _ = P.BATCH_FORGET_IN.unpack_from(req.body)
        body = req.body
        pos = P.BATCH_FORGET_IN.size
        for _ in range(min(count, (len(body) - pos) // P.FORGET_ONE.size)):
            nodeid, n = P.FORGET_ONE.unpack_from(body, pos)
            pos += P.FORGET_ONE.size
            self.forget_one(worker, nodeid, n)

    def _fstat(self, sys: Any, fd: int) -> tuple[int, ...]:
        buf = bytearray(STAT_SIZE)
        sys.sys_fstat(fd, buf)
        return STAT.unpack(buf)

    def _attr(self, st: tuple[int, ...]) -> bytes:
        c = self.cfg
        return P.attr_bytes(st, c.uid, c.gid, c.umask)

    def _entry(self, worker: Any, fd: int) -> bytes:
        """Entry reply for the new handle ``fd`` (taken over by a node)."""
        try:
            st = self._fstat(worker.sys, fd)
        except BaseException:
            worker.sys.sys_close(fd)
            raise
        node = self._remember(worker, fd, st)
        c = self.cfg
        return P.entry(node.nodeid, 0, self._attr(st), c.entry_ttl, c.attr_ttl)

    def _lookup_fd(self, req: Request, worker: Any, parent: int, name: bytes) -> int:
        with self._as(req, worker):
            return worker.sys.sys_openat(parent, name, HANDLE, 0)

    def _new_entry(self, req: Request, worker: Any, pfd: int, name: bytes) -> bytes:
        """After creating ``name`` in ``pfd``: its entry (and, for a remote kernel, its
        owner set to the caller)."""
        fd = self._lookup_fd(req, worker, pfd, name)
        if self.cfg.chown_new and (req.uid or req.gid):
            try:
                self._give_to_caller(req, worker, fd, pfd)
            except BaseException:
                worker.sys.sys_close(fd)
                raise
        return P.reply(req.unique, self._entry(worker, fd))

    def _give_to_caller(self, req: Request, worker: Any, fd: int, pfd: int) -> None:
        parent = self._fstat(worker.sys, pfd)
        gid = -1 if parent[2] & K.S_ISGID else req.gid      # a set-gid directory's group
        worker.sys.sys_fchownat(fd, b"", req.uid, gid, EMPTY | K.AT_SYMLINK_NOFOLLOW)

    # ---- INIT / DESTROY -------------------------------------------------------------------------
    def init(self, req: Request, worker: Any) -> bytes:
        got = P.InitIn.parse(req.body)
        if got.major != P.KERNEL_VERSION:
            return P.reply(req.unique, P.InitOut(P.KERNEL_VERSION, P.KERNEL_MINOR, 0, 0, 0, 0,
                                                 0, 0, 0).emit()[:8])
        minor = min(got.minor, P.KERNEL_MINOR)
        if minor < P.MIN_MINOR:
            return P.error(req.unique, errno.EPROTO)
        want = (P.ASYNC_READ | P.ATOMIC_O_TRUNC | P.BIG_WRITES | P.PARALLEL_DIROPS
                | P.HANDLE_KILLPRIV | P.MAX_PAGES | P.ASYNC_DIO)   # not ABORT_ERROR: a dead
        # server must leave ENOTCONN, what users and scripts know
        if self.cfg.exclusive:
            want |= P.CACHE_SYMLINKS
        else:
            want |= P.AUTO_INVAL_DATA
        flags = got.flags & want
        max_pages = self.cfg.max_write // 4096
        self.proto_minor = minor
        self.initialised = True
        out = P.InitOut(P.KERNEL_VERSION, minor, got.max_readahead, flags, 16, 12,
                        self.cfg.max_write, 1, max_pages)
        return P.reply(req.unique, out.emit())

    def destroy(self, req: Request, worker: Any) -> bytes:
        self.destroyed = True
        return P.reply(req.unique)

    # ---- names ----------------------------------------------------------------------------------
    def lookup(self, req: Request, worker: Any) -> bytes:
        name, _ = P.cstring(req.body)
        pfd = self.node_fd(req.nodeid)
        try:
            fd = self._lookup_fd(req, worker, pfd, name)
        except OSError as e:
            if e.errno == ENOENT and self.cfg.negative_ttl > 0:
                return P.reply(req.unique, P.negative_entry(self.cfg.negative_ttl))
            raise
        return P.reply(req.unique, self._entry(worker, fd))

    def mknod(self, req: Request, worker: Any) -> bytes:
        mode, rdev, _umask, _ = P.MKNOD_IN.unpack_from(req.body)
        name, _ = P.cstring(req.body, P.MKNOD_IN.size)
        pfd = self.node_fd(req.nodeid)
        kdev = K.makedev(*P.host_dev_to_kernel(rdev))
        with self._as(req, worker):
            worker.sys.sys_mknodat(pfd, name, mode, kdev)
        return self._new_entry(req, worker, pfd, name)

    def mkdir(self, req: Request, worker: Any) -> bytes:
        mode, _umask = P.MKDIR_IN.unpack_from(req.body)
        name, _ = P.cstring(req.body, P.MKDIR_IN.size)
        pfd = self.node_fd(req.nodeid)
        with self._as(req, worker):
            worker.sys.sys_mkdirat(pfd, name, mode)
        return self._new_entry(req, worker, pfd, name)

    def symlink(self, req: Request, worker: Any) -> bytes:
        name, pos = P.cstring(req.body)
        target, _ = _target(req.body, pos)
        pfd = self.node_fd(req.nodeid)
        with self._as(req, worker):
            worker.sys.sys_symlinkat(target, pfd, name)
        return self._new_entry(req, worker, pfd, name)

    def link(self, req: Request, worker: Any) -> bytes:
        (old,) = P.LINK_IN.unpack_from(req.body)
        name, _ = P.cstring(req.body, P.LINK_IN.size)
        pfd, ofd = self.node_fd(req.nodeid), self.node_fd(old)
        with self._as(req, worker):
            worker.sys.sys_linkat(ofd, b"", pfd, name, EMPTY)
        return P.reply(req.unique, self._entry(worker, self._lookup_fd(req, worker, pfd, name)))

    def unlink(self, req: Request, worker: Any) -> bytes:
        name, _ = P.cstring(req.body)
        with self._as(req, worker):
            worker.sys.sys_unlinkat(self.node_fd(req.nodeid), name, 0)
        return P.reply(req.unique)

    def rmdir(self, req: Request, worker: Any) -> bytes:
        name, _ = P.cstring(req.body)
        with self._as(req, worker):
            worker.sys.sys_unlinkat(self.node_fd(req.nodeid), name, K.AT_REMOVEDIR)
        return P.reply(req.unique)

    def rename(self, req: Request, worker: Any) -> bytes:
        (newdir,) = P.RENAME_IN.unpack_from(req.body)
        return self._rename(req, worker, newdir, 0, P.RENAME_IN.size)

    def rename2(self, req: Request, worker: Any) -> bytes:
        newdir, flags, _ = P.RENAME2_IN.unpack_from(req.body)
        return self._rename(req, worker, newdir, flags, P.RENAME2_IN.size)

    def _rename(self, req: Request, worker: Any, newdir: int, flags: int, pos: int) -> bytes:
        old, pos = P.cstring(req.body, pos)
        new, _ = P.cstring(req.body, pos)
        sfd, tfd = self.node_fd(req.nodeid), self.node_fd(newdir)
        with self._as(req, worker):
            if flags:
                worker.sys.sys_renameat2(sfd, old, tfd, new, flags)
            else:
                worker.sys.sys_renameat(sfd, old, tfd, new)
        return P.reply(req.unique)

    def readlink(self, req: Request, worker: Any) -> bytes:
        buf = bytearray(K.PATH_MAX)
        n = worker.sys.sys_readlinkat(self.node_fd(req.nodeid), b"", buf, len(buf))
        return P.reply(req.unique, bytes(buf[:n]))

    # ---- attributes -----------------------------------------------------------------------------
    def getattr(self, req: Request, worker: Any) -> bytes:
        st = self._fstat(worker.sys, self.node_fd(req.nodeid))
        return P.reply(req.unique, P.attr_out(self._attr(st), self.cfg.attr_ttl))

    def setattr(self, req: Request, worker: Any) -> bytes:
        (valid, _, fh, size, _lo, atime, mtime, _ct, ansec, mnsec, _cn, mode, _u4, uid, gid,
         _u5) = P.SETATTR_IN.unpack_from(req.body)
        fd = self.node_fd(req.nodeid)
        sys = worker.sys
        if valid & P.FATTR_MODE and mode & K.S_ISGID and req.uid and req.groups is None:
            req.groups = self.groups_of(req.pid, req.gid)   # chmod g+s needs the group list
        with self._as(req, worker):
            if valid & P.FATTR_SIZE:
                self._truncate(sys, fd, fh if valid & P.FATTR_FH else -1, size)
            if valid & (P.FATTR_UID | P.FATTR_GID):
                sys.sys_fchownat(fd, b"", uid if valid & P.FATTR_UID else -1,
                                 gid if valid & P.FATTR_GID else -1,
                                 EMPTY | K.AT_SYMLINK_NOFOLLOW)
            if valid & P.FATTR_MODE:
                sys.sys_fchmodat(fd, b"", mode & 0o7777, EMPTY)
            if valid & (P.FATTR_ATIME | P.FATTR_MTIME | P.FATTR_ATIME_NOW | P.FATTR_MTIME_NOW):
                times = (_time(valid, P.FATTR_ATIME, P.FATTR_ATIME_NOW, atime, ansec)
                         + _time(valid, P.FATTR_MTIME, P.FATTR_MTIME_NOW, mtime, mnsec))
                sys.sys_utimensat(fd, b"", times, EMPTY | K.AT_SYMLINK_NOFOLLOW)
        return self.getattr(req, worker)

    def _truncate(self, sys: Any, fd: int, fh: int, size: int) -> None:
        if size >= 1 << 63:
            raise OSError(errno.EFBIG, "file too large")
        if fh >= 0:
            sys.sys_ftruncate(fh, size)
            return
        wfd = sys.sys_reopen(fd, K.O_WRONLY | K.O_CLOEXEC)   # truncate(2) needs write access
        try:
            sys.sys_ftruncate(wfd, size)
        finally:
            sys.sys_close(wfd)

    def access(self, req: Request, worker: Any) -> bytes:
        mask, _ = P.ACCESS_IN.unpack_from(req.body)
        with self._as(req, worker):
            worker.sys.sys_faccessat(self.node_fd(req.nodeid), b"", mask & 7, EMPTY)
        return P.reply(req.unique)

    def statfs(self, req: Request, worker: Any) -> bytes:
        buf = bytearray(STATVFS.size)
        worker.sys.sys_fstatvfs(self.node_fd(req.nodeid), buf)
        (bsize, frsize, blocks, bfree, bavail, files, ffree, _favail, _fsid, _flag,
         namemax) = STATVFS.unpack(buf)
        return P.reply(req.unique, P.statfs_out(blocks, bfree, bavail, files, ffree, bsize,
                                                namemax, frsize))

    # ---- extended attributes ------------------------------------------------------------------
    def setxattr(self, req: Request, worker: Any) -> bytes:
        size, flags = P.SETXATTR_IN.unpack_from(req.body)
        name, pos = P.cstring(req.body, P.SETXATTR_IN.size)
        value = req.body[pos:pos + size]
        if len(value) != size:
            raise P.ProtocolError("short xattr value")
        fd = self._forget_absent_xattrs(req.nodeid)
        with self._as(req, worker):
            worker.sys.sys_setxattrat(fd, b"", name, value, size, EMPTY | (flags & 3))
        return P.reply(req.unique)

    def _forget_absent_xattrs(self, nodeid: int) -> int:
        node = self.nodes.get(nodeid)
        if node is None:
            raise OSError(errno.ESTALE, "unknown node")
        with self.lock:
            node.noxattr = frozenset()
            node.xgen += 1
        return node.fd

    def getxattr(self, req: Request, worker: Any) -> bytes:
        """Every write(2) on the host first asks for security.capability: in exclusive mode a
        name found absent is remembered until the node's xattrs change (through us)."""
        size, _ = P.GETXATTR_IN.unpack_from(req.body)
        name, _ = P.cstring(req.body, P.GETXATTR_IN.size)
        node = self.nodes.get(req.nodeid)
        if node is None:
            raise OSError(errno.ESTALE, "unknown node")
        if name in node.noxattr:
            return P.error(req.unique, errno.ENODATA)
        gen = node.xgen
        try:
            return self._getxattr(req, worker, node.fd, name, size)
        except OSError as e:
            if e.errno == errno.ENODATA and self.cfg.exclusive:
                with self.lock:               # not if a set/remove ran meanwhile
                    if node.xgen == gen and len(node.noxattr) < 8:
                        node.noxattr = node.noxattr | {name}
            raise

    def _getxattr(self, req: Request, worker: Any, fd: int, name: bytes, size: int) -> bytes:
        with self._as(req, worker):
            if size == 0:
                n = worker.sys.sys_getxattrat(fd, b"", name, None, 0, EMPTY)
                return P.reply(req.unique, P.XATTR_SIZE_OUT.pack(n, 0))
            buf = bytearray(min(size, XATTR_MAX))
            n = worker.sys.sys_getxattrat(fd, b"", name, buf, len(buf), EMPTY)
        return P.reply(req.unique, bytes(buf[:n]))

    def listxattr(self, req: Request, worker: Any) -> bytes:
        size, _ = P.GETXATTR_IN.unpack_from(req.body)
        fd = self.node_fd(req.nodeid)
        with self._as(req, worker):
            if size == 0:
                n = worker.sys.sys_listxattrat(fd, b"", None, 0, EMPTY)
                return P.reply(req.unique, P.XATTR_SIZE_OUT.pack(n, 0))
            buf = bytearray(min(size, XATTR_MAX))
            n = worker.sys.sys_listxattrat(fd, b"", buf, len(buf), EMPTY)
        return P.reply(req.unique, bytes(buf[:n]))

    def removexattr(self, req: Request, worker: Any) -> bytes:
        name, _ = P.cstring(req.body)
        fd = self._forget_absent_xattrs(req.nodeid)
        with self._as(req, worker):
            worker.sys.sys_removexattrat(fd, b"", name, EMPTY)
        return P.reply(req.unique)

    # ---- files --------------------------------------------------------------------------------
    def _open_flags(self, hflags: int) -> int:
        return H.open_flags_to_kernel(hflags & _OPEN_KNOWN) | K.O_CLOEXEC

    def _open_reply(self, worker: Any, node: Node, fh: int, isdir: bool) -> bytes:
        flags = 0
        if self.cfg.exclusive:
            flags = P.FOPEN_KEEP_CACHE
        elif not isdir:
            st = self._fstat(worker.sys, fh)
            stamp = (st[7], st[9], st[10])
            if stamp == node.stamp:
                flags = P.FOPEN_KEEP_CACHE
            node.stamp = stamp
        if isdir and self.cfg.exclusive:
            flags |= P.FOPEN_CACHE_DIR | P.FOPEN_KEEP_CACHE
        return P.OPEN_OUT.pack(fh, flags, 0)

    def open(self, req: Request, worker: Any) -> bytes:
        hflags, _ = P.OPEN_IN.unpack_from(req.body)
        node = self.nodes.get(req.nodeid)
        if node is None:
            raise OSError(errno.ESTALE, "unknown node")
        with self._as(req, worker):
            fh = worker.sys.sys_reopen(node.fd, self._open_flags(hflags))
        return P.reply(req.unique, self._open_reply(worker, node, fh, False))

    def create(self, req: Request, worker: Any) -> bytes:
        hflags, mode, _umask, _ = P.CREATE_IN.unpack_from(req.body)
        name, _ = P.cstring(req.body, P.CREATE_IN.size)
        pfd = self.node_fd(req.nodeid)
        sys = worker.sys
        with self._as(req, worker):
            fh = sys.sys_openat(pfd, name, self._open_flags(hflags) | K.O_CREAT, mode)
        try:
            h = sys.sys_reopen(fh, HANDLE)
            if self.cfg.chown_new and (req.uid or req.gid):
                self._give_to_caller(req, worker, h, pfd)
            entry = self._entry(worker, h)
        except BaseException:
            sys.sys_close(fh)
            raise
        node = self.nodes[P.ENTRY_HEAD.unpack_from(entry)[0]]
        node.stamp = None
        return P.reply(req.unique, entry + self._open_reply(worker, node, fh, False))

    def read(self, req: Request, worker: Any) -> memoryview | bytes:
        fh, off, size, _ = P.READ_IN.unpack_from(req.body)
        buf = worker.reply_buffer(16 + size)
        mv = memoryview(buf)
        n = worker.sys.sys_pread(fh, mv[16:16 + size], size, off)
        P.OUT_HEADER.pack_into(buf, 0, 16 + n, 0, req.unique)
        return mv[:16 + n]

    def write(self, req: Request, worker: Any) -> bytes:
        fh, off, size, _wflags, _lo, _fl, _ = P.WRITE_IN.unpack_from(req.body)
        data = req.body[P.WRITE_IN.size:P.WRITE_IN.size + size]
        if len(data) != size:
            raise P.ProtocolError("short write payload")
        with self._as(req, worker):          # the writer's ids decide set-id clearing
            n = worker.sys.sys_pwrite(fh, data, size, off)
        return P.reply(req.unique, P.WRITE_OUT.pack(n, 0))

    def release(self, req: Request, worker: Any) -> bytes:
        fh, _flags, _rf, _lo = P.RELEASE_IN.unpack_from(req.body)
        if not self.cfg.exclusive and _flags & 3:
            node = self.nodes.get(req.nodeid)
            if node is not None:
                st = self._fstat(worker.sys, fh)
                node.stamp = (st[7], st[9], st[10])   # our own writes keep the cache valid
        worker.sys.sys_close(fh)
        return P.reply(req.unique)

    def fsync(self, req: Request, worker: Any) -> bytes:
        fh, flags, _ = P.FSYNC_IN.unpack_from(req.body)
        if flags & P.FSYNC_FDATASYNC:
            worker.sys.sys_fdatasync(fh)
        else:
            worker.sys.sys_fsync(fh)
        return P.reply(req.unique)

    def lseek(self, req: Request, worker: Any) -> bytes:
        fh, off, whence, _ = P.LSEEK_IN.unpack_from(req.body)
        if whence not in (K.SEEK_DATA, K.SEEK_HOLE):
            raise OSError(errno.EINVAL, "lseek: only SEEK_DATA/SEEK_HOLE come here")
        return P.reply(req.unique, P.LSEEK_OUT.pack(worker.sys.sys_lseek(fh, off, whence)))

    def fallocate(self, req: Request, worker: Any) -> bytes:
        P.FALLOCATE_IN.unpack_from(req.body)
        return P.error(req.unique, errno.EOPNOTSUPP)

    # ---- directories ----------------------------------------------------------------------------
    def opendir(self, req: Request, worker: Any) -> bytes:
        node = self.nodes.get(req.nodeid)
        if node is None:
            raise OSError(errno.ESTALE, "unknown node")
        with self._as(req, worker):
            fh = worker.sys.sys_reopen(node.fd, K.O_RDONLY | K.O_DIRECTORY | K.O_CLOEXEC)
        with self.lock:
            self.dirs[fh] = DirHandle()
        return P.reply(req.unique, self._open_reply(worker, node, fh, True))

    def readdir(self, req: Request, worker: Any) -> bytes:
        fh, off, size, _ = P.READ_IN.unpack_from(req.body)
        dh = self.dirs.get(fh)
        if dh is None:
            raise OSError(errno.EBADF, "unknown directory handle")
        sys = worker.sys
        if off != dh.base:
            sys.sys_lseek(fh, off, K.SEEK_SET)
            dh.pending = []
            dh.base = off
        out: list[bytes] = []
        used = 0
        while True:
            if not dh.pending:
                dh.pending = self._getdents(sys, fh)
                if not dh.pending:
                    break
            name, ino, dtype, nxt = dh.pending[0]
            rec = P.dirent_size(len(name))
            if used + rec > size:
                break
            out.append(P.dirent(ino, nxt, dtype, name))
            used += rec
            dh.pending.pop(0)
            dh.base = nxt
        return P.reply(req.unique, b"".join(out))

    def _getdents(self, sys: Any, fh: int) -> list[tuple[bytes, int, int, int]]:
        buf = bytearray(GETDENTS_SIZE)
        n = sys.sys_getdents(fh, buf, GETDENTS_SIZE)
        return [(name, ino, dtype, off) for ino, off, dtype, name in iter_dirents(buf[:n])]

    def releasedir(self, req: Request, worker: Any) -> bytes:
        fh, _flags, _rf, _lo = P.RELEASE_IN.unpack_from(req.body)
        with self.lock:
            self.dirs.pop(fh, None)
        worker.sys.sys_close(fh)
        return P.reply(req.unique)

    # ---- the end -------------------------------------------------------------------------------
    def close(self, worker: Any) -> None:
        """Close every handle except the root's (which the kernel side owns)."""
        with self.lock:
            fds = [n.fd for n in self.nodes.values() if n.nodeid != P.ROOT_ID]
            fds += list(self.dirs)
            self.nodes = {P.ROOT_ID: self.nodes[P.ROOT_ID]}
            self.bykey.clear()
            self.dirs.clear()
        for fd in fds:
            try:
                worker.sys.sys_close(fd)
            except OSError:
                pass

    def stats(self) -> dict[str, Any]:
        return {"nodes": len(self.nodes) - 1, "open_dirs": len(self.dirs),
                "requests": {Op(k).name if k in Op._value2member_map_ else str(k): v
                             for k, v in sorted(self.counts.items())}}


def _target(body: memoryview, pos: int) -> tuple[bytes, int]:
    raw = bytes(body[pos:])
    nul = raw.find(b"\0")
    if nul <= 0:
        raise P.ProtocolError("bad symlink target")
    return raw[:nul], pos + nul + 1


def _time(valid: int, bit: int, now_bit: int, sec: int, nsec: int) -> bytes:
    if valid & now_bit:
        return TIMESPEC.pack(0, K.UTIME_NOW)
    if not valid & bit:
        return TIMESPEC.pack(0, K.UTIME_OMIT)
    if sec >= 1 << 63:
        sec -= 1 << 64
    return TIMESPEC.pack(sec, nsec)
