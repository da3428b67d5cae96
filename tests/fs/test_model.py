"""A seeded random sequence of operations on many files, checked against an in-memory model
after every step (and, for persistent file systems, after a remount at the end)."""

from __future__ import annotations

import os
import random
import stat

from tests.fs.helpers import mkfile, readfile


class Model:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.dirs: set[str] = {""}


def _dir_of(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def _check(fs, m: Model) -> None:
    s = fs.sys
    seen_files: dict[str, bytes] = {}
    seen_dirs: set[str] = {""}
    stack = [""]
    while stack:
        d = stack.pop()
        for name in s.listdir(fs.p(d) if d else fs.p("")):
            rel = f"{d}/{name}" if d else name
            st = s.lstat(fs.p(rel))
            if stat.S_ISDIR(st.st_mode):
                seen_dirs.add(rel)
                stack.append(rel)
            else:
                seen_files[rel] = readfile(s, fs.p(rel))
                assert st.st_size == len(seen_files[rel])
    norm = (lambda x: x.lower()) if fs.features.case_insensitive else (lambda x: x)
    assert {norm(k): v for k, v in seen_files.items()} == {norm(k): v for k, v in m.files.items()}
    assert {norm(d) for d in seen_dirs} == {norm(d) for d in m.dirs}


def _step(fs, m: Model, rng: random.Random, names: list[str]) -> None:
    s = fs.sys
    op = rng.choice(["create", "create", "write", "append", "truncate", "rename", "unlink",
                     "mkdir", "rmdir", "overwrite"])
    dirs = sorted(m.dirs)
    files = sorted(m.files)
    if op in ("create", "mkdir"):
        d = rng.choice(dirs)
        rel = (f"{d}/" if d else "") + rng.choice(names)
        if rel in m.files or rel in m.dirs:
            return
        if op == "mkdir":
            s.mkdir(fs.p(rel))
            m.dirs.add(rel)
        else:
            data = rng.randbytes(rng.choice([0, 1, 100, 1000, 5000, 70000]))
            mkfile(s, fs.p(rel), data)
            m.files[rel] = data
    elif op in ("write", "append", "overwrite") and files:
        rel = rng.choice(files)
        data = rng.randbytes(rng.randint(1, 9000))
        fd = s.open(fs.p(rel), os.O_WRONLY | (os.O_APPEND if op == "append" else 0))
        old = m.files[rel]
        if op == "append":
            s.write(fd, data)
            new = old + data
        else:
            off = rng.randint(0, len(old) + 100)
            s.pwrite(fd, data, off)
            new = old.ljust(off, b"\0")[:off] + data + old[off + len(data):]
            new = new if len(new) >= len(old) else new + old[len(new):]
        s.close(fd)
        m.files[rel] = new
    elif op == "truncate" and files:
        rel = rng.choice(files)
        n = rng.randint(0, len(m.files[rel]) + 5000)
        s.truncate(fs.p(rel), n)
        m.files[rel] = m.files[rel][:n].ljust(n, b"\0")
    elif op == "unlink" and files:
        rel = rng.choice(files)
        s.unlink(fs.p(rel))
        del m.files[rel]
    elif op == "rmdir":
        empty = [d for d in dirs if d and not any(x.startswith(d + "/") for x in
                                                   list(m.files) + list(m.dirs))]
        if empty:
            d = rng.choice(empty)
            s.rmdir(fs.p(d))
            m.dirs.discard(d)
    elif op == "rename" and files:
        src = rng.choice(files)
        d = rng.choice(dirs)
        dst = (f"{d}/" if d else "") + rng.choice(names)
        if dst in m.dirs:
            return
        s.rename(fs.p(src), fs.p(dst))
        data = m.files.pop(src)
        m.files[dst] = data


def test_random_operations_match_model(fs) -> None:
    rng = random.Random(20261123)
    m = Model()
    names = [f"n{i}" for i in range(25)] + ["Long Name With Spaces.txt", "x.y.z", "UPPER"]
    if fs.features.case_insensitive:
        names = [n.lower() for n in names]
    for _ in range(300):
        _step(fs, m, rng, names)
        _check(fs, m)
    _check(fs, m)
    if fs.persistent:
        fs.sys.sync()
        fs.remount()
        _check(fs, m)
