"""Virtual CPUs and the cooperative scheduler (dissertation section 3.3.2).

A host thread runs kernel code only while it holds a virtual CPU.  ``schedule(l)`` takes one for
lwp ``l`` and ``unschedule(l)`` gives it back; a thread gives its vCPU back around every blocking
wait (mutex contention, condition variables, host I/O), so a blocked thread never keeps a vCPU
busy.  There is no preemption: a thread runs kernel code until it blocks or leaves.

Fast path: pop a free vCPU off the freelist (atomic under the host's interpreter lock, the
counterpart of the dissertation's compare-and-swap).  Slow path: count ourselves as ``wanted``,
wait on a host condition variable, re-check.  A releaser that sees ``wanted`` signals.  Invariant
(tested): never two lwps on one vCPU.

Interface:  Scheduler(host, ncpu); schedule(l); unschedule(l); stats()
"""

from __future__ import annotations

from typing import Any

from rumpkernel.hypercall.interface import Hypercalls


class CPU:
    __slots__ = ("index", "nrun", "curlwp")

    def __init__(self, index: int) -> None:
        self.index = index
        self.curlwp: Any = None
        self.nrun = 0


class Scheduler:
    __slots__ = ("_cv", "_free", "_mtx", "cpus", "fast", "ncpu", "slow", "wanted")

    def __init__(self, host: Hypercalls, ncpu: int) -> None:
        if ncpu < 1:
            raise ValueError("ncpu must be at least 1")
        self.ncpu = ncpu
        self.cpus = [CPU(i) for i in range(ncpu)]
        self._free = list(reversed(self.cpus))
        self._mtx = host.mutex_create()
        self._cv = host.cv_create()
        self.wanted = 0
        self.fast = 0
        self.slow = 0

    def schedule(self, l: Any) -> None:
        try:
            cpu = self._free.pop()
        except IndexError:
            cpu = self._schedule_slow()
        else:
            self.fast += 1
        if cpu.curlwp is not None:  # the invariant; a violation is a kernel bug
            raise AssertionError(f"vCPU {cpu.index} already runs {cpu.curlwp!r}")
        cpu.curlwp = l
        cpu.nrun += 1
        l.cpu = cpu

    def _schedule_slow(self) -> CPU:
        self.slow += 1
        mtx = self._mtx
        mtx.enter()
        self.wanted += 1
        try:
            while True:
                try:
                    return self._free.pop()
                except IndexError:
                    self._cv.wait(mtx)
        finally:
            self.wanted -= 1
            mtx.exit()

    def unschedule(self, l: Any) -> None:
        cpu = l.cpu
        if cpu is None:
            return
        l.cpu = None
        cpu.curlwp = None
        self._free.append(cpu)
        if self.wanted:
            self._mtx.enter()
            self._cv.signal()
            self._mtx.exit()

    @property
    def busy(self) -> int:
        return self.ncpu - len(self._free)

    def stats(self) -> dict[str, int]:
        return {"ncpu": self.ncpu, "busy": self.busy, "fastpath": self.fast,
                "slowpath": self.slow}
