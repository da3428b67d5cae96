"""A progress line on stderr for long copies.

Interface:
    Progress(label, total, *, enabled=None, delay=1.0, stream=sys.stderr, clock=time.monotonic)
        progress(n)     count n more bytes (the Copier's ``progress`` callback)
        finish()        erase the line (if one was drawn)
    wanted(flag) -> bool    --progress / --no-progress, else $FSU_PROGRESS=0/1, else "stderr
                            is a terminal"

Nothing is drawn until ``delay`` seconds have passed, so short copies stay quiet; then the line
is redrawn at most ten times a second: ``put  42% [########          ] 108.0M/256.0M
95.3M/s ETA 2s``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from rumpkernel.apps.fsu.common import human

BAR = 20


def wanted(flag: bool | None) -> bool:
    if flag is not None:
        return flag
    env = os.environ.get("FSU_PROGRESS")
    if env in ("0", "1"):
        return env == "1"
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    def __init__(self, label: str, total: int | None, *, enabled: bool | None = None,
                 delay: float = 1.0, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self.total = total
        self.enabled = wanted(enabled)
        self.delay = delay
        self.stream: Any = stream or sys.stderr
        self.clock = clock
        self.start = clock()
        self.done = 0
        self.last = 0.0
        self.drawn = False
        self.width = 0

    def __call__(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        now = self.clock()
        if now - self.start < self.delay or now - self.last < 0.1:
            return
        self.last = now
        self.draw(now)

    def line(self, now: float) -> str:
        elapsed = max(now - self.start, 1e-6)
        rate = self.done / elapsed
        parts = [self.label]
        if self.total:
            frac = min(self.done / self.total, 1.0)
            filled = int(frac * BAR)
            parts.append(f"{int(frac * 100):3d}% [{'#' * filled}{' ' * (BAR - filled)}]")
            parts.append(f"{human(self.done)}/{human(self.total)}")
            if rate > 0 and self.done < self.total:
                parts.append(f"{human(rate)}/s ETA {int((self.total - self.done) / rate)}s")
            else:
                parts.append(f"{human(rate)}/s")
        else:
            parts.append(f"{human(self.done)} {human(rate)}/s")
        return " ".join(parts)

    def draw(self, now: float) -> None:
        text = self.line(now)
        pad = max(self.width - len(text), 0)
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self.width = len(text)
        self.drawn = True

    def finish(self) -> None:
        if self.drawn:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
            self.drawn = False
