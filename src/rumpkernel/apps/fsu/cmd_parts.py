"""``fsu parts DISK [--json]``: the partition table of a disk image, as ``sfdisk -l`` prints
it, with what each partition holds (no kernel is booted: the table is read on the host).

    Disk disk.img: 64 MiB, 67108864 bytes, 131072 sectors
    Disklabel type: gpt

    Device       Start    End Sectors Size Type             Contents
    disk.img%1    2048  34815   32768  16M Linux filesystem an ext2/ext3/ext4 file system
    disk.img%2   34816  67583   32768  16M EFI System       a FAT file system

``fsu ... disk.img%N`` then reaches partition N.  A disk without a table says so (and what
the whole image is instead).  Numbering is Linux's: MBR primaries 1-4, logical from 5; GPT
entries in table order, as the kernel's ``vfs.disklabel`` numbers them for ``IMAGE%N`` (apps
may not import the VFS, so the host-side reading here is its own, with the same bounds:
entries beyond the disk are skipped, extended chains stop at a loop or after 128 links).
"""

from __future__ import annotations

import os
from typing import Any

from rumpkernel.apps.fsu.commands import command, new_parser
from rumpkernel.apps.fsu.common import Ctx, Trouble
from rumpkernel.kern import disklabel
from rumpkernel.kern.disklabel import Partition
from rumpkernel.kern.errno import KernelError

SECTOR = 512
MBR_TYPES = {"01": "FAT12", "04": "FAT16 <32M", "05": "Extended", "06": "FAT16",
             "07": "HPFS/NTFS/exFAT", "0b": "W95 FAT32", "0c": "W95 FAT32 (LBA)",
             "0e": "W95 FAT16 (LBA)", "0f": "W95 Ext'd (LBA)", "82": "Linux swap",
             "83": "Linux", "85": "Linux extended", "8e": "Linux LVM", "a5": "FreeBSD",
             "a6": "OpenBSD", "a9": "NetBSD", "ee": "GPT", "ef": "EFI (FAT-12/16/32)",
             "fd": "Linux raid autodetect"}
GPT_TYPES = {"0fc63daf-8483-4772-8e79-3d69d8477de4": "Linux filesystem",
             "c12a7328-f81f-11d2-ba4b-00a0c93ec93b": "EFI System",
             "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7": "Microsoft basic data",
             "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f": "Linux swap",
             "21686148-6449-6e6f-744e-656564454649": "BIOS boot",
             "e6d6d379-f507-44c2-a23c-238f2a3df928": "Linux LVM",
             "a19d880f-05fc-4d3b-a006-743f0f84911e": "Linux RAID",
             "4f68bce3-e8cd-4db1-96e7-fbcaf984b709": "Linux root (x86-64)",
             "49f48d5a-b10e-11dc-b99b-0019d1879648": "NetBSD FFS"}


def _parts_parser(prog: str) -> Any:
    p = new_parser(prog, "Print the partition table of a disk image (as sfdisk -l).",
                   f"{prog} DISK [--json]")
    p.add_argument("--json", action="store_true", help="JSON output")
    return p


def read_table(path: str) -> tuple[str, list[Partition]]:
    """("gpt" | "dos" | "", partitions) of the disk image at ``path``, read on the host by the
    kernel's own parser (``kern/disklabel.py``)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        def read(offset: int, length: int) -> bytes:
            f.seek(offset)
            return f.read(length)

        try:
            return disklabel.read_table(read, size)
        except KernelError as e:
            raise Trouble(f"{path}: bad partition table: {e.detail}") from None


def _type_name(kind: str) -> str:
    return GPT_TYPES.get(kind.lower(), kind) if "-" in kind else \
        f"{kind} {MBR_TYPES.get(kind, 'unknown')}"


def _human(n: int) -> str:
    from rumpkernel.apps.fsu.common import human

    return human(n)


@command("parts", summary="print the partition table of a disk image", parser=_parts_parser,
         session=False)
def run_parts(ctx: Ctx, ns: Any) -> None:
    from rumpkernel.client.files.sniff import identify

    path = ctx.image.path
    label, parts = read_table(path)
    size = os.path.getsize(path)
    rows = []
    for p in parts:
        ident = identify(path, p.offset)
        rows.append({"device": f"{ctx.image.path}%{p.number}", "number": p.number,
                     "start": p.offset // SECTOR, "end": (p.offset + p.size) // SECTOR - 1,
                     "sectors": p.size // SECTOR, "size": p.size, "type": p.kind,
                     "type_name": _type_name(p.kind),
                     "contents": ident.what if ident is not None else ""})
    if ns.json:
        ctx.json({"disk": path, "size": size, "label": label or None, "partitions": rows})
        return
    ctx.out.write(f"Disk {path}: {_human(size)}, {size} bytes, {size // SECTOR} sectors\n")
    if not label:
        ident = identify(path)
        what = f"; the whole image is {ident.what}" if ident is not None else ""
        ctx.out.write(f"No partition table{what}.\n")
        return
    ctx.out.write(f"Disklabel type: {label}\n\n")
    table = [["Device", "Start", "End", "Sectors", "Size", "Type", "Contents"]]
    for r in rows:
        table.append([r["device"], str(r["start"]), str(r["end"]), str(r["sectors"]),
                      _human(r["size"]), r["type_name"], r["contents"] or "-"])
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:5], widths[1:5])]
        cells += [row[5].ljust(widths[5]), row[6]]
        ctx.out.write(" ".join(cells).rstrip() + "\n")
