"""``fsu makefs`` beside the native image builders, measured in the same run: medians of
several repeats, whole processes (interpreter start and imports included) and in-process
(``makefs.main`` called in this interpreter, imports done, nothing else changed).

    PYTHONPATH=src python benchmarks/bench_makefs.py [--repeats 5] [--quick] [--types ext4,fat]
        [--trees small,many,big] [--baseline OLD/src]

Trees (sizes exponential, seed 5; the shape bench_ext2 uses), each in 20 x 3 directories:
    small   1,000 files, mean 8 KB  (~8 MB)   per-file cost
    many   10,000 files, mean 2 KB  (~20 MB)  per-file cost at scale
    big     1,000 files, mean 80 KB (~80 MB)  per-byte cost
Rows:
1. ext4 (and ext3/ext2 with --types): ``fsu makefs -t ext4 IMG TREE`` (sized to fit) vs
   ``mke2fs -t ext4 -d TREE IMG SIZE`` given the size our run chose; both fsync the image.
2. fat: ``fsu makefs -t fat IMG TREE`` vs ``mkfs.fat -C IMG SIZE`` + ``mcopy -s``.  mtools
   never fsyncs; a second row adds ``sync IMG`` to the reference.
3. in-process: the same ``fsu makefs`` run through ``makefs.main`` in this process, against
   the native tool's whole process (a C program's start costs ~1 ms).
4. the floor: starting Python, and starting it with the imports and kernel boot makefs needs.
Whole-process runs get byte-code caches (PYTHONPYCACHEPREFIX in the work directory, warmed by
the warm-up run), as an installed package has them: a shell with PYTHONDONTWRITEBYTECODE=1
would otherwise compile every module at every start (~3x slower starts).
Timing uses hyperfine when installed (``--export-json``, median), else our own loop.  Each
row gives wall time (median) and CPU time (user + system, mean): on a shared, loaded machine
the CPU ratio is the steadier one; wall time also counts waiting for fsync.
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
TREES = {"small": (1000, 8000), "many": (10000, 2000), "big": (1000, 80000)}


def make_tree(root: Path, nfiles: int, mean: int, seed: int = 5) -> int:
    rng = random.Random(seed)
    total = 0
    for i in range(nfiles):
        d = root / f"d{i % 20:02d}" / f"sub{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        size = int(rng.expovariate(1 / mean))
        (d / f"file{i:05d}").write_bytes(rng.randbytes(size))
        total += size
    return total


class Timer:
    def __init__(self, work: Path, repeats: int, baseline: str | None = None) -> None:
        self.repeats = repeats
        self.baseline = baseline
        self.cpu = 0.0
        self.env = {**os.environ, "PYTHONPATH": SRC,
                    "PYTHONPYCACHEPREFIX": str(work / "pycache"), "FSU_PROGRESS": "0"}
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.env.pop("SOURCE_DATE_EPOCH", None)

    def whole(self, cmd: str, prepare: str | None = None) -> float:
        """Median wall time of ``cmd`` (a shell command line) in seconds; ``self.cpu`` gets
        its CPU time (user + system, mean: a steadier measure on a shared machine)."""
        if shutil.which("hyperfine"):
            with tempfile.NamedTemporaryFile(suffix=".json") as out:
                args = ["hyperfine", "-w", "1", "-r", str(self.repeats), "--export-json",
                        out.name]
                if prepare is None and "&&" not in cmd:
                    args.append("-N")  # no shell in between
                if prepare:
                    args += ["-p", prepare]
                subprocess.run([*args, cmd], check=True, capture_output=True, env=self.env)
                with open(out.name) as f:
                    res = json.load(f)["results"][0]
                self.cpu = float(res["user"]) + float(res["system"])
                return float(res["median"])
        times, cpus = [], []
        for _ in range(self.repeats + 1):
            if prepare:
                subprocess.run(prepare, shell=True, check=True, env=self.env)
            t0 = time.perf_counter()
            c0 = os.times()
            subprocess.run(cmd, shell=True, check=True, env=self.env, capture_output=True)
            c1 = os.times()
            times.append(time.perf_counter() - t0)
            cpus.append(c1.children_user - c0.children_user + c1.children_system
                        - c0.children_system)
        self.cpu = statistics.mean(cpus[1:])
        return statistics.median(times[1:])

    def inproc(self, argv: list[str]) -> float:
        """Median wall time of ``fsu makefs ARGV`` through ``makefs.main`` in this process."""
        from rumpkernel.apps.fsu import makefs

        times, cpus = [], []
        for _ in range(self.repeats + 1):
            t0, c0 = time.perf_counter(), time.process_time()
            if makefs.main(list(argv)) != 0:
                raise SystemExit(f"makefs {argv} failed")
            times.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        self.cpu = statistics.mean(cpus[1:])
        return statistics.median(times[1:])


def row(name: str, ours: tuple[float, float], ref: tuple[float, float],
        target: float | None = None) -> str:
    """``ours`` and ``ref`` are (wall, cpu) seconds."""
    ratio = ours[0] / ref[0]
    verdict = "" if target is None else \
        f" ({'meets' if ratio <= target else 'MISSES'} {target:g}x)"
    return (f"  {name:<34} wall {ours[0] * 1000:7.1f} / {ref[0] * 1000:7.1f} ms "
            f"= {ratio:5.2f}x{verdict}   cpu {ours[1] * 1000:7.1f} / {ref[1] * 1000:7.1f} ms "
            f"= {ours[1] / ref[1]:5.2f}x")


def baseline_row(t: Timer, name: str, cmd: str, ours: tuple[float, float]) -> list[str]:
    """The same command run with ``--baseline``'s source tree (an older checkout)."""
    if not t.baseline:
        return []
    env = t.env
    t.env = {**env, "PYTHONPATH": t.baseline,
             "PYTHONPYCACHEPREFIX": env["PYTHONPYCACHEPREFIX"] + "-base"}
    try:
        before = (t.whole(cmd), t.cpu)
    finally:
        t.env = env
    return [row(f"{name} now vs baseline", ours, before)]


def bench_ext(t: Timer, work: Path, tree: Path, fstype: str) -> list[str]:
    q = shlex.quote
    img, ref = work / "ours.img", work / "ref.img"
    fsu = f"{q(PY)} -m rumpkernel.apps.fsu makefs"
    argv = ["-t", fstype, str(img), str(tree)]
    subprocess.run(f"{fsu} {' '.join(map(q, argv))}", shell=True, check=True, env=t.env)
    size = img.stat().st_size
    mke2fs = (t.whole(f"mke2fs -q -F -t {fstype} -d {q(str(tree))} {q(str(ref))} "
                      f"{size // 1024}k"), t.cpu)
    ours = (t.whole(f"{fsu} {' '.join(map(q, argv))}"), t.cpu)
    inproc = (t.inproc(argv), t.cpu)
    return [row(f"{fstype} whole process ({size >> 20} MiB)", ours, mke2fs, 2),
            row(f"{fstype} in-process", inproc, mke2fs, 2),
            *baseline_row(t, fstype, f"{fsu} {' '.join(map(q, argv))}", ours)]


def bench_fat(t: Timer, work: Path, tree: Path) -> list[str]:
    q = shlex.quote
    img, ref = work / "ours.img", work / "ref.img"
    fsu = f"{q(PY)} -m rumpkernel.apps.fsu makefs"
    argv = ["-t", "fat", str(img), str(tree)]
    subprocess.run(f"{fsu} {' '.join(map(q, argv))}", shell=True, check=True, env=t.env)
    fsize = img.stat().st_size
    native = (f"rm -f {q(str(ref))} && mkfs.fat -C {q(str(ref))} {fsize // 1024} >/dev/null "
              f"&& mcopy -s -i {q(str(ref))} {q(str(tree))}/* ::/")
    fat_ref = (t.whole(native), t.cpu)
    durable = (t.whole(f"{native} && sync {q(str(ref))}"), t.cpu)
    ours = (t.whole(f"{fsu} {' '.join(map(q, argv))}"), t.cpu)
    inproc = (t.inproc(argv), t.cpu)
    return [row(f"fat whole process ({fsize >> 20} MiB)", ours, fat_ref),
            row("  ... vs mkfs.fat + mcopy + sync IMG", ours, durable),
            row("fat in-process", inproc, fat_ref),
            *baseline_row(t, "fat", f"{fsu} {' '.join(map(q, argv))}", ours)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--types", default="ext4,fat", help="comma-separated: ext4,ext3,ext2,fat")
    ap.add_argument("--trees", default=",".join(TREES), help="comma-separated: small,many,big")
    ap.add_argument("--quick", action="store_true", help="the small tree only, 3 repeats")
    ap.add_argument("--baseline", metavar="SRC",
                    help="also time an older checkout's src/ (e.g. from git archive) whole")
    args = ap.parse_args()
    types = args.types.split(",")
    trees = ["small"] if args.quick else args.trees.split(",")
    repeats = 3 if args.quick else args.repeats
    need = (["mke2fs"] if any(t.startswith("ext") for t in types) else []) + \
        (["mkfs.fat", "mcopy"] if "fat" in types else [])
    for tool in need:
        if shutil.which(tool) is None:
            sys.exit(f"needs {tool}")
    sys.path.insert(0, SRC)
    with tempfile.TemporaryDirectory(prefix="bench-makefs-") as d:
        work = Path(d)
        t = Timer(work, repeats, args.baseline)
        print(f"python {sys.version.split()[0]} ({PY}); "
              f"timing: {'hyperfine' if shutil.which('hyperfine') else 'own loop'}, "
              f"median of {repeats}; load {os.getloadavg()[0]:.2f}")
        bare = t.whole(f"{shlex.quote(PY)} -c pass")
        boot = t.whole(f"{shlex.quote(PY)} -c 'import rumpkernel.apps.fsu.makefs, rumpkernel; "
                       "rumpkernel.boot(components=(\"vfs\", \"ext2\")).halt()'")
        print(f"python start {bare * 1000:.1f} ms; + makefs imports + kernel boot + halt "
              f"{boot * 1000:.1f} ms")
        for name in trees:
            nfiles, mean = TREES[name]
            tree = work / f"tree-{name}"
            total = make_tree(tree, nfiles, mean)
            print(f"tree {name}: {nfiles} files, {total / 1e6:.1f} MB")
            for fstype in types:
                lines = bench_fat(t, work, tree) if fstype == "fat" else \
                    bench_ext(t, work, tree, fstype)
                for line in lines:
                    print(line, flush=True)
            shutil.rmtree(tree)


if __name__ == "__main__":
    main()
