"""A ``selectors`` selector over the kernel's poll: event loops (``asyncio`` among them) can
wait on kernel sockets, pipes and files.

Interface:
    KernelSelector(sys)        a ``selectors.BaseSelector``: register / unregister / modify /
                               select(timeout) / get_map / close.  File objects are kernel
                               descriptors (ints) or objects whose ``fileno()`` returns one
                               (``KernelSocket``).
For asyncio, the loop's own wake-up pipe must be a kernel one too:
``rumpkernel.apps.rump_net_aio.new_event_loop(k.socket)`` makes such a loop.
"""

from __future__ import annotations

import math
import selectors
from collections.abc import Mapping
from typing import Any

from rumpkernel.client import abi as H

EVENT_READ = selectors.EVENT_READ
EVENT_WRITE = selectors.EVENT_WRITE


def _fd_of(fileobj: Any) -> int:
    if isinstance(fileobj, int):
        fd = fileobj
    else:
        try:
            fd = int(fileobj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"Invalid file object: {fileobj!r}") from None
    if fd < 0:
        raise ValueError(f"Invalid file descriptor: {fd}")
    return fd


class _Map(Mapping):
    def __init__(self, sel: KernelSelector) -> None:
        self._sel = sel

    def __len__(self) -> int:
        return len(self._sel._keys)

    def __getitem__(self, fileobj: Any) -> selectors.SelectorKey:
        try:
            return self._sel._keys[_fd_of(fileobj)]
        except (KeyError, ValueError):
            raise KeyError(f"{fileobj!r} is not registered") from None

    def __iter__(self) -> Any:
        return iter(self._sel._keys)


class KernelSelector(selectors.BaseSelector):
    def __init__(self, sys: Any) -> None:
        self._sys = sys
        self._keys: dict[int, selectors.SelectorKey] = {}
        self._map = _Map(self)

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        if not events or events & ~(EVENT_READ | EVENT_WRITE):
            raise ValueError(f"Invalid events: {events!r}")
        fd = _fd_of(fileobj)
        if fd in self._keys:
            raise KeyError(f"{fileobj!r} (FD {fd}) is already registered")
        key = selectors.SelectorKey(fileobj, fd, events, data)
        self._keys[fd] = key
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        try:
            return self._keys.pop(_fd_of(fileobj))
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = self._map[fileobj]
        if events != key.events or data != key.data:
            self.unregister(fileobj)
            key = self.register(fileobj, events, data)
        return key

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            ms = -1
        elif timeout <= 0:
            ms = 0
        else:
            ms = math.ceil(timeout * 1e3)
        fds = []
        for fd, key in self._keys.items():
            ev = (H.POLLIN if key.events & EVENT_READ else 0) | \
                (H.POLLOUT if key.events & EVENT_WRITE else 0)
            fds.append((fd, ev))
        if not fds:
            if ms != 0:
                self._sys.nanosleep(0.0 if ms < 0 else ms / 1e3)
            return []
        try:
            ready = self._sys.poll(fds, ms)
        except InterruptedError:
            return []
        out = []
        for fd, rev in ready:
            key = self._keys.get(fd)
            if key is None:
                continue
            events = 0
            if rev & ~H.POLLOUT:
                events |= EVENT_READ
            if rev & ~H.POLLIN:
                events |= EVENT_WRITE
            if events & key.events:
                out.append((key, events & key.events))
        return out

    def close(self) -> None:
        self._keys.clear()

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._map
