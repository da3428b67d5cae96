"""DNS messages (RFC 1035) with name compression, in two levels (DESIGN rule 8).

Interface:
    Name: a tuple of labels (bytes), the root is ();  name(text) -> Name (FormatError for an
        empty label, a label over 63 bytes or a name over 255 bytes);  name_text(n) -> str;
        name_eq(a, b) (ASCII case-insensitive)
    Question(name, qtype, qclass=IN)
    Record(name, rtype, rclass, ttl, data)   ``data``: 4 bytes (A), 16 bytes (AAAA), a Name
        (CNAME, NS, PTR), (preference, Name) (MX), (mname, rname, serial, refresh, retry,
        expire, minimum) (SOA), raw bytes for every other type (never decompressed, RFC 3597)
    Message(id, flags, questions=(), answers=(), authority=(), additional=())
        .qr .opcode .aa .tc .rd .ra .rcode;  .emit(compress=True) -> bytes
    parse(buf) -> Message      FormatError "short" / "name" / "pointer" / "record" / "count"
    query(id, name, qtype, rd=True) -> Message
    A, NS, CNAME, SOA, PTR, MX, TXT, AAAA, OPT; IN; NOERROR, FORMERR, SERVFAIL, NXDOMAIN,
    NOTIMP, REFUSED; FLAG_QR, FLAG_AA, FLAG_TC, FLAG_RD, FLAG_RA; MAX_UDP = 512

Rules: a compression pointer must point strictly before the name that uses it, so following
pointers always terminates (a loop is refused as "pointer"); at most 127 labels and 255 bytes
per name, at most MAX_POINTERS jumps; label types 01/10 (extended, reserved) are refused; a
record's data must fit its RDLENGTH exactly; section counts larger than the bytes could hold
are refused before anything is allocated.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from rumpkernel.net.wire.base import FormatError

A, NS, CNAME, SOA, PTR, MX, TXT, AAAA, SRV, OPT = 1, 2, 5, 6, 12, 15, 16, 28, 33, 41
IN = 1
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
FLAG_QR, FLAG_AA, FLAG_TC, FLAG_RD, FLAG_RA = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080
HEADER_LEN = 12
MAX_UDP = 512
MAX_NAME = 255
MAX_POINTERS = 64
Name = tuple[bytes, ...]
_HDR = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")
_NAME_TYPES = frozenset({NS, CNAME, PTR})


# ---- names -------------------------------------------------------------------------------------
def _check_name(n: Name) -> None:
    if any(not 0 < len(lb) <= 63 for lb in n) or sum(len(lb) + 1 for lb in n) + 1 > MAX_NAME:
        raise FormatError(f"bad DNS name {n!r}", "name")


def name(text: str) -> Name:
    """``"www.example.com"`` (a trailing dot allowed) -> (b"www", b"example", b"com")."""
    t = text[:-1] if text.endswith(".") else text
    if t == "":
        return ()
    try:
        n = tuple(lb.encode("ascii") for lb in t.split("."))
    except UnicodeEncodeError:
        raise FormatError(f"DNS name {text!r} is not ASCII", "name") from None
    _check_name(n)
    return n


def name_text(n: Name) -> str:
    return ".".join(lb.decode("ascii", "backslashreplace") for lb in n) if n else "."


def name_eq(a: Name, b: Name) -> bool:
    return len(a) == len(b) and all(x.lower() == y.lower() for x, y in zip(a, b))


# ---- records -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Question:
    name: Name
    qtype: int
    qclass: int = IN

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not (0 <= self.qtype <= 0xFFFF and 0 <= self.qclass <= 0xFFFF):
            raise FormatError("DNS question type/class out of range")


@dataclass(frozen=True, slots=True)
class Record:
    name: Name
    rtype: int
    rclass: int
    ttl: int
    data: object

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not (0 <= self.rtype <= 0xFFFF and 0 <= self.rclass <= 0xFFFF
                and 0 <= self.ttl < 1 << 32):
            raise FormatError("DNS record field out of range")
        _check_data(self.rtype, self.data)


def _check_data(rtype: int, d: object) -> None:
    ok = True
    if rtype == A:
        ok = isinstance(d, bytes) and len(d) == 4
    elif rtype == AAAA:
        ok = isinstance(d, bytes) and len(d) == 16
    elif rtype in _NAME_TYPES:
        ok = isinstance(d, tuple)
        if ok:
            _check_name(d)
    elif rtype == MX:
        ok = isinstance(d, tuple) and len(d) == 2 and 0 <= d[0] <= 0xFFFF
        if ok:
            _check_name(d[1])
    elif rtype == SOA:
        ok = isinstance(d, tuple) and len(d) == 7 and all(0 <= x < 1 << 32 for x in d[2:])
        if ok:
            _check_name(d[0])
            _check_name(d[1])
    else:
        ok = isinstance(d, bytes) and len(d) <= 0xFFFF
    if not ok:
        raise FormatError(f"DNS record data for type {rtype}: {d!r}", "record")


# ---- messages ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Message:
    id: int
    flags: int = 0
    questions: tuple[Question, ...] = ()
    answers: tuple[Record, ...] = ()
    authority: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()

    def __post_init__(self) -> None:
        if not (0 <= self.id <= 0xFFFF and 0 <= self.flags <= 0xFFFF):
            raise FormatError("DNS header field out of range")
        if max(len(self.questions), len(self.answers), len(self.authority),
               len(self.additional)) > 0xFFFF:
            raise FormatError("DNS section too long", "count")

    qr = property(lambda self: bool(self.flags & FLAG_QR))
    aa = property(lambda self: bool(self.flags & FLAG_AA))
    tc = property(lambda self: bool(self.flags & FLAG_TC))
    rd = property(lambda self: bool(self.flags & FLAG_RD))
    ra = property(lambda self: bool(self.flags & FLAG_RA))
    opcode = property(lambda self: (self.flags >> 11) & 0xF)
    rcode = property(lambda self: self.flags & 0xF)

    def emit(self, compress: bool = True) -> bytes:
        w = _Writer(compress)
        w.out += _HDR.pack(self.id, self.flags, len(self.questions), len(self.answers),
                           len(self.authority), len(self.additional))
        for q in self.questions:
            w.name(q.name)
            w.out += struct.pack("!HH", q.qtype, q.qclass)
        for r in (*self.answers, *self.authority, *self.additional):
            w.record(r)
        return bytes(w.out)


def query(ident: int, qname: Name, qtype: int, rd: bool = True) -> Message:
    return Message(ident, FLAG_RD if rd else 0, (Question(qname, qtype),))


class _Writer:
    __slots__ = ("compress", "out", "seen")

    def __init__(self, compress: bool) -> None:
        self.out = bytearray()
        self.seen: dict[tuple[bytes, ...], int] = {}
        self.compress = compress

    def name(self, n: Name) -> None:
        for i in range(len(n)):
            key = n[i:]                  # exact bytes: case survives a round trip
            at = self.seen.get(key) if self.compress else None
            if at is not None:
                self.out += struct.pack("!H", 0xC000 | at)
                return
            if len(self.out) < 0x4000:
                self.seen.setdefault(key, len(self.out))
            self.out += bytes((len(n[i]),)) + n[i]
        self.out.append(0)

    def record(self, r: Record) -> None:
        self.name(r.name)
        self.out += _RR.pack(r.rtype, r.rclass, r.ttl, 0)
        start = len(self.out)
        d = r.data
        if r.rtype in _NAME_TYPES:
            self.name(d)
        elif r.rtype == MX:
            self.out += struct.pack("!H", d[0])
            self.name(d[1])
        elif r.rtype == SOA:
            self.name(d[0])
            self.name(d[1])
            self.out += struct.pack("!IIIII", *d[2:])
        else:
            self.out += d
        n = len(self.out) - start
        if n > 0xFFFF:
            raise FormatError("DNS record data longer than 65535 bytes", "record")
        self.out[start - 2 : start] = struct.pack("!H", n)


# ---- parsing -----------------------------------------------------------------------------------
def _read_name(b: bytes, off: int) -> tuple[Name, int]:
    """The name at ``off`` and the offset just after it (after the first pointer, if any)."""
    labels: list[bytes] = []
    total, end, jumps, limit = 1, -1, 0, off
    n = len(b)
    while True:
        if off >= n:
            raise FormatError("DNS name runs past the message", "short")
        ln = b[off]
        if ln & 0xC0 == 0xC0:
            if off + 1 >= n:
                raise FormatError("DNS pointer runs past the message", "short")
            target = ((ln & 0x3F) << 8) | b[off + 1]
            if target >= limit or jumps >= MAX_POINTERS:
                raise FormatError(f"DNS compression pointer to {target} from {off}", "pointer")
            if end < 0:
                end = off + 2
            jumps += 1
            off = limit = target
            continue
        if ln & 0xC0:
            raise FormatError(f"DNS label type {ln >> 6}", "name")
        if ln == 0:
            return tuple(labels), (end if end >= 0 else off + 1)
        total += ln + 1
        if total > MAX_NAME or off + 1 + ln > n:
            raise FormatError("DNS name too long or truncated", "name")
        labels.append(bytes(b[off + 1 : off + 1 + ln]))
        off += 1 + ln


def _read_data(b: bytes, rtype: int, off: int, ln: int) -> object:
    end = off + ln
    if rtype in (A, AAAA):
        if ln != (4 if rtype == A else 16):
            raise FormatError(f"DNS address record of {ln} bytes", "record")
        return bytes(b[off:end])
    if rtype in _NAME_TYPES:
        d, after = _read_name(b, off)
    elif rtype == MX:
        if ln < 3:
            raise FormatError("DNS MX record too short", "record")
        n, after = _read_name(b, off + 2)
        d = (int.from_bytes(b[off : off + 2], "big"), n)
    elif rtype == SOA:
        m, after = _read_name(b, off)
        r, after = _read_name(b, after)
        if after + 20 > end:
            raise FormatError("DNS SOA record too short", "record")
        d = (m, r, *struct.unpack_from("!IIIII", b, after))
        after += 20
    else:
        return bytes(b[off:end])
    if after != end:
        raise FormatError(f"DNS type {rtype} data does not fill its length", "record")
    return d


def parse(buf: bytes | bytearray | memoryview) -> Message:
    b = bytes(buf[:65535])
    if len(b) < HEADER_LEN:
        raise FormatError(f"DNS message of {len(b)} bytes", "short")
    ident, flags, qd, an, ns, ar = _HDR.unpack_from(b)
    if qd * 5 + (an + ns + ar) * 11 > len(b) - HEADER_LEN:
        raise FormatError(f"DNS counts {qd}/{an}/{ns}/{ar} in {len(b)} bytes", "count")
    off = HEADER_LEN
    qs = []
    for _ in range(qd):
        n, off = _read_name(b, off)
        if off + 4 > len(b):
            raise FormatError("DNS question truncated", "short")
        qs.append(Question(n, *struct.unpack_from("!HH", b, off)))
        off += 4
    sections: list[list[Record]] = [[], [], []]
    for sec, count in zip(sections, (an, ns, ar)):
        for _ in range(count):
            n, off = _read_name(b, off)
            if off + 10 > len(b):
                raise FormatError("DNS record truncated", "short")
            rtype, rclass, ttl, ln = _RR.unpack_from(b, off)
            off += 10
            if off + ln > len(b):
                raise FormatError("DNS record data truncated", "short")
            sec.append(Record(n, rtype, rclass, ttl, _read_data(b, rtype, off, ln)))
            off += ln
    return Message(ident, flags, tuple(qs), *(tuple(s) for s in sections))


def tcp_frame(msg: bytes) -> bytes:
    """A message as sent over TCP: a two-byte length first (RFC 1035 4.2.2)."""
    return len(msg).to_bytes(2, "big") + msg
