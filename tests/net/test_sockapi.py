"""The socket system calls as files (read/write/fstat/fcntl/poll), poll over many sockets,
the selectors selector and asyncio over kernel sockets, makefile -- local and remote."""

from __future__ import annotations

import asyncio
import errno
import os
import selectors
import stat

import pytest

from rumpkernel.apps.rump_net_aio import run as aio_run


def test_sockets_are_files(knet) -> None:
    S, sys_ = knet.socket, knet.sys
    a, b = S.socketpair()
    with a, b:
        assert stat.S_ISSOCK(sys_.fstat(a.fileno()).st_mode)
        assert sys_.write(a.fileno(), b"via write") == 9
        assert sys_.read(b.fileno(), 100) == b"via write"
        sys_.set_blocking(b.fileno(), False)
        with pytest.raises(BlockingIOError):
            sys_.read(b.fileno(), 100)
        with pytest.raises(OSError) as e:
            sys_.lseek(a.fileno(), 0, os.SEEK_SET)
        assert e.value.errno == errno.ESPIPE
        d = sys_.dup(a.fileno())
        sys_.write(d, b"dup")
        sys_.close(d)
        assert b.recv(10) == b"dup"
    r, w = knet.sys.pipe()
    with pytest.raises(OSError) as e:
        knet.sys.sys_getsockname(r, bytearray(16), 16)
    assert e.value.errno == errno.ENOTSOCK
    knet.sys.close(r)
    knet.sys.close(w)


def test_poll_mixes_sockets_pipes_and_files_and_forgets_consumed_data(knet) -> None:
    S, sys_ = knet.socket, knet.sys
    r, w = sys_.pipe()
    f = sys_.open("/pollfile", os.O_CREAT | os.O_RDWR, 0o644)
    u = S.socket(S.AF_INET, S.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", 0))
        IN, OUT = select_bits()
        fds = [(r, IN), (u.fileno(), IN), (f, IN)]
        assert dict(sys_.poll(fds, 0)) == {f: IN}              # regular files: always ready
        with S.socket(S.AF_INET, S.SOCK_DGRAM) as tx:
            tx.sendto(b"x", u.getsockname())
        assert dict(sys_.poll(fds[1:2], 5000)) == {u.fileno(): IN}   # lo0 input is a softint
        sys_.write(w, b"y")
        ready = dict(sys_.poll(fds, 1000))
        assert ready[r] & IN and ready[u.fileno()] & IN
        u.recv(10)
        sys_.read(r, 10)
        assert dict(sys_.poll(fds, 0)) == {f: IN}              # the same poll again: not ready
        assert dict(sys_.poll([(u.fileno(), OUT)], 0)) == {u.fileno(): OUT}
    finally:
        u.close()
        for fd in (r, w, f):
            sys_.close(fd)
        sys_.unlink("/pollfile")


def select_bits() -> tuple[int, int]:
    import select

    return select.POLLIN, select.POLLOUT


def test_thousand_idle_sockets_and_one_busy(knet) -> None:
    if knet.mode == "remote":
        pytest.skip("the wake-up count is read from the kernel's lwp: local only")
    S = knet.socket
    idle = [S.socket(S.AF_INET, S.SOCK_DGRAM) for _ in range(1000)]
    busy = S.socket(S.AF_INET, S.SOCK_DGRAM)
    tx = S.socket(S.AF_INET, S.SOCK_DGRAM)
    try:
        for s in idle:
            s.bind(("127.0.0.1", 0))
        busy.bind(("127.0.0.1", 0))
        sel = S.selector()
        for s in [*idle, busy]:
            sel.register(s, selectors.EVENT_READ)
        assert sel.select(0) == []
        from rumpkernel.kern.select import waiter_of

        lwp = knet.k.host.curlwp_get()
        w = waiter_of(lwp)
        before = w.wakeups
        for i in range(20):
            tx.sendto(b"%d" % i, busy.getsockname())
            ((key, ev),) = sel.select(5)
            assert key.fileobj is busy and ev == selectors.EVENT_READ
            busy.recv(10)
        assert w.wakeups - before <= 2 * 20                  # the busy socket's events only
        sel.close()
    finally:
        for s in [*idle, busy, tx]:
            s.close()


def test_selector_register_modify_unregister(knet) -> None:
    S = knet.socket
    a, b = S.socketpair()
    sel = S.selector()
    with a, b:
        key = sel.register(a, selectors.EVENT_READ, "data")
        assert key.fd == a.fileno() and sel.get_map()[a] == key
        with pytest.raises(KeyError):
            sel.register(a.fileno(), selectors.EVENT_READ)
        assert sel.select(0) == []
        sel.modify(a, selectors.EVENT_READ | selectors.EVENT_WRITE, "more")
        ((k2, ev),) = sel.select(0)
        assert ev == selectors.EVENT_WRITE and k2.data == "more"
        b.send(b"!")
        assert sel.select(1)[0][1] == selectors.EVENT_READ | selectors.EVENT_WRITE
        sel.unregister(a)
        assert len(sel.get_map()) == 0
    sel.close()


def test_makefile_lines(knet) -> None:
    S = knet.socket
    a, b = S.socketpair()
    with a, b:
        w = a.makefile("w", encoding="utf-8")
        r = b.makefile("rb")
        w.write("first line\nsecond line\n")
        w.flush()
        assert r.readline() == b"first line\n" and r.readline() == b"second line\n"
        w.close()
        r.close()


def test_asyncio_over_kernel_sockets(knet) -> None:
    S = knet.socket
    path = "/aio.sock"

    async def main() -> list[bytes]:
        srv_sock = S.socket(S.AF_UNIX, S.SOCK_STREAM)
        srv_sock.bind(path)
        srv_sock.listen()

        async def handle(reader, writer) -> None:
            while line := await reader.readline():
                writer.write(line.upper())
                await writer.drain()
            writer.close()

        server = await asyncio.start_unix_server(handle, sock=srv_sock)
        out = []
        async with server:
            for _ in range(3):
                c = S.socket(S.AF_UNIX, S.SOCK_STREAM)
                c.connect(path)
                reader, writer = await asyncio.open_unix_connection(sock=c)
                writer.write(b"hello\nasync world\n")
                await writer.drain()
                out += [await reader.readline(), await reader.readline()]
                writer.close()
                await writer.wait_closed()
            # datagrams and sock_* calls through the same loop
            loop = asyncio.get_running_loop()
            u1, u2 = S.socket(S.AF_INET, S.SOCK_DGRAM), S.socket(S.AF_INET, S.SOCK_DGRAM)
            for u in (u1, u2):
                u.setblocking(False)
                u.bind(("127.0.0.1", 0))
            task = asyncio.ensure_future(loop.sock_recv(u1, 100))
            await asyncio.sleep(0.01)
            await loop.sock_sendto(u2, b"udp via asyncio", u1.getsockname())
            out.append(await asyncio.wait_for(task, 5))
            loop.call_soon_threadsafe(lambda: None)
            u1.close()
            u2.close()
        return out

    try:
        assert aio_run(main(), S) == [b"HELLO\n", b"ASYNC WORLD\n"] * 3 + [b"udp via asyncio"]
    finally:
        knet.sys.unlink(path)


def test_getaddrinfo_and_hosts_file(knet) -> None:
    S = knet.socket
    assert S.getaddrinfo("127.0.0.1", 80, type=S.SOCK_STREAM) == [
        (S.AF_INET, S.SOCK_STREAM, S.IPPROTO_TCP, "", ("127.0.0.1", 80))]
    assert S.gethostbyname("localhost") == "127.0.0.1"
    with pytest.raises(S.gaierror):
        S.gethostbyname("no.such.host.example")
    knet.sys.mkdir("/etc") if not knet.sys.access("/etc", os.F_OK) else None
    fd = knet.sys.open("/etc/hosts", os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    knet.sys.write(fd, b"# comment\n10.99.0.7  peer peer.example\n")
    knet.sys.close(fd)
    assert S.gethostbyname("peer.example") == "10.99.0.7"
    assert S.getaddrinfo("peer", "53", type=S.SOCK_DGRAM)[0][4] == ("10.99.0.7", 53)
    assert S.gethostname() == "knet"
    assert S.inet_aton("10.1") == bytes([10, 0, 0, 1]) and S.htons(1) == 256
