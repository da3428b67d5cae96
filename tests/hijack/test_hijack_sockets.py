"""The socket side of the hijack, in this process over a local kernel: policy, what a hijacked
``socket.socket`` is, descriptors shared with the hijacked ``os`` calls, and select / poll /
epoll / selectors over kernel descriptors alone and mixed with host ones (the dual-kernel wait)."""

from __future__ import annotations

import errno
import os
import select
import selectors
import socket
import threading
import time

import pytest

from rumpkernel.apps.hijack import Policy
from rumpkernel.apps.hijack_net import HijackSocket, parse_families
from tests.hijack.conftest import hijacked


# ---- policy ------------------------------------------------------------------------------------
def test_socket_policy_grammar() -> None:
    assert parse_families("all:nolocal") == (True, frozenset({socket.AF_UNIX}))
    assert parse_families("inet:inet6") == (False, frozenset({socket.AF_INET, socket.AF_INET6}))
    assert parse_families("all") == (True, frozenset())
    for bad in ("inet:noinet6", "all:inet", "ipx", "noinet"):
        with pytest.raises(ValueError):
            parse_families(bad)
    assert Policy("socket=").sockets is None                  # empty: nothing routed
    assert Policy("path=/rump").sockets is None               # only what is given
    assert Policy("path=/rump,socket=all:nolocal").sockets == (True, frozenset({socket.AF_UNIX}))


def test_default_policy_keeps_local_sockets_on_the_host() -> None:
    with hijacked("path=/rump,socket=all:nolocal") as h:
        a, b = socket.socketpair()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with a, b, u:
            assert a.fileno() < h.off and b.fileno() < h.off          # host AF_UNIX
            assert u.fileno() >= h.off                                # kernel AF_INET
            assert isinstance(a, socket.socket) and isinstance(u, socket.socket)
    with hijacked("socket=inet6") as h, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        assert u.fileno() < h.off                                     # inet not routed


# ---- the socket object -------------------------------------------------------------------------
def test_a_kernel_socket_is_a_socket_socket(hj) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    assert isinstance(s, socket.socket) and isinstance(s, HijackSocket)
    assert s.family == socket.AF_INET and s.type == socket.SOCK_DGRAM
    kfd = s.fileno() - hj.off
    assert kfd >= 0 and hj.k.sys.fstat(kfd).st_mode & 0o170000 == 0o140000   # a kernel socket
    s.bind(("127.0.0.1", 0))
    assert "laddr=('127.0.0.1'" in repr(s)
    s.close()
    assert s.fileno() == -1 and "[closed]" in repr(s)
    with pytest.raises(OSError) as e:
        hj.k.sys.fstat(kfd)
    assert e.value.errno == errno.EBADF


def test_kernel_socket_descriptors_work_with_the_os_calls(hj) -> None:
    a, b = socket.socketpair()                        # kernel AF_LOCAL (socket=all)
    with a, b:
        assert a.fileno() >= hj.off
        assert os.write(a.fileno(), b"via os.write") == 12
        assert b.recv(100) == b"via os.write"
        b.sendall(b"back")
        assert os.read(a.fileno(), 100) == b"back"
        assert os.get_blocking(a.fileno()) and a.getblocking()
        a.setblocking(False)
        assert not os.get_blocking(a.fileno())               # the kernel's O_NONBLOCK
        a.setblocking(True)
        c = socket.fromfd(a.fileno(), socket.AF_UNIX, socket.SOCK_STREAM)   # a kernel dup
        with c:
            assert c.fileno() >= hj.off and c.fileno() != a.fileno()
            c.send(b"dup")
            assert b.recv(10) == b"dup"
        fd = b.detach()
        assert b.fileno() == -1 and fd >= hj.off
        d = socket.socket(fileno=fd)                  # family/type read back from the kernel
        with d:
            assert d.family == socket.AF_UNIX and d.type == socket.SOCK_STREAM
            a.send(b"again")
            assert d.recv(10) == b"again"


def test_makefile_timeouts_and_errors(hj) -> None:
    a, b = socket.socketpair()
    with a, b:
        w, r = a.makefile("w"), b.makefile("r")
        w.write("one\ntwo\n")
        w.flush()
        assert r.readline() == "one\n" and r.readline() == "two\n"
        w.close()
        r.close()
        b.settimeout(0.05)
        assert b.gettimeout() == 0.05 and b.timeout == 0.05
        with pytest.raises(TimeoutError):
            b.recv(10)
        b.setblocking(False)
        with pytest.raises(BlockingIOError):
            b.recv(10)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with u, pytest.raises(OSError) as e:
        u.bind(("10.255.255.1", 9))                   # not an address of the kernel
    assert e.value.errno == errno.EADDRNOTAVAIL


def test_host_descriptors_at_or_above_the_offset_are_refused() -> None:
    with hijacked("socket=inet,fdoff=5"), pytest.raises(OSError) as e:
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)   # host fds are >= 5 already
    assert e.value.errno == errno.ENFILE


def test_tls_over_a_kernel_socket_is_refused(hj) -> None:
    import ssl

    ctx = ssl.create_default_context()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, pytest.raises(OSError) as e:
        ctx.wrap_socket(s)
    assert e.value.errno == errno.EOPNOTSUPP


# ---- waiting ----------------------------------------------------------------------------------
def _udp_pair() -> tuple[socket.socket, socket.socket]:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    return rx, tx


def test_select_on_kernel_descriptors_alone(hj) -> None:
    rx, tx = _udp_pair()
    with rx, tx:
        assert select.select([rx], [], [], 0) == ([], [], [])
        assert select.select([rx], [tx], [], 0) == ([], [tx], [])
        tx.sendto(b"x", rx.getsockname())
        assert select.select([rx, rx.fileno()], [], [], 5)[0] == [rx, rx.fileno()]
        rx.recv(10)
        t0 = time.monotonic()
        assert select.select([rx], [], [], 0.1) == ([], [], [])
        assert time.monotonic() - t0 >= 0.09
        fd = rx.fileno()
    with pytest.raises(OSError) as e:                 # a closed kernel descriptor
        select.select([fd], [], [], 0)
    assert e.value.errno == errno.EBADF


def test_select_mixes_kernel_and_host_descriptors(hj) -> None:
    rx, tx = _udp_pair()
    hr, hw = os.pipe()
    try:
        assert select.select([rx, hr], [], [], 0) == ([], [], [])
        # the host side fires while we wait: the helper thread wakes the kernel side
        threading.Timer(0.1, os.write, (hw, b"h")).start()
        assert select.select([rx, hr], [], [], 10) == ([hr], [], [])
        os.read(hr, 1)
        # the kernel side fires while we wait: the host wait is stopped
        threading.Timer(0.1, tx.sendto, (b"k", rx.getsockname())).start()
        assert select.select([rx, hr], [], [], 10) == ([rx], [], [])
        rx.recv(10)
        t0 = time.monotonic()
        assert select.select([rx, hr], [], [], 0.1) == ([], [], [])
        assert time.monotonic() - t0 >= 0.09
        assert select.select([rx, hr], [hw, tx], [], 5) == ([], [tx, hw], [])
    finally:
        rx.close()
        tx.close()
        os.close(hr)
        os.close(hw)


def test_poll_and_epoll_mixed_with_oneshot(hj) -> None:
    rx, tx = _udp_pair()
    hr, hw = os.pipe()
    try:
        p = select.poll()
        p.register(rx, select.POLLIN)
        p.register(hr, select.POLLIN)
        assert p.poll(0) == []
        threading.Timer(0.1, tx.sendto, (b"k", rx.getsockname())).start()
        assert p.poll(10_000) == [(rx.fileno(), select.POLLIN)]
        os.write(hw, b"h")
        assert sorted(p.poll(1000)) == sorted([(rx.fileno(), select.POLLIN),
                                               (hr, select.POLLIN)])
        p.unregister(hr)
        assert p.poll(0) == [(rx.fileno(), select.POLLIN)]
        with select.epoll() as ep:
            ep.register(rx.fileno(), select.EPOLLIN | select.EPOLLONESHOT)
            ep.register(hr, select.EPOLLIN)
            assert sorted(ep.poll(1)) == sorted([(rx.fileno(), select.EPOLLIN),
                                                 (hr, select.EPOLLIN)])
            assert ep.poll(0) == [(hr, select.EPOLLIN)]            # rx: one shot
            ep.modify(rx.fileno(), select.EPOLLIN)
            assert len(ep.poll(0)) == 2
            with pytest.raises(FileExistsError):
                ep.register(rx.fileno(), select.EPOLLIN)
            ep.unregister(rx.fileno())
            with pytest.raises(FileNotFoundError):
                ep.unregister(rx.fileno())
    finally:
        rx.close()
        tx.close()
        os.close(hr)
        os.close(hw)


@pytest.mark.parametrize("kind", ["DefaultSelector", "PollSelector", "SelectSelector"])
def test_selectors_over_both_kernels(hj, kind: str) -> None:
    rx, tx = _udp_pair()
    ha, hb = socket.socketpair()                    # kernel AF_LOCAL too (socket=all) ...
    hr, hw = os.pipe()                               # ... and a host pipe
    sel = getattr(selectors, kind)()
    try:
        sel.register(rx, selectors.EVENT_READ, "kernel-udp")
        sel.register(hr, selectors.EVENT_READ, "host-pipe")
        sel.register(hb, selectors.EVENT_READ | selectors.EVENT_WRITE, "kernel-pair")
        assert [(k.data, ev) for k, ev in sel.select(0)] == [("kernel-pair",
                                                              selectors.EVENT_WRITE)]
        sel.modify(hb, selectors.EVENT_READ, "kernel-pair")
        threading.Timer(0.1, os.write, (hw, b"!")).start()
        assert [k.data for k, _ in sel.select(10)] == ["host-pipe"]
        tx.sendto(b"k", rx.getsockname())
        ha.send(b"p")
        deadline = time.monotonic() + 10
        seen: set[str] = set()
        while seen != {"kernel-udp", "kernel-pair", "host-pipe"} and time.monotonic() < deadline:
            seen |= {k.data for k, _ in sel.select(1)}
        assert seen == {"kernel-udp", "kernel-pair", "host-pipe"}
    finally:
        sel.close()
        for s in (rx, tx, ha, hb):
            s.close()
        os.close(hr)
        os.close(hw)


def test_asyncio_loop_over_kernel_sockets_and_its_host_self_pipe() -> None:
    import asyncio

    with hijacked("socket=all:nolocal"):            # the loop's self-pipe stays on the host
        async def main() -> list[bytes]:
            loop = asyncio.get_running_loop()
            got: list[bytes] = []

            class Echo(asyncio.DatagramProtocol):
                def connection_made(self, t: asyncio.BaseTransport) -> None:
                    self.t = t

                def datagram_received(self, data: bytes, addr: tuple) -> None:
                    self.t.sendto(data.upper(), addr)          # type: ignore[attr-defined]

            srv, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
            port = srv.get_extra_info("sockname")[1]
            assert srv.get_extra_info("socket").fileno() >= 128
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.setblocking(False)
            for word in (b"one", b"two"):
                await loop.sock_sendto(u, word, ("127.0.0.1", port))
                got.append(await asyncio.wait_for(loop.sock_recv(u, 10), 5))
            threading.Timer(0.05, loop.call_soon_threadsafe, (lambda: got.append(b"woken"),)
                            ).start()
            await asyncio.sleep(0.3)                   # the host self-pipe wakes the loop
            u.close()
            srv.close()
            return got

        assert asyncio.run(main()) == [b"ONE", b"TWO", b"woken"]
