"""asyncio over kernel sockets: an event loop whose selector is the kernel's poll.

    loop = rumpkernel.apps.rump_net_aio.new_event_loop(k.socket)   # or conn.socket
    asyncio.set_event_loop(loop)
    reader, writer = loop.run_until_complete(
        asyncio.open_unix_connection(sock=k.socket.socket(k.socket.AF_UNIX)...))

Everything the loop waits on is a kernel descriptor: its own wake-up channel is a kernel
socket pair instead of a host one, so ``call_soon_threadsafe`` works and nothing in the
selector is a host descriptor.  Sockets handed to the loop must be ``KernelSocket``s
(``loop.sock_recv``, ``create_datagram_endpoint(sock=...)``, ``open_unix_connection(sock=...)``,
``start_unix_server(sock=...)``, and TCP once the kernel has it).  Host-side signal handlers
(``add_signal_handler``) are not supported.

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

    def add_signal_handler(self, sig: int, callback: Any, *args: Any) -> None:
        raise NotImplementedError("signal handlers on a kernel event loop")


def new_event_loop(socketmod: Any) -> KernelEventLoop:
    return KernelEventLoop(socketmod)


def run(coro: Coroutine[Any, Any, Any], socketmod: Any) -> Any:
    with asyncio.Runner(loop_factory=lambda: new_event_loop(socketmod)) as runner:
        return runner.run(coro)
