"""The system call master table (syscalls.master): every system call, declared once.

From this table come:
  * ``kern/syscall/sysent.py``  -- numbers and dispatch metadata (generated);
  * ``client/sys_stubs.py``     -- raw client stubs ``sys_<name>(...)`` (generated);
  * the remote (sysproxy) marshalling, which reads ``SYSCALLS`` to know which arguments are
    client pointers and in which direction data moves;
  * ``docs/syscalls.md`` (generated).
Run ``python -m rumpkernel.testing.codegen`` after editing; a test regenerates and diffs.

Argument kinds (the raw, C-level view; the ``Sys`` facade turns Python arguments into these):
    int    an integer
    str    a pointer to a NUL-free byte string the kernel reads with copyinstr
    in     a pointer the kernel reads with copyin          (the next argument is usually a length)
    out    a pointer the kernel writes with copyout
    inout  both
    vin    a vector of pointers the kernel reads (readv/writev style)
    vout   a vector of pointers the kernel writes
Return kinds: ``int``, ``pair`` (two values, as pipe), ``none``.
Factions: a syscall whose faction is not in the kernel fails with ENOSYS.
"""

from __future__ import annotations

from dataclasses import dataclass

from rumpkernel.kern.codegen import header

ARG_KINDS = frozenset({"int", "str", "in", "out", "inout", "vin", "vout"})
POINTER_KINDS = frozenset({"str", "in", "out", "inout", "vin", "vout"})

HANDLER_MODULES = {
    "kern": "rumpkernel.kern.kern_syscalls",
    "vfs": "rumpkernel.vfs.vfs_syscalls",
    "net": "rumpkernel.net.sys_socket",
}


@dataclass(frozen=True, slots=True)
class Syscall:
    num: int
    name: str
    args: tuple[tuple[str, str], ...]
    ret: str
    faction: str
    doc: str

    @property
    def pointer_args(self) -> tuple[int, ...]:
        return tuple(i for i, (_, k) in enumerate(self.args) if k in POINTER_KINDS)


def _S(num: int, name: str, args: str, ret: str, faction: str, doc: str) -> Syscall:
    parsed = []
    for part in filter(None, (p.strip() for p in args.split(","))):
        n, k = (x.strip() for x in part.split(":"))
        if k not in ARG_KINDS:
            raise ValueError(f"{name}: unknown argument kind {k}")
        parsed.append((n, k))
    return Syscall(num, name, tuple(parsed), ret, faction, doc)


SYSCALLS: tuple[Syscall, ...] = (
    # --- processes and credentials --------------------------------------------------------
    _S(1, "getpid", "", "int", "kern", "Process id."),
    _S(2, "getppid", "", "int", "kern", "Parent process id."),
    _S(3, "getuid", "", "int", "kern", "Real user id."),
    _S(4, "geteuid", "", "int", "kern", "Effective user id."),
    _S(5, "getgid", "", "int", "kern", "Real group id."),
    _S(6, "getegid", "", "int", "kern", "Effective group id."),
    _S(7, "setuid", "uid:int", "none", "kern", "Set user ids. EPERM unless root or own uid."),
    _S(8, "setgid", "gid:int", "none", "kern", "Set group ids. EPERM unless root or own gid."),
    _S(9, "seteuid", "uid:int", "none", "kern", "Set effective user id. EPERM."),
    _S(10, "setegid", "gid:int", "none", "kern", "Set effective group id. EPERM."),
    _S(11, "getgroups", "n:int, gids:out", "int", "kern",
       "Supplementary groups as u32 array; n=0 returns the count. EINVAL if n too small."),
    _S(12, "setgroups", "n:int, gids:in", "none", "kern", "Set supplementary groups. EPERM."),
    _S(13, "umask", "mask:int", "int", "kern", "Set the file creation mask; returns the old."),
    # --- descriptors ------------------------------------------------------------------------
    _S(14, "pipe2", "flags:int", "pair", "kern",
       "Create a pipe; returns (read fd, write fd). Flags: O_CLOEXEC, O_NONBLOCK. EMFILE."),
    _S(15, "read", "fd:int, buf:out, n:int", "int", "kern",
       "Read up to n bytes. EBADF, EAGAIN (non-blocking), EISDIR, EINTR."),
    _S(16, "write", "fd:int, buf:in, n:int", "int", "kern",
       "Write n bytes. EBADF, EPIPE, EAGAIN, ENOSPC, EFBIG."),
    _S(17, "pread", "fd:int, buf:out, n:int, offset:int", "int", "kern",
       "Read at an offset. ESPIPE on pipes, EINVAL on negative offsets."),
    _S(18, "pwrite", "fd:int, buf:in, n:int, offset:int", "int", "kern", "Write at an offset."),
    _S(19, "readv", "fd:int, iov:vout", "int", "kern", "Scatter read into several buffers."),
    _S(20, "writev", "fd:int, iov:vin", "int", "kern", "Gather write from several buffers."),
    _S(21, "close", "fd:int", "none", "kern", "Close a descriptor. EBADF."),
    _S(22, "dup", "fd:int", "int", "kern", "Duplicate to the lowest free descriptor. EMFILE."),
    _S(23, "dup3", "oldfd:int, newfd:int, flags:int", "int", "kern",
       "Duplicate onto newfd (closing it first); flags O_CLOEXEC. EBADF."),
    _S(24, "fcntl", "fd:int, cmd:int, arg:int", "int", "kern",
       "F_DUPFD, F_DUPFD_CLOEXEC, F_GETFD, F_SETFD, F_GETFL, F_SETFL. EINVAL."),
    _S(25, "poll", "fds:inout, nfds:int, timeout_ms:int", "int", "kern",
       "Wait for events on descriptors (pollfd array); timeout -1 waits forever. EINVAL."),
    _S(26, "lseek", "fd:int, offset:int, whence:int", "int", "kern",
       "Reposition (SEEK_SET/CUR/END/DATA/HOLE). ESPIPE, EINVAL, ENXIO."),
    _S(27, "fstat", "fd:int, sb:out", "none", "kern", "Status of an open file (struct stat)."),
    # --- time and system ----------------------------------------------------------------------
    _S(28, "nanosleep", "req:in, rem:out", "none", "kern",
       "Sleep on the kernel clock (timespec). EINVAL, EINTR."),
    _S(29, "clock_gettime", "clock:int, ts:out", "none", "kern",
       "Read a kernel clock: 0 realtime, 3 monotonic. EINVAL."),
    _S(30, "sysctl", "name:str, old:out, oldlen:int, new:in, newlen:int", "pair", "kern",
       "Read (and with new, write) a node by dotted name; returns (length, type 1=int 2=str). "
       "ENOENT, EPERM, ENOMEM (buffer too small), EINVAL."),
    _S(31, "reboot", "howto:int", "none", "kern",
       "Halt the kernel (RB_HALT 0x8; RB_NOSYNC 0x4 skips flushing). EPERM unless root."),
    _S(32, "copybench", "npairs:int, src:in, dst:out, n:int", "int", "kern",
       "Measurement aid: npairs copyin/copyout pairs of n bytes (dissertation Figure 3.37)."),
    _S(33, "sysctlnames", "prefix:str, buf:out, n:int", "int", "kern",
       "Names of the sysctl nodes under a dotted prefix, NUL-separated; n=0 returns the size "
       "needed. ERANGE if n is too small."),
    # --- file system -------------------------------------------------------------------------
    _S(40, "openat", "dirfd:int, path:str, flags:int, mode:int", "int", "vfs",
       "Open or create a file. ENOENT, EEXIST, EISDIR, ENOTDIR, EACCES, ELOOP, EROFS, EMFILE."),
    _S(41, "fstatat", "dirfd:int, path:str, sb:out, flag:int", "none", "vfs",
       "File status; flag AT_SYMLINK_NOFOLLOW. ENOENT, ENOTDIR, EACCES, ELOOP."),
    _S(42, "faccessat", "dirfd:int, path:str, mode:int, flag:int", "none", "vfs",
       "Check access (F_OK, R_OK, W_OK, X_OK) with real ids; flag AT_EACCESS. EACCES, EROFS."),
    _S(43, "mkdirat", "dirfd:int, path:str, mode:int", "none", "vfs",
       "Create a directory. EEXIST, ENOENT, EMLINK, ENOSPC, EROFS."),
    _S(44, "unlinkat", "dirfd:int, path:str, flag:int", "none", "vfs",
       "Remove a name; flag AT_REMOVEDIR removes an empty directory. EISDIR/EPERM, ENOTEMPTY, "
       "EBUSY (mount point), EROFS."),
    _S(45, "renameat", "fromfd:int, src:str, tofd:int, dst:str", "none", "vfs",
       "Atomically rename, replacing dst. EXDEV, EISDIR, ENOTDIR, ENOTEMPTY, EINVAL (into own "
       "subtree), EBUSY."),
    _S(46, "linkat", "fd1:int, src:str, fd2:int, dst:str, flag:int", "none", "vfs",
       "Hard link; flag AT_SYMLINK_FOLLOW. EEXIST, EPERM (directory), EMLINK, EXDEV."),
    _S(47, "symlinkat", "target:str, dirfd:int, path:str", "none", "vfs",
       "Create a symbolic link. EEXIST."),
    _S(48, "readlinkat", "dirfd:int, path:str, buf:out, n:int", "int", "vfs",
       "Read a symlink's target (not NUL terminated). EINVAL if not a symlink."),
    _S(49, "fchmodat", "dirfd:int, path:str, mode:int, flag:int", "none", "vfs",
       "Change permission bits. EPERM unless owner or root."),
    _S(50, "fchownat", "dirfd:int, path:str, uid:int, gid:int, flag:int", "none", "vfs",
       "Change owner/group (-1 keeps). EPERM."),
    _S(51, "utimensat", "dirfd:int, path:str, times:in, flag:int", "none", "vfs",
       "Set atime/mtime from two timespecs (UTIME_NOW/UTIME_OMIT); a null pointer means now. "
       "EPERM, EACCES."),
    _S(52, "mknodat", "dirfd:int, path:str, mode:int, dev:int", "none", "vfs",
       "Create a device node, fifo or socket node. EPERM for devices unless root."),
    _S(53, "fchmod", "fd:int, mode:int", "none", "vfs", "chmod on an open file."),
    _S(54, "fchown", "fd:int, uid:int, gid:int", "none", "vfs", "chown on an open file."),
    _S(55, "futimens", "fd:int, times:in", "none", "vfs", "utimensat on an open file."),
    _S(56, "truncate", "path:str, length:int", "none", "vfs", "Set a file's size. EISDIR."),
    _S(57, "ftruncate", "fd:int, length:int", "none", "vfs",
       "Set an open file's size. EINVAL if not open for writing."),
    _S(58, "fsync", "fd:int", "none", "vfs", "Flush a file's data and metadata."),
    _S(59, "fdatasync", "fd:int", "none", "vfs", "Flush a file's data."),
    _S(60, "sync", "", "none", "vfs", "Flush every file system."),
    _S(61, "getdents", "fd:int, buf:out, n:int", "int", "vfs",
       "Read directory records (see structs.pack_dirent); 0 at the end. ENOTDIR, EINVAL."),
    _S(62, "chdir", "path:str", "none", "vfs", "Change the working directory."),
    _S(63, "fchdir", "fd:int", "none", "vfs", "Change the working directory to an open one."),
    _S(64, "getcwd", "buf:out, n:int", "int", "vfs",
       "Working directory path (NUL-terminated); returns its length. ERANGE."),
    _S(65, "statvfs", "path:str, buf:out", "none", "vfs", "File system statistics."),
    _S(66, "fstatvfs", "fd:int, buf:out", "none", "vfs", "statvfs on an open file."),
    _S(67, "mount", "fstype:str, target:str, flags:int, data:in, datalen:int", "none", "vfs",
       "Mount; data is 'key=value,...' options incl. from=DEVICE. EBUSY, ENODEV, ENOTDIR, "
       "EPERM, EINVAL."),
    _S(68, "unmount", "target:str, flags:int", "none", "vfs",
       "Unmount (MNT_FORCE 0x80000 ignores busy vnodes). EBUSY, EINVAL, EPERM."),
    _S(69, "getxattr", "path:str, name:str, buf:out, n:int, flag:int", "int", "vfs",
       "Read an extended attribute; n=0 returns its size. ENOATTR, ERANGE, ENOTSUP."),
    _S(70, "setxattr", "path:str, name:str, value:in, n:int, flag:int", "none", "vfs",
       "Set an extended attribute; flag bits XATTR_CREATE 1, XATTR_REPLACE 2, nofollow 0x100."),
    _S(71, "listxattr", "path:str, buf:out, n:int, flag:int", "int", "vfs",
       "NUL-separated attribute names; n=0 returns the size needed. ERANGE."),
    _S(72, "removexattr", "path:str, name:str, flag:int", "none", "vfs",
       "Remove an extended attribute. ENOATTR."),
    _S(73, "fsinfo", "path:str, buf:out, n:int", "int", "vfs",
       "Facts about the file system holding path, as UTF-8 JSON: type, source, read-only, "
       "options and the driver's info(); n=0 returns the size. ERANGE, ENOENT."),
    _S(74, "chroot", "path:str", "none", "vfs",
       "Make a directory the process root (absolute paths and symlinks resolve there; '..' "
       "stops there). EPERM unless root, ENOTDIR, ENOENT."),
    # --- resource limits --------------------------------------------------------------------
    _S(75, "getrlimit", "resource:int, rl:out", "none", "kern",
       "Soft and hard limit (struct rlimit) of a resource; only RLIMIT_NOFILE. EINVAL."),
    _S(76, "setrlimit", "resource:int, rl:in", "none", "kern",
       "Set a resource limit; only RLIMIT_NOFILE (hard limit 65,536; raising the hard limit "
       "needs root). EINVAL, EPERM."),
    # --- file handles for file servers (the FUSE server) --------------------------------------
    _S(80, "reopen", "fd:int, flags:int", "int", "vfs",
       "Open the file fd refers to (an O_PATH handle or any open file) again: for I/O with "
       "open's permission checks (O_TRUNC truncates), or with O_PATH as a new handle. EINVAL "
       "with O_CREAT/O_EXCL, EACCES, EISDIR, ELOOP (a symlink), EMFILE."),
    _S(81, "renameat2", "fromfd:int, src:str, tofd:int, dst:str, flags:int", "none", "vfs",
       "renameat with flags: RENAME_NOREPLACE 1 (EEXIST if dst exists); RENAME_EXCHANGE 2 and "
       "RENAME_WHITEOUT 4 are EINVAL (no driver exchanges atomically)."),
    _S(82, "getxattrat", "dirfd:int, path:str, name:str, buf:out, n:int, flag:int", "int", "vfs",
       "getxattr relative to dirfd; flag AT_SYMLINK_NOFOLLOW, AT_EMPTY_PATH. ENOATTR, ERANGE."),
    _S(83, "setxattrat", "dirfd:int, path:str, name:str, value:in, n:int, flag:int", "none",
       "vfs", "setxattr relative to dirfd; flag XATTR_CREATE 1 | XATTR_REPLACE 2 | "
       "AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH. EEXIST, ENOATTR, EINVAL."),
    _S(84, "listxattrat", "dirfd:int, path:str, buf:out, n:int, flag:int", "int", "vfs",
       "listxattr relative to dirfd; flag AT_SYMLINK_NOFOLLOW, AT_EMPTY_PATH. ERANGE."),
    _S(85, "removexattrat", "dirfd:int, path:str, name:str, flag:int", "none", "vfs",
       "removexattr relative to dirfd; flag AT_SYMLINK_NOFOLLOW, AT_EMPTY_PATH. ENOATTR."),
    # Number ranges: 80-89 FUSE server needs, 90-139 the net faction.
    # --- sockets (net faction; addresses are structs.pack_sockaddr_* encodings) ---------------
    _S(90, "socket", "domain:int, type:int, protocol:int", "int", "net",
       "Create a socket; type may carry SOCK_NONBLOCK/SOCK_CLOEXEC. EAFNOSUPPORT, "
       "EPROTONOSUPPORT, EPROTOTYPE, EACCES (raw without root), EMFILE, ENOMEM."),
    _S(91, "socketpair", "domain:int, type:int, protocol:int", "pair", "net",
       "Two connected sockets (AF_LOCAL). EOPNOTSUPP for other domains."),
    _S(92, "bind", "fd:int, name:in, namelen:int", "none", "net",
       "Give a socket its local address. EADDRINUSE, EADDRNOTAVAIL, EACCES, EINVAL, ENOTSOCK."),
    _S(93, "listen", "fd:int, backlog:int", "none", "net",
       "Accept connections (backlog capped at SOMAXCONN 128). EOPNOTSUPP, EINVAL."),
    _S(94, "accept4", "fd:int, name:out, namelen:int, flags:int", "pair", "net",
       "Take a connection: returns (new fd, full peer address length); the address is "
       "truncated to namelen. Flags SOCK_NONBLOCK, SOCK_CLOEXEC. EAGAIN, EINVAL, EINTR."),
    _S(95, "connect", "fd:int, name:in, namelen:int", "none", "net",
       "Connect (datagram: set the peer; AF_UNSPEC dissolves). ECONNREFUSED, EINPROGRESS "
       "(non-blocking stream; SO_ERROR later), EALREADY, EISCONN, ENETUNREACH, EINTR."),
    _S(96, "sendto", "fd:int, buf:in, n:int, flags:int, to:in, tolen:int", "int", "net",
       "Send (to an address). EAGAIN, EPIPE, EMSGSIZE, EDESTADDRREQ, EISCONN, EACCES "
       "(broadcast without SO_BROADCAST), ENETUNREACH, EHOSTDOWN, ECONNREFUSED."),
    _S(97, "recvfrom", "fd:int, buf:out, n:int, flags:int, src:out, srclen:int", "pair",
       "net", "Receive: returns (bytes, full sender address length); flags MSG_PEEK, "
       "MSG_DONTWAIT, MSG_WAITALL, MSG_TRUNC (report a datagram's full length). EAGAIN, "
       "ENOTCONN, ECONNREFUSED, EINTR."),
    _S(98, "sendmsg", "fd:int, iov:vin, name:in, nlen:int, ctl:in, ctllen:int, flags:int",
       "int", "net",
       "Gather-send with an optional address and control messages (structs.pack_cmsgs; "
       "SCM_RIGHTS passes descriptors on AF_LOCAL sockets). As sendto; EINVAL for bad "
       "control data."),
    _S(99, "recvmsg", "fd:int, iov:vout, name:out, nlen:int, ctl:out, ctllen:int, flags:int, "
       "info:out", "int", "net",
       "Scatter-receive; info gets structs.MSGINFO (address length, control length, "
       "MSG_TRUNC/MSG_CTRUNC). Received descriptors are installed (MSG_CMSG_CLOEXEC)."),
    _S(100, "shutdown", "fd:int, how:int", "none", "net",
       "Shut down reading (0), writing (1) or both (2). ENOTCONN, EINVAL."),
    _S(101, "getsockname", "fd:int, name:out, namelen:int", "int", "net",
       "Local address (truncated to namelen); returns its full length."),
    _S(102, "getpeername", "fd:int, name:out, namelen:int", "int", "net",
       "Peer address (truncated to namelen); returns its full length. ENOTCONN."),
    _S(103, "setsockopt", "fd:int, level:int, name:int, val:in, vallen:int", "none", "net",
       "Set an option (SOL_SOCKET: SO_REUSEADDR, SO_REUSEPORT, SO_BROADCAST, SO_RCVBUF, "
       "SO_SNDBUF, SO_RCVTIMEO, SO_SNDTIMEO, SO_LINGER, SO_KEEPALIVE ...; IPPROTO_IP: IP_TTL, "
       "IP_TOS, IP_HDRINCL). ENOPROTOOPT, EINVAL, EDOM."),
    _S(104, "getsockopt", "fd:int, level:int, name:int, val:out, vallen:int", "int", "net",
       "Read an option (truncated to vallen); returns its full length. SO_ERROR clears the "
       "pending error; SO_TYPE, SO_DOMAIN, SO_PROTOCOL, SO_ACCEPTCONN. ENOPROTOOPT."),
    _S(105, "ioctl", "fd:int, cmd:int, data:inout, n:int", "int", "net",
       "Device control on a descriptor: FIONBIO, FIONREAD, and on sockets the interface, "
       "route and ARP configuration (SIOC*, structs IFREQ/IFALIASREQ/RTREQ/ARPREQ). ENOTTY, "
       "EPERM, ENXIO."),
    _S(106, "netinfo", "what:str, buf:out, n:int", "int", "net",
       "The network tables as UTF-8 JSON: interfaces, routes, arp, sockets, stats; n=0 "
       "returns the size. ERANGE, ENOENT."),
)

BY_NUM = {s.num: s for s in SYSCALLS}
BY_NAME = {s.name: s for s in SYSCALLS}
assert len(BY_NUM) == len(SYSCALLS) and len(BY_NAME) == len(SYSCALLS)


def render_sysent() -> str:
    lines = [
        header("rumpkernel.kern.syscall.master"),
        '"""System call numbers and dispatch metadata, from ``master.SYSCALLS``."""\n\n',
        "from __future__ import annotations\n\n",
    ]
    lines += [f"SYS_{s.name} = {s.num}\n" for s in SYSCALLS]
    lines.append("\n# number -> (name, faction, handler function name, argument count)\n")
    lines.append("SYSENT: dict[int, tuple[str, str, str, int]] = {\n")
    for s in SYSCALLS:
        lines.append(f"    {s.num}: ({s.name!r}, {s.faction!r}, 'sys_{s.name}', {len(s.args)}),\n")
    lines.append("}\n")
    lines.append(f"\nMAXSYSCALL = {max(BY_NUM) + 1}\n")
    return "".join(lines)


def render_stubs() -> str:
    out = [
        header("rumpkernel.kern.syscall.master"),
        '"""Raw system call stubs: ``sys_<name>(...)`` passes C-level arguments (integers and\n'
        "client buffers) to ``self._call(number, args)``.  Local and remote clients supply\n"
        "``_call``; the ``Sys`` facade builds Python-shaped calls on top.\n"
        '"""\n\n'
        "from __future__ import annotations\n\n"
        "from typing import Any\n\n\n"
        "class SyscallStubs:\n"
        "    __slots__ = ()\n\n"
        "    def _call(self, num: int, args: tuple[Any, ...]) -> Any:\n"
        "        raise NotImplementedError\n",
    ]
    for s in SYSCALLS:
        params = "".join(f", {n}: Any" for n, _ in s.args)
        names = ", ".join(n for n, _ in s.args)
        tup = f"({names},)" if len(s.args) == 1 else f"({names})"
        sig = f"    def sys_{s.name}(self{params}) -> Any:"
        if len(sig) > 100:
            sig = f"    def sys_{s.name}(\n        self{params}\n    ) -> Any:"
        doc = s.doc if len(s.doc) < 80 else s.doc[:77].rsplit(" ", 1)[0] + " ..."
        out.append(f'\n{sig}\n        """{doc}"""\n'
                   f"        return self._call({s.num}, {tup})\n")
    return "".join(out)


def render_docs() -> str:
    out = ["<!-- GENERATED by rumpkernel.kern.syscall.master -- do not edit -->\n",
           "# System calls\n\n",
           "| # | name | arguments | returns | faction | description |\n",
           "|---|---|---|---|---|---|\n"]
    for s in SYSCALLS:
        args = ", ".join(f"{n}: {k}" for n, k in s.args)
        out.append(f"| {s.num} | `{s.name}` | {args} | {s.ret} | {s.faction} | {s.doc} |\n")
    return "".join(out)
