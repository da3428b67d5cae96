"""rumphijack as a user meets it (issue #16 item 8): no server, an absent server, a missing
script are one line and status 1, never a traceback; ``--local --image IMG[,type]`` runs a
program against a disk image, and ``-d`` registers host files as rump_server's does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.fsu.conftest import env, fsu, ok


def hijack(*args: str | Path, environ: dict[str, str] | None = None,
           cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rumpkernel.hijack", *map(str, args)],
                          capture_output=True, text=True, env=environ or env(), cwd=cwd,
                          timeout=120)


def _no_server_env() -> dict[str, str]:
    e = env()
    e.pop("RUMP_SERVER", None)
    return e


def test_no_server_is_one_line(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text("print('ran')\n")
    res = hijack(script, environ=_no_server_env())
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.strip().startswith("rumphijack: no server:")
    assert "--local" in res.stderr


def test_absent_server_is_one_line(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text("print('ran')\n")
    url = f"unix://{tmp_path}/fsu-hijack-{id(tmp_path)}.sock"
    res = hijack("-u", url, script, environ=_no_server_env())
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert f"cannot reach the server {url}" in res.stderr
    assert "ran" not in res.stdout


def test_missing_script_and_image(tmp_path: Path) -> None:
    res = hijack("--local", tmp_path / "nope.py")
    assert res.returncode == 1 and "nope.py: No such file or directory" in res.stderr
    script = tmp_path / "s.py"
    script.write_text("print('ran')\n")
    res = hijack("--local", "--image", tmp_path / "none.img", script)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "none.img" in res.stderr


def test_local_image_is_the_programs_rump_tree(tmp_path: Path, ext4_img: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text("import os, shutil\n"
                      "print(open('/rump/etc/hostname').read().strip())\n"
                      "os.makedirs('/rump/made/here')\n"
                      "with open('/rump/made/here/f.txt', 'w') as f:\n"
                      "    f.write('from a hijacked program\\n')\n"
                      "shutil.copy('/rump/etc/motd', '/rump/made/motd')\n")
    res = hijack("--local", "--image", f"{ext4_img},ext4", script)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "imagehost\n"
    assert ok(fsu("cat", ext4_img, "/made/here/f.txt")) == "from a hijacked program\n"
    assert ok(fsu("cat", ext4_img, "/made/motd")) == "welcome\n" * 50


def test_local_drive_spec(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text("import os\nprint(os.stat('/rump/dev/blob').st_size)\n")
    res = hijack("--local", "-d", f"key=/dev/blob,hostpath={tmp_path / 'blob'},size=64k",
                 script)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "blob").stat().st_size == 65536
    res = hijack("--local", "-d", "hostpath=x", script)
    assert res.returncode != 0 and "missing key=" in res.stderr
