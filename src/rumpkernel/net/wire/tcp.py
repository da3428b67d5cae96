"""The TCP header and its options (RFC 9293 3.1, RFC 7323, RFC 2018, RFC 6691) in two levels.

Interface:
    TcpFlags                      -- IntFlag: FIN SYN RST PSH ACK URG ECE CWR.
    Option records (frozen)       -- Nop(), Mss(value), WindowScale(shift), SackPermitted(),
                                     Sack(blocks), Timestamps(val, ecr), UnknownOption(kind, data).
    TcpOptions(items)             -- immutable, validated option list in wire order, with the
                                     parsed values as attributes: mss, wscale, sack_permitted,
                                     ts_val, ts_ecr (None when absent), sack (tuple of (left,
                                     right) blocks).  TcpOptions.build(...) lays options out the
                                     way Linux does; TcpOptions.data_options(...) is the fast path.
    TcpSegment(...)               -- immutable, validated repr of one segment (ports, seq, ack,
                                     flags, window, urgent, options, payload, reserved bits).
    TcpHeaderView(buf)            -- raw view over received bytes; lengths checked on creation.
    parse(buf, pseudo=None)       -- bytes -> TcpSegment; with ``pseudo`` (a pseudo-header sum
                                     from net.wire.checksum) the checksum is verified too.
    emit(seg, pseudo=None)        -- TcpSegment -> bytes; with ``pseudo`` the checksum is filled in
                                     (else it is zero).  parse(emit(x)) == x.
    parse_options(raw) / emit_options(opts)
    pseudo_sum(src, dst, length)  -- TCP pseudo-header sum for 4- or 16-byte addresses.
    TcpFormatError                -- the only exception parsing raises: KernelError(EINVAL) with a
                                     ``reason`` ("short", "offset", "option", "checksum") to count.

Rules: options are kept in wire order so a segment re-emits byte for byte, except that an End of
Option List and the padding after it are not kept (emit pads with zeros to 32 bits).  An option
of a known kind but the wrong length is kept as UnknownOption (Linux and BSD ignore such
options); an option whose length byte is below 2 or runs past the header is a TcpFormatError.
Nothing here looks at connection state.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.net.wire.checksum import internet_checksum, ones_complement_sum

HEADER_LEN = 20
MAX_OPTIONS_LEN = 40
IPPROTO_TCP = 6
SEQ_MASK = 0xFFFFFFFF

_HDR = struct.Struct("!HHIIBBHHH")
_II = struct.Struct("!II")
_H = struct.Struct("!H")

OPT_EOL, OPT_NOP, OPT_MSS, OPT_WSCALE = 0, 1, 2, 3
OPT_SACK_PERMITTED, OPT_SACK, OPT_TIMESTAMPS = 4, 5, 8
# option kind -> the lengths that make it "known"
_KNOWN_LENGTHS = {OPT_MSS: (4,), OPT_WSCALE: (3,), OPT_SACK_PERMITTED: (2,),
                  OPT_SACK: (10, 18, 26, 34), OPT_TIMESTAMPS: (10,)}


class TcpFlags(enum.IntFlag):
    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40
    CWR = 0x80


class TcpFormatError(KernelError):
    """A segment that cannot be parsed or emitted; ``reason`` is a short counter name."""

    __slots__ = ("reason",)

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(Errno.EINVAL, f"tcp: {detail}")
        self.reason = reason


# --- option records -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Nop:
    def encode(self) -> bytes:
        return b"\x01"


@dataclass(frozen=True, slots=True)
class Mss:
    value: int

    def __post_init__(self) -> None:
        _check_range("MSS", self.value, 0xFFFF)

    def encode(self) -> bytes:
        return b"\x02\x04" + _H.pack(self.value)


@dataclass(frozen=True, slots=True)
class WindowScale:
    shift: int  # as sent; a receiver uses min(shift, 14) (RFC 7323 2.3)

    def __post_init__(self) -> None:
        _check_range("window scale", self.shift, 0xFF)

    def encode(self) -> bytes:
        return bytes((OPT_WSCALE, 3, self.shift))


@dataclass(frozen=True, slots=True)
class SackPermitted:
    def encode(self) -> bytes:
        return b"\x04\x02"


@dataclass(frozen=True, slots=True)
class Sack:
    blocks: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        if not 1 <= len(self.blocks) <= 4:
            raise TcpFormatError("option", f"SACK option with {len(self.blocks)} blocks (1..4)")
        for left, right in self.blocks:
            _check_range("SACK edge", left, SEQ_MASK)
            _check_range("SACK edge", right, SEQ_MASK)

    def encode(self) -> bytes:
        return bytes((OPT_SACK, 2 + 8 * len(self.blocks))) + b"".join(
            _II.pack(left, right) for left, right in self.blocks)


@dataclass(frozen=True, slots=True)
class Timestamps:
    val: int
    ecr: int

    def __post_init__(self) -> None:
        _check_range("TSval", self.val, SEQ_MASK)
        _check_range("TSecr", self.ecr, SEQ_MASK)

    def encode(self) -> bytes:
        return b"\x08\x0a" + _II.pack(self.val, self.ecr)


@dataclass(frozen=True, slots=True)
class UnknownOption:
    kind: int
    data: bytes

    def __post_init__(self) -> None:
        if not 2 <= self.kind <= 255:
            raise TcpFormatError("option", f"option kind {self.kind} cannot carry data")
        if len(self.data) + 2 > MAX_OPTIONS_LEN:
            raise TcpFormatError("option", f"option kind {self.kind} longer than 40 bytes")
        if len(self.data) + 2 in _KNOWN_LENGTHS.get(self.kind, ()):
            raise TcpFormatError("option", f"option kind {self.kind} of its proper length "
                                           "must use its own record")

    def encode(self) -> bytes:
        return bytes((self.kind, len(self.data) + 2)) + self.data


TcpOption = Nop | Mss | WindowScale | SackPermitted | Sack | Timestamps | UnknownOption
NOP = Nop()
SACK_PERMITTED = SackPermitted()
_new = object.__new__
_set = object.__setattr__


def _timestamps(val: int, ecr: int) -> Timestamps:
    """Timestamps from values already known to be 32-bit (unpacked or masked): no checks."""
    ts = _new(Timestamps)
    _set(ts, "val", val)
    _set(ts, "ecr", ecr)
    return ts


def _check_range(what: str, value: int, high: int) -> None:
    if not (isinstance(value, int) and 0 <= value <= high):
        raise TcpFormatError("option", f"{what} {value!r} out of range 0..{high}")


class TcpOptions:
    """An immutable option list in wire order plus its parsed values (see module docstring)."""

    __slots__ = ("items", "mss", "sack", "sack_permitted", "ts_ecr", "ts_val", "wscale")
    items: tuple
    mss: int | None
    wscale: int | None
    sack_permitted: bool
    ts_val: int | None
    ts_ecr: int | None
    sack: tuple[tuple[int, int], ...]

    def __init__(self, items: tuple | list = ()) -> None:
        items = tuple(items)
        mss = wscale = ts_val = ts_ecr = None
        sack_permitted = False
        sack: tuple = ()
        size = 0
        for it in items:
            t = type(it)
            if t is Nop:
                size += 1
                continue
            if t is Timestamps:
                ts_val, ts_ecr = it.val, it.ecr
                size += 10
            elif t is Mss:
                mss = it.value
                size += 4
            elif t is WindowScale:
                wscale = it.shift
                size += 3
            elif t is SackPermitted:
                sack_permitted = True
                size += 2
            elif t is Sack:
                sack = it.blocks
                size += 2 + 8 * len(it.blocks)
            elif t is UnknownOption:
                size += 2 + len(it.data)
            else:
                raise TcpFormatError("option", f"not a TCP option record: {it!r}")
        if size > MAX_OPTIONS_LEN:
            raise TcpFormatError("option", f"options take {size} bytes (at most 40)")
        _set = object.__setattr__
        _set(self, "items", items)
        _set(self, "mss", mss)
        _set(self, "wscale", wscale)
        _set(self, "sack_permitted", sack_permitted)
        _set(self, "ts_val", ts_val)
        _set(self, "ts_ecr", ts_ecr)
        _set(self, "sack", sack)

    @classmethod
    def data_options(cls, ts_val: int | None, ts_ecr: int = 0,
                     sack: tuple[tuple[int, int], ...] = ()) -> TcpOptions:
        """Options of a data or ACK segment, Linux layout: ``nop,nop,TS`` then ``nop,nop,sack``.
        Values are validated; at most 4 SACK blocks (3 with timestamps) fit."""
        if ts_val is None and not sack:
            return EMPTY_OPTIONS
        self = _new(cls)
        items: tuple = ()
        if ts_val is not None:
            if not (0 <= ts_val <= SEQ_MASK and 0 <= ts_ecr <= SEQ_MASK):
                raise TcpFormatError("option", f"timestamps {ts_val}/{ts_ecr} out of range")
            items = (NOP, NOP, _timestamps(ts_val, ts_ecr))
        if sack:
            items += (NOP, NOP, Sack(sack))
        _set(self, "items", items)
        _set(self, "mss", None)
        _set(self, "wscale", None)
        _set(self, "sack_permitted", False)
        _set(self, "ts_val", ts_val)
        _set(self, "ts_ecr", ts_ecr if ts_val is not None else None)
        _set(self, "sack", sack)
        return self

    @classmethod
    def build(cls, mss: int | None = None, sack_permitted: bool = False,
              ts: tuple[int, int] | None = None, wscale: int | None = None) -> TcpOptions:
        """SYN options laid out as Linux sends them: ``mss,sackOK,TS,nop,wscale`` with
        timestamps, ``mss,nop,nop,sackOK,nop,wscale`` without."""
        items: list = []
        if mss is not None:
            items.append(Mss(mss))
        if ts is not None:
            if sack_permitted:
                items.append(SACK_PERMITTED)
            else:
                items += [NOP, NOP]
            items.append(Timestamps(*ts))
        elif sack_permitted:
            items += [NOP, NOP, SACK_PERMITTED]
        if wscale is not None:
            items += [NOP, WindowScale(wscale)]
        return cls(items)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("TcpOptions is immutable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TcpOptions) and self.items == other.items

    def __hash__(self) -> int:
        return hash(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    def __repr__(self) -> str:
        return f"TcpOptions({list(self.items)!r})"

    def __reduce__(self):
        return (TcpOptions, (self.items,))


EMPTY_OPTIONS = TcpOptions(())


def emit_options(opts: TcpOptions) -> bytes:
    """Encode options, padded with zero bytes (End of Option List) to a multiple of 4."""
    items = opts.items
    if not items:
        return b""
    if len(items) == 3 and items[0] is NOP and items[1] is NOP and type(items[2]) is Timestamps:
        return b"\x01\x01\x08\x0a" + _II.pack(items[2].val, items[2].ecr)
    raw = b"".join(it.encode() for it in items)
    pad = -len(raw) % 4
    return raw + b"\x00" * pad if pad else raw


def parse_options(raw: bytes | memoryview) -> TcpOptions:
    """Decode an option area (0..40 bytes); TcpFormatError("option") on a bad length byte."""
    raw = bytes(raw)
    n = len(raw)
    if n == 12 and raw[:4] == b"\x01\x01\x08\x0a":  # the common data-segment layout
        val, ecr = _II.unpack_from(raw, 4)
        opts = _new(TcpOptions)
        _set(opts, "items", (NOP, NOP, _timestamps(val, ecr)))
        _set(opts, "mss", None)
        _set(opts, "wscale", None)
        _set(opts, "sack_permitted", False)
        _set(opts, "ts_val", val)
        _set(opts, "ts_ecr", ecr)
        _set(opts, "sack", ())
        return opts
    items: list = []
    i = 0
    while i < n:
        kind = raw[i]
        if kind == OPT_EOL:
            break
        if kind == OPT_NOP:
            items.append(NOP)
            i += 1
            continue
        if i + 1 >= n:
            raise TcpFormatError("option", f"option kind {kind} at offset {i} has no length byte")
        length = raw[i + 1]
        if length < 2 or i + length > n:
            raise TcpFormatError("option", f"option kind {kind} at offset {i} has bad length "
                                           f"{length} ({n - i} bytes left)")
        items.append(_decode_option(kind, raw[i + 2:i + length]))
        i += length
    return TcpOptions(items)


def _decode_option(kind: int, body: bytes) -> TcpOption:
    length = len(body) + 2
    if length not in _KNOWN_LENGTHS.get(kind, ()):
        return UnknownOption(kind, body)
    if kind == OPT_MSS:
        return Mss(_H.unpack(body)[0])
    if kind == OPT_WSCALE:
        return WindowScale(body[0])
    if kind == OPT_SACK_PERMITTED:
        return SACK_PERMITTED
    if kind == OPT_TIMESTAMPS:
        return _timestamps(*_II.unpack(body))
    return Sack(tuple(_II.unpack_from(body, 8 * j) for j in range(len(body) // 8)))


# --- the segment ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TcpSegment:
    """One TCP segment.  ``window`` is the 16-bit field as sent (unscaled); ``reserved`` the four
    reserved header bits.  Sequence space: ``seq_len`` counts SYN and FIN."""

    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: int
    window: int
    urgent: int = 0
    options: TcpOptions = EMPTY_OPTIONS
    payload: bytes = b""
    reserved: int = 0

    def __post_init__(self) -> None:
        if not (0 <= self.src_port <= 0xFFFF and 0 <= self.dst_port <= 0xFFFF
                and 0 <= self.seq <= SEQ_MASK and 0 <= self.ack <= SEQ_MASK
                and 0 <= self.flags <= 0xFF and 0 <= self.window <= 0xFFFF
                and 0 <= self.urgent <= 0xFFFF and 0 <= self.reserved <= 0xF):
            raise TcpFormatError("field", f"header field out of range in {self!r}")
        if type(self.options) is not TcpOptions:
            raise TcpFormatError("field", "options must be a TcpOptions")

    @property
    def seq_len(self) -> int:
        return len(self.payload) + (self.flags & 1) + ((self.flags >> 1) & 1)

    def describe(self) -> str:
        """One line in tcpdump's spirit (for logs and test failures)."""
        f = self.flags
        names = "".join(c for bit, c in ((2, "S"), (1, "F"), (4, "R"), (8, "P"), (32, "U"))
                        if f & bit) + ("." if f & TcpFlags.ACK else "")
        text = f"{self.src_port} > {self.dst_port} {names or '-'} {self.seq}:" \
               f"{(self.seq + len(self.payload)) & SEQ_MASK}({len(self.payload)})"
        if f & TcpFlags.ACK:
            text += f" ack {self.ack}"
        text += f" win {self.window}"
        if f & TcpFlags.URG:
            text += f" urg {self.urgent}"
        if self.options.items:
            text += " <" + ",".join(_describe_option(o) for o in self.options.items) + ">"
        return text


def _describe_option(o: TcpOption) -> str:
    t = type(o)
    if t is Nop:
        return "nop"
    if t is Mss:
        return f"mss {o.value}"
    if t is WindowScale:
        return f"wscale {o.shift}"
    if t is SackPermitted:
        return "sackOK"
    if t is Timestamps:
        return f"TS val {o.val} ecr {o.ecr}"
    if t is Sack:
        return "sack " + " ".join(f"{a}:{b}" for a, b in o.blocks)
    return f"opt{o.kind} {o.data.hex()}"


class TcpHeaderView:
    """A raw view over a received segment: header fields read in place, lengths checked."""

    __slots__ = ("buf", "data_offset")

    def __init__(self, buf: bytes | bytearray | memoryview) -> None:
        if len(buf) < HEADER_LEN:
            raise TcpFormatError("short", f"segment of {len(buf)} bytes is shorter than a header")
        off = (buf[12] >> 4) * 4
        if off < HEADER_LEN or off > len(buf):
            raise TcpFormatError("offset", f"data offset {off} outside 20..{len(buf)}")
        self.buf = buf
        self.data_offset = off

    src_port = property(lambda self: _H.unpack_from(self.buf, 0)[0])
    dst_port = property(lambda self: _H.unpack_from(self.buf, 2)[0])
    seq = property(lambda self: _II.unpack_from(self.buf, 4)[0])
    ack = property(lambda self: _II.unpack_from(self.buf, 8)[0])
    flags = property(lambda self: self.buf[13])
    window = property(lambda self: _H.unpack_from(self.buf, 14)[0])
    checksum = property(lambda self: _H.unpack_from(self.buf, 16)[0])
    urgent = property(lambda self: _H.unpack_from(self.buf, 18)[0])

    @property
    def raw_options(self) -> bytes:
        return bytes(self.buf[HEADER_LEN:self.data_offset])

    @property
    def payload(self) -> bytes:
        return bytes(self.buf[self.data_offset:])


def parse(buf: bytes | bytearray | memoryview, pseudo: int | None = None) -> TcpSegment:
    """Parse and validate one segment; with ``pseudo`` also verify its checksum."""
    n = len(buf)
    if n < HEADER_LEN:
        raise TcpFormatError("short", f"segment of {n} bytes is shorter than a header")
    sport, dport, seq, ack, off_byte, flags, window, _csum, urgent = _HDR.unpack_from(buf, 0)
    off = (off_byte >> 4) * 4
    if off < HEADER_LEN or off > n:
        raise TcpFormatError("offset", f"data offset {off} outside 20..{n}")
    if pseudo is not None and internet_checksum(buf, pseudo) != 0:
        raise TcpFormatError("checksum", "bad checksum")
    opts = parse_options(buf[HEADER_LEN:off]) if off > HEADER_LEN else EMPTY_OPTIONS
    return TcpSegment(sport, dport, seq, ack, flags, window, urgent, opts, bytes(buf[off:]),
                      off_byte & 0x0F)


def emit(seg: TcpSegment, pseudo: int | None = None) -> bytes:
    """Encode ``seg``; with ``pseudo`` (pseudo-header sum for this length) fill the checksum."""
    return _emit(seg, emit_options(seg.options), pseudo)


def _emit(seg: TcpSegment, opts: bytes, pseudo: int | None) -> bytes:
    off_byte = ((HEADER_LEN + len(opts)) // 4) << 4 | seg.reserved
    head = _HDR.pack(seg.src_port, seg.dst_port, seg.seq, seg.ack, off_byte, seg.flags,
                     seg.window, 0, seg.urgent) + opts
    if pseudo is None:
        return head + seg.payload
    # the header is a multiple of 4 bytes, so the two sums combine word-aligned
    csum = internet_checksum(seg.payload, ones_complement_sum(head, pseudo))
    return head[:16] + _H.pack(csum) + head[18:] + seg.payload


def pseudo_sum(src: bytes, dst: bytes, length: int) -> int:
    """The TCP pseudo-header partial sum for IPv4 (4-byte) or IPv6 (16-byte) addresses (not
    folded: pass it as ``initial`` to the checksum functions)."""
    if len(src) == len(dst) and len(src) in (4, 16):
        # both addresses as one big-endian number: congruent to the sum of their words
        return int.from_bytes(src + dst, "big") % 0xFFFF + IPPROTO_TCP + (length >> 16) + \
            (length & 0xFFFF)
    raise ValueError("pseudo-header needs two 4-byte or two 16-byte addresses")


def emit_for(seg: TcpSegment, src: bytes, dst: bytes, partial: bool = False) -> bytes:
    """Encode ``seg`` with its checksum for the addresses ``src`` -> ``dst``.  ``partial``:
    only the folded pseudo-header sum goes in the checksum field, for a device (or software
    GSO, net/wire/gso.py) to complete -- Linux's CHECKSUM_PARTIAL."""
    opts = emit_options(seg.options)
    pseudo = pseudo_sum(src, dst, HEADER_LEN + len(opts) + len(seg.payload))
    if not partial:
        return _emit(seg, opts, pseudo)
    off_byte = ((HEADER_LEN + len(opts)) // 4) << 4 | seg.reserved
    return b"".join((_HDR.pack(seg.src_port, seg.dst_port, seg.seq, seg.ack, off_byte,
                               seg.flags, seg.window, ones_complement_sum(b"", pseudo),
                               seg.urgent), opts, seg.payload))


def parse_for(buf: bytes | bytearray | memoryview, src: bytes, dst: bytes) -> TcpSegment:
    """Parse a segment received from ``src`` for ``dst``, checksum verified."""
    return parse(buf, pseudo_sum(src, dst, len(buf)))
