"""POSIX ACLs: ext4's on-disk format <-> the xattr format callers exchange (getfacl/setfacl,
``cp -a``, tar), as Linux's ``ext4_acl_from_disk`` / ``ext4_acl_to_disk`` translate them.

Interface:
    ACCESS, DEFAULT                     the two attribute names
    from_disk(raw) -> bytes             disk value (version 1, short entries for the owner,
                                        group, mask and other) -> xattr value (version 2, every
                                        entry 8 bytes, id -1 where it has none)    EUCLEAN
    to_disk(value) -> bytes             the reverse, after Linux's ``posix_acl_valid`` checks
                                        (entry order, one owner/group/other, a mask when named
                                        users or groups exist, perms in 0..7)        EINVAL
    parse(value) -> [(tag, perm, id)]   the entries of an xattr-format value         EINVAL
    equiv_mode(entries) -> int | None   permission bits an ACL amounts to; None when it needs
                                        named entries (so it must be stored)
    apply_to_mode(mode, entries) -> int the mode after setting an access ACL (owner, group or
                                        mask, other bits from the ACL), as posix_acl_update_mode
"""

from __future__ import annotations

import struct

from rumpkernel.kern.errno import Errno, KernelError, corrupt

ACCESS = b"system.posix_acl_access"
DEFAULT = b"system.posix_acl_default"
USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
XATTR_VERSION, DISK_VERSION = 2, 1
NO_ID = 0xFFFFFFFF
_LONG = struct.Struct("<HHI")
_SHORT = struct.Struct("<HH")
_U32 = struct.Struct("<I")
_NAMED = (USER, GROUP)


def from_disk(raw: bytes) -> bytes:
    if len(raw) < 4 or _U32.unpack_from(raw)[0] != DISK_VERSION:
        raise corrupt("ext: ACL with a bad header")
    out = [_U32.pack(XATTR_VERSION)]
    off = 4
    while off < len(raw):
        if off + 4 > len(raw):
            raise corrupt("ext: ACL entry cut short")
        tag, perm = _SHORT.unpack_from(raw, off)
        if tag in _NAMED:
            if off + 8 > len(raw):
                raise corrupt("ext: ACL entry cut short")
            ident = _U32.unpack_from(raw, off + 4)[0]
            off += 8
        elif tag in (USER_OBJ, GROUP_OBJ, MASK, OTHER):
            ident = NO_ID
            off += 4
        else:
            raise corrupt(f"ext: ACL entry with unknown tag {tag:#x}")
        out.append(_LONG.pack(tag, perm, ident))
    return b"".join(out)


def parse(value: bytes) -> list[tuple[int, int, int]]:
    if len(value) < 4 or (len(value) - 4) % 8 or _U32.unpack_from(value)[0] != XATTR_VERSION:
        raise KernelError(Errno.EINVAL, "ACL: not a version 2 ACL of 8-byte entries")
    ents = [_LONG.unpack_from(value, off) for off in range(4, len(value), 8)]
    _validate(ents)
    return ents


def _validate(ents: list[tuple[int, int, int]]) -> None:
    """Linux's posix_acl_valid: USER_OBJ, USER*, GROUP_OBJ, GROUP*, [MASK], OTHER."""
    order = {USER_OBJ: 0, USER: 1, GROUP_OBJ: 2, GROUP: 3, MASK: 4, OTHER: 5}
    seen: list[int] = []
    for tag, perm, _ in ents:
        if perm & ~7 or tag not in order:
            raise KernelError(Errno.EINVAL, f"ACL: bad entry (tag {tag:#x}, perm {perm:#o})")
        if (seen and order[tag] < order[seen[-1]]) or (tag not in _NAMED and tag in seen):
            raise KernelError(Errno.EINVAL, "ACL: entries out of order or repeated")
        seen.append(tag)
    named = any(t in _NAMED for t in seen)
    if not {USER_OBJ, GROUP_OBJ, OTHER} <= set(seen) or (named and MASK not in seen):
        raise KernelError(Errno.EINVAL, "ACL: owner, group, other (and a mask) needed")


def to_disk(value: bytes) -> bytes:
    out = [_U32.pack(DISK_VERSION)]
    for tag, perm, ident in parse(value):
        out.append(_LONG.pack(tag, perm, ident) if tag in _NAMED else _SHORT.pack(tag, perm))
    return b"".join(out)


def equiv_mode(ents: list[tuple[int, int, int]]) -> int | None:
    mode = 0
    for tag, perm, _ in ents:
        if tag == USER_OBJ:
            mode |= perm << 6
        elif tag == GROUP_OBJ:
            mode |= perm << 3
        elif tag == OTHER:
            mode |= perm
        else:
            return None
    return mode


def apply_to_mode(mode: int, ents: list[tuple[int, int, int]]) -> int:
    bits = {tag: perm for tag, perm, _ in ents if tag not in _NAMED}
    group = bits.get(MASK, bits[GROUP_OBJ])
    return (mode & ~0o777) | bits[USER_OBJ] << 6 | group << 3 | bits[OTHER]
