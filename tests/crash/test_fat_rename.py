"""Same-directory renames on FAT are atomic (issue #15: "never cross-link files").

A rename used to write the new entry, barrier, and remove the old entry with the next sync: a
crash in between left two names sharing one cluster chain, which ``fsck.fat`` reports as a
cross-link (26 of 60 SIGKILLed ``rump_server`` sessions landed in it, and ``fsu put``'s
temporary -> final rename too).  Inside one directory the driver now writes the new LFN slots
and short entry and marks the old ones (and a replaced target's) deleted in ONE write of the
sector holding the old entry, when the new name fits there (``Directory.replace``).

The workload renames files whose old entries are on disk: a short name, over an existing file
(in the same sector), ``fsu put``'s ``.NAME.N.fsutmp`` -> ``NAME``, long names needing more LFN
slots than before, and a case-only change.  At every crash point, in issue order and reordered,
and with multi-sector writes torn into sectors, ``fsck.fat -n`` must find crash leftovers only
(no two names sharing a chain: the rename window is *not* accepted here) and the file must read
back exactly under its old or its new name.
"""

from __future__ import annotations

import random

import pytest

from rumpkernel.testing import crashbed
from rumpkernel.vfs.bio import MemoryDevice
from tests.crash.test_fat_crash import Session, _fresh, _read, _report
from tests.msdos.helpers import HAVE_TOOLS, MiniVfs, mount_dev

pytestmark = pytest.mark.skipif(not HAVE_TOOLS, reason="dosfstools")

LONG = "a file with quite a long name, number one.bin"
LONGER = "renamed with an even longer name than before, needing more LFN slots.bin"
TEMP = "d/.report for march.pdf.4242.fsutmp"
RENAMES = [                                   # (source, target); each is its own step
    ("d/a.txt", "d/b.txt"),                   # short names
    ("d/c.txt", "d/b.txt"),                   # over an existing file in the same sector
    (TEMP, "d/report for march.pdf"),         # fsu put's temporary -> final
    (f"d/{LONG}", f"d/{LONGER}"),             # more LFN slots (free ones in the sector)
    ("d/Case.TXT", "d/case.txt"),             # case only
]


def workload_renames(s: Session) -> None:
    rnd = random.Random(23)
    s.v.mkdir("d")
    data: dict[str, bytes] = {}
    for src, _ in RENAMES:
        data[src] = rnd.randbytes(rnd.randrange(200, 3000))
        s.v.create(src, data[src])
    s.fs.sync()                               # every old entry is on disk
    for src, dst in RENAMES:
        s.rec.expect(dst, None)               # a replaced target: its data may go
        s.rec.mark(f"rename {src} -> {dst}")
        s.rename(src, dst, data[src])
        s.fs.sync()
        s.rec.expect(f"{src}|{dst}", None)
        s.rec.expect(dst, data[src])
    s.fs.unmount()


@pytest.fixture(scope="module")
def recorded() -> Session:
    s = Session(_fresh())
    workload_renames(s)
    return s


def _strict(img: bytearray) -> list[str]:
    return crashbed.fsck_fat(img)             # no rename-window allowance


def _bad(s: Session, states: list[crashbed.CrashState]) -> list[crashbed.Verdict]:
    return [v for v in (crashbed.judge(s.rec, st, _strict, _read) for st in states) if not v.ok]


def test_every_crash_point_in_order(recorded: Session) -> None:
    s = recorded
    states = [crashbed.CrashState(p, tuple(crashbed._pending(s.rec.log, p, False, 512)),
                                  "in order") for p in crashbed.crash_points(s.rec.log)]
    bad = _bad(s, states)
    assert not bad, f"{len(bad)} of {len(states)} in-order crash states: {_report(bad)}"


def test_reordered_and_torn_writes(recorded: Session) -> None:
    s = recorded
    rng = random.Random(29)
    states = list(crashbed.crash_states(s.rec.log, rng, per_point=4, torn=True))
    assert len(states) >= 2 * len(crashbed.crash_points(s.rec.log)) - 2
    bad = _bad(s, states)
    assert not bad, f"{len(bad)} of {len(states)} crash states: {_report(bad)}"


def test_each_rename_is_one_directory_write(recorded: Session) -> None:
    """From a rename to the next one (its sync included) no sector reaches the device twice
    (the old code wrote the directory sector twice: the new entry, a barrier, the old one
    removed)."""
    s = recorded
    marks = [i for i, label in s.rec.marks if label.startswith("rename ")]
    assert len(marks) == len(RENAMES)
    for lo, hi in zip(marks, [*marks[1:], len(s.rec.log)], strict=True):
        seen: list[int] = []
        for e in s.rec.log[lo:hi]:
            if e.kind != "flush":
                seen += range(e.offset // 512, (e.offset + len(e.data)) // 512)
        assert len(seen) == len(set(seen)), (lo, hi, sorted(seen))


def test_renames_that_do_not_fit_their_sector() -> None:
    """A new name with no room in the old entry's sector (here a full one) takes the other
    path -- new entry durable, old one removed and flushed before the call returns -- also for
    a case-only change; the directory stays sound and fsck.fat clean."""
    s = Session(_fresh())
    s.v.mkdir("d")
    for i in range(14):                                   # with . and .. a full sector
        s.v.create(f"d/F{i:02d}.TXT", bytes([i]) * 100)
    s.fs.sync()
    s.v.rename("d/F05.TXT", "d/File 05.txt")              # a long name: 2 slots, no room
    s.v.rename("d/F07.TXT", "d/f07.Txt")                  # case only, mixed: needs an LFN
    flushes = sum(e.kind == "flush" for e in s.rec.log)
    s.v.rename("d/F09.TXT", "d/G09.TXT")                  # one slot: fits, no barrier
    assert sum(e.kind == "flush" for e in s.rec.log) == flushes
    s.fs.unmount()
    img = crashbed.CrashState(len(s.rec.log), ()).image(s.rec.base, s.rec.log)
    assert crashbed.fsck_fat(img) == []
    got = _read(img, ["d/File 05.txt", "d/f07.Txt", "d/G09.TXT", "d/F05.TXT", "d/F09.TXT"])
    assert got["d/File 05.txt"] == bytes([5]) * 100
    assert got["d/f07.Txt"] == bytes([7]) * 100
    assert got["d/G09.TXT"] == bytes([9]) * 100
    assert isinstance(got["d/F05.TXT"], OSError) and isinstance(got["d/F09.TXT"], OSError)
    names = MiniVfs(mount_dev(MemoryDevice(img), readonly=True)).listdir("d")
    assert "f07.Txt" in names and "F07.TXT" not in names and len(names) == 14
