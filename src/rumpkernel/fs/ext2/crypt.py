"""Encrypted (``-O encrypt``, fscrypt) inodes seen without their key, as Linux shows them.

Without the key Linux still lists an encrypted directory: each name is shown as a "no-key
name", the base64url (RFC 4648, no padding) of ``struct fscrypt_nokey_name`` -- the htree
hash pair of the on-disk (ciphertext) name, then the ciphertext itself, or for a ciphertext
longer than 149 bytes its first 149 bytes and the SHA-256 of the rest.  Such names can be
looked up again.  Symlink targets are shown the same way (hash zero).  Contents of encrypted
regular files cannot be read (ENOKEY); sizes, modes, owners, times and unencrypted files are
all there.  This driver holds no keys: encrypted images mount read-only.

Interface:
    is_encrypted(node) -> bool
    nokey_name(ciphertext, major, minor) -> bytes
    parse_nokey(name) -> (disk_name | None, prefix, sha256, (major, minor)) | None
        ``disk_name`` is the full ciphertext when the no-key name carries it; otherwise the
        entry must be found by ``prefix`` and ``sha256`` (``matches``).  None: not a no-key
        name (no such entry).
    matches(disk_name, prefix, sha256) -> bool
    symlink_ciphertext(raw) -> bytes     the ciphertext of an encrypted symlink's data
    lookup(fs, dnode, name) -> int | None / listed(fs, dnode, ents) -> ents
    readlink(fs, node) -> bytes                    the driver's views of the above
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from typing import Any

from rumpkernel.fs.ext2 import dirs, fileio
from rumpkernel.fs.ext2 import layout as L
from rumpkernel.fs.ext2.csum import dx_hash
from rumpkernel.kern.errno import corrupt
from rumpkernel.vfs.vattr import DirEnt

BYTES = 149                          # ciphertext bytes a no-key name carries in full
HEAD = 8                             # the two hash words in front of them
MAX_LEN = HEAD + BYTES + 32          # with the SHA-256 of the rest
_HASHES = struct.Struct("<II")


def is_encrypted(node: object) -> bool:
    return bool(getattr(node, "flags", 0) & L.INODE_ENCRYPT_FL)


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def nokey_name(ciphertext: bytes, major: int, minor: int) -> bytes:
    head = _HASHES.pack(major, minor)
    if len(ciphertext) <= BYTES:
        return _b64(head + ciphertext)
    return _b64(head + ciphertext[:BYTES] + hashlib.sha256(ciphertext[BYTES:]).digest())


def parse_nokey(name: bytes) -> tuple[bytes | None, bytes, bytes, tuple[int, int]] | None:
    if len(name) > 4 * -(-MAX_LEN // 3) or b"=" in name:
        return None
    try:
        raw = base64.urlsafe_b64decode(name + b"=" * (-len(name) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) < HEAD + 1 or (HEAD + BYTES < len(raw) != MAX_LEN) or _b64(raw) != name:
        return None
    hashes = _HASHES.unpack_from(raw)
    if len(raw) != MAX_LEN:
        return raw[HEAD:], raw[HEAD:], b"", hashes
    return None, raw[HEAD:HEAD + BYTES], raw[HEAD + BYTES:], hashes


def matches(disk_name: bytes, prefix: bytes, sha: bytes) -> bool:
    return len(disk_name) > BYTES and disk_name[:BYTES] == prefix and \
        hashlib.sha256(disk_name[BYTES:]).digest() == sha


def symlink_ciphertext(raw: bytes) -> bytes:
    """``struct fscrypt_symlink_data``: a 16-bit length, then the ciphertext."""
    if len(raw) < 2:
        raise corrupt("ext: encrypted symlink too short")
    n = int.from_bytes(raw[:2], "little")
    if n == 0 or n + 2 > len(raw):
        raise corrupt("ext: encrypted symlink with a bad length")
    return raw[2:2 + n]


# -- the driver's views ----------------------------------------------------------------------------
def lookup(fs: Any, dnode: Any, name: bytes) -> int | None:
    parsed = parse_nokey(name)
    if parsed is None:
        return None
    disk_name, prefix, sha, _ = parsed
    if disk_name is not None:
        return dirs.lookup(fs, dnode, disk_name)
    for ename, ent in dirs.load_cache(fs, dnode).names.items():
        if matches(ename, prefix, sha):
            return ent[0]
    return None


def listed(fs: Any, dnode: Any, ents: list[DirEnt]) -> list[DirEnt]:
    """Entries under their no-key names, hashed as Linux's htree readdir hashes them (a
    directory Linux reads linearly gets hash zero)."""
    version = _readdir_hash_version(fs, dnode)
    out = []
    for e in ents:
        if e.name in (b".", b".."):
            out.append(e)
            continue
        major, minor = dx_hash(e.name, version, fs.hash_seed, fs.hash_unsigned) \
            if version is not None else (0, 0)
        out.append(DirEnt(nokey_name(e.name, major, minor), e.ino, e.dtype, e.cookie))
    return out


def _readdir_hash_version(fs: Any, dnode: Any) -> int | None:
    """Linux's is_dx_dir: dir_index and (indexed, or one block, or inline)."""
    if not fs.dir_index:
        return None
    if dnode.flags & L.INODE_INDEX_FL:
        info = dirs.dx_info(fs, dnode)
        if info is not None:
            return info.hash_version
    elif dnode.size != fs.vol.block_size and not dnode.inline:
        return None
    return fs.vol.sb.s_def_hash_version


def readlink(fs: Any, node: Any) -> bytes:
    if node.size < 2 or node.size > fileio.MAX_SYMLINK:
        raise corrupt(f"ext: symlink {node.ino}: bad length {node.size}")
    if fileio.has_map(node):
        raw = fileio.read(fs, node, 0, node.size)
    else:
        raw = bytes(node.iblock[:node.size])
    return nokey_name(symlink_ciphertext(raw), 0, 0)
