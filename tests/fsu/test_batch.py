"""Batch mode and the prompt (issue #16 item 9, #17 defect 18): messages name the line, a
NUL byte is a clear error, ``write`` in a script needs a host file, ``cd``/``pwd``/``help``,
and Tab completion of commands and image paths."""

from __future__ import annotations

from pathlib import Path

from rumpkernel.apps.fsu.session import Session
from rumpkernel.client.files.imagespec import parse_image_spec
from tests.fsu.conftest import fsu, ok


def test_errors_name_the_line(ext4_img: Path) -> None:
    res = fsu(ext4_img, "--batch", input="ls /\nmkdir /etc\nbogus\n")
    assert res.returncode == 2
    assert "fsu: line 2: mkdir: /etc: File exists" in res.stderr
    assert "fsu: line 3: unknown command 'bogus'" in res.stderr


def test_nul_byte_in_a_line_is_an_error_not_a_traceback(ext4_img: Path) -> None:
    res = fsu(ext4_img, "--batch", input=b"ls /et\0c\nls /etc\n")
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert "line 1: a NUL byte" in res.stderr
    assert "hostname" in res.stdout  # the next line still ran


def test_write_without_input_in_a_script_is_an_error(ext4_img: Path, tmp_path: Path) -> None:
    res = fsu(ext4_img, "--batch", input="write /new\n")
    assert res.returncode == 2 and "no input" in res.stderr
    assert fsu("stat", ext4_img, "/new").returncode == 1  # no empty file was made
    src = tmp_path / "data"
    src.write_text("from a file\n")
    ok(fsu(ext4_img, "--batch", input=f"write /new {src}\n"))
    assert ok(fsu("cat", ext4_img, "/new")) == "from a file\n"


def test_cd_pwd_help(ext4_img: Path) -> None:
    out = ok(fsu(ext4_img, "--batch", input="cd /etc\npwd\nls\nhelp\nhelp cat\n"))
    lines = out.splitlines()
    assert lines[0] == "/etc"
    assert "hostname" in lines[1:4]
    assert any(line.split()[:1] == ["cd"] for line in lines)
    assert "Write files from the image to standard output." in out


def test_completion_of_commands_and_image_paths(ext4_img: Path) -> None:
    from rumpkernel.apps.fsu.batch import Completer

    with Session(parse_image_spec(str(ext4_img))) as s:
        c = Completer(s)
        assert c.candidates("ch", "ch") == ["chgrp ", "chmod ", "chown "]
        assert c.candidates("cat /etc/ho", "/etc/ho") == ["/etc/hostname "]
        assert "/deep/" in c.candidates("ls /d", "/d")
        s.sys.chdir("/etc")
        assert c.candidates("cat mo", "mo") == ["motd "]
