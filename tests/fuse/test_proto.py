"""The FUSE protocol core and the server, sans-IO: layouts round-trip, hand-checked sizes and
vectors, and requests fed to ``FuseServer.handle`` without any mount."""

from __future__ import annotations

import errno
import os
import stat
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

import rumpkernel
from rumpkernel.client.fuse import proto as P
from rumpkernel.client.fuse.kernel import LocalKernel
from rumpkernel.client.fuse.proto import Op
from rumpkernel.client.fuse.server import Config, FuseServer
from rumpkernel.hypercall import fusedev
from rumpkernel.testing.plugin import checked

u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
times = st.integers(-(2**62), 2**62)


def test_layout_sizes_match_linux_fuse_h() -> None:
    assert P.IN_HEADER.size == 40 and P.OUT_HEADER.size == 16
    assert P.ATTR.size == 88 and P.ENTRY_SIZE == 128
    assert P.ATTR_OUT_HEAD.size + P.ATTR.size == 104
    assert P.INIT_OUT.size == 64 and P.KSTATFS.size == 80
    assert P.SETATTR_IN.size == 88 and P.WRITE_IN.size == 40 and P.READ_IN.size == 24
    assert P.OPEN_OUT.size == 16 and P.CREATE_IN.size == 16 and P.RELEASE_IN.size == 24


def test_hand_checked_vectors() -> None:
    assert P.error(7, errno.ENOENT) == struct.pack("<IiQ", 16, -2, 7)
    assert P.reply(9, b"ab") == struct.pack("<IiQ", 18, 0, 9) + b"ab"
    d = P.dirent(5, 6, 8, b"abc")                    # 24 + 3 bytes, padded to 32
    assert len(d) == 32 and d[:24] == struct.pack("<QQII", 5, 6, 3, 8) and d[24:] == b"abc" + \
        bytes(5)
    assert P.host_dev_to_kernel(0x100300) == (3, 0x100)         # minor 256 of major 3
    assert P.host_dev_to_kernel(0x10300) == (0x103, 0)
    assert P.cstring(b"name\0rest") == (b"name", 5)
    for bad in (b"noterm", b"\0", b"a/b\0"):
        with pytest.raises(P.ProtocolError):
            P.cstring(bad)


@given(st.builds(P.InHeader, st.just(0), u32, u64, u64, u32, u32, u32), st.binary(max_size=64))
def test_in_header_roundtrip(h: P.InHeader, body: bytes) -> None:
    raw = h.emit(body)
    got = P.InHeader.parse(raw)
    assert got == P.InHeader(len(raw), h.opcode, h.unique, h.nodeid, h.uid, h.gid, h.pid)


@given(st.builds(P.Attr, u64, u64, u64, times, times, times, u32, u32, u32, u32, u32, u32))
def test_attr_roundtrip(a: P.Attr) -> None:
    assert P.Attr.parse(a.emit()) == a


@given(st.lists(st.builds(P.Dirent, u64, u64, st.integers(0, 15),
                          st.binary(min_size=1, max_size=40)), max_size=8))
def test_dirents_roundtrip(ents: list[P.Dirent]) -> None:
    assert P.Dirent.parse_all(b"".join(e.emit() for e in ents)) == ents


@given(st.builds(P.InitIn, u32, u32, u32, u32))
def test_init_in_roundtrip(i: P.InitIn) -> None:
    assert P.InitIn.parse(i.emit()) == i


@given(st.builds(P.InitOut, u32, u32, u32, u32, st.integers(0, 65535), st.integers(0, 65535),
                 u32, u32, st.integers(0, 65535)))
def test_init_out_roundtrip(i: P.InitOut) -> None:
    assert P.InitOut.parse(i.emit()) == i


def test_attr_from_kernel_stat_fields() -> None:
    stt = (1, 42, stat.S_IFREG | 0o4755, 3, 10, 20, 0, 1000, -1, 2_500_000_000, 7, 0, 4096, 0,
           8, 0)
    a = P.Attr.parse(P.attr_bytes(stt))
    assert (a.ino, a.mode, a.nlink, a.uid, a.gid, a.size, a.blocks) == \
        (42, stat.S_IFREG | 0o4755, 3, 10, 20, 1000, 8)
    assert (a.atime_ns, a.mtime_ns, a.ctime_ns) == (-1, 2_500_000_000, 7)
    shown = P.Attr.parse(P.attr_bytes(stt, uid=5, gid=6, umask=0o027))
    assert (shown.uid, shown.gid, shown.mode & 0o7777) == (5, 6, 0o4750)


# ---- the server without a mount -----------------------------------------------------------------
class Wire:
    """Requests to a FuseServer and decoded replies, on this thread."""

    def __init__(self, k: rumpkernel.Kernel) -> None:
        self.kernel = LocalKernel(k, "/mnt")
        self.server = FuseServer(self.kernel, Config(), fusedev.caller_groups,
                                 fusedev.allocate_lock())
        self.worker = self.kernel.worker()
        self.unique = 0
        ok, _ = self.call(Op.INIT, 0, P.InitIn(7, 31, 65536, 0xFFFFFFFF).emit())
        assert ok == 0

    def call(self, op: int, nodeid: int, body: bytes = b"", uid: int = 0,
             gid: int = 0) -> tuple[int, bytes]:
        self.unique += 1
        raw = P.InHeader(0, op, self.unique, nodeid, uid, gid, os.getpid()).emit(body)
        out = self.server.handle(raw, self.worker)
        if out is None:
            return 0, b""
        ln, err, unique = P.OUT_HEADER.unpack_from(out)
        assert unique == self.unique and ln == len(out)
        return -err, bytes(out[16:])

    def lookup(self, parent: int, name: bytes) -> tuple[int, int]:
        err, body = self.call(Op.LOOKUP, parent, name + b"\0")
        assert err == 0, os.strerror(err)
        nodeid = P.ENTRY_HEAD.unpack_from(body)[0]
        return nodeid, P.Attr.parse(body[P.ENTRY_HEAD.size:]).ino

    def close(self) -> None:
        self.worker.close()
        self.kernel.close()


@pytest.fixture
def wire():
    k = rumpkernel.boot()
    k.sys.mkdir("/mnt", 0o755)
    k.sys.mount("tmpfs", "/mnt", 0, {"mode": "755"})
    checks = checked(k)
    next(checks)
    w = Wire(k)
    yield w
    w.close()
    for _ in checks:
        pass


def test_lookup_counts_are_vnode_references(wire: Wire) -> None:
    k = wire.kernel.k
    fd = k.sys.open("/mnt/f", os.O_CREAT | os.O_WRONLY, 0o644)
    k.sys.close(fd)
    k.sys.link("/mnt/f", "/mnt/g")
    base = k.statistics()["open_files"]
    a, ino = wire.lookup(1, b"f")
    b, ino2 = wire.lookup(1, b"g")
    assert a == b and ino == ino2                     # two names, one node
    assert k.statistics()["open_files"] == base + 1   # one handle for both lookups
    wire.call(Op.FORGET, a, P.FORGET_IN.pack(1))
    assert wire.server.nodes.get(a) is not None
    k.sys.unlink("/mnt/f")
    k.sys.unlink("/mnt/g")
    err, body = wire.call(Op.GETATTR, a, P.GETATTR_IN.pack(0, 0, 0))
    assert err == 0 and P.Attr.parse(body[16:]).nlink == 0   # removed, still reachable
    wire.call(Op.BATCH_FORGET, 0, P.BATCH_FORGET_IN.pack(1, 0) + P.FORGET_ONE.pack(a, 1))
    assert a not in wire.server.nodes
    assert k.statistics()["open_files"] == base
    assert wire.call(Op.GETATTR, a, P.GETATTR_IN.pack(0, 0, 0))[0] == errno.ESTALE


def test_negative_lookup_is_cacheable(wire: Wire) -> None:
    err, body = wire.call(Op.LOOKUP, 1, b"missing\0")
    assert err == 0 and P.ENTRY_HEAD.unpack_from(body)[0] == 0 and len(body) == P.ENTRY_SIZE


def test_malformed_and_unknown_requests(wire: Wire) -> None:
    assert wire.server.handle(b"\0" * 10, wire.worker) is None      # not even a header
    assert wire.call(Op.LOOKUP, 1, b"no-nul")[0] == errno.EINVAL
    assert wire.call(Op.SETATTR, 1, b"short")[0] == errno.EINVAL
    assert wire.call(Op.WRITE, 1, P.WRITE_IN.pack(3, 0, 100, 0, 0, 0, 0) + b"x")[0] == \
        errno.EINVAL                                                 # payload shorter than size
    assert wire.call(Op.GETLK, 1, bytes(64))[0] == errno.ENOSYS
    assert wire.call(Op.FLUSH, 1, bytes(24))[0] == errno.ENOSYS      # nothing buffered here
    assert wire.call(999, 1)[0] == errno.ENOSYS
    assert wire.call(Op.FALLOCATE, 1, P.FALLOCATE_IN.pack(0, 0, 10, 0, 0))[0] == errno.EOPNOTSUPP
    assert wire.call(Op.INTERRUPT, 0, struct.pack("<Q", 5)) == (0, b"")   # no reply


def test_init_refuses_an_old_protocol(wire: Wire) -> None:
    err, _ = wire.call(Op.INIT, 0, P.InitIn(7, 20, 0, 0).emit())
    assert err == errno.EPROTO
    err, body = wire.call(Op.INIT, 0, P.InitIn(7, 40, 131072, 0xFFFFFFFF).emit())
    out = P.InitOut.parse(body)
    assert out.minor == P.KERNEL_MINOR and out.max_write == 1 << 20 and out.max_pages == 256
    assert not out.flags & P.WRITEBACK_CACHE and out.flags & P.HANDLE_KILLPRIV


def test_create_write_read_through_requests(wire: Wire) -> None:
    err, body = wire.call(Op.CREATE, 1, P.CREATE_IN.pack(os.O_RDWR, 0o100644, 0, 0) + b"f\0")
    assert err == 0
    nodeid = P.ENTRY_HEAD.unpack_from(body)[0]
    fh, flags, _ = P.OPEN_OUT.unpack_from(body, P.ENTRY_SIZE)
    assert flags & P.FOPEN_KEEP_CACHE
    err, body = wire.call(Op.WRITE, nodeid, P.WRITE_IN.pack(fh, 3, 5, 0, 0, 0, 0) + b"hello")
    assert err == 0 and P.WRITE_OUT.unpack(body)[0] == 5
    err, body = wire.call(Op.READ, nodeid, P.READ_IN.pack(fh, 0, 100, 0) + bytes(16))
    assert err == 0 and body == b"\0\0\0hello"
    assert wire.call(Op.RELEASE, nodeid, P.RELEASE_IN.pack(fh, 0, 0, 0))[0] == 0
    assert wire.kernel.k.sys.stat("/mnt/f").st_size == 8


def test_requests_run_as_their_caller(wire: Wire) -> None:
    k = wire.kernel.k
    k.sys.mkdir("/mnt/private", 0o700)
    k.sys.chmod("/mnt/private", 0o700)
    err, _ = wire.call(Op.LOOKUP, 1, b"private\0", uid=1000, gid=1000)
    assert err == 0                                   # search permission on / only
    pid, _ = wire.lookup(1, b"private")
    err, _ = wire.call(Op.MKDIR, pid, P.MKDIR_IN.pack(0o755, 0) + b"x\0", uid=1000, gid=1000)
    assert err == errno.EACCES
    k.sys.chmod("/mnt", 0o777)
    err, body = wire.call(Op.MKDIR, 1, P.MKDIR_IN.pack(0o755, 0) + b"mine\0", uid=1000,
                          gid=50)
    a = P.Attr.parse(body[P.ENTRY_HEAD.size:])
    assert err == 0 and (a.uid, a.gid) == (1000, 50)
