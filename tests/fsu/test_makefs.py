"""fsu makefs: images that the native fsck passes and the native tools (kernel loop mounts,
debugfs, mtools) read back, sizing, reproducibility, mtree specs, options and errors."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fsu.conftest import (
    e2fsck_clean,
    fsck_fat_clean,
    fsu,
    make_tree,
    need,
    ok,
    run,
    snapshot,
)

pytestmark = pytest.mark.oracle


def makefs(*args: str | os.PathLike[str], environ: dict[str, str] | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    from tests.fsu.conftest import env

    return fsu("makefs", *args, environ=env(**(environ or {})), timeout=timeout)


@contextlib.contextmanager
def loop_mount(img: Path, where: Path, fstype: str | None = None) -> Iterator[Path | None]:
    """Mount ``img`` read-only through the host kernel (root only); yields None when that is
    impossible here, so callers fall back to the user-space tools."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        yield None
        return
    where.mkdir(exist_ok=True)
    args = ["mount", "-o", "loop,ro", *(["-t", fstype] if fstype else []), str(img), str(where)]
    if subprocess.run(args, capture_output=True).returncode != 0:
        yield None
        return
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], capture_output=True)


def debugfs(img: Path, cmd: str) -> str:
    return run("debugfs", "-R", cmd, img).stdout


@pytest.mark.root
def test_ext4_from_a_tree_reads_back_through_linux(tmp_path: Path, tree_master: Path) -> None:
    need("e2fsck")
    img = tmp_path / "out.img"
    ok(makefs("-t", "ext4", img, tree_master))
    e2fsck_clean(img)
    with loop_mount(img, tmp_path / "mnt") as mnt:
        if mnt is None:
            pytest.skip("no loop mounts here")
        got = snapshot(mnt, owners=True)
        want = snapshot(tree_master)
        got.pop("lost+found")
        assert {k: v[:-1] for k, v in got.items()} == want
        assert all(v[-1] == (0, 0) for v in got.values())
        assert os.stat(mnt / "motd.hard").st_ino == os.stat(mnt / "etc" / "motd").st_ino
        assert stat.S_IMODE(os.stat(mnt / "bin" / "suid").st_mode) == 0o4755


def test_ext4_through_debugfs(tmp_path: Path, tree_master: Path) -> None:
    need("debugfs")
    img = tmp_path / "out.img"
    ok(makefs("-t", "ext4", "-L", "BUILT", img, tree_master))
    e2fsck_clean(img)
    assert debugfs(img, "cat /etc/hostname") == "imagehost\n"
    out = tmp_path / "dump"
    out.mkdir()
    run("debugfs", "-R", f"rdump / {out}", img)
    assert (out / "bin" / "tool").read_bytes() == (tree_master / "bin" / "tool").read_bytes()
    assert os.readlink(out / "abslink") == "/etc/hostname"
    stats = debugfs(img, "stats")
    assert "Filesystem volume name:   BUILT" in stats
    assert "has_journal" in stats and "extent" in stats


@pytest.mark.parametrize("fstype, journal", [("ext2", False), ("ext3", True)])
def test_ext2_and_ext3(tmp_path: Path, tree_master: Path, fstype: str, journal: bool) -> None:
    img = tmp_path / f"{fstype}.img"
    ok(makefs("-t", fstype, img, tree_master))
    e2fsck_clean(img)
    stats = debugfs(img, "stats")
    assert ("has_journal" in stats) == journal and "extent" not in stats.split("features:")[1]\
        .splitlines()[0]
    assert ok(fsu("cat", img, "/deep/er/est/leaf.txt")) == "leaf\n"
    assert ok(fsu("info", img, "--json")).count(f'"type": "{fstype}"') == 1


def test_fat_from_a_tree_reads_back_through_mtools(tmp_path: Path, fat_tree_master: Path
                                                   ) -> None:
    need("fsck.fat")
    need("mcopy")
    img = tmp_path / "fat.img"
    ok(makefs("-t", "fat", "-L", "MYFAT", img, fat_tree_master))
    fsck_fat_clean(img)
    assert run("mtype", "-i", img, "::/etc/hostname").stdout == "imagehost\n"
    listing = run("mdir", "-i", img, "-/", "::/").stdout
    assert "MYFAT" in listing and "with space.txt" in listing
    out = tmp_path / "out"
    out.mkdir()
    run("mcopy", "-s", "-m", "-i", img, "::/*", out)
    assert snapshot(out, modes=False) == snapshot(fat_tree_master, modes=False)


@pytest.mark.root
def test_fat_reads_back_through_linux_vfat(tmp_path: Path, fat_tree_master: Path) -> None:
    img = tmp_path / "fat.img"
    ok(makefs("-t", "fat32", "-s", "40m", img, fat_tree_master))
    fsck_fat_clean(img)
    with loop_mount(img, tmp_path / "mnt", "vfat") as mnt:
        if mnt is None:
            pytest.skip("no vfat loop mounts here")
        assert snapshot(mnt, modes=False) == snapshot(fat_tree_master, modes=False)
    assert "FAT32" in run("fsck.fat", "-nv", img).stdout


def test_fat_warns_about_what_it_cannot_hold(tmp_path: Path, tree_master: Path) -> None:
    img = tmp_path / "fat.img"
    res = makefs("-t", "fat", img, tree_master)
    assert res.returncode == 0, res.stderr
    assert "abslink: symbolic link stored as a copy" in res.stderr
    assert "dangling: dangling symbolic link skipped" in res.stderr
    assert "fifo: fifo node skipped" in res.stderr
    fsck_fat_clean(img)
    assert ok(fsu("cat", img, "/abslink")) == "imagehost\n"
    assert ok(fsu("cat", img, "/motd.hard")) == "welcome\n" * 50


@pytest.mark.parametrize("fstype", ["ext4", "fat"])
def test_reproducible_with_source_date_epoch(tmp_path: Path, tree_master: Path,
                                              fat_tree_master: Path, fstype: str) -> None:
    src = tree_master if fstype == "ext4" else fat_tree_master
    a, b, c = tmp_path / "a.img", tmp_path / "b.img", tmp_path / "c.img"
    sde = {"SOURCE_DATE_EPOCH": "1700000000"}
    ok(makefs("-t", fstype, a, src, environ=sde))
    ok(makefs("-t", fstype, b, src, environ=sde))
    assert a.read_bytes() == b.read_bytes()
    # two checkouts made at different times (new mtimes, other inode numbers) clamp alike
    for name, when in (("one", 1800000000), ("two", 1900000000)):
        run("cp", "-a", src, tmp_path / name)
        for p in sorted((tmp_path / name).rglob("*"), reverse=True):
            os.utime(p, ns=(when * 10**9, when * 10**9), follow_symlinks=False)
    ok(makefs("-t", fstype, a, tmp_path / "one", environ=sde))
    ok(makefs("-t", fstype, b, tmp_path / "two", environ=sde))
    assert a.read_bytes() == b.read_bytes()
    assert ok(fsu("stat", a, "-c", "%Y", "/etc/hostname")) == "1700000000\n"
    ok(makefs("-t", fstype, c, tmp_path / "two", environ={"SOURCE_DATE_EPOCH": "1700000002"}))
    assert a.read_bytes() != c.read_bytes()
    # older times are kept
    ok(makefs("-t", fstype, c, src, environ=sde))
    assert int(ok(fsu("stat", c, "-c", "%Y", "/etc/hostname"))) < 1700000000


def test_reproducible_with_T(tmp_path: Path, tree_master: Path) -> None:
    a, b = tmp_path / "a.img", tmp_path / "b.img"
    ok(makefs("-T", "1234567890", "-t", "ext4", a, tree_master))
    ok(makefs("-T", "1234567890", "-t", "ext4", b, tree_master))
    assert a.read_bytes() == b.read_bytes()
    assert ok(fsu("stat", a, "-c", "%Y %Z", "/etc/motd", "/")) == \
        "1234567890 1234567890\n1234567890 1234567890\n"
    e2fsck_clean(a)
    ref = tmp_path / "ref"
    ref.write_text("x")
    os.utime(ref, (1111111111, 1111111111))
    ok(makefs("-T", ref, "-t", "ext4", b, tree_master))
    assert ok(fsu("stat", b, "-c", "%Y", "/etc/motd")) == "1111111111\n"


def test_not_reproducible_without_an_epoch(tmp_path: Path, tree_master: Path) -> None:
    a, b = tmp_path / "a.img", tmp_path / "b.img"
    ok(makefs("-t", "ext4", a, tree_master))
    ok(makefs("-t", "ext4", b, tree_master))
    import json

    ua = json.loads(ok(fsu("info", a, "--json")))["uuid"]
    ub = json.loads(ok(fsu("info", b, "--json")))["uuid"]
    assert ua != ub  # random, like mke2fs


def test_sizes(tmp_path: Path, tree_master: Path) -> None:
    img = tmp_path / "s.img"
    ok(makefs("-s", "24M", img, tree_master))
    assert img.stat().st_size == 24 << 20
    ok(makefs("-s", "24576k", img, tree_master))
    assert img.stat().st_size == 24 << 20
    ok(makefs("-s", "0.03G", img, tree_master))
    assert img.stat().st_size == int(0.03 * (1 << 30))
    ok(makefs("-M", "40m", img, tree_master))  # -M is the minimum, as NetBSD makefs(8)
    assert img.stat().st_size >= 40 << 20
    ok(makefs(img, tree_master))
    auto = img.stat().st_size
    assert auto <= 16 << 20
    e2fsck_clean(img)
    res = makefs("-m", "200k", img, tree_master)  # -m is the maximum
    assert res.returncode == 1 and "does not fit" in res.stderr
    res = makefs("-s", "12q", img, tree_master)
    assert res.returncode == 2 and "invalid size" in res.stderr


def test_too_small_leaves_no_image(tmp_path: Path, tree_master: Path) -> None:
    img = tmp_path / "small.img"
    res = makefs("-s", "200k", img, tree_master)
    assert res.returncode == 1 and "too small" in res.stderr
    assert not img.exists() and not list(tmp_path.glob("small.img*"))
    img.write_bytes(b"previous image")
    res = makefs("-s", "200k", img, tree_master)
    assert res.returncode == 1 and img.read_bytes() == b"previous image"


def test_free_space_options(tmp_path: Path, tree_master: Path) -> None:
    import json

    base, more = tmp_path / "b.img", tmp_path / "m.img"
    ok(makefs(base, tree_master))
    ok(makefs("-b", "8m", "-f", "500", more, tree_master))
    fb = json.loads(ok(fsu("df", base, "--json")))
    fm = json.loads(ok(fsu("df", more, "--json")))
    assert fm["available"] >= 8 << 20 and fm["available"] > fb["available"]
    assert fm["inodes_free"] >= 500


def test_label_uuid_and_options(tmp_path: Path, tree_master: Path,
                                fat_tree_master: Path) -> None:
    import json

    img = tmp_path / "o.img"
    ok(makefs("-L", "ROOTFS", "-U", "01234567-89ab-4def-8123-456789abcdef", "-o",
              "block_size=4096,features=^has_journal:^metadata_csum", img, tree_master))
    info = json.loads(ok(fsu("info", img, "--json")))
    assert info["label"] == "ROOTFS" and info["uuid"] == "01234567-89ab-4def-8123-456789abcdef"
    assert info["block_size"] == 4096 and "has_journal" not in info["features"]
    e2fsck_clean(img)
    fat = tmp_path / "f.img"
    ok(makefs("-t", "fat", "-L", "BOOT", "-U", "CAFE-F00D", "-o", "fat_type=16", fat,
              fat_tree_master))
    info = json.loads(ok(fsu("info", fat, "--json")))
    assert info["type"] == "fat16" and info["volume_id"] == "CAFE-F00D"
    res = makefs("-o", "frobnicate=1", img, tree_master)
    assert res.returncode == 2 and "unknown -o option" in res.stderr
    res = makefs("-t", "zfs", img, tree_master)
    assert res.returncode == 2 and "unknown file system type" in res.stderr
    res = makefs(img, tmp_path / "nope")
    assert res.returncode == 1 and "No such file or directory" in res.stderr
    res = makefs(tmp_path / "nodir" / "x.img", tree_master)
    assert res.returncode == 1
    assert res.stderr.strip() == f"fsu makefs: {tmp_path / 'nodir' / 'x.img'}: No such file or " \
                                 "directory"


def test_keep_owner(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    os.chown(src / "f", 1234, 5678)
    img = tmp_path / "k.img"
    ok(makefs(img, src))
    assert ok(fsu("stat", img, "-c", "%u:%g", "/f")) == "0:0\n"
    ok(makefs("-o", "keep-owner", img, src))
    assert ok(fsu("stat", img, "-c", "%u:%g", "/f")) == "1234:5678\n"


SPEC = """\
#\t   user: builder
/set type=file uid=0 gid=0 mode=0644
.               type=dir mode=0755
    etc         type=dir mode=0755
        hostname    mode=0600 uname=root gname=root
        shadow      mode=0400 uid=0 gid=42 contents=etc/motd
    ..
    dev         type=dir mode=0755
        null        type=char mode=0666 device=1,3
        sda         type=block mode=0660 gid=6 device=8,0
        initctl     type=fifo mode=0600
    ..
    bin         type=dir mode=0755
        tool        mode=04755 uid=0 gid=0 time=1500000000.5
        sh          type=link link=tool
    ..
./var/log       type=dir mode=0750 uid=0 gid=4 optional
./srv           type=dir mode=02775 uid=33 gid=33
./srv/www\\040root  type=dir mode=0755 uid=33 gid=33
"""


def test_mtree_spec(tmp_path: Path, tree_master: Path) -> None:
    need("debugfs")
    spec = tmp_path / "spec"
    spec.write_text(SPEC)
    img = tmp_path / "spec.img"
    ok(makefs("-F", spec, img, tree_master))
    e2fsck_clean(img)
    out = ok(fsu("stat", img, "-c", "%a %u %g %F", "/etc/hostname", "/etc/shadow",
                 "/dev/null", "/dev/sda", "/dev/initctl", "/bin/tool", "/srv", "/srv/www root"))
    assert out.splitlines() == [
        "600 0 0 regular file", "400 0 42 regular file", "666 0 0 character special file",
        "660 0 6 block special file", "600 0 0 fifo", "4755 0 0 regular file",
        "2775 33 33 directory", "755 33 33 directory"]
    assert ok(fsu("cat", img, "/etc/shadow")) == "welcome\n" * 50
    assert ok(fsu("stat", img, "-c", "%t,%T", "/dev/null", "/dev/sda")) == "1,3\n8,0\n"
    assert ok(fsu("stat", img, "-c", "%Y", "/bin/tool")) == "1500000000\n"
    assert ok(fsu("stat", img, "-c", "%N", "/bin/sh")) == "'/bin/sh' -> 'tool'\n"
    assert "var" not in ok(fsu("ls", img, "/"))
    assert "/dev/null" in debugfs(img, "ls -l /dev") or "null" in debugfs(img, "ls -l /dev")
    assert ok(fsu("cat", img, "/deep/er/est/leaf.txt")) == "leaf\n"  # unlisted files stay
    ok(makefs("-F", spec, "-x", img, tree_master))
    listing = ok(fsu("find", img, "/")).splitlines()
    assert "/deep" not in listing and "/etc/hostname" in listing and "/etc/motd" not in listing
    e2fsck_clean(img)


def test_mtree_spec_errors(tmp_path: Path, tree_master: Path) -> None:
    spec = tmp_path / "bad"
    img = tmp_path / "x.img"
    spec.write_text("./etc type=file\n")
    res = makefs("-F", spec, img, tree_master)
    assert res.returncode == 1 and "type file but" in res.stderr
    spec.write_text("./nodir/file type=file\n")
    res = makefs("-F", spec, img, tree_master)
    assert res.returncode == 1 and "parent directory" in res.stderr
    spec.write_text("./x type=widget\n")
    res = makefs("-F", spec, img, tree_master)
    assert res.returncode == 1 and "unknown type" in res.stderr and ":1:" in res.stderr
    spec.write_text("./d type=char mode=0600\n")
    res = makefs("-F", spec, img, tree_master)
    assert res.returncode == 1 and "device=" in res.stderr
    res = makefs("-x", img, tree_master)
    assert res.returncode == 2
    assert not img.exists()


def test_spec_names_from_a_user_database(tmp_path: Path, tree_master: Path) -> None:
    db = tmp_path / "db"
    db.mkdir()
    (db / "passwd").write_text("root:x:0:0::/:/bin/sh\nwww:x:70:71::/:/bin/sh\n")
    (db / "group").write_text("root:x:0:\nwww:x:71:\n")
    spec = tmp_path / "spec"
    spec.write_text("./etc/hostname uname=www gname=www\n")
    img = tmp_path / "n.img"
    ok(makefs("-F", spec, "-N", db, img, tree_master))
    assert ok(fsu("stat", img, "-c", "%u:%g", "/etc/hostname")) == "70:71\n"
    spec.write_text("./etc/hostname uname=nobody-such-user\n")
    res = makefs("-F", spec, "-N", db, img, tree_master)
    assert res.returncode == 1 and "unknown user" in res.stderr


def test_many_files_in_one_directory(tmp_path: Path) -> None:
    src = tmp_path / "flat"
    src.mkdir()
    for i in range(700):
        (src / f"file-with-a-long-name-{i:04d}.txt").write_text(str(i))
    for fstype in ("ext4", "fat"):
        img = tmp_path / f"flat-{fstype}.img"
        ok(makefs("-t", fstype, img, src))
        (e2fsck_clean if fstype == "ext4" else fsck_fat_clean)(img)
        assert ok(fsu("cat", img, "/file-with-a-long-name-0699.txt")) == "699"
        assert len(ok(fsu("ls", img, "/")).split()) == 700 + (fstype == "ext4")


@pytest.mark.slow
def test_larger_tree(tmp_path: Path) -> None:
    import random

    rnd = random.Random(7)
    src = tmp_path / "big"
    for d in range(30):
        (src / f"d{d}" / "sub").mkdir(parents=True)
        for f in range(60):
            size = int(rnd.lognormvariate(8, 2)) % (3 << 20)
            (src / f"d{d}" / ("sub" if f % 3 else "") / f"f{f}").write_bytes(rnd.randbytes(size))
    for fstype in ("ext4", "ext2", "fat"):
        img = tmp_path / f"{fstype}.img"
        ok(makefs("-t", fstype, img, src))
        (e2fsck_clean if fstype != "fat" else fsck_fat_clean)(img)
        res = fsu("diff", img, "/", src)
        assert res.stdout.strip() in ("", "Only in /: lost+found")


def test_other_trees_round_trip_through_makefs(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "t")
    img = tmp_path / "t.img"
    ok(makefs(img, src))
    out = tmp_path / "out"
    ok(fsu("get", img, "-rp", "/", out))
    (out / "lost+found").rmdir()
    assert snapshot(out) == snapshot(src)
