"""The fsspec adapter on real images made by mke2fs -d and mkfs.fat + mcopy."""

from __future__ import annotations

import os
import shutil
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fsu.conftest import e2fsck_clean, fsck_fat_clean

fsspec = pytest.importorskip("fsspec")

from rumpkernel.client.fsspec_fs import RumpkernelFileSystem, looks_like_image  # noqa: E402


@pytest.fixture(autouse=True)
def registered() -> Iterator[None]:
    # the entry point needs an installed distribution; tests run from the source tree
    fsspec.register_implementation("rumpkernel", RumpkernelFileSystem, clobber=True)
    yield
    fsspec.AbstractFileSystem.clear_instance_cache()
    RumpkernelFileSystem.clear_instance_cache()


@pytest.fixture
def in_dir(tmp_path: Path, ext4_img: Path) -> Iterator[Path]:
    old = os.getcwd()
    os.chdir(ext4_img.parent)
    try:
        yield ext4_img
    finally:
        os.chdir(old)


def test_open_with_the_image_first(in_dir: Path) -> None:
    with fsspec.open("rumpkernel://disk.img::/etc/hostname", "r") as f:
        assert f.read() == "imagehost\n"
    with fsspec.open(f"rumpkernel://{in_dir}::/etc/motd", "rb") as f:
        assert f.read() == b"welcome\n" * 50
    # /etc/hostname also exists on the host: the image must still win
    with fsspec.open("rumpkernel://disk.img::/abslink") as f:
        assert f.read() == b"imagehost\n"


def test_open_in_fsspec_chaining_order(in_dir: Path) -> None:
    with fsspec.open("rumpkernel:///etc/hostname::file://disk.img", "r") as f:
        assert f.read() == "imagehost\n"
    with fsspec.open(f"rumpkernel:///etc/hostname::{in_dir}", "r") as f:
        assert f.read() == "imagehost\n"


def test_bound_filesystem_listing(ext4_img: Path) -> None:
    fs = fsspec.filesystem("rumpkernel", image=str(ext4_img))
    assert "/etc" in fs.ls("/", detail=False)
    assert sorted(fs.ls("/etc", detail=False)) == ["/etc/alias", "/etc/hostname", "/etc/motd"]
    info = fs.info("/bin/tool")
    assert info["type"] == "file" and info["size"] == 300_000
    assert fs.info("/etc")["type"] == "directory"
    link = fs.info("/etc/alias")
    assert link["islink"] and link["destination"] == "hostname" and link["type"] == "file"
    assert fs.cat("/etc/hostname") == b"imagehost\n"
    assert fs.cat_file("/etc/motd", start=8, end=15) == b"welcome"
    assert fs.cat_file("/etc/motd", start=-8) == b"welcome\n"
    assert fs.exists("/deep/er/est/leaf.txt") and not fs.exists("/nope")
    assert fs.isdir("/deep") and fs.isfile("/empty")
    assert sorted(fs.glob("/**/*.txt")) == ["/deep/er/est/leaf.txt", "/with space.txt",
                                            "/Ünïcode.txt"]
    assert fs.du("/etc") == 10 + 400 + 10  # alias is followed by info()
    found = fs.find("/deep")
    assert found == ["/deep/er/est/leaf.txt"]
    with pytest.raises(FileNotFoundError):
        fs.cat("/missing")
    with pytest.raises(PermissionError):
        fs.open("/etc/new", "wb")
    with pytest.raises(PermissionError):
        fs.rm("/etc/hostname")


def test_unbound_paths_name_the_image(ext4_img: Path, fat_img: Path) -> None:
    fs = fsspec.filesystem("rumpkernel")
    assert fs.cat(f"{ext4_img}::/etc/hostname") == b"imagehost\n"
    assert fs.cat(f"{fat_img}::/etc/hostname") == b"imagehost\n"
    assert fs.ls(f"{fat_img}::/deep/er", detail=False) == [f"{fat_img}::/deep/er/est"]
    with pytest.raises(ValueError):
        fs.cat("/etc/hostname")
    with pytest.raises(OSError):
        fs.cat(f"{ext4_img.parent / 'none.img'}::/x")


def test_read_only_by_default_leaves_the_image_untouched(ext4_img: Path) -> None:
    before = (ext4_img.read_bytes(), ext4_img.stat().st_mtime_ns)
    fs = fsspec.filesystem("rumpkernel", image=str(ext4_img), skip_instance_cache=True)
    fs.cat("/bin/tool")
    fs.close()
    assert (ext4_img.read_bytes(), ext4_img.stat().st_mtime_ns) == before


@pytest.mark.parametrize("which", ["ext4", "fat"])
def test_writes_when_asked_are_fsck_clean(which: str, ext4_img: Path, fat_img: Path) -> None:
    img = ext4_img if which == "ext4" else fat_img
    fs = fsspec.filesystem("rumpkernel", image=str(img), readonly=False,
                           skip_instance_cache=True)
    fs.makedirs("/new/dir", exist_ok=True)
    with fs.open("/new/dir/data.txt", "w") as f:
        f.write("line\n" * 1000)
    fs.pipe_file("/new/raw.bin", b"\x00\x01" * 5000)
    fs.mv("/new/raw.bin", "/new/moved.bin")
    fs.rm("/etc/motd")
    fs.touch("/new/empty")
    assert fs.cat("/new/moved.bin") == b"\x00\x01" * 5000
    fs.close()
    (e2fsck_clean if which == "ext4" else fsck_fat_clean)(img)
    ro = fsspec.filesystem("rumpkernel", image=str(img), skip_instance_cache=True)
    assert ro.cat("/new/dir/data.txt") == b"line\n" * 1000
    assert not ro.exists("/etc/motd") and ro.exists("/new/empty")
    ro.close()


def test_partitions_and_offsets(tmp_path: Path, ext4_master: Path) -> None:
    from tests.fsu.test_partitions import gpt_disk, mbr_disk

    disk = mbr_disk(tmp_path / "mbr.img", [ext4_master])
    with fsspec.open(f"rumpkernel://{disk}%1::/etc/hostname", "r") as f:
        assert f.read() == "imagehost\n"
    gdisk = gpt_disk(tmp_path / "gpt.img", [ext4_master])
    assert looks_like_image(f"{gdisk}%1")
    with fsspec.open(f"rumpkernel://{gdisk}@1048576::/etc/hostname", "r") as f:
        assert f.read() == "imagehost\n"


def test_pandas_reads_inside_an_image(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    src = tmp_path / "src"
    src.mkdir()
    (src / "t.csv").write_text("a,b\n1,2\n3,4\n")
    img = tmp_path / "d.img"
    shutil.which("mke2fs") or pytest.skip("mke2fs")
    os.system(f"mke2fs -q -F -t ext4 -d {src} {img} 4M")
    df = pd.read_csv(f"rumpkernel://{img}::/t.csv")
    assert df["b"].sum() == 6


def test_entry_point_is_declared() -> None:
    meta = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    eps = meta["project"]["entry-points"]["fsspec.specs"]
    assert eps["rumpkernel"] == "rumpkernel.client.fsspec_fs:RumpkernelFileSystem"
    assert "fsspec" in meta["project"]["optional-dependencies"]
