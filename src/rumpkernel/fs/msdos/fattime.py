"""FAT timestamps <-> kernel nanoseconds.

Interface:
    to_fat(ns, offset_s) -> (date, time, centiseconds)   -- for a directory entry
    from_fat(date, time, cs, offset_s) -> ns              -- kernel time of an entry's fields
    date_to_ns(date, offset_s) -> ns                      -- access dates (no time of day)

FAT stores local time without a zone.  This driver treats it as UTC unless the mount option
``time_offset=MINUTES`` (or ``tz=UTC``) says otherwise: ``offset_s`` is added to UTC to get the
on-disk local time.  Dates run from 1980-01-01 to 2107-12-31; times outside are clamped.
Write times have 2 s resolution; creation times add a 10 ms field (0..199 centiseconds).
Garbage date/time fields from disk decode to the nearest valid value, never an exception.
"""

from __future__ import annotations

import datetime as _dt
from functools import lru_cache

_EPOCH = _dt.datetime(1970, 1, 1)
_MIN = _dt.datetime(1980, 1, 1)
_MAX = _dt.datetime(2107, 12, 31, 23, 59, 59)
_NS = 1_000_000_000


def to_fat(ns: int, offset_s: int = 0) -> tuple[int, int, int]:
    """(date word, time word, centiseconds 0..199) for kernel time ``ns``."""
    secs, rem = divmod(ns, _NS)
    when = _EPOCH + _dt.timedelta(seconds=secs + offset_s)
    if when < _MIN:
        return (0 << 9) | (1 << 5) | 1, 0, 0
    if when > _MAX:
        when, rem = _MAX, 0
    date = ((when.year - 1980) << 9) | (when.month << 5) | when.day
    time = (when.hour << 11) | (when.minute << 5) | (when.second // 2)
    cs = (when.second % 2) * 100 + rem // 10_000_000
    return date, time, cs


@lru_cache(maxsize=4096)
def _days(date: int) -> int:
    """Days from 1970-01-01 to a FAT date word (clamped to a valid day)."""
    year = 1980 + (date >> 9)
    month = min(max((date >> 5) & 0x0F, 1), 12)
    day = max(date & 0x1F, 1)
    while True:
        try:
            return (_dt.datetime(year, month, day) - _EPOCH).days
        except ValueError:
            day -= 1


def from_fat(date: int, time: int, cs: int = 0, offset_s: int = 0) -> int:
    """Kernel ns for FAT date/time words (+ centiseconds); invalid fields are clamped."""
    hour = min(time >> 11, 23)
    minute = min((time >> 5) & 0x3F, 59)
    second = min((time & 0x1F) * 2, 58)
    cs = min(cs, 199)
    secs = _days(date & 0xFFFF) * 86400 + hour * 3600 + minute * 60 + second - offset_s
    return secs * _NS + cs * 10_000_000


def date_to_ns(date: int, offset_s: int = 0) -> int:
    return from_fat(date, 0, 0, offset_s)
