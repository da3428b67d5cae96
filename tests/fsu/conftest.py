"""Fixtures for fsu, makefs, the file API and the fsspec adapter: sample host trees, images
made by the native tools (mke2fs -d, mkfs.fat + mcopy -s) and by us, and a runner for the
command line in a subprocess (``python -m rumpkernel.apps.fsu`` with this checkout's src)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import rumpkernel

SRC = Path(__file__).resolve().parents[2] / "src"
MiB = 1 << 20
T0 = 1_600_000_000  # a fixed time for sample trees


# Byte-code caches for the fsu subprocesses, kept out of the source tree and removed at the
# end: a shell with PYTHONDONTWRITEBYTECODE would otherwise compile every module in every one.
PYCACHE = Path(tempfile.mkdtemp(prefix=f"fsu-pycache-{os.getpid()}-"))


def env(**extra: str) -> dict[str, str]:
    e = dict(os.environ)
    e.update({"PYTHONPATH": str(SRC), "TZ": "UTC", "LC_ALL": "C", "FSU_PROGRESS": "0",
              "PYTHONPYCACHEPREFIX": str(PYCACHE)})
    e.pop("SOURCE_DATE_EPOCH", None)
    e.pop("PYTHONDONTWRITEBYTECODE", None)
    e.update(extra)
    return e


def fsu(*args: str | os.PathLike[str], input: bytes | str | None = None,
        environ: dict[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``fsu ARGS`` in a subprocess; stdout/stderr as text."""
    data = input.encode() if isinstance(input, str) else input
    res = subprocess.run([sys.executable, "-m", "rumpkernel.apps.fsu", *map(str, args)],
                         input=data, capture_output=True, env=environ or env(), cwd=cwd,
                         timeout=timeout)
    return subprocess.CompletedProcess(res.args, res.returncode,
                                       res.stdout.decode("utf-8", "replace"),
                                       res.stderr.decode("utf-8", "replace"))


def fsu_bytes(*args: str | os.PathLike[str], input: bytes | None = None
              ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "rumpkernel.apps.fsu", *map(str, args)],
                          input=input, capture_output=True, env=env(), timeout=120)


def ok(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 0, f"exit {res.returncode}\nstdout:\n{res.stdout}\nstderr:\n" \
                                f"{res.stderr}"
    return res.stdout


def run(*cmd: str | os.PathLike[str], check: bool = True, **kw: object
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(map(str, cmd)), check=check, capture_output=True, text=True,
                          **kw)  # type: ignore[call-overload]


def need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")


def e2fsck_clean(path: Path) -> None:
    res = run("e2fsck", "-fn", path, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def fsck_fat_clean(path: Path) -> None:
    res = run("fsck.fat", "-n", path, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def make_tree(root: Path, *, fat_safe: bool = False) -> Path:
    """A small tree with the usual suspects: nested directories, empty file and directory,
    a larger file, odd names, modes, fixed mtimes; unless ``fat_safe``: symlinks (relative,
    absolute, dangling), hard links, a fifo and a setuid file."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "etc").mkdir()
    (root / "etc" / "hostname").write_text("imagehost\n")
    (root / "etc" / "motd").write_text("welcome\n" * 50)
    (root / "bin").mkdir()
    big = bytes((i * 7 + i // 251) % 256 for i in range(300_000))
    (root / "bin" / "tool").write_bytes(big)
    os.chmod(root / "bin" / "tool", 0o755)
    (root / "empty").write_bytes(b"")
    (root / "emptydir").mkdir()
    (root / "deep" / "er" / "est").mkdir(parents=True)
    (root / "deep" / "er" / "est" / "leaf.txt").write_text("leaf\n")
    (root / "with space.txt").write_text("spaced\n")
    (root / "Ünïcode.txt").write_text("utf-8 name\n")
    (root / "private").write_text("secret\n")
    os.chmod(root / "private", 0o600)
    if not fat_safe:
        os.symlink("hostname", root / "etc" / "alias")
        os.symlink("/etc/hostname", root / "abslink")
        os.symlink("nowhere", root / "dangling")
        os.link(root / "etc" / "motd", root / "motd.hard")
        os.mkfifo(root / "fifo")
        (root / "bin" / "suid").write_text("#!/bin/sh\n")
        os.chmod(root / "bin" / "suid", 0o4755)
    stamp_tree(root)
    return root


def stamp_tree(root: Path, t: int = T0) -> None:
    """Give every entry distinct, fixed, even (FAT-representable) times, deepest first."""
    paths = sorted(root.rglob("*"), key=lambda p: (-len(p.parts), str(p)))
    for i, p in enumerate(paths):
        ts = t + 2 * i
        os.utime(p, ns=(ts * 10**9, ts * 10**9), follow_symlinks=False)
    os.utime(root, ns=(t * 10**9, t * 10**9))


def snapshot(root: Path, *, times: bool = True, modes: bool = True,
             owners: bool = False, links: bool = True) -> dict[str, tuple]:
    """Comparable description of a host tree: type, content, mode, mtime, symlink target,
    hard-link groups."""
    out: dict[str, tuple] = {}
    inode_names: dict[tuple[int, int], str] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        st = p.lstat()
        kind = stat.S_IFMT(st.st_mode)
        desc: list[object] = [kind]
        if stat.S_ISREG(st.st_mode):
            desc.append(p.read_bytes())
            if links and st.st_nlink > 1:
                desc.append(("link", inode_names.setdefault((st.st_dev, st.st_ino), rel)))
        elif stat.S_ISLNK(st.st_mode):
            desc.append(os.readlink(p))
        if modes and not stat.S_ISLNK(st.st_mode):
            desc.append(oct(stat.S_IMODE(st.st_mode)))
        if times:
            desc.append(st.st_mtime_ns // 10**9)
        if owners:
            desc.append((st.st_uid, st.st_gid))
        out[rel] = tuple(desc)
    return out


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fsu-session")


@pytest.fixture(scope="session")
def tree_master(session_dir: Path) -> Path:
    return make_tree(session_dir / "tree")


@pytest.fixture(scope="session")
def fat_tree_master(session_dir: Path) -> Path:
    return make_tree(session_dir / "fattree", fat_safe=True)


@pytest.fixture(scope="session")
def ext4_master(session_dir: Path, tree_master: Path) -> Path:
    need("mke2fs")
    img = session_dir / "ext4.img"
    run("mke2fs", "-q", "-F", "-t", "ext4", "-L", "SAMPLE", "-U",
        "d6e2a3b4-1111-4222-8333-444455556666", "-d", tree_master, img, "16M")
    return img


@pytest.fixture(scope="session")
def fat_master(session_dir: Path, fat_tree_master: Path) -> Path:
    need("mkfs.fat")
    need("mcopy")
    img = session_dir / "fat.img"
    run("mkfs.fat", "-C", "-n", "FATVOL", "-i", "1234ABCD", img, "16384")
    for p in sorted(fat_tree_master.iterdir()):
        run("mcopy", "-s", "-p", "-m", "-i", img, p, "::/")
    return img


@pytest.fixture
def ext4_img(tmp_path: Path, ext4_master: Path) -> Path:
    img = tmp_path / "disk.img"
    shutil.copyfile(ext4_master, img)
    return img


@pytest.fixture
def fat_img(tmp_path: Path, fat_master: Path) -> Path:
    img = tmp_path / "fat.img"
    shutil.copyfile(fat_master, img)
    return img


@pytest.fixture
def posix_kernel_fs() -> Iterator[rumpkernel.Kernel]:
    """A kernel on the posix host with a tmpfs at /w (for file API tests)."""
    k = rumpkernel.boot()
    k.sys.mkdir("/w")
    k.sys.mount("tmpfs", "/w")
    try:
        yield k
    finally:
        k.halt()


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(PYCACHE, ignore_errors=True)
