"""What a host file is, from its first bytes: a file system the kernel mounts, a partitioned
disk, or a container or compressed file that must be converted first (what fsu and the fsspec
adapter say instead of "no file system recognised").

Interface:
    check_image_file(path) -> None     OSError unless ``path`` is a regular file or a block
                                       device (a FIFO, socket, character device or directory
                                       would block or mean nothing); never opens it
    identify(path, offset=0) -> Identity | None
        Identity(kind, what, hint): ``kind`` one of MOUNTABLE ("ext", "fat", "mbr", "gpt")
        or a foreign format ("qcow", "qcow2", "vmdk", "vhd", "vhdx", "vdi", "iso9660",
        "squashfs", "gzip", "xz", "bzip2", "zstd", "lz4", "zip"); ``what`` says it in words,
        ``hint`` how to get a raw image (empty for mountable kinds).  None when nothing is
        recognised (or the file cannot be read).
    looks_like_image(path) -> bool     identify() recognised something

Only the host file's head (and a VHD footer) is read, through ``hypercall.hostio``.
"""

from __future__ import annotations

import errno
import stat as S
from dataclasses import dataclass

from rumpkernel.hypercall.hostio import HOST

MOUNTABLE = frozenset({"ext", "fat", "mbr", "gpt"})
HEAD = 64 * 1024


@dataclass(frozen=True)
class Identity:
    kind: str
    what: str
    hint: str = ""

    @property
    def mountable(self) -> bool:
        return self.kind in MOUNTABLE


def _convert(fmt: str) -> str:
    return f"convert it to a raw image first: qemu-img convert -f {fmt} -O raw IMAGE IMAGE.raw"


def _unpack(tool: str) -> str:
    return f"decompress it first: {tool} IMAGE"


# (kind, offset, magic, what, hint)
_MAGIC: tuple[tuple[str, int, bytes, str, str], ...] = (
    ("qcow2", 0, b"QFI\xfb\x00\x00\x00\x02", "a QEMU qcow2 disk image", _convert("qcow2")),
    ("qcow2", 0, b"QFI\xfb\x00\x00\x00\x03", "a QEMU qcow2 disk image", _convert("qcow2")),
    ("qcow", 0, b"QFI\xfb", "a QEMU qcow disk image", _convert("qcow")),
    ("vmdk", 0, b"KDMV", "a VMware VMDK disk image", _convert("vmdk")),
    ("vmdk", 0, b"# Disk DescriptorFile", "a VMware VMDK descriptor", _convert("vmdk")),
    ("vhdx", 0, b"vhdxfile", "a Hyper-V VHDX disk image", _convert("vhdx")),
    ("vhd", 0, b"conectix", "a Virtual PC / Hyper-V VHD disk image", _convert("vpc")),
    ("vdi", 0x40, b"\x7f\x10\xda\xbe", "a VirtualBox VDI disk image", _convert("vdi")),
    ("gzip", 0, b"\x1f\x8b", "gzip-compressed", _unpack("gunzip -k")),
    ("xz", 0, b"\xfd7zXZ\x00", "xz-compressed", _unpack("unxz -k")),
    ("bzip2", 0, b"BZh", "bzip2-compressed", _unpack("bunzip2 -k")),
    ("zstd", 0, b"\x28\xb5\x2f\xfd", "zstd-compressed", _unpack("unzstd")),
    ("lz4", 0, b"\x04\x22\x4d\x18", "lz4-compressed", _unpack("unlz4")),
    ("zip", 0, b"PK\x03\x04", "a zip archive", "extract the image from it first: unzip IMAGE"),
    ("squashfs", 0, b"hsqs", "a squashfs image (no squashfs driver here)",
     "unpack it with unsquashfs, or rebuild it with fsu makefs"),
    ("iso9660", 0x8001, b"CD001", "an ISO 9660 (CD/DVD) image (no iso9660 driver here)",
     "extract it with xorriso or isoinfo, or rebuild it with fsu makefs"),
    ("ext", 1080, b"\x53\xef", "an ext2/ext3/ext4 file system", ""),
)


def check_image_file(path: str) -> None:
    """Refuse, before anything opens it, a path that is not a regular file or block device."""
    st = HOST.stat(path)
    mode = st.st_mode
    if S.S_ISREG(mode) or S.S_ISBLK(mode):
        return
    if S.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "Is a directory (an image file or block device "
                                "is needed)", path)
    kind = ("a FIFO (named pipe)" if S.S_ISFIFO(mode) else "a socket" if S.S_ISSOCK(mode)
            else "a character device" if S.S_ISCHR(mode) else "not a regular file")
    raise OSError(errno.EINVAL, f"is {kind}, not an image file or block device", path)


def _read_head(path: str, offset: int) -> tuple[bytes, bytes]:
    """(the first HEAD bytes at ``offset``, the file's last 512 bytes)."""
    try:
        check_image_file(path)
        with HOST.open_read(path) as f:
            if offset:
                f.seek(offset)
            head = f.read(HEAD) or b""
            tail = b""
            try:
                end = f.seek(0, 2)
                if end >= 1024 and not offset:
                    f.seek(end - 512)
                    tail = f.read(512) or b""
            except OSError:
                pass
            return head, tail
    except (OSError, ValueError):
        return b"", b""


def _boot_sector(head: bytes) -> Identity | None:
    if len(head) < 512 or head[510:512] != b"\x55\xaa":
        return None
    if head[512:520] == b"EFI PART":
        return Identity("gpt", "a disk with a GPT partition table")
    fat_type = head[82:90] if head[82:87] == b"FAT32" else head[54:62]
    if fat_type.startswith(b"FAT") or head[3:11] in (b"MSDOS5.0", b"mkfs.fat", b"MSWIN4.1"):
        return Identity("fat", "a FAT file system")
    types = [head[446 + 16 * i + 4] for i in range(4)]
    if 0xEE in types:
        return Identity("gpt", "a disk with a GPT partition table")
    if any(types) and all(head[446 + 16 * i] in (0, 0x80) for i in range(4)):
        return Identity("mbr", "a disk with an MBR partition table")
    return Identity("fat", "a FAT file system")


def identify(path: str, offset: int = 0) -> Identity | None:
    head, tail = _read_head(path, offset)
    if not head:
        return None
    for kind, at, magic, what, hint in _MAGIC:
        if head[at:at + len(magic)] == magic:
            return Identity(kind, what, hint)
    boot = _boot_sector(head)
    if boot is not None:
        return boot
    if tail[:8] == b"conectix":
        return Identity("vhd", "a fixed-size VHD disk image (a raw disk with a footer)",
                        _convert("vpc"))
    return None


def looks_like_image(path: str, offset: int = 0) -> bool:
    return identify(path, offset) is not None
