"""Booting: factions in every combination, independent kernels, halting."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import pytest

import rumpkernel
from rumpkernel import SimHost
from rumpkernel.kern.component import FACTIONS, catalog

PRESENT = [f for f in FACTIONS if any(c.faction == f for c in catalog().values())]
COMBOS = [c for n in range(len(PRESENT) + 1) for c in itertools.combinations(PRESENT, n)]

PROBE = r"""
import json, os, sys, rumpkernel
factions = json.loads(sys.argv[1])
k = rumpkernel.boot(components=factions)
out = {"components": k.components, "factions": sorted(k.factions), "pid": k.sys.getpid()}
try:
    fd = k.sys.open("/", os.O_RDONLY)
    k.sys.close(fd)
    out["open"] = "ok"
except OSError as e:
    out["open"] = e.errno
try:
    k.sys.stat("/dev/null")
    out["dev_null"] = "ok"
except OSError as e:
    out["dev_null"] = e.errno
k.halt()
print(json.dumps(out))
"""


@pytest.mark.parametrize("factions", COMBOS, ids=lambda c: "+".join(("kern", *c)))
def test_faction_combination_boots_in_fresh_interpreter(factions: tuple[str, ...]) -> None:
    r = subprocess.run([sys.executable, "-c", PROBE, json.dumps(list(factions))],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["pid"] == 1
    assert set(out["factions"]) == {"kern", *factions}
    import errno
    if "vfs" in factions:
        assert out["open"] == "ok"
    else:
        assert out["open"] == errno.ENOSYS
    if "vfs" in factions and "dev" in factions:
        assert out["dev_null"] == "ok"
    elif "vfs" in factions:
        assert out["dev_null"] == errno.ENOENT
    else:
        assert out["dev_null"] == errno.ENOSYS


def test_kern_alone_has_no_factions() -> None:
    k = rumpkernel.boot(components=())
    assert k.factions == {"kern"}
    assert k.sys.getpid() == 1
    k.halt()


def test_two_kernels_are_independent() -> None:
    a = rumpkernel.boot(SimHost(1, wall_start_ns=10**18), components=(), hostname="a")
    b = rumpkernel.boot(SimHost(2, wall_start_ns=2 * 10**18), components=(), hostname="b")
    ra, wa = a.sys.pipe()
    a.sys.pipe()
    rb, wb = b.sys.pipe()
    assert (ra, wa) == (rb, wb) == (0, 1)            # own descriptor tables
    a.sys.write(wa, b"only in a")
    assert b.sys.poll([(rb, 1)], 0) == []
    assert a.sys.sysctl("kern.hostname") == "a"
    assert b.sys.sysctl("kern.hostname") == "b"
    import time
    assert a.sys.clock_gettime(time.CLOCK_REALTIME) < b.sys.clock_gettime(time.CLOCK_REALTIME)
    pid = a.lwproc.rfork()
    assert pid == 2 and a.sys.getpid() == 2
    assert b.sys.getpid() == 1                        # b's pids are b's own
    a.lwproc.release()
    a.halt()
    b.sys.close(rb)
    b.sys.close(wb)
    assert b.statistics()["open_files"] == 0
    b.halt()


def test_unknown_component_is_a_clear_error() -> None:
    with pytest.raises(rumpkernel.KernelError, match="unknown component 'nosuchfs'"):
        rumpkernel.boot(components=["nosuchfs"])


def test_host_object_serves_one_kernel() -> None:
    h = SimHost(3)
    k = rumpkernel.boot(h, components=())
    with pytest.raises(rumpkernel.KernelError):
        rumpkernel.boot(h, components=())
    k.halt()


def test_halted_kernel_refuses_calls() -> None:
    k = rumpkernel.boot(components=())
    k.halt()
    k.halt()  # idempotent
    with pytest.raises(OSError) as ei:
        k.sys.getpid()
    import errno
    assert ei.value.errno == errno.ENXIO


def test_reboot_syscall_halts() -> None:
    k = rumpkernel.boot(components=())
    k.sys.reboot()
    assert k.dead and k.halted


def test_statistics_shape() -> None:
    k = rumpkernel.boot(components=(), memlimit=1 << 20)
    s = k.statistics()
    assert s["processes"] == 2 and s["lwps"] == 0 and s["open_files"] == 0
    assert s["memory"]["limit"] == 1 << 20
    r, w = k.sys.pipe()
    s = k.statistics()
    assert s["open_files"] == 2 and s["memory"]["by_tag"]["pipe"] == 65536
    k.sys.close(r)
    k.sys.close(w)
    assert k.statistics()["memory"]["in_use"] == 0
    k.halt()


def test_kernel_crc32c_matches_the_reference_package() -> None:
    import crc32c as reference

    from rumpkernel.kern.crc32c import crc32c

    assert crc32c(b"123456789") == 0xE3069283          # the standard check value
    data = bytes(range(256)) * 17
    assert crc32c(data) == reference.crc32c(data)
    assert crc32c(data[100:], crc32c(data[:100])) == crc32c(data)   # chainable


def test_file_only_kernel_imports_no_network_code() -> None:
    """A program that boots only the file-system faction (every fsu command, makefs) imports
    no network code (the components' declarations only): ``k.socket`` is made on first use."""
    code = ("import sys, rumpkernel\n"
            "k = rumpkernel.boot(components=['vfs', 'ext2', 'msdos'])\n"
            "decl = ('rumpkernel.net', 'rumpkernel.net.component', 'rumpkernel.net.components')\n"
            "bad = sorted(m for m in sys.modules if m.startswith(('rumpkernel.net.',"
            " 'rumpkernel.client.socket')) and not m.startswith(decl[2]) and m not in decl)\n"
            "print(','.join(bad))\n"
            "s = k.socket\n"
            "print('rumpkernel.client.socket' in sys.modules)\n"
            "k.halt()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.splitlines()
    assert out == ["", "True"], out
