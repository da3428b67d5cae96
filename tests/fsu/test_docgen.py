"""Man pages and completion generated from the argparse definitions (issue #16 item 9): the
files in the package are current, say what the parsers say, and work in bash."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fsu.conftest import fsu, ok


def test_generated_files_are_current() -> None:
    from rumpkernel.apps import docgen

    stale = docgen.check_all()
    assert not stale, f"run scripts/gen_docs.py: stale {stale}"


def test_pages_cover_every_program_and_command() -> None:
    from rumpkernel.apps import docgen
    from rumpkernel.apps.fsu.commands import all_commands

    fsu_page = docgen.read_installed("man/fsu.1")
    for name in [*all_commands(), "makefs"]:
        assert f'.SS "fsu {name}"' in fsu_page, name
    assert "\\-maxdepth" in fsu_page and "inode_ratio" in fsu_page
    for page in ("rump_server.1", "rump.ls.1", "rump-makefs.1"):
        text = docgen.read_installed(f"man/{page}")
        assert text.startswith('.TH "') and ".SH OPTIONS" in text
    assert "DRIVESPEC" in docgen.read_installed("man/rump_server.1")
    assert ".TH \"RUMP-MAKEFS\"" in docgen.read_installed("man/rump-makefs.1")


def test_print_completion_and_man() -> None:
    from rumpkernel.apps import docgen

    assert ok(fsu("--print-completion", "bash")) == docgen.read_installed("completion/fsu.bash")
    assert ok(fsu("--print-man", "rump_server")) == docgen.read_installed("man/rump_server.1")
    res = fsu("--print-completion", "fish")
    assert res.returncode == 2 and "bash, zsh" in res.stderr


def _bash_complete(words: list[str]) -> list[str]:
    from rumpkernel.apps import docgen

    script = docgen.DATA / "completion" / "fsu.bash"
    line = " ".join(words)
    cmd = (f"source {script}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; "
           f"{'_rumpkernel_tool' if words[0].startswith('rump') and words[0] != 'rump-makefs' else '_rumpkernel_fsu'}; "  # noqa: E501
           'printf "%s\\n" "${COMPREPLY[@]}"')
    res = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    return res.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_bash_completion_works() -> None:
    assert _bash_complete(["fsu", "ch"]) == ["chgrp", "chmod", "chown"]
    assert "--json" in _bash_complete(["fsu", "disk.img", "ls", "--j"]) or \
        "--json" in _bash_complete(["fsu", "ls", "--j"])
    assert "-maxdepth" in _bash_complete(["fsu_find", "-max"])
    assert "--auth-file" in _bash_complete(["rump_server", "--a"])


def test_zsh_completion_parses(tmp_path: Path) -> None:
    if shutil.which("zsh") is None:
        pytest.skip("no zsh")
    from rumpkernel.apps import docgen

    res = subprocess.run(["zsh", "-n", str(docgen.DATA / "completion" / "_fsu")],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
