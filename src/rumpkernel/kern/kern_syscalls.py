"""System calls of the kern faction (processes, credentials, descriptors, pipes, poll, time,
sysctl, reboot).  Handlers take the calling lwp and the raw arguments of the master table; every
caller buffer goes through the process vmspace (copyin/copyout).
"""

from __future__ import annotations

import struct
from typing import Any

from rumpkernel.kern.abi import (
    F_DUPFD,
    F_DUPFD_CLOEXEC,
    F_GETFD,
    F_GETFL,
    F_SETFD,
    F_SETFL,
    FD_CLOEXEC,
    O_CLOEXEC,
    O_NONBLOCK,
    POLLNVAL,
    RLIM_INFINITY,
    RLIMIT_NOFILE,
)
from rumpkernel.kern.cred import Cred
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.kern.file import NOFILE_MAX, File
from rumpkernel.kern.pipe import Pipe, PipeFile
from rumpkernel.kern.proc import Lwp
from rumpkernel.kern.select import waiter_of
from rumpkernel.kern.syscall.structs import POLLFD, RLIMIT, STAT, TIMESPEC
from rumpkernel.kern.sysctl import INT, TYPE_CODES

CLOCK_REALTIME, CLOCK_MONOTONIC = 0, 3
RB_NOSYNC, RB_HALT = 0x4, 0x8
MAX_IO = 1 << 31
NGROUPS_MAX = 16
SETFL_MASK = O_NONBLOCK | 0x8  # O_NONBLOCK | O_APPEND


# ---- credentials ------------------------------------------------------------------------------
def sys_getpid(l: Lwp) -> int:
    return l.proc.pid


def sys_getppid(l: Lwp) -> int:
    p = l.proc.parent
    return p.pid if p is not None else 0


def sys_getuid(l: Lwp) -> int:
    return l.proc.cred.uid


def sys_geteuid(l: Lwp) -> int:
    return l.proc.cred.euid


def sys_getgid(l: Lwp) -> int:
    return l.proc.cred.gid


def sys_getegid(l: Lwp) -> int:
    return l.proc.cred.egid


def _check_id(v: int) -> int:
    if not 0 <= v < 2**32 - 1:
        raise KernelError(Errno.EINVAL, f"id {v} out of range")
    return v


def sys_setuid(l: Lwp, uid: int) -> None:
    c = l.proc.cred
    _check_id(uid)
    if not c.is_root and uid != c.uid:
        raise KernelError(Errno.EPERM, "setuid: not permitted")
    l.proc.cred = c.with_ids(uid=uid, euid=uid)


def sys_setgid(l: Lwp, gid: int) -> None:
    c = l.proc.cred
    _check_id(gid)
    if not c.is_root and gid != c.gid:
        raise KernelError(Errno.EPERM, "setgid: not permitted")
    l.proc.cred = c.with_ids(gid=gid, egid=gid)


def sys_seteuid(l: Lwp, uid: int) -> None:
    c = l.proc.cred
    _check_id(uid)
    if not c.is_root and uid != c.uid:
        raise KernelError(Errno.EPERM, "seteuid: not permitted")
    l.proc.cred = c.with_ids(euid=uid)


def sys_setegid(l: Lwp, gid: int) -> None:
    c = l.proc.cred
    _check_id(gid)
    if not c.is_root and gid != c.gid and not c.in_group(gid):
        raise KernelError(Errno.EPERM, "setegid: not permitted")
    l.proc.cred = c.with_ids(egid=gid)


def sys_getgroups(l: Lwp, n: int, gids: Any) -> int:
    groups = l.proc.cred.groups
    if n == 0:
        return len(groups)
    if n < len(groups):
        raise KernelError(Errno.EINVAL, "getgroups: buffer too small")
    l.proc.vm.copyout(struct.pack(f"<{len(groups)}I", *groups), gids)
    return len(groups)


def sys_setgroups(l: Lwp, n: int, gids: Any) -> None:
    if not l.proc.cred.is_root:
        raise KernelError(Errno.EPERM, "setgroups: not root")
    if not 0 <= n <= NGROUPS_MAX:
        raise KernelError(Errno.EINVAL, f"setgroups: at most {NGROUPS_MAX} groups")
    raw = l.proc.vm.copyin(gids, 4 * n) if n else b""
    groups = struct.unpack(f"<{n}I", raw)
    l.proc.cred = Cred(l.proc.cred.uid, l.proc.cred.gid, tuple(groups),
                       l.proc.cred.euid, l.proc.cred.egid)


def sys_getrlimit(l: Lwp, resource: int, rl: Any) -> None:
    if resource != RLIMIT_NOFILE:
        raise KernelError(Errno.EINVAL, f"getrlimit: resource {resource} not supported")
    fdt = l.proc.fd
    l.proc.vm.copyout(RLIMIT.pack(fdt.limit, fdt.hard), rl)


def sys_setrlimit(l: Lwp, resource: int, rl: Any) -> None:
    if resource != RLIMIT_NOFILE:
        raise KernelError(Errno.EINVAL, f"setrlimit: resource {resource} not supported")
    cur, hard = RLIMIT.unpack(l.proc.vm.copyin(rl, RLIMIT.size))
    cur, hard = (NOFILE_MAX if v == RLIM_INFINITY else v for v in (cur, hard))
    l.proc.fd.set_limit(cur, hard, l.proc.cred.is_root)


def sys_umask(l: Lwp, mask: int) -> int:
    old = l.proc.umask
    l.proc.umask = mask & 0o777
    return old


# ---- descriptors ------------------------------------------------------------------------------
def sys_pipe2(l: Lwp, flags: int) -> tuple[int, int]:
    if flags & ~(O_CLOEXEC | O_NONBLOCK):
        raise KernelError(Errno.EINVAL, "pipe2: bad flags")
    k = l.kernel
    pipe = Pipe(k)
    r = PipeFile(k, pipe, flags, reader=True)
    w = PipeFile(k, pipe, flags, reader=False)
    fdt = l.proc.fd
    cloexec = bool(flags & O_CLOEXEC)
    try:
        rfd = fdt.alloc(r, cloexec=cloexec)
    except KernelError:
        r.drop(l)
        w.drop(l)
        raise
    try:
        wfd = fdt.alloc(w, cloexec=cloexec)
    except KernelError:
        fdt.close(l, rfd)
        w.drop(l)
        raise
    return rfd, wfd


def _readable(l: Lwp, fd: int) -> File:
    fp = l.proc.fd.get(fd)
    if not fp.readable:
        raise KernelError(Errno.EBADF, f"fd {fd} not open for reading")
    return fp


def _writable(l: Lwp, fd: int) -> File:
    fp = l.proc.fd.get(fd)
    if not fp.writable:
        raise KernelError(Errno.EBADF, f"fd {fd} not open for writing")
    return fp


def _count(n: int) -> int:
    if not 0 <= n < MAX_IO:
        raise KernelError(Errno.EINVAL, f"byte count {n}")
    return n


def sys_read(l: Lwp, fd: int, buf: Any, n: int) -> int:
    data = _readable(l, fd).read(l, _count(n), None)
    if data:
        l.proc.vm.copyout(data, buf)
    return len(data)


def sys_write(l: Lwp, fd: int, buf: Any, n: int) -> int:
    fp = _writable(l, fd)
    return fp.write(l, l.proc.vm.copyin(buf, _count(n)), None)


def sys_pread(l: Lwp, fd: int, buf: Any, n: int, offset: int) -> int:
    if offset < 0:
        raise KernelError(Errno.EINVAL, "negative offset")
    data = _readable(l, fd).read(l, _count(n), offset)
    if data:
        l.proc.vm.copyout(data, buf)
    return len(data)


def sys_pwrite(l: Lwp, fd: int, buf: Any, n: int, offset: int) -> int:
    if offset < 0:
        raise KernelError(Errno.EINVAL, "negative offset")
    fp = _writable(l, fd)
    return fp.write(l, l.proc.vm.copyin(buf, _count(n)), offset)


def sys_readv(l: Lwp, fd: int, iov: Any) -> int:
    vm = l.proc.vm
    vec = vm.vec(iov)
    fp = _readable(l, fd)
    data = fp.read(l, _count(sum(n for _, n in vec)), None)
    pos = 0
    for uaddr, n in vec:
        if pos >= len(data):
            break
        chunk = data[pos : pos + n]
        vm.copyout(chunk, uaddr)
        pos += len(chunk)
    return len(data)


def sys_writev(l: Lwp, fd: int, iov: Any) -> int:
    vm = l.proc.vm
    vec = vm.vec(iov)
    fp = _writable(l, fd)
    _count(sum(n for _, n in vec))
    data = b"".join(vm.copyin(uaddr, n) for uaddr, n in vec)
    return fp.write(l, data, None)


def sys_close(l: Lwp, fd: int) -> None:
    l.proc.fd.close(l, fd)


def sys_dup(l: Lwp, fd: int) -> int:
    fdt = l.proc.fd
    fp = fdt.get(fd).hold()
    try:
        return fdt.alloc(fp)
    except KernelError:
        fp.drop(l)
        raise


def sys_dup3(l: Lwp, oldfd: int, newfd: int, flags: int) -> int:
    if flags & ~O_CLOEXEC:
        raise KernelError(Errno.EINVAL, "dup3: bad flags")
    fdt = l.proc.fd
    fp = fdt.get(oldfd)
    if oldfd == newfd:
        return newfd
    fdt.install(l, newfd, fp.hold(), bool(flags & O_CLOEXEC))
    return newfd


def sys_fcntl(l: Lwp, fd: int, cmd: int, arg: int) -> int:
    fdt = l.proc.fd
    fp = fdt.get(fd)
    if cmd in (F_DUPFD, F_DUPFD_CLOEXEC):
        if arg < 0:
            raise KernelError(Errno.EINVAL, "F_DUPFD: negative minimum")
        fp.hold()
        try:
            return fdt.alloc(fp, arg, cloexec=cmd == F_DUPFD_CLOEXEC)
        except KernelError:
            fp.drop(l)
            raise
    if cmd == F_GETFD:
        return FD_CLOEXEC if fdt.cloexec[fd] else 0
    if cmd == F_SETFD:
        fdt.cloexec[fd] = bool(arg & FD_CLOEXEC)
        return 0
    if cmd == F_GETFL:
        return fp.flags & ~O_CLOEXEC
    if cmd == F_SETFL:
        fp.flags = (fp.flags & ~SETFL_MASK) | (arg & SETFL_MASK)
        return 0
    raise KernelError(Errno.EINVAL, f"fcntl: unknown command {cmd}")


def _poll_check(fdt: Any, l: Lwp, w: Any, i: int, fd: int, events: int) -> None:
    """Check pollfd ``i`` and record its revents in the waiter's output array."""
    if fd < 0:
        rev = 0
    else:
        try:
            rev = fdt.get(fd).poll(l, events)
        except KernelError:
            rev = POLLNVAL
    POLLFD.pack_into(w.out, i * POLLFD.size, fd, events, rev)
    if rev:
        w.ready.add(i)
    else:
        w.ready.discard(i)


def _poll_register(fdt: Any, l: Lwp, w: Any, raw: bytes, nfds: int) -> None:
    """A new request: register with every descriptor's wait channel, then check them all."""
    w.release()
    w.key, w.table, w.tgen = raw, fdt, fdt.gen
    w.out = bytearray(raw)
    fds = [POLLFD.unpack_from(raw, i * POLLFD.size)[:2] for i in range(nfds)]
    files = fdt.files
    for i, (fd, _ev) in enumerate(fds):
        fp = files[fd] if 0 <= fd < len(files) else None
        sel = fp.selinfo if fp is not None else None
        if sel is not None:
            sel.record(w, i)                 # before the check: no change can be missed
            w.sels.append(sel)
    for i, (fd, ev) in enumerate(fds):
        _poll_check(fdt, l, w, i, fd, ev)


def sys_poll(l: Lwp, ufds: Any, nfds: int, timeout_ms: int) -> int:
    """Wait for events on descriptors (see kern/select.py): registrations stay in place while
    the lwp polls the same descriptors against an unchanged table, so a repeated poll re-checks
    only what fired since the last one."""
    fdt = l.proc.fd
    if not 0 <= nfds <= fdt.limit:
        raise KernelError(Errno.EINVAL, f"poll: nfds {nfds} (limit {fdt.limit})")
    vm = l.proc.vm
    raw = bytes(vm.copyin(ufds, nfds * POLLFD.size)) if nfds else b""
    k = l.kernel
    deadline = None if timeout_ms < 0 else k.monotonic_ns() + timeout_ms * 1_000_000
    w = waiter_of(l)
    if w.key == raw and w.table is fdt and w.tgen == fdt.gen:
        fired = w.take_fired()
    else:
        _poll_register(fdt, l, w, raw, nfds)
        fired = []
    try:
        while True:
            for i in set(fired) if len(fired) > 1 else fired:
                fd, ev = POLLFD.unpack_from(raw, i * POLLFD.size)[:2]
                _poll_check(fdt, l, w, i, fd, ev)
            if w.ready:
                break
            remaining = None if deadline is None else deadline - k.monotonic_ns()
            if remaining is not None and remaining <= 0:
                break
            fired = w.wait(remaining)
    except BaseException:
        w.release()
        raise
    if nfds:
        vm.copyout(bytes(w.out), ufds)
    return len(w.ready)


def sys_lseek(l: Lwp, fd: int, offset: int, whence: int) -> int:
    return l.proc.fd.get(fd).seek(l, offset, whence)


def sys_fstat(l: Lwp, fd: int, sb: Any) -> None:
    l.proc.vm.copyout(STAT.pack(*l.proc.fd.get(fd).stat(l)), sb)


# ---- time -------------------------------------------------------------------------------------
def sys_nanosleep(l: Lwp, req: Any, rem: Any) -> None:
    sec, nsec = TIMESPEC.unpack(l.proc.vm.copyin(req, TIMESPEC.size))
    if sec < 0 or not 0 <= nsec < 1_000_000_000:
        raise KernelError(Errno.EINVAL, "nanosleep: bad timespec")
    k = l.kernel
    total = sec * 1_000_000_000 + nsec
    deadline = k.monotonic_ns() + total
    from rumpkernel.kern.sync import KCondVar, KMutex

    mtx, cv = KMutex(k), KCondVar(k)
    with mtx:
        while k.monotonic_ns() < deadline:
            cv.wait(mtx, deadline - k.monotonic_ns())
    if rem is not None:
        l.proc.vm.copyout(TIMESPEC.pack(0, 0), rem)


def sys_clock_gettime(l: Lwp, clock: int, ts: Any) -> None:
    k = l.kernel
    if clock == CLOCK_REALTIME:
        now = k.time_ns()
    elif clock == CLOCK_MONOTONIC:
        now = k.monotonic_ns() - k.boot_mono_ns
    else:
        raise KernelError(Errno.EINVAL, f"clock {clock}")
    l.proc.vm.copyout(TIMESPEC.pack(*divmod(now, 1_000_000_000)), ts)


# ---- sysctl, reboot ---------------------------------------------------------------------------
def sys_sysctl(l: Lwp, name: Any, old: Any, oldlen: int, new: Any, newlen: int) -> tuple[int, int]:
    vm = l.proc.vm
    path = vm.copyinstr(name, 256).decode("ascii", "replace")
    sc = l.kernel.sysctl
    node = sc.lookup(path)
    value = node.get()
    enc = value.to_bytes(8, "little", signed=True) if node.kind == INT else value.encode()
    if old is not None and oldlen:
        if oldlen < len(enc):
            raise KernelError(Errno.ENOMEM, f"sysctl {path}: buffer of {oldlen} too small")
        vm.copyout(enc, old)
    if new is not None:
        if not 0 <= newlen <= 256:
            raise KernelError(Errno.EINVAL, "sysctl: new value too long")
        raw = vm.copyin(new, newlen)
        if node.kind == INT:
            if len(raw) != 8:
                raise KernelError(Errno.EINVAL, "sysctl: integer must be 8 bytes")
            newval: Any = int.from_bytes(raw, "little", signed=True)
        else:
            try:
                newval = raw.decode()
            except UnicodeDecodeError:
                raise KernelError(Errno.EINVAL, "sysctl: string not UTF-8") from None
        sc.write(path, newval, l.proc.cred.is_root)
    return len(enc), TYPE_CODES[node.kind]


def sys_sysctlnames(l: Lwp, prefix: Any, buf: Any, n: int) -> int:
    vm = l.proc.vm
    pre = vm.copyinstr(prefix, 256).decode("ascii", "replace")
    raw = b"".join(name.encode() + b"\0" for name in l.kernel.sysctl.names(pre))
    if n == 0:
        return len(raw)
    if n < len(raw):
        raise KernelError(Errno.ERANGE, f"sysctlnames: {len(raw)} bytes needed, {n} given")
    if raw:
        vm.copyout(raw, buf)
    return len(raw)


def sys_reboot(l: Lwp, howto: int) -> None:
    if not l.proc.cred.is_root:
        raise KernelError(Errno.EPERM, "reboot: not root")
    k = l.kernel
    k.log(f"reboot: howto=0x{howto:x}")
    k.hooks.run("reboot", howto)
    k.reboot_requested = howto  # the host side (local client or server) performs the halt


def sys_copybench(l: Lwp, npairs: int, src: Any, dst: Any, n: int) -> int:
    if not 0 <= npairs <= 64 or not 0 <= n <= 65536:
        raise KernelError(Errno.EINVAL, "copybench: range")
    vm = l.proc.vm
    for _ in range(npairs):
        vm.copyout(vm.copyin(src, n), dst)
    return npairs
