"""Parser for the packetdrill subset described in docs/packetdrill.md.

Interface:
    parse_script(text, name="<script>") -> Script
    Script.options  -- {"tolerance_usecs": int, ...} from ``--name=value`` lines
    Script.events   -- [Event] in file order; Event.kind is "packet", "syscall" or "command"
    Time(start, start_rel, end, end_rel, any) -- when an event happens (seconds)
    PacketSpec(direction, flags, seq, end, length, ack, win, urg, options, any_options)
    OptionSpec(name, values)       -- one option as written: ("mss", (1460,)),
                                      ("TS", (val, ecr)) with None for ``*``, ("sack",
                                      ((a, b), ...)), ("nop", ()), ("sackOK", ()), ...
    SyscallSpec(name, args, result, errno)  -- args are Expr values (see below)
    Expr values: Ellipsis, int, str (a symbol), bytes (a string literal), list (``[..]``),
                 dict (``{k=v}``), Flags(names) (``A|B``)
    ScriptError(line, message)     -- every syntax error names its line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


class ScriptError(Exception):
    def __init__(self, name: str, line: int, message: str) -> None:
        super().__init__(f"{name}:{line}: {message}")
        self.line = line


@dataclass(frozen=True, slots=True)
class Time:
    start: float
    start_rel: bool
    end: float | None = None
    end_rel: bool = False
    any: bool = False


@dataclass(frozen=True, slots=True)
class OptionSpec:
    name: str
    values: tuple = ()


@dataclass(frozen=True, slots=True)
class PacketSpec:
    direction: str            # "<" inbound (injected), ">" outbound (expected)
    flags: str                # as written, e.g. "S.", "P.", "F.", "R"
    seq: int
    end: int
    length: int
    ack: int | None = None
    win: int | None = None
    urg: int | None = None
    options: tuple[OptionSpec, ...] | None = None   # None: no option list written
    any_options: bool = False                        # ``<...>``


@dataclass(frozen=True, slots=True)
class Flags:
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SyscallSpec:
    name: str
    args: tuple
    result: int | None        # None: ``= ...`` (any)
    errno: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    line: int
    time: Time
    kind: str                 # "packet" | "syscall" | "command"
    packet: PacketSpec | None = None
    syscall: SyscallSpec | None = None
    command: str | None = None
    text: str = ""


@dataclass
class Script:
    name: str
    options: dict = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)


_TIME = re.compile(r"^(\*|[+]?\d*\.?\d+(?:\.\.\.[+]?\d*\.?\d+)?)\s+(.*)$")
_PKT = re.compile(r"^([<>])\s+([SFRPUEWC.]+|-)\s+(\d+):(\d+)\((\d+)\)\s*(.*)$")
_SYSCALL = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\((.*)\)\s*=\s*(.*)$")


def parse_script(text: str, name: str = "<script>") -> Script:
    script = Script(name)
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("//", 1)[0].strip()
        if not line:
            continue
        if line.startswith("--"):
            key, _, value = line[2:].partition("=")
            script.options[key.strip()] = _number(value.strip()) if value else True
            continue
        m = _TIME.match(line)
        if not m:
            raise ScriptError(name, lineno, f"expected a time at the start of {line!r}")
        time = _parse_time(m.group(1))
        rest = m.group(2).strip()
        script.events.append(_parse_event(name, lineno, time, rest, line))
    return script


def _number(text: str):
    try:
        return int(text, 0)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def _parse_time(text: str) -> Time:
    if text == "*":
        return Time(0.0, True, any=True)
    start, _, end = text.partition("...")
    t = Time(float(start.lstrip("+")), start.startswith("+"))
    if end:
        return Time(t.start, t.start_rel, float(end.lstrip("+")), end.startswith("+"))
    return t


def _parse_event(name: str, lineno: int, time: Time, rest: str, line: str) -> Event:
    if rest.startswith("`"):
        if not rest.endswith("`"):
            raise ScriptError(name, lineno, "unterminated command")
        return Event(lineno, time, "command", command=rest[1:-1].strip(), text=line)
    if rest[:1] in "<>":
        return Event(lineno, time, "packet", packet=_parse_packet(name, lineno, rest),
                     text=line)
    m = _SYSCALL.match(rest)
    if not m:
        raise ScriptError(name, lineno, f"cannot parse {rest!r}")
    return Event(lineno, time, "syscall", syscall=_parse_syscall(name, lineno, m), text=line)


# --- packets ----------------------------------------------------------------------------------

def _parse_packet(name: str, lineno: int, text: str) -> PacketSpec:
    m = _PKT.match(text)
    if not m:
        raise ScriptError(name, lineno, f"bad packet line {text!r}")
    direction, flags, seq, end, length, rest = m.groups()
    seq, end, length = int(seq), int(end), int(length)
    if (end - seq) & 0xFFFFFFFF != length:
        raise ScriptError(name, lineno, f"{seq}:{end} does not span {length} bytes")
    fields: dict = {}
    options = None
    any_options = False
    if "<" in rest:
        rest, _, opt_text = rest.partition("<")
        if not opt_text.rstrip().endswith(">"):
            raise ScriptError(name, lineno, "option list without closing '>'")
        opt_text = opt_text.rstrip()[:-1].strip()
        if opt_text == "...":
            any_options = True
        else:
            options = tuple(_parse_option(name, lineno, o) for o in opt_text.split(",")
                            if o.strip()) if opt_text else ()
    words = rest.split()
    i = 0
    while i < len(words):
        key = words[i]
        if key not in ("ack", "win", "urg") or i + 1 >= len(words):
            raise ScriptError(name, lineno, f"unexpected {key!r} in packet")
        fields[key] = int(words[i + 1], 0)
        i += 2
    return PacketSpec(direction, "" if flags == "-" else flags, seq, end, length,
                      fields.get("ack"), fields.get("win"), fields.get("urg"), options,
                      any_options)


def _value(name: str, lineno: int, text: str) -> int | None:
    if text == "*":
        return None
    try:
        return int(text, 0)
    except ValueError:
        raise ScriptError(name, lineno, f"bad option value {text!r}") from None


def _parse_option(name: str, lineno: int, text: str) -> OptionSpec:
    words = text.split()
    kind = words[0]
    if kind in ("nop", "eol", "sackOK") and len(words) == 1:
        return OptionSpec(kind)
    if kind in ("mss", "wscale") and len(words) == 2:
        return OptionSpec(kind, (_value(name, lineno, words[1]),))
    if kind == "TS" and len(words) == 5 and words[1] == "val" and words[3] == "ecr":
        return OptionSpec("TS", (_value(name, lineno, words[2]),
                                 _value(name, lineno, words[4])))
    if kind == "sack" and len(words) >= 2:
        blocks = []
        for w in words[1:]:
            a, sep, b = w.partition(":")
            if not sep:
                raise ScriptError(name, lineno, f"bad SACK block {w!r}")
            blocks.append((_value(name, lineno, a), _value(name, lineno, b)))
        return OptionSpec("sack", tuple(blocks))
    raise ScriptError(name, lineno, f"unknown TCP option {text!r}")


# --- system calls -----------------------------------------------------------------------------

def _parse_syscall(name: str, lineno: int, m: re.Match) -> SyscallSpec:
    call, args_text, result_text = m.groups()
    try:
        args = _ExprParser(args_text).parse_list(end=None)
    except ValueError as e:
        raise ScriptError(name, lineno, f"{call}: {e}") from None
    result_text = re.sub(r"\(.*\)\s*$", "", result_text).strip()
    words = result_text.split()
    if not words:
        raise ScriptError(name, lineno, "missing result")
    if words[0] == "...":
        return SyscallSpec(call, tuple(args), None)
    try:
        result = int(words[0], 0)
    except ValueError:
        raise ScriptError(name, lineno, f"bad result {words[0]!r}") from None
    errno = words[1] if len(words) > 1 else None
    if result == -1 and errno is None:
        raise ScriptError(name, lineno, "a -1 result needs an errno name")
    return SyscallSpec(call, tuple(args), result, errno)


class _ExprParser:
    _TOKEN = re.compile(r"\s*(\.\.\.|\"(?:[^\"\\]|\\.)*\"|[-+]?0x[0-9a-fA-F]+|[-+]?\d+|"
                        r"[A-Za-z_][A-Za-z0-9_]*|[\[\]{}=,|])")

    def __init__(self, text: str) -> None:
        self.tokens = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            m = self._TOKEN.match(text, pos)
            if not m:
                raise ValueError(f"unexpected text {text[pos:]!r}")
            self.tokens.append(m.group(1))
            pos = m.end()
        self.i = 0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, want: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (want is not None and tok != want):
            raise ValueError(f"expected {want or 'a value'}, found {tok!r}")
        self.i += 1
        return tok

    def parse_list(self, end: str | None) -> list:
        out = []
        if self.peek() == end:
            return out
        while True:
            out.append(self.parse_expr())
            tok = self.peek()
            if tok == ",":
                self.take()
                continue
            if tok == end:
                return out
            raise ValueError(f"expected ',' or {end or 'end'}, found {tok!r}")

    def parse_expr(self):
        value = self.parse_atom()
        if self.peek() == "|":
            names = [value]
            while self.peek() == "|":
                self.take()
                names.append(self.parse_atom())
            return Flags(tuple(names))
        return value

    def parse_atom(self):
        tok = self.take()
        if tok == "...":
            return ...
        if tok == "[":
            items = self.parse_list("]")
            self.take("]")
            return items
        if tok == "{":
            out = {}
            while self.peek() != "}":
                key = self.take()
                self.take("=")
                out[key] = self.parse_expr()
                if self.peek() == ",":
                    self.take()
            self.take("}")
            return out
        if tok.startswith('"'):
            return tok[1:-1].encode().decode("unicode_escape").encode("latin-1")
        if tok[0] in "+-0123456789":
            return int(tok, 0)
        return tok
