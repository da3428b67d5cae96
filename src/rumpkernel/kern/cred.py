"""Credentials: who a process is.  Immutable; a change makes a new Cred.

Interface:  Cred(uid, gid, groups=(), euid=None, egid=None); ROOT; cred.is_root;
            cred.in_group(gid); cred.with_ids(...)
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class Cred:
    uid: int = 0
    gid: int = 0
    groups: tuple[int, ...] = ()
    euid: int = -1
    egid: int = -1

    def __post_init__(self) -> None:
        if self.euid < 0:
            object.__setattr__(self, "euid", self.uid)
        if self.egid < 0:
            object.__setattr__(self, "egid", self.gid)

    @property
    def is_root(self) -> bool:
        return self.euid == 0

    def in_group(self, gid: int) -> bool:
        return gid == self.egid or gid in self.groups

    def with_ids(self, **changes: object) -> Cred:
        return replace(self, **changes)  # type: ignore[arg-type]


ROOT = Cred(0, 0, (0,))
