"""A readers-writer lock built from a host mutex and condition variable (writers preferred),
so every host gets ``rw_create`` from the two primitives it already has."""

from __future__ import annotations

from rumpkernel.hypercall.interface import HostCondVar, HostMutex


class RWLock:
    __slots__ = ("_cv", "_mtx", "_readers", "_writer", "_writers_waiting")

    def __init__(self, mtx: HostMutex, cv: HostCondVar) -> None:
        self._mtx = mtx
        self._cv = cv
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    def _can(self, write: bool) -> bool:
        if write:
            return not self._writer and self._readers == 0
        return not self._writer and self._writers_waiting == 0

    def enter(self, write: bool) -> None:
        self._mtx.enter()
        try:
            if write:
                self._writers_waiting += 1
            while not self._can(write):
                self._cv.wait(self._mtx)
            if write:
                self._writers_waiting -= 1
                self._writer = True
            else:
                self._readers += 1
        finally:
            self._mtx.exit()

    def tryenter(self, write: bool) -> bool:
        self._mtx.enter()
        try:
            if not self._can(write):
                return False
            if write:
                self._writer = True
            else:
                self._readers += 1
            return True
        finally:
            self._mtx.exit()

    def exit(self) -> None:
        self._mtx.enter()
        try:
            if self._writer:
                self._writer = False
            else:
                self._readers -= 1
            self._cv.broadcast()
        finally:
            self._mtx.exit()
