"""fsu's writing commands in subprocesses: success paths, error paths and exit statuses, and
the image passes the native fsck after each."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from tests.fsu.conftest import e2fsck_clean, fsck_fat_clean, fsu, ok, run


@pytest.fixture(params=["ext4", "fat"])
def img(request: pytest.FixtureRequest, ext4_img: Path, fat_img: Path) -> Path:
    return ext4_img if request.param == "ext4" else fat_img


def clean(img: Path) -> None:
    (e2fsck_clean if img.name == "disk.img" else fsck_fat_clean)(img)


def names(img: Path, path: str) -> list[str]:
    return ok(fsu("ls", img, "-A", path)).split("\n")[:-1]


def test_mkdir_rmdir(img: Path) -> None:
    ok(fsu("mkdir", img, "/new"))
    res = fsu("mkdir", img, "/new")
    assert res.returncode == 1 and res.stderr.strip() == "fsu mkdir: /new: File exists"
    res = fsu("mkdir", img, "/x/y")
    assert res.returncode == 1 and "No such file or directory" in res.stderr
    out = ok(fsu("mkdir", img, "-pv", "/x/y/z"))
    assert out.count("created directory") == 3
    ok(fsu("mkdir", img, "-p", "/x/y/z"))
    ok(fsu("mkdir", img, "-m", "700", "/private.d"))
    if img.name == "disk.img":
        assert ok(fsu("stat", img, "-c", "%a", "/private.d")) == "700\n"
    res = fsu("rmdir", img, "/x")
    assert res.returncode == 1 and "not empty" in res.stderr
    ok(fsu("rmdir", img, "-p", "/x/y/z"))
    assert "x" not in names(img, "/")
    res = fsu("rmdir", img, "/etc/hostname")
    assert res.returncode == 1 and "Not a directory" in res.stderr
    clean(img)


def test_rm(img: Path) -> None:
    ok(fsu("rm", img, "/etc/hostname"))
    res = fsu("rm", img, "/etc/hostname")
    assert res.returncode == 1 and "No such file" in res.stderr
    ok(fsu("rm", img, "-f", "/etc/hostname"))
    res = fsu("rm", img, "/deep")
    assert res.returncode == 1 and "Is a directory" in res.stderr
    out = ok(fsu("rm", img, "-rv", "/deep"))
    assert "removed directory '/deep'" in out
    ok(fsu("rm", img, "-d", "/emptydir"))
    res = fsu("rm", img, "-rf", "/")
    assert res.returncode == 1 and "dangerous" in res.stderr
    assert "etc" in names(img, "/")
    clean(img)


def test_mv(img: Path) -> None:
    ok(fsu("mv", img, "/etc/hostname", "/etc/hostname.old"))
    assert "hostname.old" in names(img, "/etc")
    ok(fsu("mv", img, "/etc/motd", "/empty", "/deep"))
    assert {"motd", "empty"} <= set(names(img, "/deep"))
    res = fsu("mv", img, "/a", "/b", "/etc/hostname.old")
    assert res.returncode == 2 and "not a directory" in res.stderr
    res = fsu("mv", img, "/missing", "/x")
    assert res.returncode == 1 and "No such file" in res.stderr
    ok(fsu("mv", img, "-n", "/deep/motd", "/deep/empty"))
    assert ok(fsu("cat", img, "/deep/motd")).startswith("welcome")
    res = fsu("mv", img, "/deep", "/deep/er/inside")
    assert res.returncode == 1
    clean(img)


def test_cp_inside(img: Path) -> None:
    ok(fsu("cp", img, "/etc/motd", "/motd.copy"))
    assert ok(fsu("cat", img, "/motd.copy")) == "welcome\n" * 50
    res = fsu("cp", img, "/deep", "/deep2")
    assert res.returncode == 1 and "omitting directory" in res.stderr
    ok(fsu("cp", img, "-r", "/deep", "/deep2"))
    assert ok(fsu("cat", img, "/deep2/er/est/leaf.txt")) == "leaf\n"
    ok(fsu("cp", img, "-a", "/etc", "/etc.bak"))
    assert ok(fsu("stat", img, "-c", "%Y", "/etc.bak/motd")) == \
        ok(fsu("stat", img, "-c", "%Y", "/etc/motd"))
    res = fsu("cp", img, "-r", "/deep", "/deep/er")
    assert res.returncode == 1 and "into itself" in res.stderr
    res = fsu("cp", img, "/etc/motd", "/etc")
    assert res.returncode == 1 and "same file" in res.stderr
    clean(img)


def test_ln(ext4_img: Path) -> None:
    ok(fsu("ln", ext4_img, "-s", "../etc/hostname", "/bin/hn"))
    assert ok(fsu("cat", ext4_img, "/bin/hn")) == "imagehost\n"
    ok(fsu("ln", ext4_img, "/etc/hostname", "/hostname.hard"))
    assert ok(fsu("stat", ext4_img, "-c", "%h", "/etc/hostname")) == "2\n"
    res = fsu("ln", ext4_img, "-s", "x", "/bin/hn")
    assert res.returncode == 1 and "File exists" in res.stderr
    ok(fsu("ln", ext4_img, "-sf", "/etc/motd", "/bin/hn"))
    assert ok(fsu("stat", ext4_img, "-c", "%N", "/bin/hn")) == "'/bin/hn' -> '/etc/motd'\n"
    ok(fsu("ln", ext4_img, "-s", "/etc/motd", "/deep"))
    assert ok(fsu("ls", ext4_img, "-l", "/deep/motd")).rstrip().endswith("-> /etc/motd")
    res = fsu("ln", ext4_img, "/nope", "/x")
    assert res.returncode == 1
    e2fsck_clean(ext4_img)


def test_ln_on_fat_fails_cleanly(fat_img: Path) -> None:
    res = fsu("ln", fat_img, "-s", "x", "/sym")
    assert res.returncode == 1 and "fsu ln: " in res.stderr
    fsck_fat_clean(fat_img)


def test_chmod(ext4_img: Path) -> None:
    ok(fsu("chmod", ext4_img, "600", "/etc/hostname"))
    assert ok(fsu("stat", ext4_img, "-c", "%a", "/etc/hostname")) == "600\n"
    ok(fsu("chmod", ext4_img, "go+r,u+x", "/etc/hostname"))
    assert ok(fsu("stat", ext4_img, "-c", "%A", "/etc/hostname")) == "-rwxr--r--\n"
    ok(fsu("chmod", ext4_img, "-w", "/etc/hostname"))
    assert ok(fsu("stat", ext4_img, "-c", "%A", "/etc/hostname")) == "-r-xr--r--\n"
    ok(fsu("chmod", ext4_img, "-R", "a=rX", "/deep"))
    assert ok(fsu("stat", ext4_img, "-c", "%a %n", "/deep/er", "/deep/er/est/leaf.txt")) == \
        "555 /deep/er\n444 /deep/er/est/leaf.txt\n"
    out = ok(fsu("chmod", ext4_img, "-v", "4755", "/bin/tool"))
    assert "to 4755" in out
    res = fsu("chmod", ext4_img, "u+q", "/etc")
    assert res.returncode == 2 and "invalid mode" in res.stderr
    res = fsu("chmod", ext4_img, "644", "/nope")
    assert res.returncode == 1
    e2fsck_clean(ext4_img)


def test_chmod_on_fat_sets_read_only(fat_img: Path) -> None:
    ok(fsu("chmod", fat_img, "a-w", "/etc/hostname"))
    res = run("mattrib", "-i", fat_img, "::/etc/hostname", check=False)
    assert res.returncode != 0 or "R" in res.stdout.split("::")[0]
    fsck_fat_clean(fat_img)


def test_chown_chgrp(ext4_img: Path) -> None:
    ok(fsu("chown", ext4_img, "1000:100", "/etc/hostname"))
    assert ok(fsu("stat", ext4_img, "-c", "%u:%g", "/etc/hostname")) == "1000:100\n"
    ok(fsu("chown", ext4_img, "-R", "root:root", "/etc"))
    assert ok(fsu("stat", ext4_img, "-c", "%u:%g", "/etc/hostname")) == "0:0\n"
    ok(fsu("chown", ext4_img, "-h", "77", "/etc/alias"))
    assert ok(fsu("stat", ext4_img, "-c", "%u", "/etc/alias", "/etc/hostname")) == "77\n0\n"
    ok(fsu("chgrp", ext4_img, "5", "/etc/motd"))
    assert ok(fsu("stat", ext4_img, "-c", "%g", "/etc/motd")) == "5\n"
    res = fsu("chown", ext4_img, "no-such-user-xyz", "/etc")
    assert res.returncode == 2 and "invalid user" in res.stderr
    e2fsck_clean(ext4_img)


def test_chown_uses_the_images_own_user_names(ext4_img: Path) -> None:
    ok(fsu("write", ext4_img, "/etc/passwd",
           input="root:x:0:0::/root:/bin/sh\nimguser:x:4242:4243::/:/bin/sh\n"))
    ok(fsu("write", ext4_img, "/etc/group", input="root:x:0:\nimggroup:x:4243:\n"))
    ok(fsu("chown", ext4_img, "imguser:imggroup", "/etc/motd"))
    assert ok(fsu("stat", ext4_img, "-c", "%u %g %U %G", "/etc/motd")) == \
        "4242 4243 imguser imggroup\n"
    assert "imguser imggroup" in ok(fsu("ls", ext4_img, "-l", "/etc/motd"))


def test_touch(img: Path) -> None:
    ok(fsu("touch", img, "/new"))
    assert ok(fsu("stat", img, "-c", "%s %F", "/new")) == "0 regular empty file\n"
    ok(fsu("touch", img, "-d", "2021-02-03 04:05:06", "/new"))
    assert ok(fsu("stat", img, "-c", "%Y", "/new")) == "1612325106\n"
    ok(fsu("touch", img, "-d", "@1500000000", "/new"))
    assert ok(fsu("stat", img, "-c", "%Y", "/new")) == "1500000000\n"
    ok(fsu("touch", img, "-t", "202201020304.06", "/new"))
    assert ok(fsu("stat", img, "-c", "%Y", "/new")) == "1641092646\n"
    ok(fsu("touch", img, "-r", "/etc/hostname", "/new"))
    assert ok(fsu("stat", img, "-c", "%Y", "/new")) == \
        ok(fsu("stat", img, "-c", "%Y", "/etc/hostname"))
    ok(fsu("touch", img, "-c", "/notcreated"))
    assert "notcreated" not in names(img, "/")
    res = fsu("touch", img, "-d", "yesterday-ish", "/new")
    assert res.returncode == 2 and "invalid date" in res.stderr
    res = fsu("touch", img, "/nodir/x")
    assert res.returncode == 1
    clean(img)


def test_write(img: Path) -> None:
    ok(fsu("write", img, "/etc/hostname", input="newhost\n"))
    assert ok(fsu("cat", img, "/etc/hostname")) == "newhost\n"
    ok(fsu("write", img, "-a", "/etc/hostname", input="more\n"))
    assert ok(fsu("cat", img, "/etc/hostname")) == "newhost\nmore\n"
    ok(fsu("write", img, "/fresh", input=b"\x00\xff" * 70000))
    assert int(ok(fsu("stat", img, "-c", "%s", "/fresh"))) == 140000
    res = fsu("write", img, "/etc", input="x")
    assert res.returncode == 1 and "Is a directory" in res.stderr
    res = fsu("write", img, "/no/such/dir", input="x")
    assert res.returncode == 1
    assert not [n for n in names(img, "/etc") if "fsu" in n]
    clean(img)


def test_write_keeps_mode_and_follows_symlinks(ext4_img: Path) -> None:
    ok(fsu("chmod", ext4_img, "640", "/etc/hostname"))
    ok(fsu("write", ext4_img, "/etc/alias", input="via link\n"))
    assert ok(fsu("cat", ext4_img, "/etc/hostname")) == "via link\n"
    assert ok(fsu("stat", ext4_img, "-c", "%a %F", "/etc/hostname", "/etc/alias")) == \
        "640 regular file\n777 symbolic link\n"


def test_put_and_get(img: Path, tmp_path: Path) -> None:
    src = tmp_path / "h.txt"
    src.write_text("from host\n")
    ok(fsu("put", img, src, "/etc"))
    assert ok(fsu("cat", img, "/etc/h.txt")) == "from host\n"
    ok(fsu("put", img, src, "/renamed.txt"))
    res = fsu("put", img, tmp_path, "/dir")
    assert res.returncode == 1 and "omitting directory" in res.stderr
    res = fsu("put", img, src, src, "/etc/hostname")
    assert res.returncode == 2 and "not a directory" in res.stderr
    res = fsu("put", img, tmp_path / "none", "/x")
    assert res.returncode == 1 and "No such file" in res.stderr
    ok(fsu("get", img, "/etc/hostname", tmp_path / "got"))
    assert (tmp_path / "got").read_text() == "imagehost\n"
    ok(fsu("get", img, "-r", "/deep", tmp_path))
    assert (tmp_path / "deep" / "er" / "est" / "leaf.txt").read_text() == "leaf\n"
    res = fsu("get", img, "/nope", tmp_path)
    assert res.returncode == 1 and "fsu get: /nope: No such file or directory" in res.stderr
    clean(img)


def test_put_overwrite_and_owner(ext4_img: Path, tmp_path: Path) -> None:
    f = tmp_path / "hostname"
    f.write_text("replaced\n")
    ok(fsu("put", ext4_img, "--owner", "12:34", f, "/etc/hostname"))
    assert ok(fsu("cat", ext4_img, "/etc/hostname")) == "replaced\n"
    assert ok(fsu("stat", ext4_img, "-c", "%u:%g", "/etc/hostname")) == "12:34\n"
    e2fsck_clean(ext4_img)


def test_failed_put_leaves_the_image_consistent(tmp_path: Path) -> None:
    img = tmp_path / "small.img"
    run("mke2fs", "-q", "-F", "-t", "ext4", img, "2M")
    (tmp_path / "ok.bin").write_bytes(os.urandom(100_000))
    (tmp_path / "huge.bin").write_bytes(os.urandom(4 << 20))
    ok(fsu("put", img, tmp_path / "ok.bin", "/"))
    res = fsu("put", img, tmp_path / "huge.bin", "/")
    assert res.returncode == 1 and "No space left on device" in res.stderr
    assert names(img, "/") == ["lost+found", "ok.bin"]
    e2fsck_clean(img)
    ok(fsu("put", img, tmp_path / "ok.bin", "/again.bin"))  # the space came back
    e2fsck_clean(img)


def test_write_commands_refused_on_read_only(ext4_img: Path) -> None:
    res = fsu("-r", "mkdir", ext4_img, "/x")
    assert res.returncode == 1 and "Read-only file system" in res.stderr
    ext4_img.chmod(0o444)
    try:
        res = fsu("mkdir", ext4_img, "/x")
        if os.geteuid() != 0:
            assert res.returncode == 2 and "not writable" in res.stderr
    finally:
        ext4_img.chmod(0o644)


def test_progress_line(tmp_path: Path, ext4_img: Path) -> None:
    (tmp_path / "f").write_bytes(os.urandom(2 << 20))
    res = fsu("put", ext4_img, "--progress", tmp_path / "f", "/f")
    assert res.returncode == 0
    assert "put" in res.stderr and "%" in res.stderr and "\r" in res.stderr
    quiet = fsu("put", ext4_img, tmp_path / "f", "/g")
    assert quiet.stderr == ""


def test_batch(ext4_img: Path, tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("batched\n")
    script = f"""
    # comments and blank lines are fine
    mkdir -p /b/c
    put {tmp_path / 'in.txt'} /b/c/
    cat /b/c/in.txt
    ls --json /b/c
    rm /missing
    stat -c %s /b/c/in.txt
    """
    res = fsu(ext4_img, "--batch", input=script)
    assert res.returncode == 1
    assert "batched\n" in res.stdout and "8\n" in res.stdout
    assert "fsu: line 7: rm: /missing: No such file or directory" in res.stderr
    e2fsck_clean(ext4_img)
    res = fsu(ext4_img, input="set -e\nrm /missing\nmkdir /after\n")
    assert res.returncode == 1
    assert "after" not in names(ext4_img, "/")
    res = fsu(ext4_img, input="frobnicate /\nls /etc\n")
    assert res.returncode == 2 and "hostname" in res.stdout and "unknown command" in res.stderr


def test_batch_read_only_script_leaves_image_alone(ext4_img: Path) -> None:
    before = (ext4_img.read_bytes(), ext4_img.stat().st_mtime_ns)
    res = fsu(ext4_img, "--batch", input="ls /\ncat /etc/hostname\ninfo --json\n")
    assert res.returncode == 0
    json.loads(res.stdout[res.stdout.index("{"):])
    assert (ext4_img.read_bytes(), ext4_img.stat().st_mtime_ns) == before
    res = fsu("-r", ext4_img, "--batch", input="mkdir /x\n")
    assert res.returncode == 1 and "read-only" in res.stderr


def test_classic_name_and_type_option(ext4_img: Path) -> None:
    import subprocess
    import sys

    from tests.fsu.conftest import env

    code = ("import sys; from rumpkernel.apps.fsu.entry import fsu_cat; "
            "sys.argv = ['fsu_cat'] + sys.argv[1:]; sys.exit(fsu_cat())")
    res = subprocess.run([sys.executable, "-c", code, "-t", "ext4", str(ext4_img),
                          "/etc/hostname", "/nope"], capture_output=True, text=True, env=env())
    assert res.stdout == "imagehost\n" and res.returncode == 1
    assert res.stderr.startswith("fsu_cat: /nope:")
    res = fsu("-t", "msdos", "ls", ext4_img, "/")
    assert res.returncode == 2 and "no FAT file system" in res.stderr
    res = fsu("-t", "xfs", "ls", ext4_img, "/")
    assert res.returncode == 2 and "unknown file system type 'xfs'" in res.stderr


def test_image_errors(tmp_path: Path) -> None:
    res = fsu("ls", tmp_path / "missing.img", "/")
    assert res.returncode == 2
    assert res.stderr.strip() == f"fsu ls: {tmp_path / 'missing.img'}: No such file or directory"
    junk = tmp_path / "junk.img"
    junk.write_bytes(b"\x42" * 65536)
    res = fsu("ls", junk, "/")
    assert res.returncode == 2 and "no file system recognised" in res.stderr
    assert "ext2/ext3/ext4" in res.stderr and "FAT" in res.stderr
    res = fsu("ls", tmp_path, "/")
    assert res.returncode == 2 and "Is a directory" in res.stderr
    res = fsu("ls", "")
    assert res.returncode == 2


def test_modes_survive_on_ext(ext4_img: Path) -> None:
    out = ok(fsu("stat", ext4_img, "-c", "%a", "/bin/suid", "/private"))
    assert out == "4755\n600\n"
    assert stat.S_ISFIFO(json.loads(ok(fsu("stat", ext4_img, "--json", "/fifo")))[0]["mode"]
                         | stat.S_IFIFO)


def test_flags_before_the_image(ext4_img: Path, tmp_path: Path) -> None:
    (tmp_path / "t" / "sub").mkdir(parents=True)
    (tmp_path / "t" / "sub" / "f").write_text("deep\n")
    ok(fsu("put", "-r", "-p", ext4_img, tmp_path / "t", "/t"))  # the brief's usage line
    assert ok(fsu("cat", ext4_img, "/t/sub/f")) == "deep\n"
    ok(fsu("rm", "-r", ext4_img, "/t"))  # -r is rm's, not read-only
    assert "t" not in names(ext4_img, "/")
    ok(fsu("mkdir", "-m", "750", ext4_img, "/m"))  # an option's value is not the image
    assert ok(fsu("stat", ext4_img, "-c", "%a", "/m")) == "750\n"
    assert ok(fsu("ls", "-t", ext4_img, "/etc")).split()[0] in ("alias", "hostname", "motd")
    res = fsu("mkdir", "--read-only", ext4_img, "/ro")
    assert res.returncode == 1 and "Read-only file system" in res.stderr
    res = fsu("mkdir", "-r", ext4_img, "/ro")  # mkdir has no -r: fsu's read-only
    assert res.returncode == 1 and "Read-only file system" in res.stderr
    assert ok(fsu("cat", "--type", "ext4", ext4_img, "/etc/hostname")) == "imagehost\n"
    res = fsu("cat", "--type=msdos", ext4_img, "/etc/hostname")
    assert res.returncode == 2 and "not a msdos file system" in res.stderr
    e2fsck_clean(ext4_img)


def test_names_fat_cannot_hold(fat_img: Path, tmp_path: Path) -> None:
    src = tmp_path / "odd"
    src.mkdir()
    (src / "a:b").write_text("colon")
    (src / "fine.txt").write_text("ok")
    res = fsu("put", fat_img, "-r", src, "/odd")
    assert res.returncode == 1
    assert res.stderr.strip() == ("fsu put: /odd/a:b: Invalid argument (msdos: 'a:b': "
                                  "character not allowed on FAT)")  # not the temporary
    assert names(fat_img, "/odd") == ["fine.txt"]
    fsck_fat_clean(fat_img)
    res = fsu("makefs", "-t", "fat", tmp_path / "x.img", src)
    assert res.returncode == 1 and "a:b: cannot be stored in the image" in res.stderr
    assert not (tmp_path / "x.img").exists()


def test_fat_trailing_dots_are_stripped(fat_img: Path) -> None:
    import rumpkernel

    k = rumpkernel.boot()
    try:
        k.mount_image(str(fat_img), "/m")
        k.path("/m/trailing.").write_text("x")
        assert "trailing" in k.listdir("/m")
        assert k.path("/m/trailing...").read_text() == "x"   # lookups ignore trailing dots too
    finally:
        k.halt()
