"""Whole-process crash tests (issue #15): a real process writing an image through our kernel is
SIGKILLed at a seeded random moment, and the image it leaves is judged.  A killed process loses
only what it had not handed to the host yet (every ``pwrite`` already issued is in the host's
page cache), so this is the crash a journal or careful write ordering must survive without a
power cut; ``crashbed`` covers power cuts.

Running and killing
    first_line(child, timeout) -> str the first stdout line of a ``Popen`` (text mode), bounded
    run_killed(argv, delay, env=None, wait_line=True) -> Killed
                                      start ``argv`` (stdout and stderr piped), wait for its
                                      first stdout line when ``wait_line`` (the program is
                                      running), sleep ``delay``, SIGKILL it, collect its output
    Killed                            ``out`` / ``err`` (lists of lines), ``alive`` (it was still
                                      running when killed), ``rc``
    python_env() -> dict              the environment for ``python -m rumpkernel...`` children

The writer workload (a client of a local or remote kernel)
    python -m rumpkernel.testing.killbed local IMAGE [FSTYPE]
    python -m rumpkernel.testing.killbed remote URL FSTYPE DEVICE
                                      mount the image (the device) on /m and run ``writer``
    writer(sys, root, report)         forever: churn (unsynced files, renames over older ones,
                                      truncates, mkdir, rmdir), then ``f{i}`` written with
                                      ``body(i)`` and a line appended to ``log``, both fsync'd;
                                      ``report(i)`` after the fsyncs returned
    body(i) -> bytes                  what ``f{i}`` holds
    promised(synced) -> {path: (data, prefix)}
                                      what must read back once ``synced`` was reported: every
                                      ``f{i}``, and ``log`` starting with lines 0..synced
    broken_promises(got, synced, who) -> [str]
                                      the promises ``got`` ({path: bytes | error}) breaks

Judging an image (each check works on copies; the image is not changed)
    judge(image, fstype, tmp, shared_ok=None) -> Judged
                                      ext3/ext4: ``e2fsck -E journal_only -y`` then ``-fn`` clean,
                                      and our own replay (a read-write mount and unmount in a
                                      fresh kernel) then ``e2fsck -fn`` clean.  ext2: ``e2fsck
                                      -fy`` may fix leaks and counts (what the design allows),
                                      never blocks claimed twice; the repaired copy must then be
                                      ``-fn`` clean.  FAT: ``fsck.fat -n`` finds only crash
                                      leftovers (``crashbed.fat_block_allowed``) or two names
                                      sharing a chain that ``shared_ok(a, b)`` accepts (a
                                      rename across directories or sectors: see docs/fat.md;
                                      same-sector renames are atomic and get no allowance).
                                      ``Judged.problems`` ([] = fine), ``.repairs``
                                      (the fsck lines of allowed repairs), ``.readable``: the
                                      image to read from (replayed or repaired copy)
    repair_kinds(judged) -> {str}     the repairs as kinds (paths and numbers blanked)
    read_tree(image, fstype, skip=None) -> {path: bytes | OSError}
                                      every regular file, read through our driver in a fresh
                                      kernel (read-only: ext journals replay in memory); names
                                      ``skip(name)`` accepts are left out; a file that cannot
                                      be read maps to the error

Rules: every wait is bounded; children are killed and reaped in ``finally``; temporary files
carry the pid.  Test-only (``testing/`` may use the host freely).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rumpkernel.testing import crashbed

SRC = Path(__file__).resolve().parents[2]
ENV = {"LC_ALL": "C.UTF-8", "TZ": "UTC", "FSU_PROGRESS": "0", "MTOOLS_SKIP_CHECK": "1"}


def python_env(**extra: str) -> dict[str, str]:
    e = dict(os.environ, **ENV)
    e["PYTHONPATH"] = str(SRC) + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("RUMP_AUTH", None)
    e.pop("RUMP_AUTH_FILE", None)
    e.update(extra)
    return e


# -- running and killing -----------------------------------------------------------------------
@dataclass
class Killed:
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)
    alive: bool = False
    rc: int | None = None


def run_killed(argv: list[str], delay: float, env: dict[str, str] | None = None,
               wait_line: bool = True, timeout: float = 60.0) -> Killed:
    """Run ``argv``, SIGKILL it ``delay`` seconds after its first stdout line (or after its
    start without ``wait_line``); its output and whether it was still running."""
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=env or python_env(), text=True)
    first = ""
    try:
        if wait_line:
            first = first_line(child, timeout)
        time.sleep(delay)
        alive = child.poll() is None
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
        out, err = child.communicate(timeout=timeout)
    return Killed((first + out).splitlines(), err.splitlines(), alive, child.returncode)


def first_line(child: subprocess.Popen, timeout: float) -> str:
    """The child's first stdout line (bounded: a watchdog kills a child that says nothing)."""
    import threading

    t = threading.Timer(timeout, lambda: child.poll() is None and child.kill())
    t.start()
    try:
        line = child.stdout.readline() if child.stdout else ""
    finally:
        t.cancel()
    if not line:
        raise RuntimeError(f"{child.args[:4]}: no output before it ended (rc {child.poll()})")
    return line


# -- the writer workload -----------------------------------------------------------------------
def body(i: int) -> bytes:
    return f"file {i} ".encode() * (1 + i * 37 % 900)


def log_line(i: int) -> bytes:
    return f"entry {i} ".encode() * (1 + i * 7 % 60) + b"\n"


def writer(s: Any, root: str, report: Callable[[int], None]) -> None:
    """Churn (never synced: new files, renames over older ones, truncates, mkdir, rmdir),
    then ``f{i}`` written and a line appended to ``log``, both fsync'd; ``report(i)`` once
    fsync returned."""
    log = s.open(f"{root}/log", os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
    i = 0
    while True:
        data = body(i)
        fd = s.open(f"{root}/tmp{i}", os.O_CREAT | os.O_WRONLY, 0o644)
        s.write(fd, data[::-1])
        s.close(fd)
        if i % 3 == 0:
            s.mkdir(f"{root}/dir{i}")
            if i >= 9:
                s.rmdir(f"{root}/dir{i - 9}")
        if i:
            s.rename(f"{root}/tmp{i - 1}", f"{root}/moved{i % 5}")   # over an older one
        if i % 7 == 6:
            s.truncate(f"{root}/moved{(i + 2) % 5}", i * 13 % 3000)  # frees its tail
        fd = s.open(f"{root}/f{i}", os.O_CREAT | os.O_WRONLY, 0o644)
        s.write(fd, data)
        s.write(log, log_line(i))
        s.fsync(fd)
        s.fsync(log)
        s.close(fd)
        report(i)
        i += 1


def promised(synced: int) -> dict[str, tuple[bytes, bool]]:
    """What must read back after the writer reported ``synced``: path -> (data, prefix)."""
    if synced < 0:
        return {}
    out = {f"/f{i}": (body(i), False) for i in range(synced + 1)}
    out["/log"] = (b"".join(log_line(i) for i in range(synced + 1)), True)
    return out


def broken_promises(got: dict[str, Any], synced: int, who: str) -> list[str]:
    """The writer's promises ``got`` (path -> bytes, error or missing) does not keep."""
    bad = []
    for path, (data, prefix) in promised(synced).items():
        have = got.get(path)
        if isinstance(have, bytes) and (have.startswith(data) if prefix else have == data):
            continue
        seen = ("missing" if have is None else f"{len(have)} bytes"
                if isinstance(have, bytes) else str(have))
        bad.append(f"{who}: {path} fsync'd ({len(data)} bytes{' at least' if prefix else ''})"
                   f", read {seen}")
    return bad[:10]


def _report(i: int) -> None:
    sys.stdout.write(f"{i}\n")
    sys.stdout.flush()


def _main(argv: list[str]) -> None:
    import rumpkernel

    mode = argv[0]
    if mode == "local":
        k = rumpkernel.boot()
        k.mount_image(argv[1], "/m", fstype=argv[2] if len(argv) > 2 else None)
        s = k.sys
    else:
        url, fstype, dev = argv[1:4]
        c = rumpkernel.connect(url, autofork=False)
        s = c.sys
        s.mkdir("/m")
        s.mount(fstype, "/m", 0, f"from={dev}")
    _report(-1)                                     # mounted: running
    writer(s, "/m", _report)


# -- judging -----------------------------------------------------------------------------------
EXT2_NEVER = ("ultiply-claimed", "shared with", "duplicate", "Illegal block", "illegal block",
              "bad block", "Bad block")


FAT_INFO = ("fsck.fat ", "Checking we can access", "Leaving filesystem unchanged")


@dataclass
class Judged:
    problems: list[str] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)
    readable: Path | None = None


def repair_kinds(j: Judged) -> set[str]:
    """The kinds of repairs ``j`` needed: fsck lines with paths and numbers blanked."""
    out = set()
    for ln in j.repairs:
        ln = re.sub(r"/\S*( / |$)", r"PATH\1", ln)
        out.add(re.sub(r"\d+", "N", ln)[:90])
    return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copyfile(src, dst)
    return dst


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=dict(os.environ, **ENV), capture_output=True, text=True,
                          timeout=120)


def _e2fsck_fn(path: Path, what: str) -> list[str]:
    r = _run("e2fsck", "-fn", str(path))
    if r.returncode == 0:
        return []
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    return [f"{what}: e2fsck -fn exit {r.returncode}", *lines[:30]]


def judge(image: Path, fstype: str, tmp: Path,
          shared_ok: Callable[[str, str], bool] | None = None) -> Judged:
    tag = f"killbed-{os.getpid()}"
    if fstype in ("ext3", "ext4"):
        return _judge_journaled(image, fstype, tmp / f"{tag}-e2fsck.img", tmp / f"{tag}-ours.img")
    if fstype == "ext2":
        return _judge_ext2(image, tmp / f"{tag}-repaired.img")
    return _judge_fat(image, shared_ok)


def _judge_journaled(image: Path, fstype: str, theirs: Path, ours: Path) -> Judged:
    j = Judged(readable=image)
    _copy(image, theirs)
    r = _run("e2fsck", "-E", "journal_only", "-y", str(theirs))
    if r.returncode not in (0, 1):
        j.problems.append(f"e2fsck journal replay exit {r.returncode}: {r.stdout[-300:]}")
    j.problems += _e2fsck_fn(theirs, "after e2fsck's replay")
    _copy(image, ours)
    try:
        _our_replay(ours, fstype)
    except Exception as e:                          # report it, do not stop
        j.problems.append(f"our replay failed: {type(e).__name__}: {e}")
    else:
        j.problems += _e2fsck_fn(ours, "after our replay")
    return j


def _our_replay(path: Path, fstype: str) -> None:
    """Mount read-write in a fresh kernel (the driver replays the journal) and unmount."""
    import rumpkernel

    k = rumpkernel.boot()
    try:
        k.mount_image(str(path), "/r", fstype=fstype)
        k.sys.unmount("/r")
    finally:
        k.halt()


def _judge_ext2(image: Path, repaired: Path) -> Judged:
    j = Judged(readable=_copy(image, repaired))
    r = _run("e2fsck", "-fy", str(repaired))
    lines = [ln.strip() for ln in r.stdout.splitlines() if ln.strip()]
    j.problems += [ln for ln in lines if any(w in ln for w in EXT2_NEVER)]
    if r.returncode not in (0, 1):
        j.problems.append(f"e2fsck -fy exit {r.returncode}")
    if r.returncode:
        j.repairs = [ln for ln in lines if not ln.startswith(("Pass ", str(repaired)))
                     and "***" not in ln]
    j.problems += _e2fsck_fn(repaired, "after e2fsck -fy")
    return j


def _judge_fat(image: Path, shared_ok: Callable[[str, str], bool] | None) -> Judged:
    j = Judged(readable=image)
    blocks = crashbed.fsck_fat_blocks(image.read_bytes())
    ok_pairs = [b for b in blocks if _window(b, shared_ok)]
    shared = {p for b in ok_pairs for p in b.paths}
    for b in blocks:
        line = " / ".join(b.paths + b.messages)
        if not b.paths and all(m.startswith(FAT_INFO) for m in b.messages):
            continue
        if crashbed.fat_block_allowed(b) or b in ok_pairs or _truncated_twin(b, shared):
            j.repairs.append(line)
        else:
            j.problems.append(line)
    return j


def _window(b: crashbed.FsckBlock, shared_ok: Callable[[str, str], bool] | None) -> bool:
    """Two names sharing one chain, in a rename window ``shared_ok`` accepts."""
    return (shared_ok is not None and len(b.paths) == 2 and shared_ok(*b.paths)
            and set(b.messages) <= {"share clusters.", "Truncating second to 0 bytes."})


def _truncated_twin(b: crashbed.FsckBlock, shared: set[str]) -> bool:
    """fsck.fat truncates one of two names sharing a chain (the data stays under the other)."""
    return (len(b.paths) == 1 and b.paths[0] in shared and bool(b.messages)
            and all(m == "Truncating file to 0 bytes." or
                    m.endswith("cluster chain length is 0 bytes.") for m in b.messages))


def kernel_type(fstype: str) -> str:
    """Our kernel's name for a file system named as the tests do (fat32 -> msdos)."""
    return "msdos" if fstype.startswith(("fat", "vfat")) else fstype


def read_tree(image: Path, fstype: str,
              skip: Callable[[str], bool] | None = None) -> dict[str, bytes | OSError]:
    """Every regular file of the image (paths from its root, "/a/b"), through our driver."""
    import stat

    import rumpkernel

    k = rumpkernel.boot()
    out: dict[str, bytes | OSError] = {}
    try:
        k.mount_image(str(image), "/t", fstype=kernel_type(fstype), readonly=True)
        stack = [""]
        while stack:
            d = stack.pop()
            for name in k.sys.listdir("/t" + d or "/t"):
                p = f"{d}/{name}"
                if skip is not None and skip(name):
                    continue
                try:
                    st = k.sys.lstat("/t" + p)
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(p)
                    elif stat.S_ISREG(st.st_mode):
                        out[p] = crashbed._read_all(k.sys, "/t" + p)
                except OSError as e:    # e.g. FAT: one of two names sharing a chain
                    out[p] = e
    finally:
        k.halt()
    return out


if __name__ == "__main__":
    _main(sys.argv[1:])
