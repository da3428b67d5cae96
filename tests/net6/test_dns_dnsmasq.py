"""getaddrinfo through the kernel's stub resolver against a real dnsmasq: a rump_server in a
network namespace the test creates, on a TAP device (virtif), Linux and dnsmasq on the other
side; the remote client resolves through the kernel's /etc/resolv.conf over the kernel's UDP.
dig (when installed) checks dnsmasq's answer independently."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.net.test_interop import LINUX, kernel_in_netns, netns, run  # noqa: F401

pytestmark = [pytest.mark.root, pytest.mark.oracle("ip", "dnsmasq")]


@pytest.fixture
def dnsmasq(kernel_in_netns) -> Iterator[tuple[str, object]]:  # noqa: F811
    ns, conn, tap = kernel_in_netns
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, "dnsmasq", "-k", "--conf-file=/dev/null", "--pid-file=",
         f"--interface={tap}", "--bind-interfaces", "--no-resolv", "--no-hosts",
         "--host-record=host.test,10.99.9.8,fd00:99:9::8", "--cname=alias.test,host.test",
         "--log-facility=/dev/null"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield ns, conn
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _write(sys, path: str, text: str) -> None:
    try:
        sys.mkdir(os.path.dirname(path), 0o755)
    except FileExistsError:
        pass
    fd = sys.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        sys.write(fd, text.encode())
    finally:
        sys.close(fd)


def test_getaddrinfo_against_dnsmasq(dnsmasq) -> None:
    ns, conn = dnsmasq
    S = conn.socket
    _write(conn.sys, "/etc/resolv.conf",
           f"search test\nnameserver {LINUX}\noptions timeout:2 attempts:3\n")
    if shutil.which("dig"):
        r = run("ip", "netns", "exec", ns, "dig", "+short", f"@{LINUX}", "alias.test", "A")
        assert r.stdout.split()[-1] == "10.99.9.8"
    assert S.getaddrinfo("alias.test", 80, 0, S.SOCK_STREAM) == [
        (S.AF_INET, S.SOCK_STREAM, 6, "", ("10.99.9.8", 80)),
        (S.AF_INET6, S.SOCK_STREAM, 6, "", ("fd00:99:9::8", 80, 0, 0))]
    assert S.getaddrinfo("alias.test", 80, S.AF_INET6, S.SOCK_DGRAM) == [
        (S.AF_INET6, S.SOCK_DGRAM, 17, "", ("fd00:99:9::8", 80, 0, 0))]
    assert S.gethostbyname("host") == "10.99.9.8"                  # via the search list
    with pytest.raises(S.gaierror) as e:            # dnsmasq REFUSED, every attempt
        S.gethostbyname("nosuch.example")
    assert e.value.errno == -3                                     # EAI_AGAIN, as glibc
