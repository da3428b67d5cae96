"""Permission checks shared by every file system (genfs_can_access and friends).

Interface:
    can_access(cred, attr, want, real=False) -> bool    want: R_OK 4 | W_OK 2 | X_OK 1
    check_access(cred, attr, want)                      EACCES
    check_owner(cred, attr)                             EPERM unless owner or root
    check_sticky(cred, dattr, attr)                     EPERM: sticky directory rules
"""

from __future__ import annotations

from rumpkernel.kern.cred import Cred
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.vfs.vattr import S_ISDIR, S_ISVTX, VAttr

R_OK, W_OK, X_OK = 4, 2, 1


def can_access(cred: Cred, attr: VAttr, want: int, real: bool = False) -> bool:
    uid = cred.uid if real else cred.euid
    gid = cred.gid if real else cred.egid
    mode = attr.mode
    if uid == 0:
        return not (want & X_OK and not S_ISDIR(mode) and not mode & 0o111)
    if attr.uid == uid:
        bits = (mode >> 6) & 7
    elif attr.gid == gid or attr.gid in cred.groups:
        bits = (mode >> 3) & 7
    else:
        bits = mode & 7
    return bits & want == want


def check_access(cred: Cred, attr: VAttr, want: int) -> None:
    if not can_access(cred, attr, want):
        raise KernelError(Errno.EACCES, "permission denied")


def check_owner(cred: Cred, attr: VAttr) -> None:
    if cred.euid != 0 and cred.euid != attr.uid:
        raise KernelError(Errno.EPERM, "not the owner")


def check_sticky(cred: Cred, dattr: VAttr, attr: VAttr) -> None:
    """In a sticky directory only the file's owner, the directory's owner or root may remove
    or rename an entry."""
    if dattr.mode & S_ISVTX and cred.euid not in (0, dattr.uid, attr.uid):
        raise KernelError(Errno.EPERM, "sticky directory")
