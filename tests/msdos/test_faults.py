"""Fault injection inside operations (issue #17): the Nth device read or write of a rename,
unlink, truncate, create, mkdir or append fails with EIO, for every N.  Afterwards (the fault
was transient: the unmount that follows succeeds) the file system holds either the tree from
before the operation or the tree after it, and ``fsck.fat -n`` finds nothing but leaked
clusters."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest

from rumpkernel.fs.msdos import MsdosType
from rumpkernel.kern.errno import KernelError
from rumpkernel.testing.faultdev import FaultDevice
from rumpkernel.vfs.bio import MemoryDevice

from .helpers import ENV, HAVE_TOOLS, MiniVfs, mount_dev

pytestmark = pytest.mark.skipif(not HAVE_TOOLS, reason="dosfstools/mtools")

# what fsck.fat may report after an interrupted operation: leaked clusters and their count
ALLOWED = ("Reclaimed", "Free cluster summary", "Leaving filesystem unchanged", "fsck.fat ",
           "  Auto-correcting", "Dirty bit is set", " Automatically removing dirty bit",
           "Filesystem was changed")


def fsck_problems(data: bytes) -> list[str]:
    """Lines of ``fsck.fat -n`` that are more than a leak."""
    with tempfile.NamedTemporaryFile(prefix="fat-fault-", suffix=".img") as f:
        f.write(data)
        f.flush()
        r = subprocess.run(["fsck.fat", "-n", f.name], env=ENV, capture_output=True, timeout=60)
    lines = r.stdout.decode("utf-8", "replace").splitlines()
    bad = [ln for ln in lines if ln.strip() and not ln.startswith(ALLOWED)
           and not ln.startswith(f.name)]
    return bad + ([f"fsck rc {r.returncode}"] if r.returncode not in (0, 1) else [])


def _base() -> bytes:
    dev = MemoryDevice(34 << 20)
    MsdosType.newfs(dev, fat_type=32, sectors_per_cluster=1, label="FAULTS")
    fs = mount_dev(dev)
    v = MiniVfs(fs)
    v.mkdir("a")
    v.mkdir("b directory with a long name")
    v.create("a/long file name number one.txt", b"one" * 400)
    v.create("a/big.bin", bytes(range(256)) * 40)
    v.create("b directory with a long name/victim of rename over.txt", b"victim" * 100)
    for i in range(30):
        v.create(f"b directory with a long name/filler {i:02d} with a long name", b"f" * i)
    fs.unmount()
    return bytes(dev.data)


B = "b directory with a long name"
OPS = {
    "rename": lambda v: v.rename("a/long file name number one.txt", f"{B}/moved here.txt"),
    "rename-over": lambda v: v.rename("a/long file name number one.txt",
                                      f"{B}/victim of rename over.txt"),
    "rename-dir": lambda v: v.rename("a", f"{B}/a moved"),
    "unlink": lambda v: v.unlink("a/big.bin"),
    "truncate-shrink": lambda v: v.truncate("a/big.bin", 1000),
    "truncate-grow": lambda v: v.truncate("a/long file name number one.txt", 9000),
    "create": lambda v: v.create(f"{B}/a new file with a long name.txt"),
    "mkdir": lambda v: v.mkdir(f"{B}/a new directory"),
    "write-append": lambda v: v.write("a/big.bin", 10240, b"appended" * 300),
}


def _tree(data: bytes) -> dict:
    return MiniVfs(mount_dev(MemoryDevice(bytearray(data)), readonly=True)).walk()


def _run(base: bytes, op, n: int | None, kinds: tuple[str, ...]) -> tuple[bytes, bool]:
    """Run ``op`` with I/O ``n`` failing; return the image after unmount and whether it fired."""
    dev = MemoryDevice(bytearray(base))
    fdev = FaultDevice(dev)
    fs = mount_dev(fdev)
    fdev.arm(10**9 if n is None else n, kinds)
    try:
        op(MiniVfs(fs))
        fs.sync()
    except KernelError:
        pass
    fired = fdev.fired
    count = fdev.count
    fdev.disarm()
    try:
        fs.unmount()
    except KernelError:
        fs.unmount()                       # a second try after the transient fault
    return bytes(dev.data), (fired if n is not None else count)


@pytest.fixture(scope="module")
def base() -> bytes:
    return _base()


@pytest.mark.parametrize("kinds", [("read", "write"), ("write",)], ids=["any-io", "writes"])
@pytest.mark.parametrize("name", list(OPS))
def test_every_io_of_an_operation_may_fail(base, name, kinds) -> None:
    op = OPS[name]
    before = _tree(base)
    after_img, total = _run(base, op, None, kinds)
    after = _tree(after_img)
    assert after != before
    assert total >= 1
    for n in range(total):
        img, fired = _run(base, op, n, kinds)
        assert fired
        got = _tree(img)
        assert got in (before, after), f"{name}: I/O {n} of {total} left a third state"
        bad = fsck_problems(img)
        assert not bad, f"{name}: I/O {n} of {total}: {bad}"


def test_fault_device_counts_and_fails(tmp_path: Path) -> None:
    dev = FaultDevice(MemoryDevice(4096))
    dev.arm(1, ("write",))
    dev.pwrite(0, b"x" * 512)
    dev.pread(0, 512)                     # reads are not counted
    with pytest.raises(KernelError):
        dev.pwrite(512, b"y" * 512)
    assert dev.fired and dev.count == 2
    dev.pwrite(512, b"y" * 512)           # transient: the next call works
    dev.arm(0, sticky=True)
    with pytest.raises(KernelError):
        dev.pread(0, 512)
    with pytest.raises(KernelError):
        dev.pwrite(0, b"z" * 512)
    dev.disarm()
    assert dev.pread(0, 1024) == b"x" * 512 + b"y" * 512
