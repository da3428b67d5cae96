"""rump_lwproc(3): processes and threads for local clients."""

from __future__ import annotations

import threading

import pytest

import rumpkernel
from rumpkernel import SimHost
from rumpkernel.kern.proc import RFCFDG, RFFDG, RFSHARE


@pytest.fixture
def k():
    k = rumpkernel.boot(SimHost(21), components=())
    yield k
    k.host.curlwp_set(None)
    if not k.dead:
        k.halt()


def test_rfork_copies_descriptor_table(k) -> None:
    r, w = k.sys.pipe()
    pid = k.lwproc.rfork(RFFDG)
    assert k.sys.getpid() == pid and k.sys.getppid() == 1
    k.sys.write(w, b"from child")              # inherited copies work
    k.sys.close(w)                             # closing the child's copy ...
    k.lwproc.release()
    k.sys.write(w, b"!")                       # ... leaves the parent's open
    assert k.sys.read(r, 100) == b"from child!"
    k.sys.close(r)
    k.sys.close(w)
    assert k.statistics()["processes"] == 2


def test_rfork_clean_table(k) -> None:
    r, w = k.sys.pipe()
    k.lwproc.rfork(RFCFDG)
    with pytest.raises(OSError):
        k.sys.write(w, b"x")
    k.lwproc.release()
    k.sys.close(r)
    k.sys.close(w)


def test_rfork_shared_table(k) -> None:
    before = k.sys.pipe()
    k.lwproc.rfork(RFSHARE)
    r, w = k.sys.pipe()
    assert (r, w) == (2, 3)                    # allocated after the parent's 0 and 1
    k.sys.write(before[1], b"p")               # the child uses the parent's descriptors
    k.lwproc.release()
    assert k.sys.write(w, b"c") == 1           # the parent sees the child's descriptors
    assert k.sys.read(r, 1) == b"c" and k.sys.read(before[0], 1) == b"p"
    for fd in (r, w, *before):
        k.sys.close(fd)
    k.lwproc.rfork(RFFDG)                      # a copy: the child's new ones stay its own
    r2, _w2 = k.sys.pipe()
    k.lwproc.release()
    with pytest.raises(OSError):
        k.sys.close(r2)


def test_release_closes_files_of_exiting_process(k) -> None:
    k.lwproc.rfork(RFCFDG)
    k.sys.pipe()
    assert k.statistics()["open_files"] == 2
    k.lwproc.release()
    s = k.statistics()
    assert s["open_files"] == 0 and s["processes"] == 2 and s["lwps"] == 0


def test_newlwp_and_switch(k) -> None:
    pid = k.lwproc.rfork()
    l1 = k.lwproc.curlwp()
    l2 = k.lwproc.newlwp(pid)                  # second thread of the same process
    assert k.lwproc.curlwp() is l2 and k.sys.getpid() == pid
    k.lwproc.switch(None)
    assert k.sys.getpid() == 1                 # implicit context: pid 1
    k.lwproc.switch(l1)
    assert k.sys.getpid() == pid
    k.lwproc.release()                         # l1 gone, process lives on with l2
    assert pid in k.procs.procs
    k.lwproc.switch(l2)
    k.lwproc.release()
    assert pid not in k.procs.procs


def test_bound_lwp_is_per_host_thread(k) -> None:
    pid = k.lwproc.rfork()
    seen: list[int] = []
    t = threading.Thread(target=lambda: seen.append(k.sys.getpid()))
    t.start()
    t.join()
    assert seen == [1] and k.sys.getpid() == pid
    k.lwproc.release()


def test_release_without_bound_lwp(k) -> None:
    with pytest.raises(rumpkernel.KernelError):
        k.lwproc.release()


def test_orphans_reparented_to_init(k) -> None:
    parent = k.lwproc.rfork()
    child = k.lwproc.rfork()
    lchild = k.lwproc.curlwp()
    k.lwproc.switch(None)
    k.lwproc.switch(k.procs.procs[parent].lwps.copy().pop())
    k.lwproc.release()                         # parent exits
    assert k.procs.procs[child].parent is k.proc1
    k.lwproc.switch(lchild)
    assert k.sys.getppid() == 1
    k.lwproc.release()
