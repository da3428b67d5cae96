"""Hang diagnostics for tests that drive a FUSE mount with host programs: run a program with a
bound, and when it does not finish, say why (the server's thread stacks, the host's count of
unanswered requests, the kernel stacks of stuck programs), then unstick everything (abort the
FUSE connection, kill the program's process group) so a hang costs the bound, not the suite.

Nothing here touches the mount point itself (a stat of a stuck mount blocks too): the mount's
device comes from ``/proc/self/mountinfo``.

Interface:
    mount_device(mountpoint) -> (major, minor) | None    the FUSE mount there, from mountinfo
    waiting(mountpoint) -> int | None       requests the host sent and the server has not
                                            answered (/sys/fs/fuse/connections/N/waiting)
    abort(mountpoint) -> bool               abort the connection: every waiter gets ECONNABORTED
                                            (both mount fusectl at /sys/fs/fuse/connections
                                            when it is not there and we are root)
    server_stacks(stacks_file, pid, timeout) -> str   SIGUSR1 to a rump_mount server, then what
                                            it appended to its stacks file
    stuck_tasks(pids) -> str                state, wchan and /proc/PID/stack of each task
    run_bounded(cmd, timeout, mountpoint, server_pid, stacks_file) -> CompletedProcess
        the program in its own session; on timeout: AssertionError with the diagnosis
        (after abort + kill), never a silent wait
    alone_with(mountpoint, cmd) -> list[str]    ``cmd`` run in a private mount namespace
        where every other FUSE mount is detached (root; else ``cmd`` unchanged).  Host tools
        that walk the whole tree (stress-ng's getdent walks /tmp, /run, /proc, /sys, /dev)
        otherwise enter every FUSE mount on the machine -- other tests' and other users' --
        and wait, in D state, for any server that is stopped, stuck or being torn down.
    with watchdog(mountpoint, timeout, server_pid, stacks_file):   a bound on a block of
        this process's own calls on the mount: when it expires, the diagnosis is taken and
        the connection aborted (the stuck call fails ECONNABORTED); leaving the block then
        raises AssertionError with the diagnosis
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence

CONNECTIONS = "/sys/fs/fuse/connections"


def mount_device(mountpoint: str) -> tuple[int, int] | None:
    target = os.path.abspath(mountpoint)
    with open("/proc/self/mountinfo") as f:
        lines = f.read().splitlines()
    found = None
    for line in lines:                      # the last mount on top is the one that counts
        parts = line.split()
        fstype = line.split(" - ", 1)[1].split()[0] if " - " in line else ""
        if len(parts) > 4 and _unescape(parts[4]) == target and fstype.startswith("fuse"):
            major, minor = parts[2].split(":")
            found = (int(major), int(minor))
    return found


def _unescape(field: str) -> str:
    return (field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
            .replace("\\134", "\\"))


def _connection(mountpoint: str) -> str | None:
    dev = mount_device(mountpoint)
    if dev is None:
        return None
    conn = os.path.join(CONNECTIONS, str(dev[1]))
    if not os.path.isdir(conn) and os.path.isdir(CONNECTIONS) and os.geteuid() == 0:
        subprocess.run(["mount", "-t", "fusectl", "fusectl", CONNECTIONS], capture_output=True,
                       timeout=30)            # the control file system (systemd mounts it)
    return conn


def fuse_mounts() -> list[str]:
    """Every FUSE mount point in this mount namespace."""
    with open("/proc/self/mountinfo") as f:
        lines = f.read().splitlines()
    return [_unescape(line.split()[4]) for line in lines
            if " - " in line and line.split(" - ", 1)[1].split()[0].startswith("fuse")
            and line.split(" - ", 1)[1].split()[0] != "fusectl"]


def alone_with(mountpoint: str, cmd: Sequence[str]) -> list[str]:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return list(cmd)
    return ["unshare", "--mount", "--propagation", "private", "--", sys.executable, "-m",
            __name__, os.path.abspath(mountpoint), *cmd]


def _detach_others_and_exec(keep: str, cmd: list[str]) -> None:
    """In a private mount namespace: detach every FUSE mount but ``keep``, then run ``cmd``
    (paths not canonicalised: a stat of a stuck mount would block)."""
    for m in sorted(fuse_mounts(), key=len, reverse=True):
        if m != keep and not m.startswith(keep + "/"):
            subprocess.run(["umount", "--no-canonicalize", "-l", m], capture_output=True,
                           timeout=60)
    os.execvp(cmd[0], cmd)


def waiting(mountpoint: str) -> int | None:
    conn = _connection(mountpoint)
    try:
        with open(os.path.join(conn or "/nonexistent", "waiting")) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def abort(mountpoint: str) -> bool:
    conn = _connection(mountpoint)
    try:
        with open(os.path.join(conn or "/nonexistent", "abort"), "w") as f:
            f.write("1\n")
        return True
    except OSError:
        return False


def server_stacks(stacks_file: str, pid: int, timeout: float = 5.0) -> str:
    """Ask server ``pid`` for its thread stacks (SIGUSR1) and return what it wrote."""
    try:
        before = os.path.getsize(stacks_file)
    except OSError:
        before = 0
    try:
        os.kill(pid, signal.SIGUSR1)
    except OSError as e:
        return f"(cannot signal server {pid}: {e})"
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        time.sleep(0.2)
        with contextlib.suppress(OSError):
            size = os.path.getsize(stacks_file)
            if size > before and size == last:     # grew, and stopped growing
                with open(stacks_file, "rb") as f:
                    f.seek(before)
                    return f.read().decode(errors="replace")
            last = size
    return f"(server {pid} wrote no stacks to {stacks_file} within {timeout:g}s)"


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read().strip()
    except OSError as e:
        return f"({e.strerror})"


def stuck_tasks(pids: Iterable[int]) -> str:
    out = []
    for pid in pids:
        stat = _read(f"/proc/{pid}/stat")
        state = stat.rsplit(")", 1)[1].split()[0] if ")" in stat else "?"
        out.append(f"--- {pid} {_read(f'/proc/{pid}/comm')} state={state} "
                   f"wchan={_read(f'/proc/{pid}/wchan')}\n{_read(f'/proc/{pid}/stack')}")
    return "\n".join(out)


def session_pids(sid: int | None) -> list[int]:
    """Every process in session ``sid``; with None, every task waiting for a FUSE answer."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        if sid is None:
            if "fuse" in _read(f"/proc/{name}/stack"):
                pids.append(int(name))
            continue
        stat = _read(f"/proc/{name}/stat")
        if ")" in stat:
            fields = stat.rsplit(")", 1)[1].split()
            if len(fields) > 3 and fields[3] == str(sid):
                pids.append(int(name))
    return pids


def run_bounded(cmd: Sequence[str], timeout: float, mountpoint: str, server_pid: int | None,
                stacks_file: str | None) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd)`` in a new session with ``timeout`` seconds; on timeout the
    diagnosis, then the connection is aborted and the session killed, and AssertionError."""
    p = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        return subprocess.CompletedProcess(p.args, p.returncode, out, err)
    except subprocess.TimeoutExpired:
        try:
            report = diagnose(cmd, timeout, mountpoint, server_pid, stacks_file, p.pid)
        except Exception as e:
            report = f"{cmd[0]} did not finish within {timeout:g}s (diagnosis failed: {e!r})"
        abort(mountpoint)
        with contextlib.suppress(OSError):
            os.killpg(p.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.communicate(timeout=30)
        raise AssertionError(report) from None


@contextlib.contextmanager
def watchdog(mountpoint: str, timeout: float, server_pid: int | None,
             stacks_file: str | None, what: str = "the test") -> Iterator[None]:
    found: list[str] = []

    def expire() -> None:
        try:
            found.append(diagnose([what], timeout, mountpoint, server_pid, stacks_file, None))
        except Exception as e:         # the abort matters more than the report
            found.append(f"{what} did not finish within {timeout:g}s on {mountpoint} "
                         f"(diagnosis failed: {e!r})")
        finally:
            abort(mountpoint)

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    except BaseException:
        timer.cancel()
        timer.join()
        if found:
            raise AssertionError(found[0]) from None
        raise
    timer.cancel()
    timer.join()
    if found:
        raise AssertionError(found[0])


def diagnose(cmd: Sequence[str], timeout: float, mountpoint: str, server_pid: int | None,
             stacks_file: str | None, sid: int | None) -> str:
    """What is stuck: the server's threads, and the tasks of session ``sid`` (None: every
    task in a FUSE wait)."""
    head = (f"{cmd[0]} did not finish within {timeout:g}s on {mountpoint}; "
            f"FUSE requests unanswered: {waiting(mountpoint)}")
    others = ", ".join(f"{m}: {n}" for m in fuse_mounts()
                       if m != os.path.abspath(mountpoint) and (n := waiting(m)))
    head += f"\nother FUSE mounts with unanswered requests: {others or 'none'}"
    tasks = stuck_tasks(session_pids(sid))
    stacks = ("(no server pid)" if server_pid is None or stacks_file is None
              else server_stacks(stacks_file, server_pid))
    return f"{head}\n=== server threads\n{stacks}\n=== client tasks\n{tasks}"


if __name__ == "__main__":
    _detach_others_and_exec(sys.argv[1], sys.argv[2:])
