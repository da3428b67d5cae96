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
    with pytest.raises(FileNotFoundError):  # an OSError, as everything the client API raises
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


def test_writes_through_the_image_first_spelling(in_dir: Path) -> None:
    """What pandas' to_csv and dask do: fsspec.open(URL, "w") makes the parent directory
    first (fs.makedirs(fs._parent(path))) and then opens the file."""
    opts = {"readonly": False}
    with fsspec.open("rumpkernel://disk.img::/data/w.csv", "w", **opts) as f:
        f.write("a\n1\n")
    with fsspec.open("rumpkernel://disk.img::/data/deeper/x", "wb", **opts) as f:
        f.write(b"x")
    of = fsspec.open("rumpkernel://disk.img::/plain", "w", **opts).open()
    of.write("opened")
    of.close()
    fsspec.AbstractFileSystem.clear_instance_cache()
    RumpkernelFileSystem.clear_instance_cache()
    with fsspec.open("rumpkernel://disk.img::/data/w.csv", "r") as f:
        assert f.read() == "a\n1\n"
    with fsspec.open("rumpkernel://disk.img::/plain", "r") as f:
        assert f.read() == "opened"
    e2fsck_clean(in_dir)


def test_every_write_entry_point_unbound(ext4_img: Path, tmp_path: Path) -> None:
    """open, makedirs, pipe, put, mv, rm on IMAGE::/path names (pandas and dask use these)."""
    host = tmp_path / "host"
    (host / "sub").mkdir(parents=True)
    (host / "sub" / "f.txt").write_text("hosted\n")
    img = str(ext4_img)
    fs = fsspec.filesystem("rumpkernel", readonly=False, skip_instance_cache=True)
    fs.makedirs(f"{img}::/made/here", exist_ok=True)
    fs.pipe(f"{img}::/piped/a/b.bin", b"piped")  # parents made as object stores do
    fs.put(str(host), f"{img}::/tree", recursive=True)
    fs.put_file(str(host / "sub" / "f.txt"), f"{img}::/one/f.txt")
    fs.mv(f"{img}::/one/f.txt", f"{img}::/one/g.txt")
    with fs.open(f"{img}::/made/here/w.txt", "w") as f:
        f.write("written")
    assert fs.cat(f"{img}::/piped/a/b.bin") == b"piped"
    assert fs.cat(f"{img}::/tree/sub/f.txt") == b"hosted\n"
    fs.rm(f"{img}::/piped", recursive=True)
    fs.rm(f"{img}::/one/g.txt")
    assert not fs.exists(f"{img}::/piped") and not fs.exists(f"{img}::/one/g.txt")
    fs.close()
    e2fsck_clean(ext4_img)
    ro = fsspec.filesystem("rumpkernel", image=img, skip_instance_cache=True)
    assert ro.cat("/made/here/w.txt") == b"written"
    assert sorted(ro.find("/tree")) == ["/tree/sub/f.txt"]
    ro.close()


def test_bad_images_are_named(tmp_path: Path, ext4_master: Path) -> None:
    import gzip

    with pytest.raises(FileNotFoundError) as e:
        fsspec.open(f"rumpkernel://{tmp_path / 'missing.img'}::/x").open()
    assert "image" in str(e.value)
    text = tmp_path / "text.img"
    text.write_text("not a file system\n" * 100)
    with pytest.raises(OSError) as e2:
        fsspec.open(f"rumpkernel://{text}::/x").open()
    assert "not a disk image" in str(e2.value)
    gz = tmp_path / "disk.img.gz"
    gz.write_bytes(gzip.compress(ext4_master.read_bytes()))
    with pytest.raises(OSError) as e3:
        fsspec.open(f"rumpkernel://{gz}::/etc/hostname").open()
    assert "gzip" in str(e3.value)


def test_pandas_writes_inside_an_image(in_dir: Path) -> None:
    pd = pytest.importorskip("pandas")
    url = "rumpkernel://disk.img::/data/t.csv"
    pd.DataFrame({"a": [1, 2], "b": [3, 4]}).to_csv(url, index=False,
                                                     storage_options={"readonly": False})
    fsspec.AbstractFileSystem.clear_instance_cache()
    RumpkernelFileSystem.clear_instance_cache()
    assert pd.read_csv(url)["b"].sum() == 7


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
