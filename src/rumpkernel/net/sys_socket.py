"""System calls of the net faction (numbers 90-139 in the master table).

Every caller buffer goes through copyin/copyout (so remote and hijacked callers work), and
always outside the stack lock: a remote copy is a network round trip.  Socket addresses are
the kernel's encodings (``structs.pack_sockaddr_*``); a result address is truncated to the
caller's length and its full length returned, as the C API does.
"""

from __future__ import annotations

import json
from typing import Any

from rumpkernel.kern.abi import (
    AF_INET,
    AF_INET6,
    AF_LOCAL,
    AF_UNSPEC,
    MSG_CMSG_CLOEXEC,
    MSG_CTRUNC,
    MSG_DONTROUTE,
    MSG_DONTWAIT,
    MSG_EOR,
    MSG_NOSIGNAL,
    MSG_OOB,
    MSG_PEEK,
    MSG_TRUNC,
    MSG_WAITALL,
    SCM_RIGHTS,
    SO_ACCEPTCONN,
    SOCK_CLOEXEC,
    SOCK_FLAGS_MASK,
    SOCK_NONBLOCK,
    SOL_SOCKET,
    SOMAXCONN,
)
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.kern.syscall import structs as S
from rumpkernel.net.socket import (
    PR_CONNREQUIRED,
    PR_LISTEN,
    PR_RIGHTS,
    SS_ISCONNECTED,
    SS_ISCONNECTING,
    SS_NOFDREF,
    soclose,
    soreceive,
    sosend,
    soshutdown,
)
from rumpkernel.net.socketfile import SocketFile, sock_of
from rumpkernel.net.sockopt import sogetopt, sosetopt

MSG_KNOWN = (MSG_OOB | MSG_PEEK | MSG_DONTROUTE | MSG_EOR | MSG_TRUNC | MSG_WAITALL
             | MSG_DONTWAIT | MSG_NOSIGNAL | MSG_CMSG_CLOEXEC)
MAX_IO = 1 << 31
MAX_RIGHTS = 253          # descriptors in one SCM_RIGHTS message (Linux's SCM_MAX_FD)
MAX_CONTROL = 1 << 16


def _ns(l: Any) -> Any:
    return l.kernel.net


def _count(n: int) -> int:
    if not 0 <= n < MAX_IO:
        raise KernelError(Errno.EINVAL, f"byte count {n}")
    return n


def getsockaddr(l: Any, name: Any, namelen: int) -> tuple:
    if not 2 <= namelen <= S.SOCKADDR_MAX:
        raise KernelError(Errno.EINVAL, f"socket address length {namelen}")
    return S.unpack_sockaddr(l.proc.vm.copyin(name, namelen))


def encode_sockaddr(addr: tuple) -> bytes:
    fam = addr[0]
    if fam == AF_INET:
        return S.pack_sockaddr_in(addr[1], addr[2])
    if fam == AF_LOCAL:
        if not addr[1]:
            return bytes((2, AF_LOCAL))
        return S.pack_sockaddr_un(addr[1])
    if fam == AF_INET6:
        return S.pack_sockaddr_in6(*addr[1:])
    if fam == AF_UNSPEC:
        return bytes((2, AF_UNSPEC))
    return bytes((2 + len(addr[1]), fam)) + addr[1]


def _copyout_addr(l: Any, addr: tuple | None, name: Any, namelen: int) -> int:
    if addr is None or name is None:
        return 0
    raw = encode_sockaddr(addr)
    if namelen > 0:
        l.proc.vm.copyout(raw[:namelen], name)
    return len(raw)


def _new_file(l: Any, so: Any, flags: int) -> int:
    fp = SocketFile(l.kernel, so, bool(flags & SOCK_NONBLOCK))
    try:
        return l.proc.fd.alloc(fp, cloexec=bool(flags & SOCK_CLOEXEC))
    except KernelError:
        fp.drop(l)
        raise


def _create(l: Any, domain: int, type_: int, protocol: int) -> Any:
    ns = _ns(l)
    pr = ns.find_protocol(domain, type_, protocol)
    if getattr(pr, "privileged", False) and not l.proc.cred.is_root:
        raise KernelError(Errno.EACCES, "raw sockets need root")
    so = ns.socket_alloc(pr, type_, protocol)
    try:
        pr.attach(so, protocol)
    except BaseException:
        ns.socket_free(so)
        raise
    return so


# ---- creation ---------------------------------------------------------------------------------
def sys_socket(l: Any, domain: int, type_: int, protocol: int) -> int:
    flags = type_ & SOCK_FLAGS_MASK
    ns = _ns(l)
    with ns.lock:
        so = _create(l, domain, type_ & ~SOCK_FLAGS_MASK, protocol)
    return _new_file(l, so, flags)


def sys_socketpair(l: Any, domain: int, type_: int, protocol: int) -> tuple[int, int]:
    flags = type_ & SOCK_FLAGS_MASK
    ns = _ns(l)
    with ns.lock:
        a = _create(l, domain, type_ & ~SOCK_FLAGS_MASK, protocol)
        try:
            b = _create(l, domain, type_ & ~SOCK_FLAGS_MASK, protocol)
        except BaseException:
            soclose(a)
            raise
        try:
            a.proto.connect2(a, b)
        except BaseException:
            soclose(a)
            soclose(b)
            raise
    fa = SocketFile(l.kernel, a, bool(flags & SOCK_NONBLOCK))
    fb = SocketFile(l.kernel, b, bool(flags & SOCK_NONBLOCK))
    fdt = l.proc.fd
    cloexec = bool(flags & SOCK_CLOEXEC)
    try:
        x = fdt.alloc(fa, cloexec=cloexec)
    except KernelError:
        fa.drop(l)
        fb.drop(l)
        raise
    try:
        y = fdt.alloc(fb, cloexec=cloexec)
    except KernelError:
        fdt.close(l, x)
        fb.drop(l)
        raise
    return x, y


# ---- addresses and connections --------------------------------------------------------------
def sys_bind(l: Any, fd: int, name: Any, namelen: int) -> None:
    so = sock_of(l, fd).so
    addr = getsockaddr(l, name, namelen)
    with so.ns.lock:
        so.proto.bind(so, addr, l)


def sys_listen(l: Any, fd: int, backlog: int) -> None:
    so = sock_of(l, fd).so
    with so.ns.lock:
        if not so.proto.flags & PR_LISTEN:
            raise KernelError(Errno.EOPNOTSUPP, "socket type does not listen")
        if so.state & (SS_ISCONNECTED | SS_ISCONNECTING):
            raise KernelError(Errno.EINVAL, "socket is connected")
        so.proto.listen(so, backlog)
        so.options |= SO_ACCEPTCONN
        so.qlimit = SOMAXCONN if backlog < 0 or backlog > SOMAXCONN else backlog


def sys_accept4(l: Any, fd: int, name: Any, namelen: int, flags: int) -> tuple[int, int]:
    if flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC):
        raise KernelError(Errno.EINVAL, "accept4: bad flags")
    fp = sock_of(l, fd)
    so = fp.so
    with so.ns.lock:
        if not so.listening:
            raise KernelError(Errno.EINVAL, "socket is not listening")
        while not so.q:
            if so.error:
                raise KernelError(Errno(so.take_error()), "socket error")
            if fp.nonblock:
                raise KernelError(Errno.EAGAIN, "no connection waiting")
            if not so.wait(so.rcv.timeout_ns):
                raise KernelError(Errno.EAGAIN, "accept timed out")
            if not so.listening:
                raise KernelError(Errno.ECONNABORTED, "listener closed")
        child = so.q.popleft()
        so.sel.notify()
        child.head = None
        child.state &= ~SS_NOFDREF
        try:
            addr = child.proto.peeraddr(child)
        except KernelError:
            addr = (child.domain, b"") if child.domain == AF_LOCAL else None
    try:
        newfd = _new_file(l, child, flags)
    except KernelError:
        with so.ns.lock:
            soclose(child)
        raise
    return newfd, _copyout_addr(l, addr, name, namelen)


def sys_connect(l: Any, fd: int, name: Any, namelen: int) -> None:
    fp = sock_of(l, fd)
    so = fp.so
    addr = getsockaddr(l, name, namelen)
    with so.ns.lock:
        if so.listening:
            raise KernelError(Errno.EOPNOTSUPP, "socket is listening")
        if so.state & SS_ISCONNECTING:
            raise KernelError(Errno.EALREADY, "connection already in progress")
        if so.state & SS_ISCONNECTED and so.proto.flags & PR_CONNREQUIRED:
            raise KernelError(Errno.EISCONN, "socket is connected")
        so.proto.connect(so, addr, l)
        if not so.state & SS_ISCONNECTING:
            if so.error:
                raise KernelError(Errno(so.take_error()), "connect failed")
            return
        if fp.nonblock:
            raise KernelError(Errno.EINPROGRESS, "connection in progress")
        while so.state & SS_ISCONNECTING and not so.error:
            so.wait(0)
        if so.error:
            raise KernelError(Errno(so.take_error()), "connect failed")


def sys_shutdown(l: Any, fd: int, how: int) -> None:
    so = sock_of(l, fd).so
    with so.ns.lock:
        soshutdown(so, how)


def sys_getsockname(l: Any, fd: int, name: Any, namelen: int) -> int:
    so = sock_of(l, fd).so
    with so.ns.lock:
        addr = so.proto.sockaddr(so)
    return _copyout_addr(l, addr, name, namelen)


def sys_getpeername(l: Any, fd: int, name: Any, namelen: int) -> int:
    so = sock_of(l, fd).so
    with so.ns.lock:
        if not so.state & SS_ISCONNECTED:
            raise KernelError(Errno.ENOTCONN, "socket is not connected")
        addr = so.proto.peeraddr(so)
    return _copyout_addr(l, addr, name, namelen)


# ---- data -----------------------------------------------------------------------------------
def _flags(flags: int, so: Any = None) -> int:
    """Check message flags; MSG_OOB only for sending on a protocol with urgent data (TCP)."""
    if flags & ~MSG_KNOWN:
        raise KernelError(Errno.EOPNOTSUPP, f"message flags 0x{flags & ~MSG_KNOWN:x}")
    if flags & MSG_OOB and not (so is not None and getattr(so.proto, "oob", False)):
        raise KernelError(Errno.EOPNOTSUPP, "out-of-band data is not supported")
    return flags


def sys_sendto(l: Any, fd: int, buf: Any, n: int, flags: int, to: Any, tolen: int) -> int:
    fp = sock_of(l, fd)
    so = fp.so
    data = l.proc.vm.copyin(buf, _count(n)) if n else b""
    addr = getsockaddr(l, to, tolen) if to is not None and tolen else None
    with so.ns.lock:
        return sosend(so, data, addr, None, _flags(flags, so), fp.nonblock)


def sys_recvfrom(l: Any, fd: int, buf: Any, n: int, flags: int, frm: Any,
                 fromlen: int) -> tuple[int, int]:
    fp = sock_of(l, fd)
    so = fp.so
    with so.ns.lock:
        data, addr, control, _mflags, reported = soreceive(so, _count(n), _flags(flags),
                                                           fp.nonblock)
        if control:
            so.ns.dispose_control(control)
    if data:
        l.proc.vm.copyout(data, buf)
    return reported, _copyout_addr(l, addr, frm, fromlen)


def _internalize(l: Any, raw: bytes, pr_flags: int) -> list | None:
    """Control messages from the caller: SCM_RIGHTS descriptors become held files."""
    if not raw:
        return None
    out: list = []
    try:
        for level, ctype, data in S.iter_cmsgs(raw):
            if level != SOL_SOCKET or ctype != SCM_RIGHTS:
                raise KernelError(Errno.EINVAL, f"control message {level}/{ctype}")
            if not pr_flags & PR_RIGHTS:
                raise KernelError(Errno.EOPNOTSUPP, "descriptors travel only on local sockets")
            if len(data) % 4 or len(data) // 4 > MAX_RIGHTS:
                raise KernelError(Errno.EINVAL, "SCM_RIGHTS payload")
            files = []
            out.append((SOL_SOCKET, SCM_RIGHTS, files))
            for i in range(0, len(data), 4):
                fd = int.from_bytes(data[i : i + 4], "little", signed=True)
                files.append(l.proc.fd.get(fd).hold())
    except BaseException:
        l.kernel.net.dispose_control(out)
        raise
    return out


def _externalize(l: Any, control: list | None, room: int, flags: int) -> tuple[bytes, int]:
    """Control messages for the caller: received files get descriptors.  What does not fit
    in ``room`` bytes is dropped (descriptors closed) and MSG_CTRUNC set."""
    if not control:
        return b"", 0
    msgs: list[tuple[int, int, bytes]] = []
    used, mflags = 0, 0
    fdt = l.proc.fd
    for level, ctype, payload in control:
        if isinstance(payload, list):
            fits = max(0, (room - used - S.CMSGHDR.size) // 4) if room - used > \
                S.CMSGHDR.size else 0
            fds = []
            for i, fp in enumerate(payload):
                if i >= fits:
                    mflags |= MSG_CTRUNC
                    fp.drop(l)
                    continue
                try:
                    fds.append(fdt.alloc(fp, cloexec=bool(flags & MSG_CMSG_CLOEXEC)))
                except KernelError:
                    mflags |= MSG_CTRUNC
                    fp.drop(l)
            data = b"".join(fd.to_bytes(4, "little", signed=True) for fd in fds)
        else:
            data = payload
        if not data and isinstance(payload, list):
            continue
        if used + S.CMSGHDR.size + len(data) > room:     # the last one needs no padding
            mflags |= MSG_CTRUNC
            continue
        msgs.append((level, ctype, data))
        used += S.cmsg_space(len(data))
    return S.pack_cmsgs(msgs)[:room], mflags


def sys_sendmsg(l: Any, fd: int, iov: Any, name: Any, namelen: int, control: Any,
                controllen: int, flags: int) -> int:
    fp = sock_of(l, fd)
    so = fp.so
    vm = l.proc.vm
    vec = vm.vec(iov)
    _count(sum(n for _, n in vec))
    data = b"".join(vm.copyin(u, n) for u, n in vec if n)
    addr = getsockaddr(l, name, namelen) if name is not None and namelen else None
    if not 0 <= controllen <= MAX_CONTROL:
        raise KernelError(Errno.EINVAL, f"control length {controllen}")
    ctl = _internalize(l, vm.copyin(control, controllen) if controllen else b"",
                       so.proto.flags)
    with so.ns.lock:
        return sosend(so, data, addr, ctl, _flags(flags, so), fp.nonblock)


def sys_recvmsg(l: Any, fd: int, iov: Any, name: Any, namelen: int, control: Any,
                controllen: int, flags: int, info: Any) -> int:
    fp = sock_of(l, fd)
    so = fp.so
    vm = l.proc.vm
    vec = vm.vec(iov)
    n = _count(sum(m for _, m in vec))
    with so.ns.lock:
        data, addr, ctl, mflags, reported = soreceive(so, n, _flags(flags), fp.nonblock)
    raw_ctl, cflags = _externalize(l, ctl, controllen if control is not None else 0, flags)
    pos = 0
    for u, m in vec:
        if pos >= len(data):
            break
        chunk = data[pos : pos + m]
        vm.copyout(chunk, u)
        pos += len(chunk)
    alen = _copyout_addr(l, addr, name, namelen)
    if raw_ctl:
        vm.copyout(raw_ctl, control)
    if info is not None:
        vm.copyout(S.MSGINFO.pack(alen, len(raw_ctl), mflags | cflags), info)
    return reported


# ---- options and control ----------------------------------------------------------------------
def sys_setsockopt(l: Any, fd: int, level: int, name: int, val: Any, vallen: int) -> None:
    so = sock_of(l, fd).so
    if not 0 <= vallen <= 4096:
        raise KernelError(Errno.EINVAL, f"option length {vallen}")
    value = l.proc.vm.copyin(val, vallen) if vallen else b""
    with so.ns.lock:
        sosetopt(so, level, name, value)


def sys_getsockopt(l: Any, fd: int, level: int, name: int, val: Any, vallen: int) -> int:
    so = sock_of(l, fd).so
    if vallen < 0:
        raise KernelError(Errno.EINVAL, f"option length {vallen}")
    with so.ns.lock:
        value = sogetopt(so, level, name)
    if vallen and val is not None:
        l.proc.vm.copyout(value[:vallen], val)
    return len(value)


def sys_ioctl(l: Any, fd: int, cmd: int, data: Any, n: int) -> int:
    fp = l.proc.fd.get(fd)
    handler = getattr(fp, "ioctl", None)
    if handler is None:
        raise KernelError(Errno.ENOTTY, f"fd {fd} takes no ioctls")
    if not 0 <= n <= 65536:
        raise KernelError(Errno.EINVAL, f"ioctl data length {n}")
    raw = l.proc.vm.copyin(data, n) if n else b""
    out = handler(l, cmd & 0xFFFFFFFF, raw)
    if out is not None and data is not None and n:
        l.proc.vm.copyout(out[:n], data)
    return 0


def sys_netinfo(l: Any, what: Any, buf: Any, n: int) -> int:
    from rumpkernel.net.netinfo import netinfo

    topic = l.proc.vm.copyinstr(what, 64).decode("ascii", "replace")
    raw = json.dumps(netinfo(_ns(l), topic), separators=(",", ":")).encode()
    if n == 0:
        return len(raw)
    if n < len(raw):
        raise KernelError(Errno.ERANGE, f"netinfo: {len(raw)} bytes needed, {n} given")
    l.proc.vm.copyout(raw, buf)
    return len(raw)
