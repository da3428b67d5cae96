"""The hijack on unmodified programs: the standard library's tarfile and zipfile command lines
write archives into a kernel through a remote connection; a script checks os/io/shutil
routing, the descriptor offset, the working directory and the policy."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

from rumpkernel.apps.hijack import Policy
from tests.remote.harness import ServerProcess, env


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("hj")
    srv = ServerProcess(f"unix://{tmp}/sock", "-l", "tmpfs")
    yield srv
    assert srv.stop() == 0


def hijack(url: str | None, *args: str, cwd: Path, policy: str | None = None
           ) -> subprocess.CompletedProcess:
    pre = ["--local"] if url is None else ["-u", url]
    if policy is not None:
        pre += ["-p", policy]
    r = subprocess.run([sys.executable, "-m", "rumpkernel.hijack", *pre, *args], cwd=cwd,
                       env=env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def kernel_file(srv: ServerProcess, path: str) -> bytes:
    with srv.connect() as c:
        fd = c.sys.open(path, os.O_RDONLY)
        try:
            return c.sys.read(fd, 1 << 24)
        finally:
            c.sys.close(fd)


def test_tarfile_writes_an_archive_into_the_kernel(server, tmp_path: Path) -> None:
    (tmp_path / "somefile").write_bytes(os.urandom(100_000))
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "inner.txt").write_text("inner\n")
    hijack(server.url, "-m", "tarfile", "-c", "/rump/x.tar", "somefile", "dir", cwd=tmp_path)
    assert not Path("/rump").exists()                  # nothing went to the host
    with tarfile.open(fileobj=io.BytesIO(kernel_file(server, "/x.tar"))) as t:
        assert sorted(t.getnames()) == ["dir", "dir/inner.txt", "somefile"]
        assert t.extractfile("somefile").read() == (tmp_path / "somefile").read_bytes()
    listing = hijack(server.url, "-m", "tarfile", "-l", "/rump/x.tar", cwd=tmp_path).stdout
    assert "somefile" in listing and "dir/inner.txt" in listing
    out = tmp_path / "out"
    hijack(server.url, "-m", "tarfile", "-e", "/rump/x.tar", str(out), cwd=tmp_path)
    assert (out / "somefile").read_bytes() == (tmp_path / "somefile").read_bytes()
    assert (out / "dir" / "inner.txt").read_text() == "inner\n"


def test_zipfile_round_trip(server, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("A" * 5000)
    hijack(server.url, "-m", "zipfile", "-c", "/rump/z.zip", "a.txt", cwd=tmp_path)
    with zipfile.ZipFile(io.BytesIO(kernel_file(server, "/z.zip"))) as z:
        assert z.read("a.txt") == b"A" * 5000
    assert "Done testing" in hijack(server.url, "-m", "zipfile", "-t", "/rump/z.zip",
                                    cwd=tmp_path).stdout
    hijack(server.url, "-m", "zipfile", "-e", "/rump/z.zip", "/rump/unzipped", cwd=tmp_path)
    assert kernel_file(server, "/unzipped/a.txt") == b"A" * 5000


SCRIPT = """
import errno, fcntl, os, pathlib, shutil
host = os.environ["HOSTDIR"]
os.mkdir("/rump/d")
with open("/rump/d/a.txt", "w") as f:
    f.write("hello\\n" * 3)
assert open("/rump/d/a.txt").read() == "hello\\n" * 3
with open("/rump/d/a.txt", "a") as f:
    f.write("more\\n")
with open("/rump/d/a.txt", "rb") as f:
    assert f.read().endswith(b"more\\n") and f.fileno() >= 128
assert os.listdir("/rump/d") == ["a.txt"] and [e.name for e in os.scandir("/rump/d")] == ["a.txt"]
shutil.copy(host + "/hostfile", "/rump/d/h")
shutil.copytree("/rump/d", "/rump/e")
assert sorted(os.listdir("/rump/e")) == ["a.txt", "h"]
assert open("/rump/e/h").read() == "from the host"
os.chdir("/rump/e")
assert os.getcwd() == "/rump/e" and os.path.abspath("x") == "/rump/e/x"
assert open("a.txt").readline() == "hello\\n" and os.path.exists("h")
os.chdir(host)
assert os.getcwd() == host and os.path.exists("hostfile")
walked = [(r, sorted(f)) for r, _, f in os.walk("/rump/e")]
assert walked == [("/rump/e", ["a.txt", "h"])], walked
shutil.rmtree("/rump/e")
assert not os.path.exists("/rump/e")
p = pathlib.Path("/rump/d/a.txt")
assert p.read_text().startswith("hello") and p.stat().st_size == 23
fd = os.open("/rump/d/a.txt", os.O_RDONLY)
assert fd >= 128 and os.read(fd, 5) == b"hello" and os.fstat(fd).st_size == 23
assert os.lseek(fd, 0, os.SEEK_CUR) == 5 and not os.isatty(fd)
assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
d = os.dup(fd)
assert d >= 128 and d != fd
os.close(d)
with os.fdopen(fd, "rb") as f:
    assert f.read() == b"\\nhello\\nhello\\nmore\\n"
try:
    os.rename("/rump/d/a.txt", host + "/stolen")
except OSError as e:
    assert e.errno == errno.EXDEV
else:
    raise AssertionError("cross-kernel rename")
try:
    open("/rump/nope/x")
except FileNotFoundError as e:
    assert e.filename == "/rump/nope/x"
os.rename("/rump/d/a.txt", "/rump/d/b.txt")
os.symlink("b.txt", "/rump/d/link")
assert os.readlink("/rump/d/link") == "b.txt" and os.path.islink("/rump/d/link")
os.chmod("/rump/d/b.txt", 0o600)
assert os.stat("/rump/d/b.txt").st_mode & 0o777 == 0o600
assert os.statvfs("/rump").f_bsize > 0
assert not os.path.exists(host + "/d")   # the host saw none of it
print("script ok", os.getpid())
"""


@pytest.mark.parametrize("mode", ["remote", "local"])
def test_script_os_io_shutil(server, tmp_path: Path, mode: str) -> None:
    (tmp_path / "hostfile").write_text("from the host")
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(SCRIPT))
    r = subprocess.run([sys.executable, "-m", "rumpkernel.hijack",
                        *(["-u", server.url] if mode == "remote" else ["--local"]),
                        str(script)], cwd=tmp_path, env=env(HOSTDIR=str(tmp_path)),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "script ok" in r.stdout, r.stdout + r.stderr
    if mode == "remote":
        assert kernel_file(server, "/d/b.txt") == b"hello\nhello\nhello\nmore\n"


def test_policy(tmp_path: Path) -> None:
    assert Policy("").path is None
    p = Policy("path=/kernel/,blanket=/var/run:/x,fdoff=256,socket=all:nolocal")
    assert (p.path, p.blanket, p.fdoff) == ("/kernel", ["/var/run", "/x"], 256)
    for bad in ("path=relative", "nosuch=1", "fdoff=1", "justaword"):
        with pytest.raises(ValueError):
            Policy(bad)
    script = tmp_path / "p.py"
    script.write_text("import os\nos.mkdir('/tmp/' + os.environ['N'])\nos.mkdir('/x')\n"
                      "open('/x/y', 'w').write('blanket')\n"
                      "print(open('/x/y').read(), os.listdir('/x'))\n")
    out = subprocess.run([sys.executable, "-m", "rumpkernel.hijack", "--local", "-p",
                          "blanket=/x", str(script)], cwd=tmp_path,
                         env=env(N=f"hj-{os.getpid()}"), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "blanket ['y']" in out.stdout, out.stderr
    assert not Path("/x").exists()                         # /x went to the kernel, unstripped
    assert Path(f"/tmp/hj-{os.getpid()}").is_dir()          # /tmp stayed on the host
    os.rmdir(f"/tmp/hj-{os.getpid()}")
    # an empty policy hijacks nothing; a custom prefix moves the kernel's mount point
    q = tmp_path / "q.py"
    q.write_text("import os, sys\nfd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY)\n"
                 "print(fd < 128, os.path.exists(sys.argv[1]))\n")
    assert hijack(None, str(q), str(tmp_path / "f"), cwd=tmp_path,
                  policy="").stdout.split() == ["True", "True"]
    assert (tmp_path / "f").exists()
    assert hijack(None, str(q), str(tmp_path / "k" / "f"), cwd=tmp_path,
                  policy=f"path={tmp_path}/k").stdout.split() == ["False", "True"]
    assert not (tmp_path / "k").exists()


def test_fork_in_a_hijacked_program(server, tmp_path: Path) -> None:
    """The child of os.fork gets its own kernel process holding the same open file (shared
    offset, as after a host fork)."""
    prog = tmp_path / "f.py"
    prog.write_text(textwrap.dedent("""
        import os
        f = open("/rump/forked.txt", "w")
        f.write("parent\\n"); f.flush()
        pid = os.fork()
        if pid == 0:
            f.write("child\\n"); f.flush()
            os._exit(0)
        os.waitpid(pid, 0)
        f.close()
        print(open("/rump/forked.txt").read().split())
    """))
    out = hijack(server.url, str(prog), cwd=tmp_path).stdout
    assert out.strip() == "['parent', 'child']"
