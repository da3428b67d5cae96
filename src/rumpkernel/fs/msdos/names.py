"""File names: VFAT long names, 8.3 short names, case rules.

Interface:
    check_long(name: bytes) -> str        -- decode a VFS name (UTF-8) and check FAT allows it
                                             (EINVAL for ``"*/:<>?\\|``, control characters,
                                             trailing space; trailing dots are dropped, as
                                             Linux vfat does; ENAMETOOLONG past 255 UTF-16
                                             units; EILSEQ for bad UTF-8)
    fold(name) -> str                      -- case-insensitive comparison key (trailing dots
                                              ignored, so ``a.`` finds ``a``)
    lfn_slots(name) -> list[bytes]         -- 26-byte UTF-16LE chunks, last chunk padded
    ShortNamer                             -- chooses the short entry for a new long name:
                                              ``plan(name, taken) -> (name11, ntres, need_lfn)``
    display_short(name11, ntres, mode, codepage) -> str
                                           -- how an entry without a long name is shown

Rules (what Linux vfat and Windows do):
* ``shortname=`` mode: ``lower`` (show short names in lower case, LFN unless all upper),
  ``win95`` (show upper case, LFN unless all upper), ``winnt`` (show as stored using the NT
  lower-case flags 0x08/0x10; LFN only for mixed case), ``mixed`` (default: show as stored, LFN
  unless all upper).
* Generated short names use only ASCII upper case, digits and ``$%'-_@~`!(){}^#&``; anything
  else becomes ``_`` (lossy), and a lossy or oversized name gets a ``~N`` tail chosen so it
  collides with no short name (or folded long name) already in the directory.
"""

from __future__ import annotations

from rumpkernel.fs.msdos.layout import LFN_CHARS, NT_LOWER_BASE, NT_LOWER_EXT
from rumpkernel.kern.errno import Errno, KernelError

MAX_LFN_UNITS = 255
SHORT_MODES = ("lower", "win95", "winnt", "mixed")
_BAD_LONG = frozenset('"*/:<>?\\|') | frozenset(chr(c) for c in range(0x20))
_SHORT_OK = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789$%'-_@~`!(){}^#&")
DOT = b".          "
DOTDOT = b"..         "


def check_long(name: bytes) -> str:
    """Decode and validate a name the VFS gives us for a new entry."""
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError as e:
        raise KernelError(Errno.EILSEQ, "msdos: name is not valid UTF-8") from e
    if text not in (".", ".."):
        text = text.rstrip(".")  # Linux vfat, NetBSD msdosfs and mtools store "a." as "a"
    if not text or text in (".", ".."):
        raise KernelError(Errno.EINVAL, "msdos: empty or dot name")
    if any(c in _BAD_LONG for c in text):
        raise KernelError(Errno.EINVAL, f"msdos: {text!r}: character not allowed on FAT")
    if text[-1] == " ":
        raise KernelError(Errno.EINVAL, f"msdos: {text!r}: FAT names cannot end in a space")
    if len(text.encode("utf-16-le", "surrogatepass")) > 2 * MAX_LFN_UNITS:
        raise KernelError(Errno.ENAMETOOLONG, "msdos: name longer than 255 UTF-16 units")
    return text


def fold(name: str) -> str:
    """Case-insensitive key that keeps one character per character (``ß`` stays ``ß``);
    trailing dots do not count."""
    if name[-1:] == "." and name not in (".", ".."):
        name = name.rstrip(".") or name
    up = name.upper()
    if len(up) == len(name):
        return up
    return "".join(c.upper() if len(c.upper()) == 1 else c for c in name)


def lfn_slots(name: str) -> list[bytes]:
    """UTF-16LE of ``name`` cut in 13-unit chunks; the last is NUL-terminated, 0xFFFF-padded."""
    raw = name.encode("utf-16-le", "surrogatepass")
    n = len(raw) // 2
    if n % LFN_CHARS:
        raw += b"\x00\x00"
        n += 1
        raw += b"\xff\xff" * ((-n) % LFN_CHARS)
    step = 2 * LFN_CHARS
    return [raw[i : i + step] for i in range(0, len(raw), step)]


def decode_lfn(units: bytes) -> str | None:
    """Text of concatenated LFN chunks, or None when it is not well-formed UTF-16."""
    end = len(units)
    for i in range(0, len(units), 2):
        if units[i] == 0 and units[i + 1] == 0:
            end = i
            break
    try:
        return units[:end].decode("utf-16-le")
    except UnicodeDecodeError:
        return None


def _case(s: str) -> tuple[bool, bool]:
    """(has lower, has upper) letters."""
    return s != s.upper(), s != s.lower()


def _shortify(part: str) -> tuple[str, bool]:
    out = []
    lossy = False
    for c in part.upper():
        if c in _SHORT_OK:
            out.append(c)
        elif c in " .":
            lossy = True
        else:
            out.append("_")
            lossy = True
    return "".join(out), lossy


def split_name(name: str) -> tuple[str, str]:
    """Base and extension as Windows splits them (last dot, not a leading one)."""
    dot = name.rfind(".")
    if dot <= 0:
        return name, ""
    return name[:dot], name[dot + 1 :]


def pack83(base: str, ext: str) -> bytes:
    raw = (base.ljust(8) + ext.ljust(3)).encode("ascii")
    if raw[0] == 0xE5:
        raw = b"\x05" + raw[1:]
    return raw


class ShortNamer:
    """Short-name planner for one mount's ``shortname=`` mode."""

    def __init__(self, mode: str = "mixed") -> None:
        if mode not in SHORT_MODES:
            raise KernelError(Errno.EINVAL, f"msdos: shortname={mode} unknown")
        self.mode = mode

    def _exact(self, name: str) -> tuple[bytes, int, bool] | None:
        """If ``name`` is a valid 8.3 name apart from case: (name11, ntres, need_lfn)."""
        base, ext = split_name(name)
        if not base or len(base) > 8 or len(ext) > 3 or (ext == "" and "." in name):
            return None
        sbase, lb = _shortify(base)
        sext, le = _shortify(ext)
        if lb or le or sbase != base.upper() or sext != ext.upper():
            return None
        if not base.isascii() or not ext.isascii():
            return None
        (bl, bu), (el, eu) = _case(base), _case(ext)
        ntres = (NT_LOWER_BASE if bl else 0) | (NT_LOWER_EXT if el else 0)
        if not bl and not el:
            return pack83(sbase, sext), 0, False
        if self.mode == "winnt" and not (bl and bu) and not (el and eu):
            return pack83(sbase, sext), ntres, False
        return pack83(sbase, sext), 0, True

    def plan(self, name: str, taken, hints: dict[str, int]) -> tuple[bytes, int, bool]:
        """Short name for ``name``; ``taken(name11) -> bool`` says whether it is in use;
        ``hints`` (one dict per directory) remembers the next ``~N`` to try per basis."""
        exact = self._exact(name)
        if exact is not None and not taken(exact[0]):
            return exact
        stem = name.lstrip(".")
        base, ext = split_name(stem) if stem else ("", "")
        sbase, _ = _shortify(base)
        sext, _ = _shortify(ext)
        sbase = sbase[:8] or "_"
        sext = sext[:3]
        key = sbase + "." + sext
        n = hints.get(key, 1)
        for _ in range(1_000_000):
            tail = f"~{n}"
            cand = pack83(sbase[: 8 - len(tail)] + tail, sext)
            if not taken(cand):
                hints[key] = n + 1
                return cand, 0, True
            n = n + 1 if n < 999_999 else 1
        raise KernelError(Errno.ENOSPC, f"msdos: no free short name for {name!r}")


def display_short(name11: bytes, ntres: int, mode: str, codepage: str) -> str:
    raw = name11
    if raw[:1] == b"\x05":
        raw = b"\xe5" + raw[1:]
    base = raw[:8].decode(codepage, "replace").rstrip(" ")
    ext = raw[8:11].decode(codepage, "replace").rstrip(" ")
    if mode == "lower":
        base, ext = base.lower(), ext.lower()
    elif mode != "win95":
        if ntres & NT_LOWER_BASE:
            base = base.lower()
        if ntres & NT_LOWER_EXT:
            ext = ext.lower()
    return f"{base}.{ext}" if ext else base
