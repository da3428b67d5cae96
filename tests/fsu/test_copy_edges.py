"""Copies at the edges (issue #17 defect 10 and "Also"): names of 255 bytes of multi-byte
UTF-8 (every name the tools make up stays within NAME_MAX bytes), and holes kept both ways
by put and get (SEEK_DATA/SEEK_HOLE), as cp --sparse does."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fsu.conftest import e2fsck_clean, fsck_fat_clean, fsu, need, ok, run

LONG = "é" * 127 + "x"  # 255 bytes of UTF-8, 128 characters


def test_temporary_names_fit_name_max() -> None:
    from rumpkernel.client.files.names import NAME_MAX, temp_name, temp_path

    for name in (LONG, "日本" * 42 + "abc", "a" * 255, "ü", b"\xff" * 255):
        t = temp_name(name, "123.fsutmp")
        raw = t if isinstance(t, bytes) else t.encode("utf-8", "surrogateescape")
        assert len(raw) <= NAME_MAX
        if isinstance(t, str):
            t.encode("utf-8")  # whole characters: no surrogates from a cut sequence
    assert temp_path("/a/b/" + LONG, "x").startswith("/a/b/.é")


@pytest.mark.parametrize("kind", ["ext4", "fat"])
def test_put_and_get_255_byte_utf8_names(tmp_path: Path, kind: str, ext4_img: Path,
                                         fat_img: Path) -> None:
    img = ext4_img if kind == "ext4" else fat_img
    src = tmp_path / "src"
    src.mkdir()
    (src / LONG).write_text("long name\n")
    ok(fsu("put", img, src / LONG, "/"))
    ok(fsu("put", img, src / LONG, "/"))  # over an existing file: the temporary is used too
    assert LONG in ok(fsu("ls", img, "/")).splitlines()
    out = tmp_path / "out"
    out.mkdir()
    ok(fsu("get", img, "/" + LONG, out))
    assert (out / LONG).read_text() == "long name\n"
    ok(fsu("write", img, "/" + LONG, input="rewritten\n"))
    assert ok(fsu("cat", img, "/" + LONG)) == "rewritten\n"
    (e2fsck_clean if kind == "ext4" else fsck_fat_clean)(img)


def _sparse(path: Path) -> bytes:
    with open(path, "wb") as f:
        f.truncate(48 << 20)
        f.seek(1 << 20)
        f.write(b"one")
        f.seek(30 << 20)
        f.write(b"two" * 1000)
    return path.read_bytes()


def test_put_and_get_keep_holes(tmp_path: Path) -> None:
    need("mke2fs")
    img = tmp_path / "disk.img"
    run("mke2fs", "-q", "-F", "-t", "ext4", img, "32M")
    data = _sparse(tmp_path / "sparse")
    ok(fsu("put", img, tmp_path / "sparse", "/s"))
    size, blocks = ok(fsu("stat", "-c", "%s %b", img, "/s")).split()
    assert int(size) == 48 << 20 and int(blocks) <= 64
    e2fsck_clean(img)
    out = tmp_path / "got"
    ok(fsu("get", img, "/s", out))
    assert out.read_bytes() == data
    assert out.stat().st_blocks * 512 < 1 << 20
