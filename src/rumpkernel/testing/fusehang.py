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
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence

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
        with open(path) as f:
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


def session_pids(sid: int) -> list[int]:
    """Every process in session ``sid``."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
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
        report = diagnose(cmd, timeout, mountpoint, server_pid, stacks_file, p.pid)
        abort(mountpoint)
        with contextlib.suppress(OSError):
            os.killpg(p.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.communicate(timeout=30)
        raise AssertionError(report) from None


def diagnose(cmd: Sequence[str], timeout: float, mountpoint: str, server_pid: int | None,
             stacks_file: str | None, sid: int) -> str:
    head = (f"{cmd[0]} did not finish within {timeout:g}s on {mountpoint}; "
            f"FUSE requests unanswered: {waiting(mountpoint)}")
    tasks = stuck_tasks(session_pids(sid))
    stacks = ("(no server pid)" if server_pid is None or stacks_file is None
              else server_stacks(stacks_file, server_pid))
    return f"{head}\n=== server threads\n{stacks}\n=== client tasks\n{tasks}"
