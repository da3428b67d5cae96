"""``fsu put`` / ``fsu get`` / ``fsu ls`` beside the host kernel, whole processes, medians of
several runs in the same session.  Needs root (loop mounts) and e2fsprogs.

    PYTHONPATH=src python benchmarks/bench_fsu.py [--repeats 5] [--mib 256]

1. ``fsu put IMG BIG /big`` of a MIB-MiB file into a fresh ext4 image vs
   ``mount -o loop IMG MNT && cp BIG MNT/ && umount MNT`` (the umount is what writes the data
   back to the image file, into the host page cache), and vs the same plus ``sync IMG``
   (our put ends with an unmount and an fsync of the image: durable when it returns);
2. ``fsu get IMG /big OUT`` vs ``mount -o loop,ro && cp MNT/big OUT && umount``;
3. ``fsu ls -lR IMG /`` of a 1,000-file image: the latency of a typical small command
   (no kernel comparison: that is mostly Python start-up and the boot).
The image is rebuilt before each put run (hyperfine --prepare) so both sides write into an
empty file system; the source file is in the host page cache for both.
"""

from __future__ import annotations

import argparse
import json
import os
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


def timed(cmd: str, repeats: int, prepare: str | None = None) -> float:
    env = {**os.environ, "PYTHONPATH": SRC}
    if shutil.which("hyperfine"):
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            args = ["hyperfine", "-w", "1", "-r", str(repeats), "--export-json", out.name]
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--mib", type=int, default=256)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root for the loop mount reference")
    q = shlex.quote
    with tempfile.TemporaryDirectory(prefix="bench-fsu-") as d:
        work = Path(d)
        big, img, mnt, out = work / "big.bin", work / "disk.img", work / "mnt", work / "out"
        mnt.mkdir()
        with open(big, "wb") as f:
            for _ in range(args.mib):
                f.write(os.urandom(1 << 20))
        size_mib = args.mib * 2 + 64
        fresh = f"mke2fs -q -F -t ext4 {q(str(img))} {size_mib}M && sync"
        fsu = f"{q(PY)} -m rumpkernel.apps.fsu"
        print(f"python {sys.version.split()[0]}; {args.mib} MiB file; ext4 image of "
              f"{size_mib} MiB; median of {args.repeats}")
        ours = timed(f"{fsu} put {q(str(img))} {q(str(big))} /big", args.repeats, fresh)
        loop = (f"mount -o loop {q(str(img))} {q(str(mnt))} && cp {q(str(big))} "
                f"{q(str(mnt))}/ && umount {q(str(mnt))}")
        ref = timed(f"sh -c '{loop}'", args.repeats, fresh)
        durable = timed(f"sh -c '{loop} && sync {q(str(img))}'", args.repeats, fresh)
        mb = args.mib * 1.048576
        for name, r in (("loop+cp+umount", ref), ("... + sync IMG", durable)):
            verdict = "meets" if ours <= 2 * r else "MISSES"
            print(f"put  {args.mib} MiB: ours {ours:.3f} s ({mb / ours:6.0f} MB/s)  {name} "
                  f"{r:.3f} s ({mb / r:6.0f} MB/s)  throughput ratio {r / ours:.2f} "
                  f"({verdict} the 0.5 target)")
        print("     (our put ends with an fsync of the image: the data is on disk when it "
              "returns; umount of a loop mount leaves it in the host page cache)")
        subprocess.run(fresh, shell=True, check=True)
        subprocess.run(f"{fsu} put {q(str(img))} {q(str(big))} /big", shell=True, check=True,
                       env={**os.environ, "PYTHONPATH": SRC})
        ours = timed(f"{fsu} get {q(str(img))} /big {q(str(out))}", args.repeats,
                     f"rm -f {q(str(out))}")
        ref = timed(f"sh -c 'mount -o loop,ro {q(str(img))} {q(str(mnt))} && cp "
                    f"{q(str(mnt))}/big {q(str(out))} && umount {q(str(mnt))}'",
                    args.repeats, f"rm -f {q(str(out))}")
        print(f"get  {args.mib} MiB: ours {ours:.3f} s ({mb / ours:6.0f} MB/s)  loop+cp "
              f"{ref:.3f} s ({mb / ref:6.0f} MB/s)  throughput ratio {ref / ours:.2f}")
        tree = work / "tree"
        for i in range(1000):
            p = tree / f"d{i % 20:02d}" / f"f{i:04d}"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"x" * (i % 97))
        subprocess.run(f"mke2fs -q -F -t ext4 -d {q(str(tree))} {q(str(img))} 32M", shell=True,
                       check=True)
        ls = timed(f"{fsu} ls {q(str(img))} -lR /", args.repeats)
        cat = timed(f"{fsu} cat {q(str(img))} /d00/f0000", args.repeats)
        print(f"fsu ls -lR of 1,000 files: {ls * 1000:.0f} ms; fsu cat of one file: "
              f"{cat * 1000:.0f} ms")


if __name__ == "__main__":
    main()
