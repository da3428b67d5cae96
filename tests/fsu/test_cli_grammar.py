"""The command line as users type it (issue #16 items 5 and 9): the image in the wrong place
is named, ``--`` ends options everywhere, ``-`` is standard input or output, and every
command's --help says what it takes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fsu.conftest import fsu, fsu_bytes, ok


@pytest.mark.parametrize("args,usage", [
    (["chown", "-R", "alice:alice", "IMG", "/etc"], "fsu chown IMAGE"),
    (["chmod", "4755", "IMG", "/bin/tool"], "fsu chmod IMAGE"),
    (["chgrp", "root", "IMG", "/etc"], "fsu chgrp IMAGE"),
    (["put", "HOSTFILE", "IMG", "/x"], "fsu put IMAGE"),
])
def test_image_in_the_wrong_place(ext4_img: Path, tmp_path: Path, args: list[str],
                                  usage: str) -> None:
    host = tmp_path / "hostfile"
    host.write_text("not an image\n")
    argv = [str(ext4_img) if a == "IMG" else str(host) if a == "HOSTFILE" else a
            for a in args]
    res = fsu(*argv)
    assert res.returncode == 2
    assert f"IMAGE comes first: {usage}" in res.stderr, res.stderr


def test_type_after_the_command_is_explained(ext4_img: Path) -> None:
    res = fsu("ls", "-t", "ext4", ext4_img, "/")
    assert res.returncode == 2
    assert "IMAGE comes first" in res.stderr and f"fsu -t ext4 ls {ext4_img}" in res.stderr


def test_double_dash_ends_options(ext4_img: Path, tmp_path: Path) -> None:
    (tmp_path / "-dash.txt").write_text("dashed\n")
    ok(fsu("put", ext4_img, "--", "-dash.txt", "/-in-image", cwd=tmp_path))
    assert ok(fsu("cat", ext4_img, "--", "/-in-image")) == "dashed\n"
    ok(fsu("mkdir", ext4_img, "--", "-d"))  # a relative name in the image's root
    assert "-d" in ok(fsu("ls", ext4_img, "/")).split()
    ok(fsu("rm", ext4_img, "-r", "--", "/-d", "/-in-image"))
    assert "-d" not in ok(fsu("ls", ext4_img, "/")).split()


def test_dash_is_standard_input_and_output(ext4_img: Path) -> None:
    ok(fsu("put", ext4_img, "-", "/from-stdin", input="piped in\n"))
    assert ok(fsu("cat", ext4_img, "/from-stdin")) == "piped in\n"
    res = fsu_bytes("get", ext4_img, "/from-stdin", "/etc/hostname", "-")
    assert res.returncode == 0 and res.stdout == b"piped in\nimagehost\n"
    assert ok(fsu("cat", ext4_img, "/etc/hostname", "-", input="and stdin\n")) == \
        "imagehost\nand stdin\n"
    ok(fsu("write", ext4_img, "/w", "-", input="written\n"))
    assert ok(fsu("cat", ext4_img, "/w")) == "written\n"
    res = fsu("put", ext4_img, "-", "/etc", input="x")
    assert res.returncode == 2 and "needs a file name" in res.stderr


@pytest.mark.parametrize("name,words", [
    ("find", ["-name", "-type", "-maxdepth", "-print0"]),
    ("chmod", ["MODE", "-R", "u+x"]),
    ("chgrp", ["GROUP"]),
])
def test_every_command_has_real_help(name: str, words: list[str]) -> None:
    text = ok(fsu(name, "--help"))
    assert len(text.splitlines()) > 5
    for w in words:
        assert w in text
    if name == "chgrp":
        assert "OWNER" not in text
