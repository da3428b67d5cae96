"""Kernel memory accounting (DESIGN rule 10).

Interface:
    KMem(limit)                 -- one per kernel; ``limit`` in bytes or None for unlimited.
    kmem.alloc(nbytes, tag)     -- account an allocation; KernelError(ENOMEM) when over the limit
                                   even after asking every registered reclaimer to give memory back.
    kmem.free(nbytes, tag)      -- give it back.
    kmem.register_reclaimer(fn) -- ``fn(target_bytes) -> freed_bytes``: the pagedaemon's clients
                                   (buffer cache, vnode cache) free clean cached data on request.
    kmem.stats()                -- {"in_use": ..., "limit": ..., "by_tag": {...}, ...}

Python allocates the real objects; this layer counts what kernel subsystems hold so a kernel
honours its memory limit and ``statistics()`` shows where memory went.  When use crosses 90 % of
the limit, ``pressure`` is True and caches shrink themselves on their next insertion (the
pagedaemon's watermark from the dissertation).
"""

from __future__ import annotations

from collections.abc import Callable

from rumpkernel.kern.errno import Errno, KernelError

Reclaimer = Callable[[int], int]


class KMem:
    __slots__ = ("by_tag", "failures", "in_use", "limit", "peak", "reclaimers", "reclaims")

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self.in_use = 0
        self.peak = 0
        self.by_tag: dict[str, int] = {}
        self.reclaimers: list[Reclaimer] = []
        self.reclaims = 0
        self.failures = 0

    @property
    def pressure(self) -> bool:
        return self.limit is not None and self.in_use * 10 >= self.limit * 9

    def register_reclaimer(self, fn: Reclaimer) -> None:
        self.reclaimers.append(fn)

    def unregister_reclaimer(self, fn: Reclaimer) -> None:
        if fn in self.reclaimers:
            self.reclaimers.remove(fn)

    def alloc(self, nbytes: int, tag: str) -> None:
        limit = self.limit
        if limit is not None and self.in_use + nbytes > limit:
            self._reclaim(self.in_use + nbytes - limit + limit // 10)
            if self.in_use + nbytes > limit:
                self.failures += 1
                raise KernelError(Errno.ENOMEM, f"kernel memory limit {limit} reached ({tag})")
        self.in_use += nbytes
        self.by_tag[tag] = self.by_tag.get(tag, 0) + nbytes
        if self.in_use > self.peak:
            self.peak = self.in_use

    def free(self, nbytes: int, tag: str) -> None:
        self.in_use -= nbytes
        self.by_tag[tag] = self.by_tag.get(tag, 0) - nbytes

    def _reclaim(self, target: int) -> int:
        self.reclaims += 1
        freed = 0
        for fn in list(self.reclaimers):
            freed += fn(target - freed)
            if freed >= target:
                break
        return freed

    def stats(self) -> dict[str, object]:
        return {
            "in_use": self.in_use,
            "peak": self.peak,
            "limit": self.limit,
            "by_tag": {k: v for k, v in self.by_tag.items() if v},
            "reclaims": self.reclaims,
            "failures": self.failures,
        }
