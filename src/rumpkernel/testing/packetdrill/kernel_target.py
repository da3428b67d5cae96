"""The kernel target for the packetdrill runner: scripts run against a whole kernel on the sim
host -- its socket layer, TCP, IPv4 -- with virtual time.

Interface:
    KernelTarget(seed=1)      a fresh kernel in a SimWorld of its own with interface ``pd0``
                              (192.168.0.1/24, MTU 1500, a route to the script's peer
                              192.0.2.0/24); the runner interface of target.py, plus
    .enter(fn)                run ``fn`` (the whole script) as a thread of the simulated world,
                              so virtual time passes only while the script waits (run_script
                              uses it when a target has it)
    .k                        the kernel (its counters, sysctl, sockets)

How it works: ``pd0`` is an interface of its own link kind ("pdrill"): what the kernel sends
through it is an IPv4 datagram, parsed and collected as a TcpSegment with the virtual time it
left; an injected segment becomes a datagram handed to ``ifp.input`` (so IPv4 input, TCP input
and everything they wake run as for a NIC's frame).  Each system call of the script runs on a
new simulated thread through the local client (``k.sys``), so a call that blocks in the kernel
really blocks there; the runner learns whether it did by letting the world run at the same
instant (``sleep_ns(0)``) and collects it later from ``completions()``.  Arguments use Linux
names and values (the host's), results are compared by errno name.
"""

from __future__ import annotations

import errno as host_errno
import itertools
from typing import Any

import rumpkernel
from rumpkernel.hypercall.sim import SimWorld
from rumpkernel.kern import abi as K
from rumpkernel.kern.abi import IFF_RUNNING, IFF_UP, RTF_STATIC, RTF_UP
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.kern.syscall import structs
from rumpkernel.net.inet.ip import ip_input
from rumpkernel.net.interface import Ifnet
from rumpkernel.net.route import Route
from rumpkernel.net.wire import ipv4
from rumpkernel.net.wire.tcp import TcpFormatError, TcpSegment, emit_for, parse_for
from rumpkernel.testing.packetdrill.target import (
    LOCAL_IP,
    POLL_BITS,
    REMOTE_IP,
    REMOTE_PORT,
    SCRIPT_PORT,
    SHUT,
    TCP_STATES,
    Outcome,
    _bits,
    _int,
)

MSG_BITS = {"MSG_OOB": K.MSG_OOB, "MSG_PEEK": K.MSG_PEEK, "MSG_DONTWAIT": K.MSG_DONTWAIT,
            "MSG_WAITALL": K.MSG_WAITALL}
LEVELS = {"SOL_SOCKET": K.SOL_SOCKET, "SOL_TCP": K.IPPROTO_TCP, "IPPROTO_TCP": K.IPPROTO_TCP,
          "IPPROTO_IP": K.IPPROTO_IP}
_STATE_BY_NUMBER = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECEIVED", 4: "FIN_WAIT_1",
                    5: "FIN_WAIT_2", 6: "TIME_WAIT", 7: "CLOSED", 8: "CLOSE_WAIT",
                    9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING"}
LINK = "pdrill"


class _Driver:
    linkstr = None

    def transmit(self, frame: bytes) -> bool:
        return True

    def set_linkstr(self, ifp: Any, text: str) -> None:
        raise KernelError(Errno.ENOTTY, "pd0 has no link")

    def stop(self) -> None:
        return None

    def info(self) -> dict[str, Any]:
        return {"type": "packetdrill"}


class KernelTarget:
    """See the module docstring."""

    def __init__(self, seed: int = 1) -> None:
        self.world = SimWorld(seed)
        self.k = rumpkernel.boot(self.world.host("pdrill"), hostname="pdrill")
        self.local_ip, self.remote_ip = LOCAL_IP, REMOTE_IP
        self.sent: list[tuple[float, TcpSegment]] = []
        self.done: list[tuple[float, int, Outcome]] = []
        self.pending: set[int] = set()
        self.fds: dict[int, int] = {}            # script fd -> kernel fd
        self._ports = (SCRIPT_PORT, REMOTE_PORT)
        self._handles = itertools.count(1)
        self._ident = 0
        self._t0 = self.world.now_ns
        host = self.k.host
        self._mtx = host.mutex_create()
        self._cv = host.cv_create()
        self.ifp = self._attach_interface()

    def _attach_interface(self) -> Ifnet:
        k = self.k
        ns = k.net
        ns.link_output[LINK] = self._output
        ns.link_input[LINK] = lambda ifp, pkt: ip_input(ns.inet, ifp, pkt)
        with k.entered(), ns.lock:
            ifp = Ifnet(ns, "pd0", LINK, _Driver(), 1500)
            ifp.flags = IFF_UP | IFF_RUNNING
            ns.attach_if(ifp)
            ns.inet.add_address(ifp, LOCAL_IP, b"\xff\xff\xff\x00")
            ns.routes.add(Route(REMOTE_IP[:3] + b"\x00", 24, None, ifp, RTF_UP | RTF_STATIC,
                                src=LOCAL_IP))
        return ifp

    # --- the runner interface ----------------------------------------------------------------

    @property
    def now(self) -> float:
        return (self.world.now_ns - self._t0) / 1e9

    def enter(self, fn: Any) -> Any:
        from rumpkernel.testing.netkit import drive

        def body() -> Any:
            self._t0 = self.world.now_ns
            return fn()
        return drive(self.k, body, "packetdrill")

    def ports(self) -> tuple[int, int]:
        return self._ports

    def inject(self, seg: TcpSegment) -> None:
        raw = emit_for(seg, self.remote_ip, self.local_ip)
        self._ident = (self._ident + 1) & 0xFFFF
        pkt = ipv4.header(self.remote_ip, self.local_ip, 6, len(raw), 64, 0, self._ident,
                          ipv4.FLAG_DF) + raw
        with self.k.entered():
            self.ifp.input(pkt)
        self._yield()

    def advance(self, until: float, stop_on_output: bool = False) -> None:
        self._yield()
        while not (stop_on_output and self.sent):
            left_ns = round((until - self.now) * 1e9)     # script times are float seconds
            if left_ns <= 0:
                self._yield()          # timers due at ``until`` run before the next event
                return
            self._mtx.enter()
            try:
                self._cv.wait(self._mtx, left_ns)
            finally:
                self._mtx.exit()

    def collect(self) -> list[tuple[float, TcpSegment]]:
        out, self.sent = self.sent, []
        return out

    def completions(self) -> list[tuple[float, int, Outcome]]:
        out, self.done = self.done, []
        return out

    def sysctl(self, name: str, value: str) -> None:
        sys_ = self.k.sys
        try:
            cur = sys_.sysctl(name)
        except OSError:
            raise ValueError(f"unknown sysctl {name}") from None
        try:
            sys_.sysctl(name, int(value, 0) if isinstance(cur, int) else value)
        except (OSError, ValueError) as e:
            raise ValueError(f"sysctl {name}={value}: {e}") from None

    def close(self) -> None:
        k = self.k
        if not k.dead:
            k.halt()
        if k.panicked is not None:
            raise AssertionError(f"kernel panicked: {k.panicked.message}")

    def syscall(self, name: str, args: tuple) -> Outcome:
        fn = getattr(self, "sys_" + name, None)
        if fn is None:
            return Outcome(-1, "ENOSYS")
        handle = next(self._handles)
        box: dict[str, Outcome] = {}

        def body() -> None:
            try:
                out = fn(*args)
                out = out if isinstance(out, Outcome) else Outcome(out)
            except OSError as e:
                out = Outcome(-1, host_errno.errorcode.get(e.errno or 0, str(e.errno)))
            except KernelError as e:
                out = Outcome(-1, Errno(e.errno).name)
            if handle in self.pending:
                self.pending.discard(handle)
                self.done.append((self.now, handle, out))
                self._cv.broadcast()
            else:
                box["out"] = out

        self.pending.add(handle)
        self.world.thread_create(body, f"pd-{name}")
        self._yield()
        if "out" in box or handle not in self.pending:
            return box.get("out") or self._take(handle)
        return Outcome(pending=True, handle=handle)

    def _take(self, handle: int) -> Outcome:
        for i, (_, h, out) in enumerate(self.done):
            if h == handle:
                del self.done[i]
                return out
        raise AssertionError("lost a system call result")

    # --- plumbing ----------------------------------------------------------------------------

    def _yield(self) -> None:
        """Let every runnable thread of the world run at this instant."""
        self.world.sleep_ns(0)

    def _output(self, ifp: Ifnet, pkt: bytes, nexthop: bytes) -> None:
        """What the kernel sends through pd0 (stack lock held)."""
        ifp.opackets += 1
        if len(pkt) < 20 or pkt[9] != 6:
            return
        hl = (pkt[0] & 0xF) * 4
        total = int.from_bytes(pkt[2:4], "big")
        src, dst = bytes(pkt[12:16]), bytes(pkt[16:20])
        try:
            seg = parse_for(pkt[hl:total], src, dst)
        except TcpFormatError as e:
            raise AssertionError(f"the kernel sent a malformed segment: {e}") from None
        if seg.flags & 0x12 == 0x02:
            self._ports = (seg.src_port, seg.dst_port)
        self.sent.append((self.now, seg))
        self._cv.broadcast()

    def _kfd(self, fd: Any) -> int:
        kfd = self.fds.get(_int(fd))
        if kfd is None:
            raise OSError(host_errno.EBADF, "bad file descriptor")
        return kfd

    def _new_fd(self, kfd: int) -> int:
        fd = 3
        while fd in self.fds:
            fd += 1
        self.fds[fd] = kfd
        return fd

    @staticmethod
    def _sockaddr(addr: bytes, port: int) -> bytes:
        return structs.pack_sockaddr_in(addr, port)

    # --- system calls (each on its own simulated thread) ---------------------------------------

    def sys_socket(self, domain: Any, type_: Any, proto: Any) -> int:
        return self._new_fd(self.k.sys.sys_socket(K.AF_INET, K.SOCK_STREAM, K.IPPROTO_TCP))

    def sys_bind(self, fd: Any, addr: Any = ..., addrlen: Any = ...) -> int:
        sa = self._sockaddr(self.local_ip, SCRIPT_PORT)
        self.k.sys.sys_bind(self._kfd(fd), sa, len(sa))
        return 0

    def sys_listen(self, fd: Any, backlog: Any) -> int:
        self.k.sys.sys_listen(self._kfd(fd), _int(backlog))
        self._ports = (SCRIPT_PORT, REMOTE_PORT)
        return 0

    def sys_accept(self, fd: Any, addr: Any = ..., addrlen: Any = ..., flags: Any = 0) -> int:
        newfd, _alen = self.k.sys.sys_accept4(self._kfd(fd), None, 0, 0)
        return self._new_fd(newfd)

    sys_accept4 = sys_accept

    def sys_connect(self, fd: Any, addr: Any = ..., addrlen: Any = ...) -> int:
        sa = self._sockaddr(self.remote_ip, SCRIPT_PORT)
        self.k.sys.sys_connect(self._kfd(fd), sa, len(sa))
        return 0

    def sys_write(self, fd: Any, buf: Any, count: Any) -> int:
        n = _int(count)
        return self.k.sys.write(self._kfd(fd), bytes(n))

    def sys_send(self, fd: Any, buf: Any, count: Any, flags: Any = 0) -> int:
        n = _int(count)
        return self.k.sys.sys_sendto(self._kfd(fd), bytes(n), n, _bits(flags, MSG_BITS),
                                     None, 0)

    def sys_read(self, fd: Any, buf: Any, count: Any) -> int:
        return len(self.k.sys.read(self._kfd(fd), _int(count)))

    def sys_recv(self, fd: Any, buf: Any, count: Any, flags: Any = 0) -> int:
        n = _int(count)
        got, _alen = self.k.sys.sys_recvfrom(self._kfd(fd), bytearray(n), n,
                                             _bits(flags, MSG_BITS), None, 0)
        return got

    def sys_shutdown(self, fd: Any, how: Any) -> int:
        self.k.sys.sys_shutdown(self._kfd(fd), SHUT[how] if isinstance(how, str) else how)
        return 0

    def sys_close(self, fd: Any) -> int:
        kfd = self._kfd(fd)
        del self.fds[_int(fd)]
        self.k.sys.close(kfd)
        return 0

    def sys_fcntl(self, fd: Any, cmd: Any, arg: Any = 0) -> int:
        kfd = self._kfd(fd)
        if cmd == "F_SETFL":
            names = arg.names if hasattr(arg, "names") else (arg,)
            self.k.sys.set_blocking(kfd, "O_NONBLOCK" not in names)
            return 0
        if cmd == "F_GETFL":
            flags = self.k.sys.sys_fcntl(kfd, K.F_GETFL, 0)
            return 0x802 if flags & K.O_NONBLOCK else 0x2
        raise OSError(host_errno.EINVAL, f"fcntl {cmd}")

    def sys_setsockopt(self, fd: Any, level: Any, name: Any, value: Any,
                       length: Any = ...) -> int:
        if name == "SO_LINGER":
            raw = structs.LINGER.pack(int(value.get("onoff", 0)), int(value.get("linger", 0)))
        elif isinstance(value, str | bytes):
            raw = value.encode() if isinstance(value, str) else value
        else:
            raw = _int(value).to_bytes(4, "little", signed=True)
        self.k.sys.sys_setsockopt(self._kfd(fd), _level(level), _name(name), raw, len(raw))
        return 0

    def sys_getsockopt(self, fd: Any, level: Any, name: Any, value: Any = ...,
                       length: Any = ...) -> Outcome:
        kfd = self._kfd(fd)
        size = structs.TCP_INFO.size if name == "TCP_INFO" else 16
        buf = bytearray(size)
        self.k.sys.sys_getsockopt(kfd, _level(level), _name(name), buf, size)
        if name == "TCP_INFO":
            return Outcome(0, out=_tcp_info(bytes(buf)))
        v = int.from_bytes(buf[:4], "little", signed=True)
        if name == "SO_ERROR":
            return Outcome(0, out=[Errno(v).name if v else 0])
        return Outcome(0, out=[v])

    def sys_ioctl(self, fd: Any, request: Any, arg: Any = ...) -> Outcome:
        cmd = {"SIOCATMARK": K.SIOCATMARK, "FIONREAD": K.FIONREAD}.get(request)
        if cmd is None:
            raise OSError(host_errno.ENOTTY, f"ioctl {request}")
        buf = bytearray(4)
        self.k.sys.sys_ioctl(self._kfd(fd), cmd, buf, 4)
        return Outcome(0, out=[int.from_bytes(buf, "little", signed=True)])

    def sys_poll(self, fds: Any, nfds: Any, timeout: Any) -> Outcome:
        entries = [dict(e) for e in fds]
        req = []
        for e in entries:
            e["events"] = _bits(e.get("events", 0), POLL_BITS)
            req.append((self._kfd(e["fd"]), e["events"]))
        ready = dict(self.k.sys.poll(req, _int(timeout)))
        n = 0
        for e, (kfd, _ev) in zip(entries, req):
            e["revents"] = ready.get(kfd, 0)
            n += bool(e["revents"])
        return Outcome(n, out=entries)


def _level(level: Any) -> int:
    if isinstance(level, int):
        return level
    if level not in LEVELS:
        raise OSError(host_errno.EINVAL, f"level {level}")
    return LEVELS[level]


def _name(name: Any) -> int:
    if isinstance(name, int):
        return name
    v = getattr(K, name, None)
    if not isinstance(v, int):
        raise OSError(host_errno.ENOPROTOOPT, f"option {name}")
    return v


def _tcp_info(raw: bytes) -> dict[str, Any]:
    """The kernel's TCP_INFO (structs.TCP_INFO) in the fields and units the scripts use."""
    f = dict(zip(structs.TCP_INFO.names, structs.TCP_INFO.unpack(raw)))
    state = TCP_STATES[_STATE_BY_NUMBER[f["state"]]]
    ca = "open" if f["ca_state"] != 3 else ("sack" if f["options"] & 2 else "newreno")
    return {"tcpi_state": state, "tcpi_snd_cwnd": f["snd_cwnd"],
            "tcpi_snd_ssthresh": f["snd_ssthresh"], "tcpi_rto": f["rto"],
            "tcpi_retransmits": f["retransmits"], "tcpi_total_retrans": f["total_retrans"],
            "tcpi_snd_mss": f["snd_mss"], "tcpi_rcv_mss": f["rcv_mss"],
            "tcpi_backoff": f["backoff"], "tcpi_rtt": f["rtt"], "tcpi_rttvar": f["rttvar"],
            "tcpi_unacked": f["unacked"], "tcpi_snd_wscale": f["wscale"] & 0xF,
            "tcpi_rcv_wscale": f["wscale"] >> 4, "tcpi_ca_state": ca,
            "tcpi_sacked": f["sacked"]}
