"""The kernel file API, tested like the standard library it imitates: the same operations on a
host file through ``io.open`` / ``os`` / ``shutil`` / ``pathlib`` and on a kernel file through
``k.open`` / ``k.scandir`` / ``k.path`` must give the same results and the same exception
types."""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import rumpkernel
from rumpkernel.client.files import FileAPI, KernelFileIO, KernelPath


@pytest.fixture
def k(kernel: rumpkernel.Kernel) -> Iterator[rumpkernel.Kernel]:
    kernel.sys.mkdir("/w")
    kernel.sys.mount("tmpfs", "/w")
    yield kernel
    kernel.sys.unmount("/w")


def outcome(fn: Callable[[], Any]) -> Any:
    try:
        return ("ok", fn())
    except Exception as e:
        return ("raise", type(e).__name__)


# ---- open: the same script on the host and in the kernel ------------------------------------
SCRIPTS: dict[str, list[tuple[str, tuple[Any, ...]]]] = {
    "text write then read": [("open", ("w",)), ("write", ("héllo\nwörld\n",)), ("close", ()),
                             ("open", ("r",)), ("readline", ()), ("tell", ()),
                             ("read", ()), ("read", ()), ("close", ())],
    "binary seek": [("open", ("wb",)), ("write", (b"0123456789",)), ("seek", (3,)),
                    ("write", (b"xx",)), ("seek", (0, 2)), ("tell", ()), ("close", ()),
                    ("open", ("rb",)), ("seek", (-4, 2)), ("read", (2,)), ("tell", ()),
                    ("read", ()), ("close", ())],
    "append": [("open", ("w",)), ("write", ("a\n",)), ("close", ()), ("open", ("a",)),
               ("tell", ()), ("write", ("b\n",)), ("close", ()), ("open", ("r",)),
               ("readlines", ()), ("close", ())],
    "plus modes": [("open", ("w+b",)), ("write", (b"abcdef",)), ("seek", (0,)),
                   ("read", (3,)), ("write", (b"XYZ",)), ("seek", (0,)), ("read", ()),
                   ("truncate", (2,)), ("seek", (0,)), ("read", ()), ("close", ()),
                   ("open", ("r+b",)), ("read", (1,)), ("write", (b"Q",)), ("close", ()),
                   ("open", ("rb",)), ("read", ()), ("close", ())],
    "exclusive": [("open", ("x",)), ("write", ("1",)), ("close", ()), ("open", ("x",))],
    "missing": [("open", ("r",))],
    "wrong direction": [("open", ("w",)), ("read", ()), ("close", ()), ("open", ("r",)),
                        ("write", ("no",)), ("close", ())],
    "closed file": [("open", ("w",)), ("close", ()), ("write", ("x",)), ("tell", ())],
    "bad modes": [("open", ("rw",)), ("open", ("rbt",)), ("open", ("z",)), ("open", (5,))],
    "unbuffered text": [("open", ("w", 0))],
    "iteration and newlines": [("open", ("wb",)), ("write", (b"a\r\nb\rc\n",)), ("close", ()),
                               ("open", ("r",)), ("lines", ()), ("close", ()),
                               ("open", ("r", -1, None, None, "")), ("lines", ()),
                               ("close", ())],
    "unbuffered binary": [("open", ("wb", 0)), ("type", ()), ("write", (b"raw",)),
                          ("close", ()), ("open", ("rb", 0)), ("readall", ()), ("close", ())],
    "line buffered": [("open", ("w", 1)), ("write", ("x\n",)), ("linebuf", ()), ("close", ())],
    "encoding": [("open", ("w", -1, "utf-16")), ("write", ("ab",)), ("close", ()),
                 ("open", ("rb",)), ("read", ()), ("close", ()), ("open", ("r", -1, "ascii")),
                 ("read", ())],
    "readinto and peek": [("open", ("wb",)), ("write", (b"x" * 100,)), ("close", ()),
                          ("open", ("rb",)), ("readinto", (10,)), ("peek1", ()),
                          ("read1", (5,)), ("close", ())],
}


def play(opener: Callable[..., Any], script: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
    f: Any = None
    out = []
    for op, args in script:
        if op == "open":
            def do_open(args: tuple[Any, ...] = args) -> str:
                nonlocal f
                f = opener(*args)
                return type(f).__name__.replace("KernelFileIO", "FileIO")
            out.append(outcome(do_open))
        elif op == "lines":
            out.append(outcome(lambda: list(f)))
        elif op == "type":
            out.append(("ok", type(f).__name__.replace("KernelFileIO", "FileIO")))
        elif op == "linebuf":
            out.append(outcome(lambda: f.line_buffering))
        elif op == "readinto":
            def do_readinto(n: int = args[0]) -> Any:
                b = bytearray(n)
                return f.readinto(b), bytes(b)
            out.append(outcome(do_readinto))
        elif op == "peek1":
            out.append(outcome(lambda: f.peek(1)[:1]))
        else:
            out.append(outcome(lambda op=op, args=args: getattr(f, op)(*args)))
    if f is not None and not f.closed:
        f.close()
    return out


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_open_behaves_like_io_open(name: str, k: rumpkernel.Kernel, tmp_path: Path) -> None:
    host = play(lambda *a: open(tmp_path / "f", *a), SCRIPTS[name])  # noqa: SIM115
    kern = play(lambda *a: k.open("/w/f", *a), SCRIPTS[name])
    assert kern == host


def test_io_objects_and_attributes(k: rumpkernel.Kernel) -> None:
    with k.open("/w/a.txt", "w", encoding="utf-8") as f:
        assert isinstance(f, io.TextIOWrapper)
        assert isinstance(f.buffer, io.BufferedWriter)
        assert isinstance(f.buffer.raw, KernelFileIO)
        assert isinstance(f.buffer.raw, io.RawIOBase)
        assert f.name == "/w/a.txt" and f.mode == "w" and f.encoding == "utf-8"
        assert f.buffer.raw.mode == "wb"
        assert not f.isatty() and f.writable() and not f.readable() and f.seekable()
        with pytest.raises(io.UnsupportedOperation):
            f.fileno()
        f.write("x")
    assert f.closed
    with k.open("/w/a.txt", "r+b") as f:
        assert isinstance(f, io.BufferedRandom)
        assert f.raw.kernel_fd >= 0
        assert repr(f.raw).startswith("<rumpkernel.client.files.fileio.KernelFileIO name=")


def test_errors_are_oserror_subclasses_with_filename(k: rumpkernel.Kernel) -> None:
    with pytest.raises(FileNotFoundError) as e:
        k.open("/w/nope/x")
    assert e.value.filename == "/w/nope/x"
    k.makedirs("/w/d")
    with pytest.raises(IsADirectoryError):
        k.open("/w/d")
    with pytest.raises(IsADirectoryError):
        k.open("/w/d", "w")
    k.path("/w/f").write_text("1")
    with pytest.raises(FileExistsError):
        k.open("/w/f", "x")
    with pytest.raises(NotADirectoryError):
        k.open("/w/f/sub")
    with pytest.raises(FileExistsError):
        k.makedirs("/w/d")
    with pytest.raises(FileNotFoundError):
        k.remove("/w/nothing")


def test_open_a_kernel_descriptor_and_opener(k: rumpkernel.Kernel) -> None:
    fd = k.sys.open("/w/fd", os.O_CREAT | os.O_RDWR, 0o644)
    with k.open(fd, "wb", closefd=False) as f:
        f.write(b"via fd")
    k.sys.lseek(fd, 0, 0)
    assert k.sys.read(fd, 100) == b"via fd"
    k.sys.close(fd)
    seen = []

    def opener(path: str, flags: int) -> int:
        seen.append(path)
        return k.sys.open(path, flags, 0o600)
    with k.open("/w/op", "w", opener=opener) as f:
        f.write("o")
    assert seen == ["/w/op"] and stat.S_IMODE(k.sys.stat("/w/op").st_mode) == 0o600
    with pytest.raises(ValueError):
        k.open("/w/op", closefd=False)


def test_stdlib_consumers(k: rumpkernel.Kernel, tmp_path: Path) -> None:
    payload = os.urandom(200_000)
    with k.open("/w/t.tar", "wb") as f, tarfile.open(fileobj=f, mode="w:gz") as t:
        info = tarfile.TarInfo("data.bin")
        info.size = len(payload)
        t.addfile(info, io.BytesIO(payload))
    with k.open("/w/t.tar", "rb") as f, tarfile.open(fileobj=f, mode="r:gz") as t:
        member = t.extractfile("data.bin")
        assert member is not None and member.read() == payload
    with k.open("/w/z.zip", "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a/b.txt", "zipped " * 100)
    with k.open("/w/z.zip", "rb") as f, zipfile.ZipFile(f) as z:
        assert z.read("a/b.txt") == b"zipped " * 100
    (tmp_path / "host.bin").write_bytes(payload)
    with open(tmp_path / "host.bin", "rb") as src, k.open("/w/copy.bin", "wb") as dst:
        shutil.copyfileobj(src, dst)
    assert k.path("/w/copy.bin").read_bytes() == payload
    with k.open("/w/copy.bin", "rb") as src, open(tmp_path / "back.bin", "wb") as dst:
        shutil.copyfileobj(src, dst)
    assert (tmp_path / "back.bin").read_bytes() == payload


def test_large_and_sparse(k: rumpkernel.Kernel) -> None:
    with k.open("/w/big", "wb") as f:
        f.seek(5 << 20)
        f.write(b"end")
    with k.open("/w/big", "rb") as f:
        assert f.read(4) == b"\0" * 4
        f.seek(-3, io.SEEK_END)
        assert f.read() == b"end"
    assert k.sys.stat("/w/big").st_size == (5 << 20) + 3


# ---- directories: the same tree on the host and in the kernel ---------------------------------
def build(make_dir: Callable[[str], None], write: Callable[[str, bytes], None],
          symlink: Callable[[str, str], None], base: str) -> None:
    for d in ("a", "a/b", "a/b/c", "e", "a/.hidden"):
        make_dir(f"{base}/{d}")
    for p in ("a/1.txt", "a/b/2.txt", "a/b/c/3.bin", "e/4", "top.txt", "a/.hidden/h"):
        write(f"{base}/{p}", p.encode())
    symlink("a/b", f"{base}/link")


@pytest.fixture
def trees(k: rumpkernel.Kernel, tmp_path: Path) -> tuple[str, str]:
    host = str(tmp_path / "h")
    os.mkdir(host)
    build(os.mkdir, lambda p, d: Path(p).write_bytes(d), os.symlink, host)
    k.sys.mkdir("/w/t")
    build(k.sys.mkdir, lambda p, d: k.path(p).write_bytes(d), k.sys.symlink, "/w/t")
    return host, "/w/t"


def rel(entries: list[tuple[str, list[str], list[str]]], base: str) -> list[Any]:
    return [(os.path.relpath(d, base), sorted(ds), sorted(fs)) for d, ds, fs in entries]


def test_listdir_scandir_walk(k: rumpkernel.Kernel, trees: tuple[str, str]) -> None:
    host, kern = trees
    assert sorted(k.listdir(kern)) == sorted(os.listdir(host))
    assert sorted(k.listdir(kern.encode())) == sorted(os.listdir(host.encode()))
    with k.scandir(kern) as it, os.scandir(host) as hit:
        ours = {e.name: (e.is_dir(), e.is_file(), e.is_symlink(), e.is_dir(follow_symlinks=False),
                         os.fspath(e) == f"{kern}/{e.name}", e.inode() == e.stat(
                             follow_symlinks=False).st_ino) for e in it}
        theirs = {e.name: (e.is_dir(), e.is_file(), e.is_symlink(),
                           e.is_dir(follow_symlinks=False), True, True) for e in hit}
    assert ours == theirs
    for topdown in (True, False):
        for follow in (False, True):
            ours_w = rel(list(k.walk(kern, topdown=topdown, followlinks=follow)), kern)
            assert sorted(ours_w) == \
                sorted(rel(list(os.walk(host, topdown=topdown, followlinks=follow)), host))
            order = [d for d, _ds, _fs in ours_w]
            for i, d in enumerate(order):  # parents before children, or after them
                kids = [j for j, x in enumerate(order) if x.startswith(d + "/") or d == "."]
                assert all((j > i) if topdown else (j < i) for j in kids if j != i)
    pruned = []
    for d, ds, _fs in k.walk(kern):
        ds[:] = [x for x in ds if x != "b"]
        pruned.append(os.path.relpath(d, kern))
    assert "a/b" not in pruned and "a" in pruned
    errors: list[OSError] = []
    assert list(k.walk("/w/none", onerror=errors.append)) == []
    assert isinstance(errors[0], FileNotFoundError)


def test_makedirs_rmtree(k: rumpkernel.Kernel, trees: tuple[str, str]) -> None:
    _host, kern = trees
    k.makedirs(f"{kern}/x/y/z", exist_ok=False)
    k.makedirs(f"{kern}/x/y/z", exist_ok=True)
    with pytest.raises(FileExistsError):
        k.makedirs(f"{kern}/x/y/z")
    with pytest.raises(OSError):
        k.rmtree(f"{kern}/link")
    k.rmtree(f"{kern}/a")
    assert k.exists(f"{kern}/top.txt") and not k.exists(f"{kern}/a")
    assert k.islink(f"{kern}/link") and not k.exists(f"{kern}/link")
    k.rmtree(kern)
    assert k.listdir("/w") == []
    with pytest.raises(FileNotFoundError):
        k.rmtree("/w/gone")
    k.rmtree("/w/gone", ignore_errors=True)
    seen: list[Any] = []
    k.rmtree("/w/gone", onerror=lambda *a: seen.append(a[1]))
    assert seen == ["/w/gone"]


# ---- pathlib --------------------------------------------------------------------------------
def test_kernel_path_pure_part(k: rumpkernel.Kernel) -> None:
    p = k.path("/w") / "docs" / "report.tar.gz"
    assert isinstance(p, KernelPath)
    assert str(p) == os.fspath(p) == "/w/docs/report.tar.gz"
    assert (p.name, p.stem, p.suffix, p.suffixes) == ("report.tar.gz", "report.tar", ".gz",
                                                      [".tar", ".gz"])
    assert p.parent == k.path("/w/docs") and p.parts == ("/", "w", "docs", "report.tar.gz")
    assert [str(x) for x in p.parents] == ["/w/docs", "/w", "/"]
    assert str(p.with_suffix(".zip")) == "/w/docs/report.tar.zip"
    assert str(p.with_name("x")) == "/w/docs/x" and str(p.with_stem("r")) == "/w/docs/r.gz"
    assert str(p.relative_to("/w")) == "docs/report.tar.gz" and p.is_relative_to("/w")
    assert p.match("*.gz") and p.match("docs/*.gz") and not p.match("/docs/*.gz")
    assert str(k.path("a//b/./c/")) == "a/b/c" and not k.path("a").is_absolute()
    assert str(k.path("/a") / "/b") == "/b"
    assert k.path("/a") < k.path("/b") and hash(k.path("/a")) == hash(k.path("/a/"))
    with pytest.raises(ValueError):
        p.relative_to("/other")
    with pytest.raises(ValueError):
        p.with_suffix("gz")


def test_kernel_path_io(k: rumpkernel.Kernel) -> None:
    root = k.path("/w/p")
    root.mkdir()
    with pytest.raises(FileExistsError):
        root.mkdir()
    root.mkdir(exist_ok=True)
    (root / "a" / "b").mkdir(parents=True)
    with pytest.raises(FileNotFoundError):
        (root / "x" / "y").mkdir()
    f = root / "a" / "b" / "f.txt"
    assert f.write_text("text ü") == 6
    assert f.read_text() == "text ü" and f.read_bytes() == "text ü".encode()
    assert f.write_bytes(b"\0\1") == 2 and f.stat().st_size == 2
    assert f.exists() and f.is_file() and not f.is_dir() and root.is_dir()
    assert not (root / "missing").exists()
    (root / "ln").symlink_to("a/b/f.txt")
    assert (root / "ln").is_symlink() and (root / "ln").readlink() == k.path("a/b/f.txt")
    assert (root / "ln").resolve() == f and (root / "ln").samefile(f)
    (root / "hard").hardlink_to(f)
    assert (root / "hard").stat().st_nlink == 2
    moved = f.rename(root / "g.txt")
    assert moved == root / "g.txt" and not f.exists()
    (root / "t").touch()
    (root / "t").touch()
    with pytest.raises(FileExistsError):
        (root / "t").touch(exist_ok=False)
    (root / "t").chmod(0o600)
    assert stat.S_IMODE((root / "t").stat().st_mode) == 0o600
    assert sorted(x.name for x in root.iterdir()) == ["a", "g.txt", "hard", "ln", "t"]
    assert sorted(str(x) for x in root.glob("*.txt")) == ["/w/p/g.txt"]
    assert sorted(str(x.relative_to(root)) for x in root.rglob("*")) == \
        ["a", "a/b", "g.txt", "hard", "ln", "t"]
    assert [str(x) for x in root.glob("a/*")] == ["/w/p/a/b"]
    assert [d.name for d, _ds, _fs in root.walk()] == ["p", "a", "b"]
    (root / "t").unlink()
    (root / "t").unlink(missing_ok=True)
    with pytest.raises(FileNotFoundError):
        (root / "t").unlink()
    with pytest.raises(OSError):
        root.rmdir()
    (root / "a" / "b").rmdir()
    with root.joinpath("g.txt").open("rb") as fh:
        assert fh.read() == b"\0\1"


def test_file_api_over_any_sys_facade(k: rumpkernel.Kernel) -> None:
    api = FileAPI(k.sys)
    api.path("/w/x").write_text("shared")
    assert k.path("/w/x").read_text() == "shared"
    assert k.files.sys is k.sys


# ---- copy_in / copy_out ---------------------------------------------------------------------
def test_copy_in_out_round_trip(posix_kernel_fs: rumpkernel.Kernel, tmp_path: Path) -> None:
    from tests.fsu.conftest import make_tree, snapshot

    k = posix_kernel_fs
    src = make_tree(tmp_path / "src")
    k.copy_in(src, "/w/copy", preserve=True)
    out = tmp_path / "out"
    k.copy_out("/w/copy", out, preserve=True)
    assert snapshot(out) == snapshot(src)
    # cp semantics: an existing directory receives the source by name
    k.makedirs("/w/into")
    k.copy_in(src / "etc" / "hostname", "/w/into")
    assert k.path("/w/into/hostname").read_text() == "imagehost\n"
    with pytest.raises(IsADirectoryError):
        k.copy_in(src, "/w/nonrec", recursive=False)
    errors: list[OSError] = []
    k.copy_in(tmp_path / "missing", "/w/m", onerror=errors.append)
    assert isinstance(errors[0], FileNotFoundError)
    assert not [n for n in k.listdir("/w/copy/etc") if n.endswith(".fsutmp")]


def test_copy_failure_leaves_no_partial_file(kernel: rumpkernel.Kernel, tmp_path: Path
                                             ) -> None:
    kernel.sys.mkdir("/small")
    kernel.sys.mount("tmpfs", "/small", data="size=65536")
    (tmp_path / "big").write_bytes(os.urandom(300_000))
    (tmp_path / "ok").write_bytes(b"fine")
    kernel.copy_in(tmp_path / "ok", "/small/ok")
    with pytest.raises(OSError) as e:
        kernel.copy_in(tmp_path / "big", "/small/big")
    assert e.value.errno == 28  # ENOSPC
    assert kernel.listdir("/small") == ["ok"]
    kernel.sys.unmount("/small")
