"""The network faction's state: one ``NetStack`` per kernel, attached as ``k.net``.

Interface:
    NetStack(k)                      made by the "net" component
    .lock                            the stack lock (NetBSD's softnet_lock): interfaces, routes,
                                     ARP, protocol control blocks and socket buffers
    .add_domain(family, protocols)   register a domain's protosw entries
    .find_protocol(family, type, proto) -> Protocol      EAFNOSUPPORT / EPROTONOSUPPORT /
                                     EPROTOTYPE / ESOCKTNOSUPPORT
    .socket_alloc(proto, type, protocol) / .socket_free(so)   counted sockets (kmem "socket")
    .interfaces / .ifindex / .ifunit(name) / .attach_if(ifp) / .detach_if(ifp)
    .cloners                          prefix -> create(ns, name) -> Ifnet (if_clone)
    .routes                           the IPv4 routing table (net/route.py)
    .inet                             the inet domain's state when "net_inet" is in (else None)
    .inet6                            the inet6 domain's state when "net_inet6" is in (else None)
    .set_up(ifp, up)                  IFF_UP on or off; a change runs ``ifstate_hooks``
                                      (fn(ifp, "up" | "down" | "detach"): IPv6 address
                                      configuration follows the interface state)
    .ethertypes                       EtherType (2 bytes) -> fn(ifp, payload) for Ethernet input
                                      beyond IPv4 and ARP (IPv6); ``link_output6`` kind -> IPv6
                                      link output
    .stats                            protocol -> counter -> int ("ip", "icmp", "udp", ...)
    .count(proto, name, n=1)
    .netisr_enqueue(ifp, proto, pkt)  queue a packet for the input softint (bounded; the loopback
                                     path and local deliveries use it)
    .callout(fn, *args) / .schedule(c, delay_ns)      timers (kernel callouts)
    .dispose_control(control)        drop control messages that will never be received
    .halt() / .halt_final()          stop drivers / free what is left

Rules: everything that touches stack state holds ``lock``; device receive threads take it per
frame; waits in the socket layer release it.  Copies to and from callers happen outside it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rumpkernel.kern.abi import IFF_UP
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.kern.sync import KMutex
from rumpkernel.kern.sysctl import INT
from rumpkernel.net.route import RouteTable
from rumpkernel.net.socket import SOCKET_COST, Protocol, Socket

if TYPE_CHECKING:
    from rumpkernel.net.interface import Ifnet

NETISR_MAXLEN = 256


class NetStack:
    def __init__(self, k: Any) -> None:
        self.k = k
        self.lock = KMutex(k)
        self.domains: dict[int, list[Protocol]] = {}
        self.domain_names: dict[int, str] = {}
        self.sockets: dict[int, Socket] = {}
        self.next_socket_id = 0
        self.interfaces: dict[str, Ifnet] = {}
        self.ifindex: dict[int, Ifnet] = {}
        self.next_ifindex = 1
        self.cloners: dict[str, Callable[[NetStack, str], Ifnet]] = {}
        self.routes = RouteTable()
        self.inet: Any = None
        self.inet6: Any = None
        self.local: Any = None
        self.stats: dict[str, dict[str, int]] = {}
        self.netisr_q: deque[tuple[Any, str, bytes]] = deque()
        self.netisr_handlers: dict[str, Callable[[Any, bytes], None]] = {}
        # link layers by interface kind ("ether", "loop"): output, input, address announcement
        self.link_output: dict[str, Callable[..., None]] = {}
        self.link_input: dict[str, Callable[..., None]] = {}
        self.link_announce: dict[str, Callable[..., None]] = {}
        self.link_output6: dict[str, Callable[..., None]] = {}
        self.ethertypes: dict[bytes, Callable[..., None]] = {}
        self.ifstate_hooks: list[Callable[[Any, str], None]] = []
        self._netisr = k.softints.establish(self._netisr_run)
        self.halting = False

    # ---- domains and sockets ------------------------------------------------------------------
    def add_domain(self, family: int, name: str, protocols: list[Protocol]) -> None:
        self.domains[family] = protocols
        self.domain_names[family] = name

    def find_protocol(self, family: int, type_: int, proto: int) -> Protocol:
        prs = self.domains.get(family)
        if prs is None:
            raise KernelError(Errno.EAFNOSUPPORT, f"address family {family} not supported")
        typed = [p for p in prs if p.type == type_]
        if not typed:
            raise KernelError(Errno.EPROTONOSUPPORT if type_ in (1, 2, 3, 4, 5)
                              else Errno.ESOCKTNOSUPPORT, f"socket type {type_} in family "
                              f"{self.domain_names[family]}")
        for p in typed:
            if p.protocol == proto or (proto == 0 and not getattr(p, "wildcard", False)):
                return p
        for p in typed:
            if getattr(p, "wildcard", False):
                return p
        raise KernelError(Errno.EPROTONOSUPPORT, f"protocol {proto} with socket type {type_}")

    def socket_alloc(self, proto: Protocol, type_: int, protocol: int) -> Socket:
        self.k.kmem.alloc(SOCKET_COST, "socket")
        so = Socket(self, proto, type_, protocol)
        self.sockets[so.id] = so
        return so

    def socket_free(self, so: Socket) -> None:
        if self.sockets.pop(so.id, None) is not None:
            self.k.kmem.free(SOCKET_COST, "socket")

    def dispose_control(self, control: list) -> None:
        """Control messages nobody will receive: drop the files they carry."""
        for item in control:
            files = item[2] if len(item) > 2 else None
            if isinstance(files, list):
                for fp in files:
                    self.k.hooks.run("net_dispose_file", fp)
                    fp.drop(None)

    def current_lwp(self) -> Any:
        """The lwp of the calling thread (protocols that resolve names need its cwd)."""
        return self.k.host.curlwp_get()

    # ---- counters -------------------------------------------------------------------------------
    def count(self, proto: str, name: str, n: int = 1) -> None:
        c = self.stats.get(proto)
        if c is None:
            c = self.stats[proto] = {}
        c[name] = c.get(name, 0) + n

    def stat(self, proto: str, name: str) -> int:
        return self.stats.get(proto, {}).get(name, 0)

    def add_sysctl(self, name: str, getter: Callable[[], int],
                   setter: Callable[[int], None] | None = None, desc: str = "") -> None:
        self.k.sysctl.add(name, INT, getter=getter, setter=setter, writable=setter is not None,
                          desc=desc)

    def add_tunable(self, name: str, obj: Any, attr: str, lo: int, hi: int,
                    scale: int = 1) -> None:
        """A writable integer node over ``obj.attr`` (stored as value * ``scale``, e.g. seconds
        kept in ns); EINVAL outside ``lo..hi``."""
        def setter(v: int) -> None:
            if not lo <= v <= hi:
                raise KernelError(Errno.EINVAL, f"{name}: {v} not in {lo}..{hi}")
            setattr(obj, attr, v * scale)

        self.add_sysctl(name, lambda: getattr(obj, attr) // scale, setter)

    # ---- interfaces -------------------------------------------------------------------------
    def ifunit(self, name: str | bytes) -> Ifnet:
        if isinstance(name, bytes):
            name = name.decode("ascii", "replace")
        ifp = self.interfaces.get(name)
        if ifp is None:
            raise KernelError(Errno.ENXIO, f"no interface {name}")
        return ifp

    def attach_if(self, ifp: Ifnet) -> None:
        if ifp.name in self.interfaces:
            raise KernelError(Errno.EEXIST, f"interface {ifp.name} exists")
        ifp.index = self.next_ifindex
        self.next_ifindex += 1
        self.interfaces[ifp.name] = ifp
        self.ifindex[ifp.index] = ifp

    def set_up(self, ifp: Ifnet, up: bool) -> None:
        was = bool(ifp.flags & IFF_UP)
        if up:
            ifp.flags |= IFF_UP
        else:
            ifp.flags &= ~IFF_UP
        if was != up:
            for hook in self.ifstate_hooks:
                hook(ifp, "up" if up else "down")

    def detach_if(self, ifp: Ifnet) -> None:
        for hook in self.ifstate_hooks:
            hook(ifp, "detach")
        if self.inet is not None:
            self.inet.if_detached(ifp)
        self.routes.delete_if(ifp)
        ifp.detach()
        self.interfaces.pop(ifp.name, None)
        self.ifindex.pop(ifp.index, None)

    def clone_create(self, name: str) -> Ifnet:
        unit = name.lstrip("abcdefghijklmnopqrstuvwxyz")
        prefix = name[: len(name) - len(unit)]
        make = self.cloners.get(prefix)
        if make is None or not unit.isdigit() or len(name) >= 16:
            raise KernelError(Errno.EINVAL, f"cannot create {name!r}: interface types are "
                              f"{', '.join(sorted(self.cloners)) or 'none'}")
        if name in self.interfaces:
            raise KernelError(Errno.EEXIST, f"interface {name} exists")
        ifp = make(self, name)
        self.attach_if(ifp)
        return ifp

    # ---- the input softint (netisr) --------------------------------------------------------------
    def netisr_enqueue(self, ifp: Any, proto: str, pkt: bytes) -> None:
        if len(self.netisr_q) >= NETISR_MAXLEN:
            self.count("netisr", "qdrops")
            if ifp is not None:
                ifp.iqdrops += 1
            return
        try:
            self.k.kmem.alloc(len(pkt), "netisr")
        except KernelError:
            self.count("netisr", "nomem")
            return
        self.netisr_q.append((ifp, proto, pkt))
        self.k.softints.schedule(self._netisr)

    def _netisr_run(self) -> None:
        with self.lock:
            q = self.netisr_q
            for _ in range(len(q)):
                if not q:
                    break
                ifp, proto, pkt = q.popleft()
                self.k.kmem.free(len(pkt), "netisr")
                h = self.netisr_handlers.get(proto)
                if h is not None:
                    h(ifp, pkt)
            if q:
                self.k.softints.schedule(self._netisr)

    # ---- timers ----------------------------------------------------------------------------------
    def callout(self, fn: Callable[..., None], *args: Any) -> Any:
        """A callout whose handler runs with the stack lock held."""
        def locked(*a: Any) -> None:
            with self.lock:
                if not self.halting:
                    fn(*a)
        return self.k.callouts.callout(locked, *args)

    def schedule(self, c: Any, delay_ns: int) -> None:
        self.k.callouts.schedule(c, delay_ns)

    # ---- halt ------------------------------------------------------------------------------------
    def halt(self, sync: bool = True) -> None:
        """Stop every interface's driver (receive threads end)."""
        for ifp in list(self.interfaces.values()):
            ifp.stop_driver()

    def halt_final(self) -> None:
        """After every process closed its sockets: free queues and interfaces."""
        self.halting = True
        with self.lock:
            for so in list(self.sockets.values()):
                so.rcv.flush(self.dispose_control)
                so.snd.flush(self.dispose_control)
            while self.netisr_q:
                _ifp, _p, pkt = self.netisr_q.popleft()
                self.k.kmem.free(len(pkt), "netisr")
            for ifp in list(self.interfaces.values()):
                self.detach_if(ifp)
            if self.inet is not None:
                self.inet.halt_final()
            if self.inet6 is not None:
                self.inet6.halt_final()

    def statistics(self, stats: dict[str, Any]) -> None:
        stats["net"] = {"sockets": len(self.sockets), "interfaces": len(self.interfaces),
                        "routes": len(self.routes)}
