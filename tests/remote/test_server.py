"""rump_server as a real process: clients share its file system, a killed client's process and
everything it held go away, hostile input closes only the offending connection, and the server
shuts down cleanly (or, on a panic, loudly)."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from rumpkernel.client.sysproxy import messages as M
from rumpkernel.client.sysproxy import wire
from tests.remote.harness import ServerProcess, env, stat, wait_for

RW = os.O_RDWR | os.O_CREAT


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("srv")
    srv = ServerProcess(f"unix://{tmp}/sock", "-c", "2", "-r", "64m", "-v", "-lrumpvfs",
                        "-lrumpfs_tmpfs")
    yield srv
    assert srv.stop() == 0
    assert not Path(f"{tmp}/sock").exists(), "socket file left behind"


def baseline(srv: ServerProcess) -> dict[str, int]:
    with srv.connect() as c:
        out = {n: stat(c, n) for n in ("processes", "lwps", "open_files", "vnodes_referenced")}
    # the probe connection itself was one process with one lwp
    assert wait_for(lambda: _counts(srv) == out)
    return out


def _counts(srv: ServerProcess) -> dict[str, int]:
    with srv.connect() as c:
        return {n: stat(c, n) for n in ("processes", "lwps", "open_files", "vnodes_referenced")}


def test_connection_is_a_process(server) -> None:
    with server.connect(progname="t1") as a, server.connect() as b:
        assert a.pid != b.pid and a.sys.getpid() == a.pid
        assert a.sys.getppid() == 1 and a.sys.getuid() == 0 and a.sys.geteuid() == 0
        ra, wa = a.sys.pipe()
        assert (ra, wa) == (0, 1)                       # a clean descriptor table each
        rb, wb = b.sys.pipe()
        assert (rb, wb) == (0, 1)
        a.sys.write(wa, b"A")
        b.sys.write(wb, b"B")
        assert a.sys.read(ra, 5) == b"A" and b.sys.read(rb, 5) == b"B"
        a.sys.setuid(1000)                              # credentials are per process
        assert a.sys.getuid() == 1000 and b.sys.getuid() == 0
        assert a.sys.sysctl("kern.stat.processes") >= 4
        assert a.sys.sysctl("hw.ncpu") == 2 and a.sys.sysctl("hw.physmem") == 64 << 20
        b.sys.mkdir("/tmp")
        b.sys.mount("tmpfs", "/tmp")                  # -lrumpfs_tmpfs loaded tmpfs
        assert "tmpfs tmpfs rw" in b.sys.sysctl("vfs.mounts")
        b.sys.unmount("/tmp")
        b.sys.rmdir("/tmp")


def test_two_clients_share_the_file_system(server) -> None:
    with server.connect() as a, server.connect() as b:
        a.sys.mkdir("/shared")
        fd = a.sys.open("/shared/f", RW, 0o644)
        a.sys.write(fd, b"written by a")
        a.sys.fsync(fd)
        fdb = b.sys.open("/shared/f", os.O_RDWR)
        assert b.sys.read(fdb, 100) == b"written by a"
        b.sys.pwrite(fdb, b"B", 0)
        assert a.sys.pread(fd, 3, 0) == b"Bri"
        assert sorted(b.sys.listdir("/shared")) == ["f"]
        a.sys.close(fd)
        b.sys.close(fdb)
        b.sys.unlink("/shared/f")
        a.sys.rmdir("/shared")


def test_blocked_call_from_one_thread_while_another_calls(server) -> None:
    """Several threads of one client have calls in flight on one connection."""
    with server.connect() as c:
        r, w = c.sys.pipe()
        got: list[bytes] = []
        t = threading.Thread(target=lambda: got.append(c.sys.read(r, 10)))
        t.start()
        time.sleep(0.1)
        assert t.is_alive() and c.sys.getpid() == c.pid    # not stuck behind the read
        c.sys.write(w, b"wake")
        t.join(10)
        assert got == [b"wake"]


CLIENT = """
import os, sys, rumpkernel
c = rumpkernel.connect(sys.argv[1], autofork=False)
if sys.argv[2] == "read":
    r, w = c.sys.pipe()
    fd = c.sys.open("/held-" + str(os.getpid()), os.O_CREAT | os.O_RDWR, 0o644)
    print("ready", flush=True)
    c.sys.read(r, 10)
else:
    fd = c.sys.open("/big-" + str(os.getpid()), os.O_CREAT | os.O_RDWR, 0o644)
    chunk = b"x" * (4 << 20)
    print("ready", flush=True)
    while True:
        c.sys.pwrite(fd, chunk, 0)      # the same 4 MiB again and again
"""


@pytest.mark.parametrize("what", ["read", "write"])
def test_kill_9_client_frees_everything(server, tmp_path: Path, what: str) -> None:
    before = baseline(server)
    p = subprocess.Popen([sys.executable, "-c", CLIENT, server.url, what], env=env(),
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        time.sleep(0.3)             # blocked in the kernel / in the middle of 4 MiB writes
        with server.connect() as probe:
            assert stat(probe, "processes") == before["processes"] + 1   # client + probe
            assert stat(probe, "open_files") >= before["open_files"] + 1
    finally:
        p.kill()
        p.wait()
        p.stdout.close()
    assert wait_for(lambda: _counts(server) == before), (_counts(server), before)
    with server.connect() as c:                        # the server is still fine
        for name in c.sys.listdir("/"):
            if name.startswith(("big-", "held-")):
                c.sys.unlink("/" + name)


def _raw(url: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.connect(url[len("unix://"):])
    s.settimeout(10)
    return s


def _recv_frame(s: socket.socket) -> M.Message | None:
    dec = wire.FrameDecoder()
    while True:
        f = dec.next()
        if f is not None:
            return M.decode(f)
        data = s.recv(65536)
        if not data:
            return None
        dec.feed(data)


def _hello(s: socket.socket) -> None:
    assert isinstance(_recv_frame(s), M.Banner)
    s.sendall(M.Handshake(wire.VERSION, 0, "raw").encode())
    rep = _recv_frame(s)
    assert isinstance(rep, M.HandshakeReply) and rep.errno == 0


BAD = {
    "truncated": lambda: M.Syscall(1, ()).encode(1)[:-1],
    "oversized": lambda: (wire.MAX_FRAME).to_bytes(4, "little") + bytes(12),
    "unknown type": lambda: wire.encode_frame(0x66, 1, b""),
    "reserved bits": lambda: M.Syscall(1, ()).encode(1)[:6] + b"\1\0" + M.Syscall(1, ()).encode(
        1)[8:],
    "reply to nothing": lambda: M.CopyData(0, b"x").encode(7),
    "server message": lambda: M.Copyin(1, 1, 1).encode(1),
    "trailing bytes": lambda: wire.encode_frame(wire.MsgType.SYSCALL, 1, b"\1\0\0\0\0junk"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_frames_close_only_that_connection(server, name: str) -> None:
    with server.connect() as bystander:
        r, w = bystander.sys.pipe()
        s = _raw(server.url)
        try:
            _hello(s)
            s.sendall(BAD[name]())
            if name == "truncated":
                s.shutdown(socket.SHUT_WR)
            assert _recv_frame(s) is None           # the server hung up on us
        finally:
            s.close()
        bystander.sys.write(w, b"still here")    # ... and nobody else
        assert bystander.sys.read(r, 20) == b"still here"


def test_semantic_errors_are_errnos(server) -> None:
    s = _raw(server.url)
    try:
        _hello(s)
        s.sendall(M.Syscall(4000, ()).encode(1))                    # unknown number
        rep = _recv_frame(s)
        assert rep.errno == 78                                    # kernel ENOSYS
        s.sendall(M.Syscall(15, (0, 1, 2)).encode(2))                # int where a pointer goes
        rep = _recv_frame(s)
        assert rep.errno == 22 and "must be out" in rep.detail
        s.sendall(M.Syscall(1, (5,)).encode(3))                      # too many arguments
        assert _recv_frame(s).errno == 22
        s.sendall(M.Syscall(1, ()).encode(4))                        # still serving
        assert _recv_frame(s).value > 1
    finally:
        s.close()


def test_protocol_errors_are_logged(tmp_path: Path) -> None:
    srv = ServerProcess(f"unix://{tmp_path}/s")
    try:
        s = _raw(srv.url)
        _hello(s)
        s.sendall(wire.encode_frame(0x66, 1, b""))
        assert _recv_frame(s) is None
        s.close()
        s = _raw(srv.url)
        _recv_frame(s)
        s.sendall(M.Syscall(1, ()).encode(1))          # no handshake
        assert _recv_frame(s) is None
        s.close()
    finally:
        assert srv.stop() == 0
    assert "unknown message type 0x66" in srv.stderr
    assert "before the handshake" in srv.stderr


def test_unix_socket_is_private(server) -> None:
    path = server.url[len("unix://"):]
    assert os.stat(path).st_mode & 0o777 == 0o600


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tcp_needs_and_checks_the_secret(tmp_path: Path) -> None:
    url = f"tcp://127.0.0.1:{_free_port()}"
    r = subprocess.run([sys.executable, "-m", "rumpkernel.apps.rump_server", "-s", url],
                       env=env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "secret" in r.stderr
    secret_file = tmp_path / "secret"
    secret_file.write_text("correct horse battery staple\n")
    srv = ServerProcess(url, extra_env={"RUMP_AUTH_FILE": str(secret_file)},
                        secret=b"correct horse battery staple")
    try:
        with srv.connect() as c:
            assert c.sys.getppid() == 1
        with pytest.raises(PermissionError, match="authentication"):
            srv.connect(secret=b"wrong")
        with pytest.raises(ConnectionRefusedError, match="secret"):
            srv.connect(secret=None)
        with srv.connect() as c:                   # the failures left the server serving
            assert c.sys.sysctl("kern.ostype") == "RumpKernel"
    finally:
        assert srv.stop() == 0
    assert "authentication failed" in srv.stderr


def test_sigterm_flushes_the_file_systems(tmp_path: Path) -> None:
    img = tmp_path / "disk.img"
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext2", str(img), "8M"], check=True)
    srv = ServerProcess(f"unix://{tmp_path}/s", "-d", f"key=/dk,hostpath={img},size=host")
    try:
        with srv.connect() as c:
            c.sys.mkdir("/mnt")
            c.sys.mount("ext2", "/mnt", 0, {"from": "/dk"})
            fd = c.sys.open("/mnt/hello", RW, 0o644)
            c.sys.write(fd, b"survives the server")
            # no fsync, no close, no unmount: the halt does it
    finally:
        assert srv.stop(signal.SIGTERM) == 0
    assert not (tmp_path / "s").exists()
    r = subprocess.run(["e2fsck", "-fn", str(img)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(["debugfs", "-R", "cat /hello", str(img)], capture_output=True)
    assert r.stdout == b"survives the server"


PANIC_MODULE = """
def rump_modinit(k):
    def buggy(l):
        return {}["bug"]
    k.install_syscall(500, buggy)
"""


def test_panic_ends_the_server_loudly(tmp_path: Path) -> None:
    mod = tmp_path / "buggy.py"
    mod.write_text(textwrap.dedent(PANIC_MODULE))
    srv = ServerProcess(f"unix://{tmp_path}/s", "-m", str(mod))
    from rumpkernel import KernelPanic

    with srv.connect() as c, srv.connect() as other:
        r, _w = other.sys.pipe()
        errors: list[Exception] = []

        def reader() -> None:
            try:
                other.sys.read(r, 1)
            except (OSError, KernelPanic) as e:   # lost connection, EINTR, or the panic itself
                errors.append(e)

        blocked = threading.Thread(target=reader)
        blocked.start()
        with pytest.raises(KernelPanic, match="KeyError"):
            c.sys._call(500, ())
        blocked.join(10)
        assert not blocked.is_alive() and errors    # the blocked reader was woken
    assert srv.proc.wait(30) == 70
    assert "panic:" in srv.stderr and "buggy" in srv.stderr and "Traceback" in srv.stderr


def test_daemon_mode_detaches_when_ready(tmp_path: Path) -> None:
    url = f"unix://{tmp_path}/d"
    r = subprocess.run([sys.executable, "-m", "rumpkernel.apps.rump_server", "-l", "tmpfs",
                        url], env=env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    from rumpkernel import connect
    with connect(url, autofork=False) as c:
        assert "tmpfs" in c.sys.sysctl_names("") or c.sys.getpid() > 1
        c.sys.reboot()                              # rump.halt's way of stopping it
    assert wait_for(lambda: not (tmp_path / "d").exists(), 20)
    bad = subprocess.run([sys.executable, "-m", "rumpkernel.apps.rump_server", "-l", "nosuch",
                          f"unix://{tmp_path}/e"], env=env(), capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 1 and "nosuch" in bad.stderr


def test_errors_keep_their_errno(server) -> None:
    with server.connect() as c:
        with pytest.raises(FileNotFoundError) as ei:
            c.sys.open("/no/such", os.O_RDONLY)
        assert ei.value.filename == "/no/such"
        with pytest.raises(OSError) as ei:
            c.sys.close(77)
        assert ei.value.errno == errno.EBADF
        with pytest.raises(OSError) as ei:
            c.sys.sys_read(0, b"readonly", 4)
        assert ei.value.errno in (errno.EBADF, errno.EFAULT)


def test_too_many_calls_in_flight(server) -> None:
    """Requests that block (reads of an empty pipe) pile up to a limit; past it the connection
    is closed and everything it held is freed."""
    from rumpkernel.client.sysproxy.session import MAX_INFLIGHT

    before = baseline(server)
    s = _raw(server.url)
    try:
        _hello(s)
        s.sendall(M.Syscall(14, (0,)).encode(1))                          # pipe2
        rfd = _recv_frame(s).value[0]
        s.sendall(b"".join(M.Syscall(15, (rfd, M.PtrDesc(0, 1, 1), 1)).encode(i)
                           for i in range(2, MAX_INFLIGHT + 3)))
        assert _recv_frame(s) is None
    finally:
        s.close()
    assert wait_for(lambda: _counts(server) == before, 20), (_counts(server), before)


def test_sigterm_with_a_blocked_client(tmp_path: Path) -> None:
    srv = ServerProcess(f"unix://{tmp_path}/s", "-l", "tmpfs")
    c = srv.connect()
    try:
        r, _w = c.sys.pipe()
        errors: list[OSError] = []

        def reader() -> None:
            try:
                c.sys.read(r, 1)
            except OSError as e:
                errors.append(e)

        t = threading.Thread(target=reader)
        t.start()
        time.sleep(0.2)
        assert srv.stop(signal.SIGTERM) == 0          # does not wait for the blocked read
        t.join(10)
        assert not t.is_alive() and errors[0].errno == errno.ENOTCONN
    finally:
        c.close()


def test_boot_failure_is_reported_once(tmp_path: Path) -> None:
    """#16 item 9: the daemonising server's boot failure reached the terminal twice (from the
    child and again from the parent reading it off the pipe)."""
    r = subprocess.run([sys.executable, "-m", "rumpkernel.apps.rump_server", "-l", "nosuchfs",
                        f"unix://{tmp_path}/s"], capture_output=True, text=True, timeout=60,
                       env=env())
    assert r.returncode == 1
    assert r.stderr.count("boot failed") == 1, r.stderr
    assert "nosuchfs" in r.stderr
