"""Writes through the driver, judged by fsck.fat -n and read back by mtools."""

from __future__ import annotations

import pytest

from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.testing.hostdev import HostFileDevice

from .helpers import (
    HAVE_TOOLS,
    MiniVfs,
    fsck,
    make_tree,
    mkfs,
    mount_dev,
    mtools_extract,
    mtools_image,
    run,
)

pytestmark = [pytest.mark.oracle, pytest.mark.skipif(not HAVE_TOOLS, reason="dosfstools/mtools")]

FORMATS = [
    ("fat12", ["-F", "12"], 1440),
    ("fat12-s8", ["-F", "12", "-s", "8"], 8192),
    ("fat16", ["-F", "16"], 32768),
    ("fat16-S2048", ["-F", "16", "-S", "2048", "-s", "1"], 65536),
    ("fat32", ["-F", "32"], 65536),
    ("fat32-S4096", ["-F", "32", "-S", "4096", "-s", "1"], 600000),
]


def _workload(vfs: MiniVfs, cluster: int) -> dict[str, object]:
    """A scripted mix of operations; returns the tree the image must hold afterwards."""
    want: dict[str, object] = {}

    def create(path, data):
        vfs.create(path, data)
        want[path] = data

    def mkdir(path):
        vfs.mkdir(path)
        want[path] = None

    create("hello.txt", b"hello world\n")
    create("UPPER.TXT", b"upper")
    create("Mixed Case Long Name.text", b"m" * (cluster + 1))
    create("café au lait.txt", "é".encode() * 300)
    mkdir("docs")
    mkdir("docs/nested dir")
    for i in range(30):
        create(f"docs/a very long file name that needs a tail {i}.txt", bytes([i]) * (i * 97))
    create("docs/nested dir/deep.bin", bytes(range(256)) * 9)
    # extend, overwrite in the middle, write past the end (zero fill), truncate
    vfs.write("hello.txt", 6, b"WORLD")
    want["hello.txt"] = b"hello WORLD\n"
    vfs.write("UPPER.TXT", 3 * cluster + 5, b"!")
    want["UPPER.TXT"] = b"upper" + bytes(3 * cluster) + b"!"
    vfs.truncate("Mixed Case Long Name.text", 10)
    want["Mixed Case Long Name.text"] = b"m" * 10
    vfs.truncate("docs/a very long file name that needs a tail 29.txt", 0)
    want["docs/a very long file name that needs a tail 29.txt"] = b""
    # renames: within a directory, across directories, case-only, over an existing file
    vfs.rename("hello.txt", "docs/hello moved.txt")
    want["docs/hello moved.txt"] = want.pop("hello.txt")
    vfs.rename("UPPER.TXT", "upper.txt")
    want["upper.txt"] = want.pop("UPPER.TXT")
    vfs.rename("docs/a very long file name that needs a tail 3.txt",
               "docs/a very long file name that needs a tail 4.txt")
    want["docs/a very long file name that needs a tail 4.txt"] = want.pop(
        "docs/a very long file name that needs a tail 3.txt")
    mkdir("moveme")
    create("moveme/inside.txt", b"inside")
    vfs.rename("moveme", "docs/nested dir/moved dir")
    for k in [k for k in want if k.startswith("moveme")]:
        want["docs/nested dir/moved dir" + k[len("moveme"):]] = want.pop(k)
    # removal
    for i in range(0, 30, 3):
        p = f"docs/a very long file name that needs a tail {i}.txt"
        if p in want:
            vfs.unlink(p)
            del want[p]
    mkdir("gone")
    vfs.rmdir("gone")
    del want["gone"]
    create("docs/after removal.txt", b"reuses freed slots")
    return want


@pytest.mark.parametrize("fmt", FORMATS, ids=[f[0] for f in FORMATS])
def test_workload_fsck_and_mtools(tmp_path, fmt):
    _, args, size = fmt
    img = mkfs(tmp_path / "img", size, *args)
    with HostFileDevice(img) as dev:
        fs = mount_dev(dev)
        want = _workload(MiniVfs(fs), fs.geo.cluster_size)
        fs.unmount()
    r = fsck(img)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    listing = run("mdir", "-/", "-a", "-i", str(img), "::/").stdout.decode()
    for k in want:
        assert k.rpartition("/")[2] in listing, k
    got = mtools_extract(str(img), tmp_path / "out")
    assert sorted(got) == sorted(want)
    for k, v in want.items():
        assert got[k] == v, k
    with HostFileDevice(img, readonly=True) as dev:
        fs = mount_dev(dev, readonly=True)
        vfs = MiniVfs(fs)
        assert vfs.walk() == want
        assert fs.was_clean
        for k, v in want.items():      # mcopy -m kept the times our driver wrote (UTC)
            if v is not None:
                ours = fs.getattr(vfs.node(k)).mtime_ns // 10**9
                assert abs((tmp_path / "out" / k).stat().st_mtime - ours) <= 2, k


def test_short_names_and_tails(tmp_path):
    img = mkfs(tmp_path / "img", 65536, "-F", "32")
    with HostFileDevice(img) as dev:
        fs = mount_dev(dev)
        vfs = MiniVfs(fs)
        for i in range(12):
            vfs.create(f"Program Files Data {i}.txt", b"x")
        vfs.create("README.TXT")
        vfs.create("readme2.txt")
        d = fs.dir_of(vfs.node(""))
        shorts = sorted(s.short for s in d.slots.values())
        fs.unmount()
    assert b"PROGRA~1TXT" in shorts and b"PROGRA~9TXT" in shorts
    assert b"PROGR~10TXT" in shorts and b"README  TXT" in shorts
    assert len(set(shorts)) == len(shorts)
    assert fsck(img).returncode == 0
    out = run("mdir", "-i", str(img), "::/").stdout.decode()
    assert "Program Files Data 11.txt" in out and "PROGR~10 TXT" in out
    assert "README2  TXT" in out and "readme2.txt" in out


def test_winnt_lowercase_flags(tmp_path):
    img = mkfs(tmp_path / "img", 1440, "-F", "12")
    with HostFileDevice(img) as dev:
        fs = mount_dev(dev, shortname="winnt")
        vfs = MiniVfs(fs)
        vfs.create("lower.txt", b"1")
        vfs.create("MiXed.txt", b"2")
        d = fs.dir_of(vfs.node(""))
        lower = d.lookup("lower.txt")
        assert lower.first == lower.index  # no LFN slot: the NT case flags carry it
        mixed = d.lookup("MiXed.txt")
        assert mixed.first < mixed.index
        fs.unmount()
    assert fsck(img).returncode == 0
    listing = run("mdir", "-i", str(img), "::/").stdout.decode()
    assert "MiXed.txt" in listing
    assert run("mtype", "-i", str(img), "::/lower.txt").stdout == b"1"
    with HostFileDevice(img, readonly=True) as dev:
        assert sorted(MiniVfs(mount_dev(dev, readonly=True)).listdir("")) == [
            "MiXed.txt", "lower.txt"]


def test_fat12_root_directory_full(tmp_path):
    img = mkfs(tmp_path / "img", 1440, "-F", "12")
    with HostFileDevice(img) as dev:
        fs = mount_dev(dev)
        vfs = MiniVfs(fs)
        n = 0
        with pytest.raises(KernelError) as ei:
            while True:
                vfs.create(f"F{n}")
                n += 1
        assert ei.value.errno == Errno.ENOSPC
        assert n == 224
        fs.unmount()
    assert fsck(img).returncode == 0


def test_growing_directory_and_disk_full(tmp_path):
    img = mkfs(tmp_path / "img", 1440, "-F", "12")
    with HostFileDevice(img) as dev:
        fs = mount_dev(dev)
        vfs = MiniVfs(fs)
        vfs.mkdir("d")
        for i in range(100):
            vfs.create(f"d/some longer file name {i}")
        assert len(fs.dir_of(vfs.node("d")).clusters) > 5
        n = vfs.create("d/filler")
        free = fs.statfs().bfree * fs.geo.cluster_size
        written = fs.write(n, 0, bytes(free + 5000))
        assert written == free
        with pytest.raises(KernelError) as ei:
            fs.write(n, written, b"more")
        assert ei.value.errno == Errno.ENOSPC
        assert fs.statfs().bfree == 0
        fs.unmount()
    assert fsck(img).returncode == 0
    assert len(run("mtype", "-i", str(img), "::/d/filler").stdout) == written


def test_modify_mtools_tree(tmp_path):
    tree = tmp_path / "tree"
    make_tree(tree, 2048, big_dir=50)
    img = tmp_path / "img"
    target = mtools_image(img, tree, ["-F", "16"], 32768)
    with HostFileDevice(img) as dev:
        fs = mount_dev(dev)
        vfs = MiniVfs(fs)
        want = vfs.walk()
        for name in vfs.listdir("big dir")[::2]:
            vfs.unlink(f"big dir/{name}")
            del want[f"big dir/{name}"]
        vfs.rename("level 0 directory", "big dir/level zero")
        for k in [k for k in want if k.startswith("level 0 directory")]:
            want["big dir/level zero" + k[len("level 0 directory"):]] = want.pop(k)
        vfs.rename("big dir", "Big Dir")
        for k in [k for k in want if k.startswith("big dir")]:
            want["Big Dir" + k[len("big dir"):]] = want.pop(k)
        fs.unmount()
    assert fsck(img).returncode == 0
    got = mtools_extract(target, tmp_path / "out")
    # mtools shows its own short name "CAFÉ.TXT" + NT lower-case flag as "cafÉ.txt" (it only
    # lower-cases ASCII), so compare names case-folded.
    assert {k.casefold(): v for k, v in got.items()} == {k.casefold(): v for k, v in want.items()}
