"""The sender's SACK scoreboard (RFC 2018, RFC 6675) over the engine's absolute sequence numbers.

Interface:
    Scoreboard()
        .update(blocks, snd_una, snd_max) -> newly SACKed bytes (blocks outside
                                             (snd_una, snd_max] are ignored: D-SACK or bogus)
        .advance(snd_una)                 -- forget everything below the cumulative ACK
        .clear()                          -- forget everything (RTO with suspected reneging)
        .sacked                           -- bytes SACKed above snd_una
        .is_sacked(seq) / .skip_sacked(seq) -> first seq >= ``seq`` not inside a block
        .next_block_start(seq)            -- start of the first block above ``seq`` (or None)
        .lost_boundary(mss, dupthresh)    -- L such that every unSACKed byte below L is lost
                                             by RFC 6675 IsLost() (counted in segments)
        .unsacked_between(a, b)           -- bytes in [a, b) not SACKed
        .pipe(snd_una, snd_max, high_rxt, mss, dupthresh) -- RFC 6675 SetPipe() estimate

Rules: blocks are a short sorted list of disjoint [start, end) ranges; all work is O(blocks).
pipe() counts each unSACKed byte once, except lost bytes not yet retransmitted, which count 0.
"""

from __future__ import annotations


class Scoreboard:
    __slots__ = ("blocks", "sacked")

    def __init__(self) -> None:
        self.blocks: list[list[int]] = []
        self.sacked = 0

    def clear(self) -> None:
        self.blocks = []
        self.sacked = 0

    def update(self, blocks, snd_una: int, snd_max: int) -> int:
        before = self.sacked
        for left, right in blocks:
            if left < snd_una:
                left = snd_una
            if right > snd_max:
                right = snd_max
            if right > left:
                self._add(left, right)
        return self.sacked - before

    def _add(self, left: int, right: int) -> None:
        out = []
        placed = False
        for b in self.blocks:
            if b[1] < left:
                out.append(b)
            elif b[0] > right:
                if not placed:
                    out.append([left, right])
                    placed = True
                out.append(b)
            else:
                left = min(left, b[0])
                right = max(right, b[1])
        if not placed:
            out.append([left, right])
        self.blocks = out
        self.sacked = sum(b[1] - b[0] for b in out)

    def advance(self, snd_una: int) -> None:
        blocks = self.blocks
        if not blocks or blocks[0][0] >= snd_una:
            return
        while blocks and blocks[0][1] <= snd_una:
            blocks.pop(0)
        if blocks and blocks[0][0] < snd_una:
            blocks[0][0] = snd_una
        self.sacked = sum(b[1] - b[0] for b in blocks)

    def is_sacked(self, seq: int) -> bool:
        return any(b[0] <= seq < b[1] for b in self.blocks)

    def skip_sacked(self, seq: int) -> int:
        for b in self.blocks:
            if b[0] <= seq < b[1]:
                return b[1]
        return seq

    def next_block_start(self, seq: int) -> int | None:
        for b in self.blocks:
            if b[0] > seq:
                return b[0]
        return None

    def lost_boundary(self, mss: int, dupthresh: int) -> int:
        """Highest L with IsLost(s) true for every unSACKed s < L: at least ``dupthresh``
        segments' worth SACKed above s (RFC 6675 4, bytes > (DupThresh-1)*SMSS)."""
        need = (dupthresh - 1) * mss
        above = 0
        for b in reversed(self.blocks):
            above += b[1] - b[0]
            if above > need:
                return b[0]
        return -1

    def unsacked_between(self, a: int, b: int) -> int:
        if b <= a:
            return 0
        n = b - a
        for lo, hi in self.blocks:
            lo = max(lo, a)
            hi = min(hi, b)
            if hi > lo:
                n -= hi - lo
        return n

    def pipe(self, snd_una: int, snd_max: int, high_rxt: int, mss: int, dupthresh: int) -> int:
        total = snd_max - snd_una - self.sacked
        lost_end = self.lost_boundary(mss, dupthresh)
        start = max(high_rxt, snd_una)
        if lost_end > start:
            total -= self.unsacked_between(start, lost_end)
        return max(total, 0)
