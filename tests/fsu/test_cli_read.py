"""fsu's reading commands in subprocesses, on images made by mke2fs -d and mkfs.fat + mcopy:
output shapes, flags, JSON, exit statuses; and the image file never changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fsu.conftest import T0, fsu, fsu_bytes, ok


@pytest.fixture(params=["ext4", "fat"])
def img(request: pytest.FixtureRequest, ext4_img: Path, fat_img: Path) -> Path:
    return ext4_img if request.param == "ext4" else fat_img


def test_ls_plain_and_long(img: Path) -> None:
    names = ok(fsu("ls", img, "/")).split("\n")
    assert {"etc", "bin", "deep", "empty", "with space.txt", "Ünïcode.txt"} <= set(names)
    long = ok(fsu("ls", img, "-l", "/etc"))
    assert long.startswith("total ")
    line = next(x for x in long.splitlines() if x.endswith(" hostname") and "->" not in x)
    assert line.startswith("-rw") and " 10 " in line
    assert ok(fsu("ls", img, "/etc/hostname")) == "/etc/hostname\n"
    assert ok(fsu("ls", img, "-d", "/etc")) == "/etc\n"


def test_ls_flags(ext4_img: Path) -> None:
    assert ok(fsu("ls", ext4_img, "-a", "/etc")).split() == [".", "..", "alias", "hostname",
                                                               "motd"]
    longs = ok(fsu("ls", ext4_img, "-l", "/etc")).splitlines()
    assert any(x.endswith("alias -> hostname") and x.startswith("l") for x in longs)
    inode = ok(fsu("ls", ext4_img, "-i", "/etc")).split()
    assert inode[0].isdigit() and inode[1] == "alias"
    human = ok(fsu("ls", ext4_img, "-lh", "/bin"))
    assert "293K" in human and "total" in human
    assert ok(fsu("ls", ext4_img, "-S", "/etc")).split() == ["motd", "hostname", "alias"]
    assert ok(fsu("ls", ext4_img, "-Sr", "/etc")).split() == ["alias", "hostname", "motd"]
    assert ok(fsu("ls", ext4_img, "-F", "/bin")).split() == ["suid*", "tool*"]
    rec = ok(fsu("ls", ext4_img, "-R", "/deep"))
    assert rec.splitlines() == ["/deep:", "er", "", "/deep/er:", "est", "", "/deep/er/est:",
                                "leaf.txt"]
    numeric = ok(fsu("ls", ext4_img, "-ln", "/etc/hostname"))
    assert " 0 0 " in numeric
    # flags typed before the image are accepted too
    assert ok(fsu("ls", "-lh", ext4_img, "/bin")) == human


def test_ls_json(ext4_img: Path) -> None:
    entries = json.loads(ok(fsu("ls", ext4_img, "--json", "/etc")))
    by = {e["name"]: e for e in entries}
    assert by["hostname"]["type"] == "file" and by["hostname"]["size"] == 10
    assert by["alias"]["type"] == "symlink" and by["alias"]["target"] == "hostname"
    assert by["hostname"]["mode"] == 0o644 and by["hostname"]["mode_string"] == "-rw-r--r--"
    assert by["hostname"]["path"] == "/etc/hostname" and by["hostname"]["user"] == "root"
    rec = json.loads(ok(fsu("ls", ext4_img, "--json", "-R", "/deep")))
    assert [e["path"] for e in rec] == ["/deep/er", "/deep/er/est", "/deep/er/est/leaf.txt"]


def test_ls_missing_operand_exit_2(img: Path) -> None:
    res = fsu("ls", img, "/etc", "/nope")
    assert res.returncode == 2
    assert res.stderr.strip() == "fsu ls: /nope: No such file or directory"
    assert "hostname" in res.stdout


def test_cat(img: Path) -> None:
    assert ok(fsu("cat", img, "/etc/hostname", "/deep/er/est/leaf.txt")) == "imagehost\nleaf\n"
    raw = fsu_bytes("cat", img, "/bin/tool")
    assert raw.returncode == 0
    assert raw.stdout == bytes((i * 7 + i // 251) % 256 for i in range(300_000))
    numbered = ok(fsu("cat", img, "-n", "/etc/hostname"))
    assert numbered == "     1\timagehost\n"
    res = fsu("cat", img, "/nope", "/etc/hostname")
    assert res.returncode == 1 and res.stdout == "imagehost\n"
    assert "fsu cat: /nope: No such file or directory" in res.stderr
    res = fsu("cat", img, "/etc")
    assert res.returncode == 1 and "Is a directory" in res.stderr


def test_cat_follows_absolute_symlinks_inside_the_image(ext4_img: Path) -> None:
    # /abslink -> /etc/hostname must mean the image's /etc/hostname, not the host's
    assert ok(fsu("cat", ext4_img, "/abslink")) == "imagehost\n"


def test_stat(img: Path) -> None:
    out = ok(fsu("stat", img, "/etc/hostname"))
    assert out.splitlines()[0] == "  File: /etc/hostname"
    assert "Size: 10" in out and "regular file" in out and "Access: (0" in out
    assert "Modify: 2020-09-13" in out  # T0 in UTC
    fmt = ok(fsu("stat", img, "-c", "%n %s %F %a", "/etc/hostname", "/etc"))
    lines = fmt.splitlines()
    assert lines[0].startswith("/etc/hostname 10 regular file ")
    assert lines[1].split()[2] == "directory"
    data = json.loads(ok(fsu("stat", img, "--json", "/etc/motd")))
    assert data[0]["size"] == 400 and data[0]["type"] == "file"
    assert data[0]["mtime_ns"] // 10**9 >= T0


def test_stat_symlink_and_follow(ext4_img: Path) -> None:
    out = ok(fsu("stat", ext4_img, "/etc/alias"))
    assert out.splitlines()[0] == "  File: /etc/alias -> hostname" and "symbolic link" in out
    assert "regular file" in ok(fsu("stat", ext4_img, "-L", "/etc/alias"))
    res = fsu("stat", ext4_img, "/nope")
    assert res.returncode == 1 and "No such file" in res.stderr


def test_find(img: Path) -> None:
    names = ok(fsu("find", img, "/", "-name", "*.txt")).splitlines()
    assert sorted(names) == sorted(["/Ünïcode.txt", "/deep/er/est/leaf.txt", "/with space.txt"])
    assert ok(fsu("find", img, "/deep", "-type", "d")).splitlines() == [
        "/deep", "/deep/er", "/deep/er/est"]
    assert ok(fsu("find", img, "/", "-size", "+100k")).splitlines() == ["/bin/tool"]
    assert ok(fsu("find", img, "/", "-type", "f", "-size", "-1")).splitlines() == ["/empty"]
    assert ok(fsu("find", img, "/etc", "-maxdepth", "0")).splitlines() == ["/etc"]
    newer = ok(fsu("find", img, "/deep", "-newer", "/deep/er/est/leaf.txt")).splitlines()
    assert "/deep/er/est/leaf.txt" not in newer and "/deep" in newer
    assert ok(fsu("find", img, "/etc", "!", "-name", "h*", "-type", "f")).splitlines() == [
        "/etc/motd"]
    both = ok(fsu("find", img, "/etc", "(", "-name", "motd", "-o", "-name", "host*", ")"))
    assert sorted(both.splitlines()) == ["/etc/hostname", "/etc/motd"]
    assert ok(fsu("find", img, "/etc", "-iname", "HOSTNAME", "-print0")) == "/etc/hostname\0"
    res = fsu("find", img, "/", "-bogus")
    assert res.returncode == 2 and "unknown predicate" in res.stderr
    res = fsu("find", img, "/nope")
    assert res.returncode == 1


def test_find_types_on_ext(ext4_img: Path) -> None:
    assert sorted(ok(fsu("find", ext4_img, "/", "-type", "l")).splitlines()) == [
        "/abslink", "/dangling", "/etc/alias"]
    assert ok(fsu("find", ext4_img, "/", "-type", "p")).splitlines() == ["/fifo"]
    assert ok(fsu("find", ext4_img, "/", "-empty", "-type", "d", "-name", "e*")) == \
        "/emptydir\n"


def test_du(ext4_img: Path) -> None:
    out = ok(fsu("du", ext4_img, "-s", "/bin"))
    size, path = out.split()
    assert path == "/bin" and 293 <= int(size) <= 320
    lines = ok(fsu("du", ext4_img, "/deep")).splitlines()
    assert [x.split("\t")[1] for x in lines] == ["/deep/er/est", "/deep/er", "/deep"]
    hsize = ok(fsu("du", ext4_img, "-sh", "/bin")).split()[0]
    assert hsize.endswith("K") and 293 <= int(hsize[:-1]) <= 320
    assert ok(fsu("du", ext4_img, "-sb", "/etc")).split()[0] == str(1024 + 10 + 400 + 8)
    allf = ok(fsu("du", ext4_img, "-a", "/etc")).splitlines()
    assert len(allf) == 4
    total = ok(fsu("du", ext4_img, "-sc", "/etc", "/bin")).splitlines()
    assert total[-1].endswith("\ttotal")
    # hard links count once
    both = ok(fsu("du", ext4_img, "-sb", "/etc/motd", "/motd.hard")).splitlines()
    assert both == ["400\t/etc/motd"]


def test_df_and_info(img: Path) -> None:
    df = ok(fsu("df", img)).splitlines()
    assert df[0].split()[:2] == ["Filesystem", "1K-blocks"] and df[1].endswith("/")
    human = ok(fsu("df", img, "-h")).splitlines()[1].split()
    assert human[1] in ("14M", "16M", "15M", "16.0M")   # ext4: Linux leaves metadata out (14M)
    dfj = json.loads(ok(fsu("df", img, "--json")))
    assert dfj["size"] > 13 * 1024 * 1024 and 0 < dfj["used"] < dfj["size"]
    assert dfj["type"] in ("ext4", "fat12", "fat16") and dfj["readonly"] is True
    info = json.loads(ok(fsu("info", img, "--json")))
    if img.name == "disk.img":
        assert info["type"] == "ext4" and info["label"] == "SAMPLE"
        assert info["uuid"] == "d6e2a3b4-1111-4222-8333-444455556666"
        assert "has_journal" in info["features"] and "extent" in info["features"]
    else:
        assert info["type"].startswith("fat") and info["label"] == "FATVOL"
        assert info["volume_id"] == "1234-ABCD"
    text = ok(fsu("info", img))
    assert "type:" in text and "size:" in text and "MiB" in text
    assert "Inodes" in ok(fsu("df", img, "-i"))
    assert "Type" in ok(fsu("df", img, "-T"))


def test_tree(ext4_img: Path) -> None:
    out = ok(fsu("tree", ext4_img, "/deep"))
    assert out == "/deep\n└── er\n    └── est\n        └── leaf.txt\n\n2 directories, 1 file\n"
    assert "alias -> hostname" in ok(fsu("tree", ext4_img, "/etc"))
    level = ok(fsu("tree", ext4_img, "-L", "1", "-d", "--noreport", "/"))
    assert "deep" in level and "er" not in level and "hostname" not in level


def test_diff_against_the_source_tree(img: Path, tree_master: Path, fat_tree_master: Path
                                      ) -> None:
    src = tree_master if img.name == "disk.img" else fat_tree_master
    res = fsu("diff", img, "/", src)
    if img.name == "disk.img":
        assert res.returncode == 1 and res.stdout.strip() == "Only in /: lost+found"
    else:
        assert res.returncode == 0 and res.stdout == ""
    assert fsu("diff", img, "/etc", src / "etc").returncode == 0
    changed = src.parent / f"changed-{img.name}"
    changed.mkdir(exist_ok=True)
    (changed / "hostname").write_text("otherhost\n")
    res = fsu("diff", img, "/etc/hostname", changed / "hostname")
    assert res.returncode == 1 and "-imagehost" in res.stdout and "+otherhost" in res.stdout
    res = fsu("diff", img, "-q", "/etc/hostname", changed / "hostname")
    assert res.stdout == f"Files /etc/hostname and {changed / 'hostname'} differ\n"
    assert fsu("diff", img, "--in-image", "/etc/motd", "/etc/motd").returncode == 0
    res = fsu("diff", img, "--in-image", "/etc/motd", "/etc/hostname")
    assert res.returncode == 1
    res = fsu("diff", img, "/nope", src)
    assert res.returncode == 2


def test_reading_never_touches_the_image(img: Path, tmp_path: Path) -> None:
    before = (img.read_bytes(), img.stat().st_mtime_ns)
    for args in (["ls", "-lR", "/"], ["cat", "/etc/motd"], ["stat", "/etc"], ["find", "/"],
                 ["du", "-s", "/"], ["df"], ["info"], ["tree", "/"],
                 ["get", "-r", "/etc", str(tmp_path / "out")], ["diff", "/etc", str(tmp_path)]):
        fsu(args[0], img, *args[1:])
    assert (img.read_bytes(), img.stat().st_mtime_ns) == before


def test_read_only_image_file(img: Path) -> None:
    img.chmod(0o444)
    try:
        assert ok(fsu("cat", img, "/etc/hostname")) == "imagehost\n"
    finally:
        img.chmod(0o644)


def test_help_and_usage(ext4_img: Path) -> None:
    res = fsu("--help")
    assert res.returncode == 0 and "makefs" in res.stdout and "ls" in res.stdout
    assert fsu().returncode == 2
    assert "usage: fsu ls IMAGE" in ok(fsu("ls", "--help"))
    assert "usage:" in ok(fsu("help", "put"))
    res = fsu("ls")
    assert res.returncode == 2 and "missing IMAGE" in res.stderr
    res = fsu("ls", ext4_img, "--bogus")
    assert res.returncode == 2 and "unrecognized arguments" in res.stderr
    assert ok(fsu("--version")).startswith("rumpkernel fsu")


def test_closed_pipe_is_quiet(tmp_path: Path) -> None:
    """``fsu cat IMG /big | head`` ends quietly, like coreutils, not with "Broken pipe"."""
    import os
    import subprocess
    import sys

    img = tmp_path / "p.img"
    src = tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(os.urandom(4 << 20))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-m", "rumpkernel.apps.fsu", "makefs", "-t", "ext4",
                    str(img), str(src)], check=True, env=env, capture_output=True)
    r = subprocess.run(f"{sys.executable} -m rumpkernel.apps.fsu cat {img} /big | head -c 10",
                       shell=True, env=env, capture_output=True, timeout=120)
    assert len(r.stdout) == 10
    assert b"Broken pipe" not in r.stderr and r.stderr == b""
