"""asyncio over kernel sockets: an event loop whose selector is the kernel's poll.

    loop = rumpkernel.apps.rump_net_aio.new_event_loop(k.socket)   # or conn.socket
    asyncio.set_event_loop(loop)
    reader, writer = loop.run_until_complete(
        asyncio.open_unix_connection(sock=k.socket.socket(k.socket.AF_UNIX)...))

Everything the loop waits on is a kernel descriptor: its own wake-up channel is a kernel
socket pair instead of a host one, so ``call_soon_threadsafe`` works and nothing in the
selector is a host descriptor.  Sockets handed to the loop must be ``KernelSocket``s
(``loop.sock_recv``, ``create_datagram_endpoint(sock=...)``, ``open_unix_connection(sock=...)``,
``start_unix_server(sock=...)``).  TCP by host and port makes kernel sockets:
``asyncio.open_connection("10.0.0.2", 80)`` and ``asyncio.start_server(cb, "0.0.0.0", 80)``
(numeric addresses, IPv6 ones too, names from the kernel's /etc/hosts) run on the kernel's
TCP.  Host-side
signal handlers (``add_signal_handler``) are not supported.

Interface: ``KernelEventLoop(socketmod)``; ``new_event_loop(socketmod)``;
``run(coro, socketmod)`` -- ``asyncio.run`` on such a loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class KernelEventLoop(asyncio.SelectorEventLoop):
    def __init__(self, socketmod: Any) -> None:
        self._ksock = socketmod
        super().__init__(socketmod.selector())

    def _make_self_pipe(self) -> None:
        self._ssock, self._csock = self._ksock.socketpair()
        self._ssock.setblocking(False)
        self._csock.setblocking(False)
        self._internal_fds += 1
        self._add_reader(self._ssock.fileno(), self._read_from_self)

    async def create_connection(self, protocol_factory: Any, host: Any = None,
                                port: Any = None, *, sock: Any = None, **kw: Any) -> Any:
        if sock is None and host is not None:
            sock = await self._kernel_connect(host, port, kw.pop("local_addr", None))
            host = port = None
            kw.pop("family", None)
            kw.pop("proto", None)
            kw.pop("flags", None)
        return await super().create_connection(protocol_factory, host, port, sock=sock, **kw)

    async def _kernel_connect(self, host: str, port: int, local: Any) -> Any:
        S = self._ksock
        errors: list[OSError] = []
        for fam, typ, proto, _c, addr in S.getaddrinfo(host, port, 0, S.SOCK_STREAM):
            s = S.socket(fam, typ, proto)
            try:
                s.setblocking(False)
                if local is not None:
                    s.bind(local)
                await self.sock_connect(s, addr)
                return s
            except OSError as e:
                s.close()
                errors.append(e)
        raise errors[0] if errors else OSError(f"no address for {host}")

    async def create_server(self, protocol_factory: Any, host: Any = None, port: Any = None,
                            *, sock: Any = None, backlog: int = 100,
                            reuse_address: bool | None = None, **kw: Any) -> Any:
        if sock is None and (host is not None or port is not None):
            S = self._ksock
            v6 = isinstance(host, str) and ":" in host      # an IPv6 literal: TCP over IPv6
            sock = S.socket(S.AF_INET6 if v6 else S.AF_INET, S.SOCK_STREAM)
            try:
                if reuse_address is not False:
                    sock.setsockopt(S.SOL_SOCKET, S.SO_REUSEADDR, 1)
                sock.bind((host or "0.0.0.0", port or 0))
                sock.listen(backlog)
                sock.setblocking(False)
            except BaseException:
                sock.close()
                raise
            kw.pop("family", None)
            kw.pop("flags", None)
        return await super().create_server(protocol_factory, sock=sock, backlog=backlog, **kw)

    def add_signal_handler(self, sig: int, callback: Any, *args: Any) -> None:
        raise NotImplementedError("signal handlers on a kernel event loop")


def new_event_loop(socketmod: Any) -> KernelEventLoop:
    return KernelEventLoop(socketmod)


def run(coro: Coroutine[Any, Any, Any], socketmod: Any) -> Any:
    with asyncio.Runner(loop_factory=lambda: new_event_loop(socketmod)) as runner:
        return runner.run(coro)
