"""Soaks (``-m slow``): many clients for a long time, clients killed at random moments, and
random bytes thrown at a live server -- which keeps serving and frees everything."""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.remote.harness import ServerProcess, env, stat, wait_for
from tests.remote.test_client import _worker
from tests.remote.test_server import _hello, _raw, _recv_frame

pytestmark = pytest.mark.slow

VICTIM = """
import os, random, sys, rumpkernel
c = rumpkernel.connect(sys.argv[1], autofork=False)
rng = random.Random(int(sys.argv[2]))
fd = c.sys.open(f"/v{os.getpid()}", os.O_CREAT | os.O_RDWR, 0o644)
r, w = c.sys.pipe()
print("ready", flush=True)
while True:
    op = rng.random()
    if op < 0.4:
        c.sys.pwrite(fd, os.urandom(rng.randrange(1, 1 << 20)), 0)
    elif op < 0.8:
        c.sys.pread(fd, 1 << 20, 0)
    elif op < 0.9:
        c.sys.listdir("/")
    else:
        c.sys.read(r, 1)          # blocks until killed
"""


def test_random_kills(tmp_path: Path) -> None:
    srv = ServerProcess(f"unix://{tmp_path}/s", "-l", "tmpfs", "-c", "2")
    try:
        with srv.connect() as probe:
            base = (stat(probe, "processes"), stat(probe, "open_files"))
        rng = random.Random(1)
        for round_ in range(40):
            ps = [subprocess.Popen([sys.executable, "-c", VICTIM, srv.url, str(round_ * 10 + i)],
                                   env=env(), stdout=subprocess.PIPE, text=True)
                  for i in range(4)]
            for p in ps:
                assert p.stdout.readline().strip() == "ready"
            time.sleep(rng.random() * 0.5)
            for p in ps:
                p.send_signal(signal.SIGKILL)
                p.wait()
                p.stdout.close()
        with srv.connect() as probe:
            assert wait_for(lambda: (stat(probe, "processes"), stat(probe, "open_files"))
                            == base, 30)
            for n in probe.sys.listdir("/"):
                if n.startswith("v"):
                    probe.sys.unlink("/" + n)
    finally:
        assert srv.stop() == 0


def test_64_clients_for_20_seconds(tmp_path: Path) -> None:
    srv = ServerProcess(f"unix://{tmp_path}/s", "-l", "tmpfs", "-c", "2")
    try:
        errors: list = []
        counts: list[int] = []
        ts = [threading.Thread(target=_worker, args=(srv, i, 20.0, errors, counts))
              for i in range(64)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(300)
        assert not errors and len(counts) == 64
    finally:
        assert srv.stop() == 0


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory):
    srv = ServerProcess(f"unix://{tmp_path_factory.mktemp('fz')}/s", "-l", "tmpfs")
    yield srv
    assert srv.stop() == 0


@settings(max_examples=200, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.binary(max_size=300), st.booleans())
def test_live_server_takes_garbage(live, data: bytes, handshake: bool) -> None:
    s = _raw(live.url)
    try:
        if handshake:
            _hello(s)
        else:
            _recv_frame(s)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        while _recv_frame(s) is not None:    # whatever it answers, it ends the conversation
            pass
    except (ConnectionError, OSError):
        pass
    finally:
        s.close()
    with live.connect() as c:
        assert c.sys.getppid() == 1
