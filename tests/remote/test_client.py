"""The client library: threads sharing a connection, copy round trips, piggy-backing, fork,
reconnect policies, signals, and 32 clients at once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import rumpkernel
from rumpkernel.client.sysproxy.messages import PtrDesc
from tests.remote.harness import ServerProcess, env, served, stat, wait_for

RW = os.O_RDWR | os.O_CREAT


def test_honest_copies_are_round_trips(tmp_path: Path) -> None:
    with served(tmp_path, components=()) as v:
        c = v.conn
        src, dst = b"s" * 64, bytearray(64)
        before = dict(c.stats)
        assert c.sys.sys_copybench(5, src, dst, 64) == 5 and dst == src
        assert c.stats["copyin"] - before["copyin"] == 5
        assert c.stats["copyout"] - before["copyout"] == 5
        c.sys.sysctl("kern.ostype")                       # name: one copyinstr
        assert c.stats["copyinstr"] - before["copyinstr"] == 1


def test_piggyback_skips_input_round_trips(tmp_path: Path) -> None:
    with served(tmp_path) as v:
        c = rumpkernel.connect(v.url, piggyback=True, autofork=False)
        try:
            fd = c.sys.open("/pb", RW, 0o600)
            assert c.sys.write(fd, b"piggy") == 5
            assert c.sys.pread(fd, 10, 0) == b"piggy"
            assert c.sys.writev(fd, [b"a", b"b"]) == 2
            assert c.stats["copyin"] == 0 and c.stats["copyinstr"] == 0
            assert c.stats["copyout"] == 1
            big = os.urandom(300_000)                      # too big to ride along
            assert c.sys.pwrite(fd, big, 0) == len(big)
            assert c.stats["copyin"] == 1
            assert c.sys.pread(fd, len(big), 0) == big
            c.sys.close(fd)
        finally:
            c.close()


def test_large_transfers_are_chunked(tmp_path: Path) -> None:
    with served(tmp_path) as v:
        s = v.sys
        data = os.urandom(9 << 20)                        # above COPY_CHUNK and MAX_PAYLOAD
        fd = s.open("/big", RW, 0o600)
        assert s.write(fd, data) == len(data)
        assert s.pread(fd, len(data), 0) == data
        s.close(fd)
        s.unlink("/big")


def test_many_threads_one_connection(tmp_path: Path) -> None:
    with served(tmp_path, components=(), ncpu=2) as v:
        s = v.sys
        pipes = [s.pipe() for _ in range(8)]
        errors: list[BaseException] = []

        def reader(r: int, n: int) -> None:
            try:
                for i in range(n):
                    assert s.read(r, 7) == f"msg{i:04d}".encode()   # writes are atomic
            except BaseException as e:
                errors.append(e)

        def writer(w: int, n: int) -> None:
            try:
                for i in range(n):
                    s.write(w, f"msg{i:04d}".encode())
                    time.sleep(0.0005)
            except BaseException as e:
                errors.append(e)

        ts = [threading.Thread(target=reader, args=(r, 60)) for r, _ in pipes]
        ts += [threading.Thread(target=writer, args=(w, 60)) for _, w in pipes]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        assert not errors and not any(t.is_alive() for t in ts)
        for r, w in pipes:
            s.close(r)
            s.close(w)


def test_raise_delivers_a_host_signal(tmp_path: Path) -> None:
    with served(tmp_path, components=()) as v:
        def sys_raise(l, signo):
            l.proc.vm.raise_signal(l, signo)
            return 0
        v.k.install_syscall(600, sys_raise)
        got: list[int] = []
        v.conn.on_signal = got.append
        assert v.sys._call(600, (int(signal.SIGUSR1),)) == 0
        assert got == [signal.SIGUSR1]


def test_client_cannot_forge_buffers(tmp_path: Path) -> None:
    """A handle the client never gave (or a lie about a size) faults; nothing is read or written
    outside the caller's buffers."""
    with served(tmp_path, components=()) as v:
        c = v.conn
        r, w = c.sys.pipe()
        c.sys.write(w, b"12345678")
        buf = bytearray(4)
        call = c._start(lambda p, rid: p.send_syscall(rid, 15, (r, PtrDesc(0, 8, 1), 8)), [buf])
        rep = c._wait(call)                    # the kernel copies out 8 bytes into 4: refused
        assert rep.errno == 0 and buf == bytearray(4)
        c.sys.close(r)
        c.sys.close(w)


FORKER = """
import os, sys, rumpkernel
c = rumpkernel.connect(sys.argv[1])
r, w = c.sys.pipe()
fd = c.sys.open("/forked", os.O_CREAT | os.O_RDWR, 0o644)
pid = os.fork()
if pid == 0:
    # the child has its own kernel process, with copies of the parent's descriptors
    c.sys.write(w, b"child %d ppid %d" % (c.sys.getpid(), c.sys.getppid()))
    c.sys.write(fd, b"from child")
    os._exit(0)
os.waitpid(pid, 0)
print(c.sys.getpid(), c.sys.read(r, 100).decode(), c.sys.pread(fd, 100, 0).decode(), flush=True)
"""


def test_os_fork_gives_the_child_its_own_process(tmp_path: Path) -> None:
    srv = ServerProcess(f"unix://{tmp_path}/s", "-l", "tmpfs")
    try:
        out = subprocess.run([sys.executable, "-c", FORKER, srv.url], env=env(),
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        ppid, _, cpid, _, cppid, *rest = out.stdout.split()
        assert cpid != ppid and cppid == ppid
        assert " ".join(rest) == "from child"
        with srv.connect() as c:
            assert wait_for(lambda: stat(c, "processes") == 3)   # 0, 1 and this probe
    finally:
        assert srv.stop() == 0


RECONNECTER = """
import sys, time, rumpkernel
c = rumpkernel.connect(sys.argv[1], retry=sys.argv[2], autofork=False)
print(c.pid, flush=True)
sys.stdin.readline()          # the server restarts meanwhile
results = []
for _ in range(2):
    try:
        results.append(str(c.sys.getpid()))
    except OSError as e:
        results.append(f"E{e.errno}")
print(" ".join(results), flush=True)
"""


@pytest.mark.parametrize("policy", ["0", "once", "5", "die"])
def test_reconnect_policies(tmp_path: Path, policy: str) -> None:
    url = f"unix://{tmp_path}/s"
    srv = ServerProcess(url, "-l", "tmpfs")
    p = subprocess.Popen([sys.executable, "-c", RECONNECTER, url, policy], env=env(),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        first_pid = p.stdout.readline().strip()
        assert first_pid.isdigit()
        assert srv.stop() == 0
        srv = ServerProcess(url, "-l", "tmpfs")
        p.stdin.write("\n")
        p.stdin.flush()
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
        srv.close()
    enotconn = f"E{__import__('errno').ENOTCONN}"
    if policy == "die":
        assert p.returncode == 1 and "connection to kernel lost" in err
        return
    results = out.split()
    if policy == "0":
        assert results == [enotconn, enotconn]
    else:
        # the call that finds the connection gone may fail; the client then reconnects as a
        # new process
        assert results[-1].isdigit() and "reconnected" in err
        assert results[0] in (enotconn, results[-1])


def test_connect_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError):
        rumpkernel.connect(f"unix://{tmp_path}/nobody", autofork=False)
    monkeypatch.delenv("RUMP_SERVER", raising=False)
    with pytest.raises(ValueError, match="RUMP_SERVER"):
        rumpkernel.connect()
    with pytest.raises(ValueError, match="unsupported"):
        rumpkernel.connect("http://x")
    with pytest.raises(ValueError):
        rumpkernel.connect(f"unix://{tmp_path}/x", retry="sometimes")


def test_rump_server_env_and_closed_connection(tmp_path: Path, monkeypatch) -> None:
    with served(tmp_path, components=()) as v:
        monkeypatch.setenv("RUMP_SERVER", v.url)
        c = rumpkernel.connect(autofork=False)
        assert c.sys.getppid() == 1
        c.close()
        with pytest.raises(OSError) as ei:
            c.sys.getpid()
        assert ei.value.errno == __import__("errno").ENOTCONN


def _worker(srv: ServerProcess, n: int, seconds: float, errors: list, counts: list) -> None:
    rng = random.Random(n)
    try:
        with srv.connect() as c:
            s = c.sys
            path = f"/w{n}"
            fd = s.open(path, RW | os.O_TRUNC, 0o644)
            model = bytearray()
            deadline = time.monotonic() + seconds
            ops = 0
            while time.monotonic() < deadline:
                op = rng.random()
                if op < 0.5:
                    off = rng.randrange(0, len(model) + 1)
                    data = rng.randbytes(rng.randrange(1, 3000))
                    assert s.pwrite(fd, data, off) == len(data)
                    model[off : off + len(data)] = data
                elif op < 0.9:
                    off = rng.randrange(0, len(model) + 1)
                    n_ = rng.randrange(0, 4000)
                    assert s.pread(fd, n_, off) == bytes(model[off : off + n_])
                else:
                    assert s.fstat(fd).st_size == len(model)
                ops += 1
            s.close(fd)
            fd = s.open(path, os.O_RDONLY)
            assert s.read(fd, len(model) + 10) == bytes(model)
            s.close(fd)
            s.unlink(path)
            counts.append(ops)
    except BaseException as e:
        errors.append((n, e))


def test_32_clients_at_once(tmp_path: Path) -> None:
    srv = ServerProcess(f"unix://{tmp_path}/s", "-l", "tmpfs", "-c", "2")
    try:
        errors: list = []
        counts: list[int] = []
        ts = [threading.Thread(target=_worker, args=(srv, i, 3.0, errors, counts))
              for i in range(32)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        assert not errors, errors[:3]
        assert len(counts) == 32 and all(n > 0 for n in counts)
        with srv.connect() as c:
            assert wait_for(lambda: stat(c, "processes") == 3 and stat(c, "open_files") == 0)
            assert c.sys.listdir("/") == ["dev"]
    finally:
        assert srv.stop() == 0


def test_stop_right_after_a_call_blocks(tmp_path: Path) -> None:
    """Before the watchdog has handed the connection a new reader, stop() still ends the blocked
    call at once."""
    k = rumpkernel.boot(components=())
    from rumpkernel.apps.rump_server import Server

    srv = Server(k, f"unix://{tmp_path}/s").start()
    c = rumpkernel.connect(srv.url, autofork=False)
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
        time.sleep(0.0005)
        t0 = time.monotonic()
        srv.stop()
        assert time.monotonic() - t0 < 5
        t.join(10)
        assert errors and not t.is_alive()
    finally:
        c.close()
        if not k.dead:
            k.halt()


def test_sim_host_kernels_are_not_served(tmp_path: Path) -> None:
    from rumpkernel import SimHost
    from rumpkernel.apps.rump_server import Server

    k = rumpkernel.boot(SimHost(1), components=())
    try:
        with pytest.raises(ValueError, match="PosixHost"):
            Server(k, f"unix://{tmp_path}/s")
    finally:
        k.halt()


def test_remote_connection_carries_the_file_api(tmp_path: Path) -> None:
    """The io/pathlib-shaped file API works the same on a connection as on a local kernel:
    it is built on the sys facade only."""
    srv = ServerProcess(f"unix://{tmp_path}/s", "-l", "tmpfs")
    try:
        conn = srv.connect()
        try:
            conn.makedirs("/t/a/b")
            conn.sys.mount("tmpfs", "/t/a/b")
            conn.path("/t/a/b/note.txt").write_text("remote ünïcode\n")
            with conn.open("/t/a/b/note.txt", "a") as f:
                f.write("line two\n")
            with conn.open("/t/a/b/note.txt") as f:
                assert f.readlines() == ["remote ünïcode\n", "line two\n"]
            assert [p.name for p in conn.path("/t/a/b").iterdir()] == ["note.txt"]
            conn.sys.unmount("/t/a/b")
        finally:
            conn.close()
    finally:
        srv.close()
