"""Start-up cost of one-shot fsu commands, whole processes, beside ``python -c pass`` and the
native one-shot tools on the same images (issue #16 item 10).

    PYTHONPATH=src python benchmarks/bench_startup.py [--repeats 21] [--importtime]
                                                      [--baseline OTHER/src]

Rows (medians of interleaved runs: every repeat runs each command once, so drifts in machine
load hit all rows alike):
    python -c pass                 the floor: the same interpreter doing nothing
    fsu ls / cat / info --json     on a small ext4 image (mke2fs -d), and ``fsu ls`` on FAT
    e2ls, debugfs -R ls, mdir      the native tools on the same images (when installed)
Each row prints its median in milliseconds and its ratio to ``python -c pass``.  With
``--baseline DIR`` (another checkout's ``src``, e.g. of main before a change) the fsu rows are
run from that tree too, interleaved in the same rounds: a before/after on equal terms.  With
``--importtime`` the ten most expensive imports of ``fsu ls`` (``python -X importtime``,
cumulative microseconds) are listed too: what remains of the start-up.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable
SRC = str(Path(__file__).resolve().parents[1] / "src")


def fsu_cmd() -> list[str]:
    return [PY, "-m", "rumpkernel.apps.fsu"]  # PYTHONPATH picks the tree


def make_images(tmp: Path) -> tuple[Path, Path | None]:
    tree = tmp / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "hostname").write_text("bench\n")
    for i in range(20):
        (tree / f"file{i:02d}.txt").write_text(f"line {i}\n" * 10)
    ext = tmp / "ext4.img"
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-d", str(tree), str(ext), "8M"],
                   check=True, capture_output=True)
    fat = None
    if shutil.which("mkfs.fat") and shutil.which("mcopy"):
        fat = tmp / "fat.img"
        subprocess.run(["mkfs.fat", "-C", str(fat), "8192"], check=True, capture_output=True)
        subprocess.run(["mcopy", "-s", "-i", str(fat), *map(str, sorted(tree.iterdir())),
                        "::/"], check=True, capture_output=True)
    return ext, fat


def fsu_rows(ext: Path, fat: Path | None, tag: str = "") -> list[tuple[str, list[str]]]:
    f = fsu_cmd()
    rows = [(f"{tag}fsu ls IMG / (ext4)", [*f, "ls", str(ext), "/"]),
            (f"{tag}fsu cat IMG /etc/hostname (ext4)", [*f, "cat", str(ext), "/etc/hostname"]),
            (f"{tag}fsu info --json IMG (ext4)", [*f, "info", "--json", str(ext)])]
    if fat is not None:
        rows.append((f"{tag}fsu ls IMG / (fat)", [*f, "ls", str(fat), "/"]))
    return rows


def commands(ext: Path, fat: Path | None, baseline: bool = False
             ) -> list[tuple[str, list[str]]]:
    rows = [("python -c pass", [PY, "-c", "pass"]), *fsu_rows(ext, fat)]
    if baseline:
        rows += fsu_rows(ext, fat, "baseline: ")
    if shutil.which("e2ls"):
        rows.append(("e2ls IMG:/", ["e2ls", f"{ext}:/"]))
    if shutil.which("debugfs"):
        rows.append(("debugfs -R ls IMG", ["debugfs", "-R", "ls", str(ext)]))
    if fat is not None and shutil.which("mdir"):
        rows.append(("mdir -i IMG ::/", ["mdir", "-i", str(fat), "::/"]))
    return rows


def bench_env(tmp: Path) -> dict[str, str]:
    """Byte-code caches on (an installed package has them; a PYTHONDONTWRITEBYTECODE shell
    would otherwise time the compiler), kept out of the source tree."""
    env = {**os.environ, "PYTHONPATH": SRC, "FSU_PROGRESS": "0",
           "PYTHONPYCACHEPREFIX": str(tmp / "pycache")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def measure(rows: list[tuple[str, list[str]]], repeats: int, env: dict[str, str],
            baseline: str | None = None) -> dict[str, float]:
    base_env = {**env, "PYTHONPATH": baseline} if baseline else env
    times: dict[str, list[float]] = {name: [] for name, _ in rows}
    for r in range(repeats + 1):
        for name, cmd in rows:
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True,
                           env=base_env if name.startswith("baseline: ") else env)
            if r:  # the first round warms the page cache
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def importtime(ext: Path, env: dict[str, str]) -> list[tuple[int, str]]:
    res = subprocess.run([PY, "-X", "importtime", "-m", "rumpkernel.apps.fsu", "ls", str(ext),
                          "/"], capture_output=True, text=True, env=env, check=True)
    out = []
    for line in res.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            name = parts[2].rstrip()
            if not name.startswith("  "):  # top-level imports only (one space of indent)
                out.append((int(parts[1]), name.strip()))
    return sorted(out, reverse=True)[:10]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--importtime", action="store_true")
    ap.add_argument("--baseline", metavar="SRC", help="another tree's src to compare with")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as d:
        ext, fat = make_images(Path(d))
        rows = commands(ext, fat, args.baseline is not None)
        env = bench_env(Path(d))
        med = measure(rows, args.repeats, env, args.baseline)
        base = med["python -c pass"]
        print(f"whole-process start-up, median of {args.repeats} interleaved runs")
        for name, _ in rows:
            print(f"{name:<46} {med[name] * 1000:8.1f} ms  {med[name] / base:6.2f}x python")
        if args.importtime:
            print("\nmost expensive top-level imports of 'fsu ls' (cumulative us):")
            for us, name in importtime(ext, env):
                print(f"{us:10d}  {name}")


if __name__ == "__main__":
    main()
