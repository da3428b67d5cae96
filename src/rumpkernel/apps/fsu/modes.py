"""Mode and date arguments as chmod(1) and touch(1) take them.

Interface:
    parse_mode(text) -> ModeChange        octal ("755", "4755") or symbolic ("u+x,go-w",
                                          "a=rX", "g=u", "+t"); ValueError when invalid
    ModeChange.apply(mode, is_dir, umask=0o022) -> new permission bits (0..0o7777)
    parse_date(text) -> ns                "@1700000000", "now", ISO 8601 ("2024-01-02",
                                          "2024-01-02 03:04:05", "...T03:04:05.5Z",
                                          "...+02:00"); local time when no zone is given
    parse_stamp(text) -> ns               touch -t: [[CC]YY]MMDDhhmm[.ss]

Octal modes of fewer than five digits keep a directory's set-user/group-id bits (GNU).
Symbolic modes follow GNU chmod: with no "who" the change is "a" minus the umask's bits;
``X`` is execute for directories and for files already executable by someone; ``s`` sets
set-user/group-id for the u/g named; ``t`` is the sticky bit; ``=`` clears the named classes'
bits first; ``u``/``g``/``o`` as permissions copy that class's current bits.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass

_WHO = {"u": 0o4700, "g": 0o2070, "o": 0o1007, "a": 0o7777}
_CLAUSE = re.compile(r"^([ugoa]*)((?:[-+=](?:[ugo]|[rwxXst]*))+)$")
_ACTION = re.compile(r"([-+=])([ugo]|[rwxXst]*)")


@dataclass(frozen=True)
class ModeChange:
    octal: int | None
    clauses: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    digits: int = 0

    def apply(self, mode: int, is_dir: bool, umask: int = 0o022) -> int:
        if self.octal is not None:
            if is_dir and self.digits < 5:  # GNU: short octal modes keep a directory's s bits
                return self.octal | (mode & 0o6000)
            return self.octal
        cur = mode & 0o7777
        for who, actions in self.clauses:
            mask = 0
            for w in who or "a":
                mask |= _WHO[w]
            for op, perms in actions:
                bits = self._bits(perms, cur, mode, is_dir) & mask
                if not who:
                    bits &= ~umask
                if op == "+":
                    cur |= bits
                elif op == "-":
                    cur &= ~bits
                else:
                    cur = (cur & ~(mask & (0o1777 if is_dir else 0o7777))) | bits
        return cur

    @staticmethod
    def _bits(perms: str, cur: int, orig: int, is_dir: bool) -> int:
        if perms in ("u", "g", "o"):
            shift = {"u": 6, "g": 3, "o": 0}[perms]
            three = (cur >> shift) & 7
            return three * 0o111
        bits = 0
        for p in perms:
            if p == "r":
                bits |= 0o444
            elif p == "w":
                bits |= 0o222
            elif p == "x":
                bits |= 0o111
            elif p == "X":
                if is_dir or orig & 0o111:
                    bits |= 0o111
            elif p == "s":
                bits |= 0o6000
            elif p == "t":
                bits |= 0o1000
        return bits


def parse_mode(text: str) -> ModeChange:
    if re.fullmatch(r"[0-7]{1,5}", text) and int(text, 8) <= 0o7777:
        return ModeChange(int(text, 8), digits=len(text))
    clauses = []
    for part in text.split(","):
        m = _CLAUSE.match(part)
        if not m:
            raise ValueError(f"invalid mode: {text!r}")
        clauses.append((m.group(1), tuple(_ACTION.findall(m.group(2)))))
    return ModeChange(None, tuple(clauses))


def parse_date(text: str) -> int:
    t = text.strip()
    if t.startswith("@"):
        try:
            return round(float(t[1:]) * 1e9)
        except ValueError:
            raise ValueError(f"invalid date format {text!r}") from None
    if t.lower() == "now":
        return time.time_ns()
    iso = t[:-1] + "+00:00" if t.endswith(("Z", "z")) else t
    try:
        d = dt.datetime.fromisoformat(iso)
    except ValueError:
        raise ValueError(f"invalid date format {text!r} (use @EPOCH or ISO 8601)") from None
    if d.tzinfo is None:
        secs = time.mktime(d.timetuple())
        return int(secs) * 10**9 + d.microsecond * 1000
    return int(d.timestamp()) * 10**9 + d.microsecond * 1000


def parse_stamp(text: str) -> int:
    m = re.fullmatch(r"(\d{8}|\d{10}|\d{12})(?:\.(\d{2}))?", text)
    if not m:
        raise ValueError(f"invalid date format {text!r} ([[CC]YY]MMDDhhmm[.ss])")
    digits, ss = m.group(1), int(m.group(2) or 0)
    now = time.localtime()
    if len(digits) == 12:
        year, rest = int(digits[:4]), digits[4:]
    elif len(digits) == 10:
        yy = int(digits[:2])
        year, rest = (1900 + yy if yy >= 69 else 2000 + yy), digits[2:]
    else:
        year, rest = now.tm_year, digits
    mo, dd, hh, mi = (int(rest[i:i + 2]) for i in range(0, 8, 2))
    try:
        secs = time.mktime((year, mo, dd, hh, mi, ss, 0, 0, -1))
        dt.datetime(year, mo, dd, hh, mi, ss)
    except (ValueError, OverflowError):
        raise ValueError(f"invalid date format {text!r}") from None
    return int(secs) * 10**9
