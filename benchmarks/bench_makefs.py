"""``fsu makefs`` beside the native image builders, whole processes (interpreter start and
imports included), medians of several runs measured in the same session.

    PYTHONPATH=src python benchmarks/bench_makefs.py [--repeats 7] [--files 1000]

1. ``fsu makefs -t ext4 IMG TREE`` (sized to fit) vs ``mke2fs -t ext4 -d TREE IMG SIZE``
   (given the size our run chose);
2. ``fsu makefs -t fat IMG TREE`` vs ``mkfs.fat -C IMG SIZE`` + ``mcopy -s -i IMG TREE/* ::/``
   (mtools never fsyncs; mke2fs and our makefs do, so a second row adds ``sync IMG``);
3. the same at a larger tree (10x the bytes) to separate per-process cost from per-byte cost;
4. for reference, the bare cost of starting Python and booting a kernel.
Timing uses hyperfine when it is installed (``--export-json``, median), else our own loop.
The tree: FILES files in 20 directories x 3 subdirectories, sizes exponential with a mean of
8 KB (the shape bench_ext2 uses), seed 5.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable
SRC = str(Path(__file__).resolve().parents[1] / "src")


def make_tree(root: Path, nfiles: int, mean: int, seed: int = 5) -> int:
    rng = random.Random(seed)
    total = 0
    for i in range(nfiles):
        d = root / f"d{i % 20:02d}" / f"sub{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        size = int(rng.expovariate(1 / mean))
        (d / f"file{i:04d}").write_bytes(rng.randbytes(size))
        total += size
    return total


def timed(cmd: str, repeats: int, prepare: str | None = None) -> float:
    """Median wall time of ``cmd`` (a shell command line) in seconds."""
    env = {**os.environ, "PYTHONPATH": SRC}
    if shutil.which("hyperfine"):
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            args = ["hyperfine", "-w", "1", "-r", str(repeats), "--export-json", out.name]
            if prepare is None and "&&" not in cmd:
                args.append("-N")  # no shell in between
            if prepare:
                args += ["-p", prepare]
            subprocess.run([*args, cmd], check=True, capture_output=True, env=env)
            return float(json.load(open(out.name))["results"][0]["median"])
    times = []
    for _ in range(repeats + 1):
        if prepare:
            subprocess.run(prepare, shell=True, check=True, env=env)
        t0 = time.perf_counter()
        subprocess.run(cmd, shell=True, check=True, env=env, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def row(name: str, ours: float, ref: float, target: float) -> str:
    ratio = ours / ref
    verdict = "meets" if ratio <= target else "MISSES"
    return (f"{name:<38} ours {ours * 1000:8.1f} ms  ref {ref * 1000:8.1f} ms  "
            f"ratio {ratio:5.2f}x  ({verdict} the {target:g}x target)")


def bench(work: Path, nfiles: int, mean: int, repeats: int) -> list[str]:
    tree = work / f"tree-{mean}"
    total = make_tree(tree, nfiles, mean)
    q = shlex.quote
    img, ref = work / "ours.img", work / "ref.img"
    fsu = f"{q(PY)} -m rumpkernel.apps.fsu makefs"
    lines = [f"tree: {nfiles} files, {total / 1e6:.1f} MB in {tree}"]
    subprocess.run(f"{fsu} -t ext4 {q(str(img))} {q(str(tree))}", shell=True, check=True,
                   env={**os.environ, "PYTHONPATH": SRC})
    size = img.stat().st_size
    ours = timed(f"{fsu} -t ext4 {q(str(img))} {q(str(tree))}", repeats)
    mke2fs = timed(f"mke2fs -q -F -t ext4 -d {q(str(tree))} {q(str(ref))} {size // 1024}k",
                   repeats)
    lines.append(row(f"makefs ext4 ({size >> 20} MiB image)", ours, mke2fs, 4))
    subprocess.run(f"{fsu} -t fat {q(str(img))} {q(str(tree))}", shell=True, check=True,
                   env={**os.environ, "PYTHONPATH": SRC})
    fsize = img.stat().st_size
    ours_fat = timed(f"{fsu} -t fat {q(str(img))} {q(str(tree))}", repeats)
    native = (f"rm -f {q(str(ref))} && mkfs.fat -C {q(str(ref))} {fsize // 1024} >/dev/null && "
              f"mcopy -s -i {q(str(ref))} {q(str(tree))}/* ::/")
    fat_ref = timed(native, repeats)
    lines.append(row(f"makefs fat ({fsize >> 20} MiB image)", ours_fat, fat_ref, 4))
    durable = timed(f"{native} && sync {q(str(ref))}", repeats)
    lines.append(row("  ... vs mkfs.fat + mcopy + sync IMG", ours_fat, durable, 4))
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--files", type=int, default=1000)
    args = ap.parse_args()
    for tool in ("mke2fs", "mkfs.fat", "mcopy"):
        if shutil.which(tool) is None:
            sys.exit(f"needs {tool}")
    with tempfile.TemporaryDirectory(prefix="bench-makefs-") as d:
        work = Path(d)
        print(f"python {sys.version.split()[0]} ({PY}); "
              f"timing: {'hyperfine' if shutil.which('hyperfine') else 'own loop'}, "
              f"median of {args.repeats}")
        boot = timed(f"{shlex.quote(PY)} -c 'import rumpkernel; rumpkernel.boot().halt()'",
                     args.repeats)
        bare = timed(f"{shlex.quote(PY)} -c pass", args.repeats)
        print(f"python start {bare * 1000:.1f} ms; python start + import + boot + halt "
              f"{boot * 1000:.1f} ms")
        for line in bench(work, args.files, 8000, args.repeats):
            print(line)
        for line in bench(work, args.files, 80000, args.repeats):
            print(line)


if __name__ == "__main__":
    main()
