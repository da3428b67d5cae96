"""AF_LOCAL sockets: stream, datagram, seqpacket, names in the VFS (and without it), descriptor
passing, through local and remote clients."""

from __future__ import annotations

import array
import errno
import os
import stat

import pytest

import rumpkernel
from rumpkernel.client.socket import SocketModule


def test_stream_pair_and_eof_and_epipe(knet) -> None:
    S = knet.socket
    a, b = S.socketpair()
    with a, b:
        a.sendall(b"hello " * 1000)
        got = b""
        while len(got) < 6000:
            got += b.recv(65536)
        assert got == b"hello " * 1000
        a.shutdown(S.SHUT_WR)
        assert b.recv(10) == b""                       # EOF after shutdown
        b.send(b"still open the other way")
        assert a.recv(100) == b"still open the other way"
        b.close()
        with pytest.raises(BrokenPipeError):
            a.send(b"x")
        assert a.recv(10) == b""


def test_stream_listen_connect_accept_with_vfs_names(knet) -> None:
    S = knet.socket
    path = "/tmp/srv.sock"
    knet.sys.mkdir("/tmp") if not knet.k.sys.access("/tmp", os.F_OK) else None
    srv = S.socket(S.AF_UNIX, S.SOCK_STREAM)
    try:
        with pytest.raises(OSError) as e:
            srv.listen()                               # not bound yet
        assert e.value.errno == errno.EINVAL
        srv.bind(path)
        assert stat.S_ISSOCK(knet.sys.stat(path).st_mode)
        srv.listen(5)
        other = S.socket(S.AF_UNIX, S.SOCK_STREAM)
        with pytest.raises(OSError) as e:
            other.bind(path)
        assert e.value.errno == errno.EADDRINUSE
        other.close()
        c = S.socket(S.AF_UNIX, S.SOCK_STREAM)
        c.connect(path)
        conn, addr = srv.accept()
        assert addr == "" and conn.getsockname() == path and c.getpeername() == path
        c.sendall(b"ping")
        assert conn.recv(4) == b"ping"
        conn.sendall(b"pong")
        assert c.recv(4) == b"pong"
        for s in (c, conn):
            s.close()
    finally:
        srv.close()
    bad = S.socket(S.AF_UNIX, S.SOCK_STREAM)
    with bad:
        with pytest.raises(ConnectionRefusedError):
            bad.connect(path)                          # the node stays, nobody listens
        with pytest.raises(FileNotFoundError):
            bad.connect("/tmp/nothing-here")
        knet.sys.close(knet.sys.open("/tmp/plain", os.O_CREAT | os.O_WRONLY, 0o644))
        with pytest.raises(OSError) as e:
            bad.connect("/tmp/plain")
        assert e.value.errno == errno.ENOTSOCK
    knet.sys.unlink(path)


def test_datagram_names_and_senders(knet) -> None:
    S = knet.socket
    a = S.socket(S.AF_UNIX, S.SOCK_DGRAM)
    b = S.socket(S.AF_UNIX, S.SOCK_DGRAM)
    with a, b:
        a.bind("/dga")
        b.bind("/dgb")
        b.sendto(b"one", "/dga")
        assert a.recvfrom(10) == (b"one", "/dgb")
        anon = S.socket(S.AF_UNIX, S.SOCK_DGRAM)
        with anon:
            anon.sendto(b"two", "/dga")
            assert a.recvfrom(10) == (b"two", "")
        with pytest.raises(FileNotFoundError):
            a.sendto(b"x", "/dg-missing")
        with pytest.raises(OSError) as e:
            a.sendto(b"x", "/")
        assert e.value.errno == errno.ENOTSOCK
    with S.socket(S.AF_UNIX, S.SOCK_DGRAM) as c, pytest.raises(ConnectionRefusedError):
        c.sendto(b"x", "/dga")                     # the name stays; its socket is gone
    for p in ("/dga", "/dgb"):
        knet.sys.unlink(p)


def test_seqpacket_keeps_boundaries(knet) -> None:
    S = knet.socket
    a, b = S.socketpair(S.AF_UNIX, S.SOCK_SEQPACKET)
    with a, b:
        a.send(b"first")
        a.send(b"second message")
        assert b.recv(100) == b"first"
        data, _anc, flags, _addr = b.recvmsg(6)
        assert data == b"second" and flags & S.MSG_TRUNC


def test_scm_rights_passes_a_pipe(knet) -> None:
    S = knet.socket
    a, b = S.socketpair()
    with a, b:
        r, w = knet.sys.pipe()
        knet.sys.write(w, b"through the pipe")
        fds = array.array("i", [r])
        a.sendmsg([b"fd"], [(S.SOL_SOCKET, S.SCM_RIGHTS, fds.tobytes())])
        knet.sys.close(r)                              # the message holds it
        data, anc, flags, _ = b.recvmsg(10, 64)
        assert data == b"fd" and not flags & S.MSG_CTRUNC
        (level, ctype, payload), = anc
        assert (level, ctype) == (S.SOL_SOCKET, S.SCM_RIGHTS)
        newfd = array.array("i", payload)[0]
        assert knet.sys.read(newfd, 100) == b"through the pipe"
        knet.sys.close(newfd)
        knet.sys.close(w)


def test_scm_rights_unreceived_are_closed_and_truncation(knet) -> None:
    S = knet.socket
    a, b = S.socketpair(S.AF_UNIX, S.SOCK_DGRAM)
    with a, b:
        r, w = knet.sys.pipe()
        a.sendmsg([b"x"], [(S.SOL_SOCKET, S.SCM_RIGHTS, array.array("i", [r, w]).tobytes())])
        _data, anc, flags, _ = b.recvmsg(10, 20)        # room for the header and one fd
        assert flags & S.MSG_CTRUNC and len(anc) == 1 and len(anc[0][2]) == 4
        knet.sys.close(array.array("i", anc[0][2])[0])
        a.sendmsg([b"y"], [(S.SOL_SOCKET, S.SCM_RIGHTS, array.array("i", [r]).tobytes())])
        knet.sys.close(r)
        knet.sys.close(w)
    # closing b with the message unread dropped the file: the leak check at teardown proves it
    with S.socket(S.AF_INET, S.SOCK_DGRAM) as u:
        with pytest.raises(OSError) as e:
            u.sendmsg([b"x"], [(S.SOL_SOCKET, S.SCM_RIGHTS, array.array("i", [0]).tobytes())],
                      0, ("127.0.0.1", 9))
        assert e.value.errno == errno.EOPNOTSUPP


def test_abstract_names(knet) -> None:
    S = knet.socket
    srv = S.socket(S.AF_UNIX, S.SOCK_STREAM)
    with srv:
        srv.bind(b"\0abstract")
        srv.listen()
        assert srv.getsockname() == b"\0abstract"
        with S.socket(S.AF_UNIX, S.SOCK_STREAM) as c:
            c.connect(b"\0abstract")
            conn, _ = srv.accept()
            conn.close()


def test_stream_writer_blocks_until_reader_drains(knet) -> None:
    S = knet.socket
    a, b = S.socketpair()
    with a, b:
        a.setblocking(False)
        sent = 0
        with pytest.raises(BlockingIOError):
            while True:
                sent += a.send(b"z" * 8192)
        assert 0 < sent <= 256 * 1024
        got = 0
        while got < sent:
            got += len(b.recv(65536))
        assert got == sent
        assert a.send(b"more") == 4                     # room again


def test_local_names_without_vfs() -> None:
    k = rumpkernel.boot(components=("net",))
    try:
        S = k.socket
        assert isinstance(S, SocketModule)
        srv = S.socket(S.AF_UNIX, S.SOCK_STREAM)
        srv.bind("/no/such/dir/needed")
        srv.listen()
        c = S.socket(S.AF_UNIX, S.SOCK_STREAM)
        c.connect("/no/such/dir/needed")
        conn, _ = srv.accept()
        conn.send(b"ok")
        assert c.recv(2) == b"ok"
        for s in (c, conn, srv):
            s.close()
        s2 = S.socket(S.AF_UNIX, S.SOCK_STREAM)       # the name went with the socket
        s2.bind("/no/such/dir/needed")
        s2.close()
        with pytest.raises(OSError) as e:
            S.socket(S.AF_INET, S.SOCK_DGRAM)          # no inet domain in this kernel
        assert e.value.errno == errno.EAFNOSUPPORT
    finally:
        k.halt()
    assert k.statistics()["memory"]["in_use"] == 0


def test_kernel_without_net_answers_enosys() -> None:
    k = rumpkernel.boot(components=("vfs",))
    try:
        with pytest.raises(OSError) as e:
            k.sys.sys_socket(2, 2, 0)
        assert e.value.errno == errno.ENOSYS
    finally:
        k.halt()
