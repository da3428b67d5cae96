"""The rump.* tools against a real rump_server: the dissertation's B.4 recipe (an image
registered with -d, mounted, filled and checked from the host) with our tools."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.remote.harness import ServerProcess, env, wait_for

need_mke2fs = pytest.mark.skipif(
    subprocess.run(["which", "mke2fs"], capture_output=True).returncode != 0,
    reason="needs mke2fs")


def tool(srv_url: str, name: str, *args: str, stdin: bytes | None = None,
         check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "rumpkernel.apps.rumptools", name, *args],
                       env=env(RUMP_SERVER=srv_url), input=stdin, capture_output=True,
                       timeout=60)
    if check:
        assert r.returncode == 0, r.stderr.decode()
    return r


@need_mke2fs
def test_tools_on_an_image(tmp_path: Path) -> None:
    img = tmp_path / "fs.img"
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext2", str(img), "8M"], check=True)
    srv = ServerProcess(f"unix://{tmp_path}/s", "-d", f"key=/dk,hostpath={img},size=host",
                        "-d", f"key=/scratch,hostpath={tmp_path}/scratch.img,size=1m")
    url = srv.url
    try:
        assert (tmp_path / "scratch.img").stat().st_size == 1 << 20   # created and extended
        tool(url, "sysctl", "-w", "kern.hostname=imagebuilder")
        out = tool(url, "sysctl", "kern.hostname", "hw").stdout.decode()
        assert "kern.hostname = imagebuilder" in out and "hw.ncpu = " in out
        everything = tool(url, "sysctl", "-a").stdout.decode()
        assert "kern.stat.processes = " in everything and "vfs.mounts = " in everything
        r = tool(url, "sysctl", "kern.nosuch", check=False)
        assert r.returncode == 1 and b"kern.nosuch" in r.stderr

        r = subprocess.run([sys.executable, "-m", "rumpkernel.apps.rumptools", "ls", "-u", url,
                            "/"], env=env(), capture_output=True, text=True, timeout=60)
        assert r.stdout.split() == ["dev", "dk", "scratch"]        # -u instead of RUMP_SERVER

        # B.4: mkdir /mnt; mount the image; copy files in; unmount; check from the host
        from rumpkernel import connect
        with connect(url, autofork=False) as c:
            c.sys.mkdir("/mnt")
        tool(url, "mount", "/dk", "/mnt")                           # type found by probing
        hostfile = tmp_path / "hello.txt"
        hostfile.write_bytes(b"hello from the host\n" * 1000)
        os.chmod(hostfile, 0o640)
        tool(url, "cp", "-p", str(hostfile), "rump:/mnt/")
        tool(url, "cp", "rump:/mnt/hello.txt", "rump:/mnt/copy.txt")
        assert tool(url, "cat", "/mnt/copy.txt").stdout == hostfile.read_bytes()
        listing = tool(url, "ls", "-l", "/mnt").stdout.decode()
        assert "-rw-r-----" in listing and "hello.txt" in listing and "lost+found" in listing
        df = tool(url, "df").stdout.decode()
        assert "/dk" in df and "ext2" in df and " /mnt" in df
        assert "/mnt" in tool(url, "df", "/mnt/hello.txt").stdout.decode()
        assert "/dk on /mnt type ext2 (rw)" in tool(url, "mount").stdout.decode()
        back = tmp_path / "back.txt"
        tool(url, "cp", "rump:/mnt/copy.txt", str(back))
        assert back.read_bytes() == hostfile.read_bytes()
        r = tool(url, "cp", "rump:/mnt/missing", str(back), check=False)
        assert r.returncode == 1 and b"/mnt/missing" in r.stderr
        tool(url, "umount", "/mnt")
        r = tool(url, "mount", "/scratch", "/mnt", check=False)     # zeros: nothing to mount
        assert r.returncode == 1 and b"no file system recognised" in r.stderr
        tool(url, "mount", "-t", "tmpfs", "tmpfs", "/mnt")
        tool(url, "mount", "-t", "tmpfs", "tmpfs", "/new/deep/dir")       # created when missing
        assert "on /new/deep/dir type tmpfs" in tool(url, "mount").stdout.decode()
        tool(url, "halt")
        assert srv.proc.wait(30) == 0
    finally:
        srv.close()
    assert not (tmp_path / "s").exists()
    r = subprocess.run(["e2fsck", "-fn", str(img)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
    r = subprocess.run(["debugfs", "-R", "cat /hello.txt", str(img)], capture_output=True)
    assert r.stdout == hostfile.read_bytes()


def test_halt_without_sync(tmp_path: Path) -> None:
    srv = ServerProcess(f"unix://{tmp_path}/s", "-l", "tmpfs")
    try:
        tool(srv.url, "halt", "-n")
        assert srv.proc.wait(30) == 0
        assert wait_for(lambda: not (tmp_path / "s").exists())
    finally:
        srv.close()
    assert "reboot requested" in srv.stderr and "0xc" in srv.stderr


def test_console_scripts_resolve() -> None:
    import importlib
    import tomllib

    root = Path(__file__).resolve().parents[2]
    scripts = tomllib.loads((root / "pyproject.toml").read_text())["project"]["scripts"]
    for name in ("rump_server", "rump.halt", "rump.sysctl", "rump.ls", "rump.cat", "rump.cp",
                 "rump.df", "rump.mount", "rump.umount", "rumphijack"):
        module, _, func = scripts[name].partition(":")
        assert callable(getattr(importlib.import_module(module), func)), name


def test_tool_usage_errors(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "rumpkernel.apps.rumptools", "frobnicate"],
                       env=env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "usage" in r.stderr
    r = subprocess.run([sys.executable, "-m", "rumpkernel.apps.rumptools", "ls", "-u",
                        f"unix://{tmp_path}/nobody"], env=env(), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and "rump.ls:" in r.stderr


def test_drivespec_defaults_and_errors() -> None:
    from rumpkernel.apps.rump_server import parse_drivespec

    d = parse_drivespec("key=/dev/disk0,hostpath=disk.img")
    assert d == {"key": "/dev/disk0", "hostpath": "disk.img", "type": "blk", "offset": 0,
                 "size": "host"}
    assert parse_drivespec("key=/k,hostpath=p,size=1m,type=reg,offset=4k")["offset"] == 4096
    for bad in ("hostpath=p", "key=/k", "key=/k,hostpath=p,type=tape", "key=/k,hostpath=p,x=1"):
        with pytest.raises(ValueError):
            parse_drivespec(bad)


def test_tool_names_the_server_it_cannot_reach(tmp_path: Path) -> None:
    url = f"unix://{tmp_path}/nobody.sock"
    r = subprocess.run([sys.executable, "-m", "rumpkernel.apps.rumptools", "ls", "-u", url, "/"],
                       env=env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip() == f"rump.ls: cannot reach the server {url}: No such file or directory"
