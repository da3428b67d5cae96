"""Syscall argument marshalling, derived from the master table (``kern.syscall.master``).

Nothing here is written per system call: the argument kinds of ``SYSCALLS`` say which arguments
are integers and which are client pointers, and in which direction data moves.

Client side:  ``encode_args(num, args, piggyback)`` -> (wire args, buffers).  An integer that does
not fit the wire's i64 (e.g. 2**64) is refused with MarshalError("EINVAL") -- the client raises
OSError(EINVAL) and nothing is sent; a non-integer where the table has ``int`` is a TypeError,
as the host's own ``os`` functions give.  Each pointer becomes a
``PtrDesc`` naming ``buffers[handle]``; the kernel reaches its content only through COPYIN /
COPYINSTR / COPYOUT round trips.  With ``piggyback`` the content of input pointers (kinds ``str``,
``in``, ``inout``, ``vin``) up to ``PIGGYBACK_MAX`` bytes each rides along in the request -- the
optimisation the dissertation suggests (section 3.12.8); the honest path is the default.
A syscall number the table does not know (a system call loaded at run time) is marshalled by the
Python types of its arguments.

Server side:  ``check_args(num, args)`` -> None, or why the arguments do not match the table
(the server answers EINVAL without running the call).
"""

from __future__ import annotations

from typing import Any

from rumpkernel.client.sysproxy.messages import I64_MAX, I64_MIN, PtrDesc
from rumpkernel.client.sysproxy.wire import MAX_ARGS, MAX_VEC, PTR_BAD, PTR_DATA, PTR_WRITABLE
from rumpkernel.kern.syscall.master import POINTER_KINDS, SYSCALLS

KINDS: dict[int, tuple[str, ...]] = {s.num: tuple(k for _, k in s.args) for s in SYSCALLS}
NAMES: dict[int, str] = {s.num: s.name for s in SYSCALLS}
VEC_KINDS = frozenset({"vin", "vout"})
INPUT_KINDS = frozenset({"str", "in", "inout", "vin"})
PIGGYBACK_MAX = 65536          # per pointer
PIGGYBACK_TOTAL = 1 << 20      # per call: the rest goes the honest way
INT_ONLY = frozenset(num for num, kinds in KINDS.items() if all(k == "int" for k in kinds))
INT_ARGC = {num: len(KINDS[num]) for num in INT_ONLY}   # all-INT calls: their argument count
_NO_BUFS: list[Any] = []       # shared, never written: calls without pointers
# check_args: the wire types each argument may have, per system call
_WIRE_TYPES: dict[int, tuple[tuple[type, ...], ...]] = {}


class MarshalError(Exception):
    """An argument cannot be marshalled; ``errno_name`` says which kernel errno it maps to."""

    def __init__(self, errno_name: str, detail: str) -> None:
        super().__init__(detail)
        self.errno_name = errno_name


def _int(v: Any, where: str) -> int:
    if type(v) is not int:
        if isinstance(v, int):
            v = int(v)
        else:
            raise TypeError(f"{where}: an integer is required (got {type(v).__name__})")
    if not I64_MIN <= v <= I64_MAX:
        raise MarshalError("EINVAL", f"{where}: {v} does not fit in 64 bits")
    return v


def _ptr(v: Any, kind: str, bufs: list[Any], piggyback: list[int] | None) -> PtrDesc:
    handle = len(bufs)
    bufs.append(v)
    try:
        mv = memoryview(v)
    except TypeError:
        return PtrDesc(handle, 0, PTR_BAD)
    size = mv.nbytes
    flags = 0 if mv.readonly else PTR_WRITABLE
    data = None
    if piggyback is not None and kind in INPUT_KINDS and size <= min(PIGGYBACK_MAX,
                                                                      piggyback[0]):
        piggyback[0] -= size
        raw = mv.tobytes()
        if kind == "str":
            nul = raw.find(b"\0")
            if nul >= 0:
                raw = raw[:nul]
        data = raw
        flags |= PTR_DATA
    return PtrDesc(handle, size, flags, data)


def _vec(v: Any, kind: str, bufs: list[Any], piggyback: list[int] | None,
         where: str) -> list[Any]:
    try:
        entries = [(u, int(n)) for u, n in v]
    except (TypeError, ValueError):
        raise MarshalError("EFAULT", f"{where}: bad iovec") from None
    if len(entries) > MAX_VEC:
        raise MarshalError("EINVAL", f"{where}: {len(entries)} iovecs")
    out = []
    for u, n in entries:
        if not I64_MIN <= n <= I64_MAX:
            raise MarshalError("EINVAL", f"{where}: iovec length out of range")
        out.append((None if u is None else _ptr(u, kind, bufs, piggyback), n))
    return out


def _infer(v: Any) -> str:
    if v is None or isinstance(v, (bytes, bytearray, memoryview)):
        return "inout"
    if isinstance(v, int):
        return "int"
    if isinstance(v, list):
        return "vin"
    return "inout"


def encode_args(num: int, args: tuple[Any, ...], piggyback: bool = False
                ) -> tuple[tuple[Any, ...], list[Any]]:
    """Marshal ``args`` of syscall ``num``.  TypeError for arguments of the wrong type (as the
    host's own ``os`` functions); MarshalError for ones the kernel would fault on (EFAULT) or
    that the wire cannot carry (EINVAL: integers outside i64, too many iovecs)."""
    kinds = KINDS.get(num)
    if kinds is None:
        if len(args) > MAX_ARGS:
            raise TypeError(f"at most {MAX_ARGS} arguments")
        kinds = tuple(_infer(a) for a in args)
    elif len(args) != len(kinds):
        raise TypeError(f"{NAMES[num]}() takes {len(kinds)} arguments ({len(args)} given)")
    elif num in INT_ONLY:                  # the common case: no buffers to describe
        for a in args:
            if type(a) is not int or not I64_MIN <= a <= I64_MAX:
                break
        else:
            return args, _NO_BUFS
    bufs: list[Any] = []
    out: list[Any] = []
    budget = [PIGGYBACK_TOTAL] if piggyback else None
    for i, (a, kind) in enumerate(zip(args, kinds)):
        if kind == "int":
            out.append(_int(a, f"argument {i + 1}"))
        elif a is None:
            out.append(None)
        elif kind in VEC_KINDS:
            out.append(_vec(a, kind, bufs, budget, f"argument {i + 1}"))
        else:
            out.append(_ptr(a, kind, bufs, budget))
    return tuple(out), bufs


def check_args(num: int, args: tuple[Any, ...]) -> str | None:
    """Why ``args`` (decoded wire values) do not fit syscall ``num``'s table entry, or None."""
    types = _WIRE_TYPES.get(num)
    if types is None:
        return None
    if len(args) == len(types):
        for a, ok in zip(args, types):
            if type(a) not in ok:
                break
        else:
            return None
    kinds = KINDS[num]
    name = NAMES[num]
    if len(args) != len(kinds):
        return f"{name}: {len(args)} arguments, the table has {len(kinds)}"
    for i, (a, kind) in enumerate(zip(args, kinds)):
        t = type(a)
        if kind == "int":
            ok = t is int
        elif kind in VEC_KINDS:
            ok = a is None or t is list
        elif kind in POINTER_KINDS:
            ok = a is None or t is PtrDesc
        else:  # pragma: no cover - the table only has the kinds above
            ok = False
        if not ok:
            return f"{name}: argument {i + 1} must be {kind}, not {_wire_kind(a)}"
    return None


def _wire_kind(a: Any) -> str:
    if a is None:
        return "null"
    return {int: "int", PtrDesc: "pointer", list: "vector", tuple: "pair"}.get(type(a), "?")


def encode_result(value: Any) -> Any:
    """A handler's return value as a wire value (ValueError if it has no wire form)."""
    if value is None:
        return value
    if type(value) is int or isinstance(value, bool):
        if I64_MIN <= value <= I64_MAX:
            return int(value)
    elif isinstance(value, tuple) and len(value) == 2 and all(
            type(x) is int and I64_MIN <= x <= I64_MAX for x in value):
        return value
    raise ValueError(f"return value of type {type(value).__name__} has no wire form")


def _wire_types(kind: str) -> tuple[type, ...]:
    if kind == "int":
        return (int,)
    if kind in VEC_KINDS:
        return (type(None), list)
    return (type(None), PtrDesc)


_WIRE_TYPES.update({num: tuple(_wire_types(k) for k in kinds) for num, kinds in KINDS.items()})
