"""Pieces of fsu checked against the host's own tools where they exist: chmod modes against
GNU chmod, human sizes against ls -lh, dates against GNU date; plus image specs, mtree specs,
the progress line and the console-script table."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest

from rumpkernel.apps.fsu.common import human
from rumpkernel.apps.fsu.modes import parse_date, parse_mode, parse_stamp
from rumpkernel.apps.fsu.mtree import SpecError, parse_spec
from rumpkernel.apps.fsu.progress import Progress
from rumpkernel.client.files.imagespec import parse_image_spec, parse_size

MODES = ["u+x", "go-w", "a=rX", "=r", "-w", "+t", "g=u", "u=rwx,g=rx,o=", "o+s", "u+s,g+s",
         "a-x", "ug+rw", "+X", "o=g", "u-r,a+X", "644", "4755", "0", "1777", "a+rwxst"]
START = [0o644, 0o755, 0o600, 0o4711, 0o000, 0o777]


@pytest.mark.parametrize("spec", MODES)
def test_chmod_modes_match_gnu_chmod(spec: str, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        for is_dir in (False, True):
            for start in START:
                p = tmp_path / ("d" if is_dir else "f")
                if is_dir:
                    p.mkdir(exist_ok=True)
                else:
                    p.touch()
                os.chmod(p, start)
                subprocess.run(["chmod", "--", spec, str(p)], check=True, capture_output=True)
                want = stat.S_IMODE(p.stat().st_mode)
                got = parse_mode(spec).apply(stat.S_IFDIR | start if is_dir else start,
                                             is_dir, 0o022)
                assert (spec, is_dir, oct(start), oct(got)) == (spec, is_dir, oct(start),
                                                                 oct(want))
    finally:
        os.umask(old)


@pytest.mark.parametrize("bad", ["u+q", "x", "8", "u+r,", "rw", "0o644", "u+gx", "a+u,x",
                                 "+ug", "o=gx", "77777"])
def test_bad_modes(bad: str, tmp_path: Path) -> None:
    (tmp_path / "f").touch()
    gnu = subprocess.run(["chmod", "--", bad, str(tmp_path / "f")], capture_output=True)
    assert gnu.returncode != 0  # GNU chmod refuses it too
    with pytest.raises(ValueError):
        parse_mode(bad)


def test_human_sizes_match_ls(tmp_path: Path) -> None:
    sizes = [0, 1, 1023, 1024, 1025, 1536, 10239, 10240, 99999, 1048575, 1048576, 1048577,
             5 * 1024 * 1024 + 1, 123456789]
    for n in sizes:
        p = tmp_path / f"f{n}"
        with open(p, "wb") as f:
            f.truncate(n)
    out = subprocess.run(["ls", "-lh", str(tmp_path)], capture_output=True, text=True,
                         env={**os.environ, "LC_ALL": "C"}, check=True).stdout
    seen = {line.split()[-1]: line.split()[4] for line in out.splitlines()[1:]}
    for n in sizes:
        assert human(n) == seen[f"f{n}"], n


def test_dates() -> None:
    os.environ["TZ"] = "UTC"
    import time

    time.tzset()
    assert parse_date("@1500000000") == 1500000000 * 10**9
    assert parse_date("@1.5") == 1_500_000_000
    assert parse_date("2021-02-03 04:05:06") == 1612325106 * 10**9
    assert parse_date("2021-02-03T04:05:06Z") == 1612325106 * 10**9
    assert parse_date("2021-02-03T06:05:06+02:00") == 1612325106 * 10**9
    assert parse_date("2021-02-03") == 1612310400 * 10**9
    assert parse_stamp("202201020304.06") == 1641092646 * 10**9
    assert parse_stamp("2201020304") == 1641092640 * 10**9
    for bad in ("yesterday", "2021-13-01", "@x"):
        with pytest.raises(ValueError):
            parse_date(bad)
    with pytest.raises(ValueError):
        parse_stamp("20221302")
    gnu = subprocess.run(["date", "-d", "2021-02-03 04:05:06", "+%s"], capture_output=True,
                         text=True, env={**os.environ, "TZ": "UTC"})
    if gnu.returncode == 0:
        assert int(gnu.stdout) * 10**9 == parse_date("2021-02-03 04:05:06")


def test_image_specs(tmp_path: Path) -> None:
    def never(_: str) -> bool:
        return False

    assert parse_image_spec("d.img", never).path == "d.img"
    s = parse_image_spec("d.img@1M", never)
    assert (s.path, s.offset, s.partition) == ("d.img", 1 << 20, None)
    assert parse_image_spec("d.img@2048s", never).offset == 1 << 20
    assert parse_image_spec("d.img@0x100000", never).offset == 1 << 20
    assert parse_image_spec("x@y.img%2", never).partition == 2
    odd = tmp_path / "we@ird%1"
    odd.write_bytes(b"")
    assert parse_image_spec(str(odd)).path == str(odd)
    for bad in ("d.img@", "d.img@-1", "d.img@1x", "d.img%0", "d.img%", "d.img%a", ""):
        with pytest.raises(ValueError):
            parse_image_spec(bad, never)
    assert [parse_size(x) for x in ("10", "1k", "1K", "2m", "1g", "1.5k", "3s", "1KiB")] == \
        [10, 1024, 1024, 2 << 20, 1 << 30, 1536, 1536, 1024]


def test_mtree_hierarchical_and_full_paths() -> None:
    spec = parse_spec(r"""
/set type=file uid=0 gid=0
.       type=dir mode=0755
    bin     type=dir mode=0755
        ls      mode=0555 \
                uname=root
        with\040space mode=0644 size=12 sha256=abc
    ..
..
./etc/passwd mode=0644 nlink=1
/unset uid
./opt   type=dir optional
""", source="t.spec")
    assert spec["."]["type"] == "dir"
    assert spec["bin/ls"] == {"type": "file", "uid": "0", "gid": "0", "mode": "0555",
                              "uname": "root"}
    assert spec["bin/with space"]["size"] == "12"
    assert spec["etc/passwd"]["mode"] == "0644"
    assert "uid" not in spec["opt"] and spec["opt"]["optional"] == "1"
    with pytest.raises(SpecError, match=r"t\.spec:1"):
        parse_spec("./x type=bogus\n", source="t.spec")
    with pytest.raises(SpecError):
        parse_spec("./x nonsense\n")
    with pytest.raises(SpecError):
        parse_spec("./../x type=file\n")


def test_progress_line() -> None:
    clock = [0.0]
    out = io.StringIO()
    p = Progress("put", 1000, enabled=True, delay=1.0, stream=out, clock=lambda: clock[0])
    p(100)
    assert out.getvalue() == ""  # nothing during the first second
    clock[0] = 2.0
    p(400)
    line = out.getvalue()
    assert line.startswith("\rput  50% [##########") and "500/1000" in line and "ETA" in line
    p.finish()
    assert out.getvalue().endswith("\r")
    quiet = io.StringIO()
    q = Progress("get", None, enabled=False, stream=quiet, clock=lambda: clock[0])
    clock[0] = 10.0
    q(5)
    assert quiet.getvalue() == ""


def test_console_scripts_resolve() -> None:
    meta = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    scripts = meta["project"]["scripts"]
    assert scripts["fsu"] == "rumpkernel.apps.fsu.entry:fsu"
    from rumpkernel.apps.fsu import entry
    from rumpkernel.apps.fsu.commands import all_commands

    for name in [*all_commands(), "makefs"]:
        assert f"fsu_{name}" in scripts, name
    import importlib

    for target in scripts.values():
        mod, _, fn = target.partition(":")
        assert callable(getattr(importlib.import_module(mod), fn))
    assert entry.fsu_ls.__name__ == "fsu_ls"


@pytest.mark.slow
def test_installed_console_scripts(tmp_path: Path) -> None:
    """pip install the checkout into a fresh venv: the fs-utils names and the fsspec protocol
    work from the installed distribution (no PYTHONPATH)."""
    import sys

    from tests.fsu.conftest import make_tree, run

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--system-site-packages", venv)
    root = Path(__file__).resolve().parents[2]
    run(venv / "bin" / "pip", "install", "-q", "--no-deps", root, timeout=600)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    src = make_tree(tmp_path / "t", fat_safe=True)
    img = tmp_path / "i.img"
    subprocess.run([venv / "bin" / "rump-makefs", "-t", "ext4", img, src], check=True, env=env)
    out = subprocess.run([venv / "bin" / "fsu_cat", img, "/etc/hostname"], capture_output=True,
                         text=True, env=env, check=True)
    assert out.stdout == "imagehost\n"
    code = (f"import fsspec; print(fsspec.open('rumpkernel://{img}::/etc/hostname', 'r')"
            ".open().read(), end='')")
    out = subprocess.run([venv / "bin" / "python", "-c", code], capture_output=True, text=True,
                         env=env, check=True)
    assert out.stdout == "imagehost\n"


def test_command_modules_table_matches_the_registry() -> None:
    """get_command imports one module; the table saying which must be right."""
    from rumpkernel.apps.fsu.commands import MODULE_OF, all_commands

    cmds = all_commands()
    assert set(MODULE_OF) == set(cmds)
    for name, cmd in cmds.items():
        assert cmd.run.__module__ == f"rumpkernel.apps.fsu.{MODULE_OF[name]}", name
