"""The main job in miniature: boot a kernel in this process, mount tmpfs, build and read back a
small tree through the kernel's system calls, and print what the kernel saw.

    python -m rumpkernel.apps.demo
"""

from __future__ import annotations

import os
import time

import rumpkernel


def main() -> int:
    t0 = time.perf_counter()
    k = rumpkernel.boot()
    boot_ms = (time.perf_counter() - t0) * 1000
    s = k.sys
    print(f"booted {s.sysctl('kern.hostname')} ({s.sysctl('kern.ostype')} "
          f"{s.sysctl('kern.osrelease')}) in {boot_ms:.2f} ms, components {k.components}")
    s.mkdir("/work")
    s.mount("tmpfs", "/work")
    for d in ("docs", "src/pkg"):
        parts = d.split("/")
        for i in range(1, len(parts) + 1):
            p = "/work/" + "/".join(parts[:i])
            if not s.access(p, os.F_OK):
                s.mkdir(p, 0o755)
    files = {"/work/docs/README": b"hello from a rump kernel\n",
             "/work/src/pkg/data.bin": bytes(range(256)) * 64}
    for path, data in files.items():
        fd = s.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
        s.write(fd, data)
        s.close(fd)
    s.symlink("docs/README", "/work/README")
    for path, data in files.items():
        fd = s.open(path, os.O_RDONLY)
        assert s.read(fd, len(data) + 1) == data
        s.close(fd)
    print("tree inside the kernel:")
    stack = ["/work"]
    while stack:
        d = stack.pop()
        for name in sorted(s.listdir(d)):
            p = f"{d}/{name}"
            st = s.lstat(p)
            kind = "dir " if st.st_mode & 0o040000 == 0o040000 else "file"
            if st.st_mode & 0o170000 == 0o120000:
                kind = "link"
                print(f"  {kind} {p} -> {s.readlink(p)}")
                continue
            print(f"  {kind} {p} ({st.st_size} bytes, mode {st.st_mode & 0o7777:o})")
            if kind == "dir ":
                stack.append(p)
    stats = k.statistics()
    print(f"kernel statistics: {stats['open_files']} open files, "
          f"{stats['vnodes']['vnodes']} vnodes, {stats['memory']['in_use']} bytes of kernel "
          f"memory, mounts {stats['mounts']}")
    s.unmount("/work")
    k.halt()
    print("halted cleanly")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
