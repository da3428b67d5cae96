"""The sysproxy wire format and state machines, without sockets: round trips of every message,
hand-checked bytes, table-derived marshalling, and a fuzzed frame decoder."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rumpkernel.client.sysproxy import auth, wire
from rumpkernel.client.sysproxy import messages as M
from rumpkernel.client.sysproxy.marshal import KINDS, check_args, encode_args
from rumpkernel.client.sysproxy.protocol import ClientProtocol, ServerProtocol, State
from rumpkernel.client.sysproxy.wire import FrameDecoder, ProtocolError
from rumpkernel.kern.syscall.master import SYSCALLS

PTR = M.PtrDesc(3, 100, wire.PTR_WRITABLE)
SAMPLES = [
    M.Banner(1, wire.BANNER_AUTH, b"n" * 32, "rump-1"),
    M.Handshake(1, 0, "prog", b"", b"c" * 32, b"m" * 32),
    M.HandshakeReply(0, 7, b"x" * 32, ""),
    M.Syscall(15, (3, PTR, 100)),
    M.Syscall(20, (1, [(M.PtrDesc(0, 2, wire.PTR_DATA, b"ab"), 2), (None, 0)])),
    M.SyscallReply(0, (3, 4)),
    M.SyscallReply(2, None, "no such file"),
    M.SyscallReply(5, None, "panic", panic=True),
    M.Prefork(),
    M.PreforkReply(0, b"k" * 32),
    M.Copyin(1, 10, 20),
    M.Copyinstr(0, 1024),
    M.Copyout(2, 5, b"data"),
    M.Raise(10),
    M.CopyData(0, b"bytes"),
    M.CopyData(14),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(msg: M.Message) -> None:
    data = msg.encode(42)
    dec = FrameDecoder()
    for i in range(len(data)):           # byte by byte: frames reassemble from any split
        assert dec.next() is None
        dec.feed(data[i : i + 1])
    frame = dec.next()
    assert frame is not None and frame.reqid == 42 and dec.pending() == 0
    assert M.decode(frame) == msg


def test_frame_layout_by_hand() -> None:
    data = M.Copyin(1, 2, 3).encode(0x0102030405060708)
    assert data[:4] == (12 + 16).to_bytes(4, "little")          # length: rest of header + body
    assert data[4] == 0x05 and data[5] == 0 and data[6:8] == b"\0\0"
    assert data[8:16] == bytes.fromhex("0807060504030201")
    assert data[16:] == bytes.fromhex("01000000" "0200000000000000" "03000000")
    call = M.Syscall(1, (None, -1)).encode(1)
    assert call[16:] == bytes.fromhex("01000000" "02" "00" "01ffffffffffffffff")


def test_decoder_rejects_bad_lengths_before_buffering() -> None:
    dec = FrameDecoder()
    dec.feed((wire.MAX_FRAME).to_bytes(4, "little"))
    with pytest.raises(ProtocolError, match="exceeds"):
        dec.next()
    dec = FrameDecoder()
    dec.feed((3).to_bytes(4, "little") + b"\0" * 20)
    with pytest.raises(ProtocolError, match="shorter"):
        dec.next()
    dec = FrameDecoder()
    dec.feed(M.Copyin(1, 2, 3).encode(1)[:-1])
    assert dec.next() is None
    with pytest.raises(ProtocolError, match="inside a frame"):
        dec.eof()


def test_payload_checks() -> None:
    for bad in (wire.encode_frame(0x7F, 1, b""),                        # unknown type
                wire.encode_frame(wire.MsgType.COPYIN, 1, b"\1\0"),     # truncated
                M.Copyin(1, 2, 3).encode(1) + b"",
                wire.encode_frame(wire.MsgType.RAISE, 1, b"\1\0\0\0extra"),
                wire.encode_frame(wire.MsgType.COPYIN, 1, bytes(16), flags=0x80)):
        dec = FrameDecoder()
        dec.feed(bad)
        frame = dec.next()
        assert frame is not None
        if bad == M.Copyin(1, 2, 3).encode(1):
            continue
        with pytest.raises(ProtocolError):
            M.decode(frame)


def _sample(kind: str) -> object:
    return {"int": 7, "str": b"/path", "in": b"input", "out": bytearray(8),
            "inout": bytearray(8), "vin": [(b"a", 1)], "vout": [(bytearray(2), 2)]}[kind]


@pytest.mark.parametrize("sc", SYSCALLS, ids=lambda s: s.name)
def test_marshalling_follows_the_master_table(sc) -> None:
    args = tuple(_sample(k) for _, k in sc.args)
    wargs, bufs = encode_args(sc.num, args)
    assert check_args(sc.num, wargs) is None
    nptr = sum(1 if k in ("str", "in", "out", "inout") else len(_sample(k))
               for _, k in sc.args if k != "int")
    assert len(bufs) == nptr
    for a, (_, kind) in zip(wargs, sc.args):
        if kind in ("out", "inout"):
            assert a.flags & wire.PTR_WRITABLE and a.data is None      # honest: no data
        elif kind in ("str", "in"):
            assert a.data is None
    # every kind swapped for a wrong one is refused by the server
    for i, (_, kind) in enumerate(sc.args):
        wrong = list(wargs)
        wrong[i] = M.PtrDesc(0, 1, 0) if kind == "int" else 5
        assert check_args(sc.num, tuple(wrong)) is not None
    assert check_args(sc.num, (*wargs, 1)) is not None


def test_piggyback_carries_input_only() -> None:
    wargs, _ = encode_args(40, (-100, b"/a/b\0junk", 0, 0o644), piggyback=True)
    assert wargs[1].data == b"/a/b"
    wargs, _ = encode_args(15, (3, bytearray(10), 10), piggyback=True)
    assert wargs[1].data is None
    assert set(KINDS) == {s.num for s in SYSCALLS}


def test_client_side_argument_errors() -> None:
    with pytest.raises(TypeError):
        encode_args(15, (1, bytearray(1)))
    with pytest.raises(TypeError):
        encode_args(15, ("3", bytearray(1), 1))
    wargs, _ = encode_args(16, (1, 12345, 1))
    assert wargs[1].flags & wire.PTR_BAD


@pytest.mark.parametrize("value", [1 << 63, 1 << 64, -(1 << 63) - 1, 10**30])
@pytest.mark.parametrize("num, where", [(26, 1), (1000, 0), (15, 2), (20, "vec")])
def test_integers_the_wire_cannot_carry_are_einval(num: int, where, value: int) -> None:
    """i64 is the wire's integer: anything outside is EINVAL before a byte is sent, never an
    OverflowError or struct.error (a table call, a call the table does not know, a length
    argument, an iovec length)."""
    from rumpkernel.client.sysproxy.marshal import MarshalError

    if where == "vec":
        args: tuple = (1, [(b"x", value)])
    elif num == 1000:
        args = (value,)
    else:
        args = [1, bytearray(4), 4, 0][: len(KINDS[num])]
        args[where] = value
        args = tuple(args)
    with pytest.raises(MarshalError) as ei:
        encode_args(num, args)
    assert ei.value.errno_name == "EINVAL"
    for edge in ((1 << 63) - 1, -(1 << 63)):              # the extremes that do fit go through
        ok = tuple(edge if a == value else a for a in args) if where != "vec" else (1, [(b"x", 1)])
        wargs, _ = encode_args(num, ok)
        assert M.decode(_frame(M.Syscall(num, wargs).encode(1))).args == wargs


def _frame(data: bytes) -> wire.Frame:
    dec = FrameDecoder()
    dec.feed(data)
    f = dec.next()
    assert f is not None
    return f


def _handshake(server: ServerProtocol, client: ClientProtocol) -> None:
    client.receive_data(server.banner())
    assert client.next_event()[1].__class__ is M.Banner
    server.receive_data(client.send_handshake(0, "t", b"", b"c" * 32))
    _, hs = server.next_event()
    assert server.check_auth(hs) is None
    client.receive_data(server.send_handshake_reply(0, 5, hs.nonce))
    _, rep = client.next_event()
    client.check_handshake_reply(rep)
    assert client.state is State.READY and server.state is State.READY


@pytest.mark.parametrize("secret", [None, b"sesame"])
def test_state_machines_talk(secret) -> None:
    server = ServerProtocol(b"s" * 32, secret)
    client = ClientProtocol(secret)
    _handshake(server, client)
    server.receive_data(client.send_syscall(1, 15, (0, PTR, 10)))
    assert server.next_event()[0] == 1
    client.receive_data(server.send_copy_request(1, M.Copyinstr(0, 10)))
    assert client.next_event() == (1, M.Copyinstr(0, 10))
    server.receive_data(client.send_copy_data(1, 0, b"x"))
    assert server.next_event() == (1, M.CopyData(0, b"x"))
    with pytest.raises(ProtocolError, match="asked for none"):   # a second, unasked reply
        server.receive_data(client.send_copy_data(1, 0, b"x"))
        server.next_event()


def test_state_machine_violations() -> None:
    server = ServerProtocol(b"s" * 32, None)
    server.receive_data(M.Syscall(1, ()).encode(1))
    with pytest.raises(ProtocolError, match="before the handshake"):
        server.next_event()
    server = ServerProtocol(b"s" * 32, None)
    client = ClientProtocol(None)
    _handshake(server, client)
    server.receive_data(M.Syscall(1, ()).encode(0))
    with pytest.raises(ProtocolError, match="zero or already"):
        server.next_event()
    client.receive_data(M.SyscallReply(0, 1).encode(9))
    with pytest.raises(ProtocolError, match="not open"):
        client.next_event()
    client.receive_data(b"")
    with pytest.raises(EOFError):
        client.next_event()


def test_auth_is_mutual_and_bound_to_the_nonces() -> None:
    mac = auth.client_mac(b"k", b"s" * 32, b"c" * 32)
    assert auth.verify_client(b"k", b"s" * 32, b"c" * 32, mac)
    assert not auth.verify_client(b"other", b"s" * 32, b"c" * 32, mac)
    assert not auth.verify_client(b"k", b"t" * 32, b"c" * 32, mac)       # replayed
    assert not auth.verify_server(b"k", b"s" * 32, b"c" * 32, mac)       # not symmetric
    server = ServerProtocol(b"s" * 32, b"right")
    client = ClientProtocol(b"wrong")
    client.receive_data(server.banner())
    client.next_event()
    server.receive_data(client.send_handshake(0, "t", b"", b"c" * 32))
    _, hs = server.next_event()
    assert server.check_auth(hs) == "authentication failed"


# ---- fuzzing ---------------------------------------------------------------------------------
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=64), max_size=8), st.booleans())
def test_fuzz_server_side_never_crashes(chunks: list[bytes], handshaken: bool) -> None:
    """Arbitrary bytes give events or ProtocolError/EOFError -- nothing else, bounded work."""
    server = ServerProtocol(b"s" * 32, None)
    if handshaken:
        server.state = State.READY
    try:
        for c in [*chunks, b""]:
            server.receive_data(c)
            while server.next_event() is not None:
                pass
    except (ProtocolError, EOFError):
        pass


def _frames() -> st.SearchStrategy[bytes]:
    types = st.sampled_from([int(t) for t in wire.MsgType] + [0, 0x7F])
    return st.builds(lambda t, rid, body, fl: wire.encode_frame(t, rid, body, fl),
                     types, st.integers(0, 5), st.binary(max_size=48), st.sampled_from([0, 1]))


@settings(max_examples=400, deadline=None)
@given(st.lists(_frames(), max_size=6), st.integers(0, 3))
def test_fuzz_well_framed_garbage(frames: list[bytes], cut: int) -> None:
    data = b"".join(frames)
    for proto in (ServerProtocol(b"s" * 32, None), ClientProtocol(None)):
        try:
            proto.receive_data(data[: len(data) - cut] if cut else data)
            while proto.next_event() is not None:
                pass
        except (ProtocolError, EOFError):
            pass


values = st.recursive(
    st.one_of(st.none(), st.integers(-(1 << 63), (1 << 63) - 1)),
    lambda _: st.lists(st.tuples(
        st.one_of(st.none(), st.builds(M.PtrDesc, st.integers(0, 2**32 - 1),
                                       st.integers(0, 2**20), st.sampled_from([0, 1, 4]))),
        st.integers(-5, 2**40)), max_size=4), max_leaves=4)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1), st.lists(values, max_size=wire.MAX_ARGS))
def test_syscall_values_round_trip(num: int, args: list) -> None:
    msg = M.Syscall(num, tuple(args))
    dec = FrameDecoder()
    dec.feed(msg.encode(3))
    assert M.decode(dec.next()) == msg


def test_piggyback_budget_and_vector_limits() -> None:
    from rumpkernel.client.sysproxy.marshal import PIGGYBACK_TOTAL, MarshalError

    vec = [(bytes(60_000), 60_000)] * 40                    # 2.4 MB of input in one writev
    wargs, _ = encode_args(20, (1, vec), piggyback=True)
    carried = sum(len(p.data) for p, _ in wargs[1] if p.data is not None)
    assert 0 < carried <= PIGGYBACK_TOTAL
    assert len(M.Syscall(20, wargs).encode(1)) < wire.MAX_FRAME
    with pytest.raises(MarshalError) as ei:
        encode_args(19, (1, [(bytearray(1), 1)] * (wire.MAX_VEC + 1)))
    assert ei.value.errno_name == "EINVAL"
    with pytest.raises(ValueError, match="frame limit"):
        M.CopyData(0, bytes(wire.MAX_PAYLOAD)).encode(1)


# ---- the fast paths agree with the general decoder ------------------------------------------
int64 = st.integers(-(1 << 63), (1 << 63) - 1)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1),
       st.lists(st.one_of(int64, st.none()), max_size=wire.MAX_ARGS),
       st.integers(0, 40), st.binary(max_size=3))
def test_fast_syscall_parse_agrees_with_the_decoder(reqid: int, num: int, args: list,
                                                    cut: int, junk: bytes) -> None:
    """parse_int_syscall accepts exactly the all-INT SYSCALL frames, with the decoder's
    result, and declines (None) anything else -- cut, padded, other shapes."""
    data = M.Syscall(num, tuple(args)).encode(reqid)
    got = M.parse_int_syscall(data)
    if all(type(a) is int for a in args):
        assert got == (reqid, num, tuple(args))
        assert M.decode(_frame(data)) == M.Syscall(num, tuple(args))
    else:
        assert got is None
    assert M.parse_int_syscall(data[: len(data) - 1 - cut % len(data)]) is None
    if junk:
        assert M.parse_int_syscall(data + junk) is None
    bad = bytearray(data)
    bad[6] = 1                                              # reserved bits
    assert M.parse_int_syscall(bytes(bad)) is None


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1),
       st.one_of(int64, st.none(), st.tuples(int64, int64)), st.text(max_size=5),
       st.booleans())
def test_fast_reply_parse_agrees_with_the_decoder(reqid: int, errno: int, value, detail: str,
                                                  panic: bool) -> None:
    rep = M.SyscallReply(errno, value, detail, panic)
    data = rep.encode(reqid)
    assert M.decode(_frame(data)) == rep
    got = M.parse_int_reply(data)
    if type(value) is int and not detail and not panic:
        assert got == (reqid, errno, value)
    else:
        assert got is None


def test_fast_paths_keep_the_state_machines() -> None:
    """fast_syscall/fast_reply open and close requests as the general path does, and decline
    whatever the general path must judge (a reused id, a reply to nothing, buffered bytes)."""
    server, client = ServerProtocol(b"n" * 32, None), ClientProtocol()
    _handshake(server, client)
    call = client.send_syscall(7, 26, (3, 0, 0))
    assert server.fast_syscall(call) == (7, 26, (3, 0, 0)) and 7 in server.open
    assert server.fast_syscall(call) is None                     # id 7 is open: general path
    server.receive_data(call)
    with pytest.raises(ProtocolError, match="already in use"):
        server.next_event()
    server2 = ServerProtocol(b"n" * 32, None)
    assert server2.fast_syscall(call) is None                    # before the handshake
    reply = server.send_syscall_reply(7, 0, 12)
    assert 7 not in server.open
    assert client.fast_reply(reply, 8) is None                   # not the request asked about
    assert client.fast_reply(reply, 7) == M.SyscallReply(0, 12) and 7 not in client.open
    assert client.fast_reply(reply, 7) is None                   # answered already
    client.send_syscall(9, 1, ())
    client.receive_data(b"\0")                                   # a partial frame is buffered
    assert client.fast_reply(server.send_syscall_reply(9, 0, 1), 9) is None
