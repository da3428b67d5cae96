"""newfs for ext2/ext3/ext4: lay out an empty file system on a block device.

Interface:
    make_filesystem(dev, flavour, **options)
options (all optional):
    size            bytes to use (default: the whole device)
    block_size      1024, 2048 or 4096 (default like mke2fs: 1024 below 512 MiB, else 4096)
    label           up to 16 bytes of volume name
    uuid            16 bytes, or a UUID string; default derived from the other options
    timestamp       seconds since the epoch for every time field (default 0)
    inode_ratio     bytes per inode (default like mke2fs: 4096 / 8192 small, 16384 large)
    inodes          total inode count (overrides inode_ratio)
    inode_size      128 or 256 (default 256)
    reserved_percent  blocks reserved for root (default 5)
    features        names to add, or ``^name`` to remove, from the flavour's default set, as a
                    comma-separated string or an iterable
    journal_blocks  journal size in blocks (default like mke2fs)
    zeroed          true when the device already reads as zeros (a new sparse file): the
                    inode tables and the journal are not written over with zeros

Default features: ext2 = ext_attr, dir_index, filetype, sparse_super, large_file; ext3 adds
has_journal; ext4 = that plus extent, 64bit, flex_bg, huge_file, dir_nlink, extra_isize,
metadata_csum.  ``resize_inode`` is never made (no reserved descriptor blocks: the image
cannot be grown online).  Each group keeps its own bitmaps and inode table (flex_bg is set but
metadata is not packed).  The journal is a real, empty JBD2 v2 journal (csum v3 with
metadata_csum).  The same options always give byte-identical images: nothing here reads the
clock or randomness.  Raises EINVAL for impossible options.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from rumpkernel.fs.ext2 import layout as L
from rumpkernel.fs.ext2.geometry import Geometry
from rumpkernel.fs.ext2.volume import set_bits
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.vfs.bio import BlockIO
from rumpkernel.vfs.fstype import MountContext

_FEATURES = {
    "has_journal": ("compat", L.COMPAT_HAS_JOURNAL), "ext_attr": ("compat", L.COMPAT_EXT_ATTR),
    "dir_index": ("compat", L.COMPAT_DIR_INDEX), "filetype": ("incompat", L.INCOMPAT_FILETYPE),
    "extent": ("incompat", L.INCOMPAT_EXTENTS), "extents": ("incompat", L.INCOMPAT_EXTENTS),
    "64bit": ("incompat", L.INCOMPAT_64BIT), "flex_bg": ("incompat", L.INCOMPAT_FLEX_BG),
    "sparse_super": ("ro_compat", L.RO_COMPAT_SPARSE_SUPER),
    "large_file": ("ro_compat", L.RO_COMPAT_LARGE_FILE),
    "huge_file": ("ro_compat", L.RO_COMPAT_HUGE_FILE),
    "dir_nlink": ("ro_compat", L.RO_COMPAT_DIR_NLINK),
    "extra_isize": ("ro_compat", L.RO_COMPAT_EXTRA_ISIZE),
    "metadata_csum": ("ro_compat", L.RO_COMPAT_METADATA_CSUM),
}
_DEFAULTS = {
    "ext2": ("ext_attr", "dir_index", "filetype", "sparse_super", "large_file"),
    "ext3": ("has_journal", "ext_attr", "dir_index", "filetype", "sparse_super", "large_file"),
    "ext4": ("has_journal", "ext_attr", "dir_index", "filetype", "extent", "64bit", "flex_bg",
             "sparse_super", "large_file", "huge_file", "dir_nlink", "extra_isize",
             "metadata_csum"),
}
MiB = 1 << 20


def _feature_bits(flavour: str, extra: str | Iterable[str] | None) -> dict[str, int]:
    names = set(_DEFAULTS[flavour])
    items = extra.split(",") if isinstance(extra, str) else list(extra or ())
    for item in filter(None, (i.strip() for i in items)):
        if item.startswith("^"):
            names.discard(item[1:])
            if item[1:] == "extent":
                names.discard("extents")
        elif item in _FEATURES:
            names.add(item)
        else:
            raise KernelError(Errno.EINVAL, f"ext newfs: unsupported feature {item!r}")
    bits = {"compat": 0, "incompat": 0, "ro_compat": 0}
    for n in names:
        kind, bit = _FEATURES[n]
        bits[kind] |= bit
    return bits


def _uuid(value: object, options: dict[str, Any]) -> bytes:
    if value is None:
        seed = repr(sorted((k, repr(v)) for k, v in options.items())).encode()
        raw = bytearray(hashlib.sha256(b"rumpkernel-ext-uuid" + seed).digest()[:16])
        raw[6] = (raw[6] & 0x0F) | 0x40
        raw[8] = (raw[8] & 0x3F) | 0x80
        return bytes(raw)
    if isinstance(value, (bytes, bytearray)) and len(value) == 16:
        return bytes(value)
    if isinstance(value, str):
        hexdigits = value.replace("-", "")
        if len(hexdigits) == 32:
            try:
                return bytes.fromhex(hexdigits)
            except ValueError:
                pass
    raise KernelError(Errno.EINVAL, f"ext newfs: bad uuid {value!r}")


class _Plan:
    """Numbers of the file system to make, computed from the options."""

    def __init__(self, dev: Any, flavour: str, options: dict[str, Any]) -> None:
        size = int(options.get("size") or dev.size)
        if size > dev.size or size < 64 * 1024:
            raise KernelError(Errno.EINVAL, f"ext newfs: bad size {size}")
        small = size < 512 * MiB
        self.bs = int(options.get("block_size") or (1024 if small else 4096))
        if self.bs not in (1024, 2048, 4096, 8192, 16384, 32768, 65536) or \
                self.bs % dev.sector_size:
            raise KernelError(Errno.EINVAL, f"ext newfs: bad block size {self.bs}")
        self.features = _feature_bits(flavour, options.get("features"))
        self.isz = int(options.get("inode_size") or 256)
        if self.isz not in (128, 256, 512, 1024) or self.isz > self.bs:
            raise KernelError(Errno.EINVAL, f"ext newfs: bad inode size {self.isz}")
        self.ts = int(options.get("timestamp") or 0)
        self.uuid = _uuid(options.get("uuid"), options)
        label = options.get("label") or b""
        self.label = label.encode() if isinstance(label, str) else bytes(label)  # type: ignore
        if len(self.label) > 16:
            raise KernelError(Errno.EINVAL, "ext newfs: label longer than 16 bytes")
        ratio = int(options.get("inode_ratio") or (8192 if size < 3 * MiB else
                                                  4096 if small else 16384))
        self._layout(size, ratio, options)
        rp = float(options.get("reserved_percent", 5))  # type: ignore[arg-type]
        if not 0 <= rp <= 50:
            raise KernelError(Errno.EINVAL, "ext newfs: reserved_percent out of range")
        self.reserved = int(self.blocks * rp / 100)
        self.journal_blocks = self._journal_size(options)
        self.zeroed = bool(options.get("zeroed"))

    def _layout(self, size: int, ratio: int, options: dict[str, Any]) -> None:
        bs = self.bs
        self.blocks = size // bs
        self.fdb = 1 if bs == 1024 else 0
        self.bpg = 8 * bs
        self.groups = -(-(self.blocks - self.fdb) // self.bpg)
        inodes = int(options.get("inodes") or max(self.blocks * bs // ratio, 32))
        ipb = bs // self.isz
        ipg = -(-inodes // self.groups)
        ipg = max(16, -(-ipg // ipb) * ipb)
        ipg = -(-ipg // 8) * 8
        self.ipg = min(ipg, 8 * bs, (self.bpg // 4) * ipb)
        last = self.blocks - self.fdb - (self.groups - 1) * self.bpg
        if self.groups > 1 and last < 50 + 2 + self.ipg * self.isz // bs + 2:
            self.groups -= 1
            self.blocks = self.fdb + self.groups * self.bpg
        if self.blocks < 60:
            raise KernelError(Errno.EINVAL, "ext newfs: device too small")

    def _journal_size(self, options: dict[str, Any]) -> int:
        if not self.features["compat"] & L.COMPAT_HAS_JOURNAL:
            return 0
        if options.get("journal_blocks"):
            return int(options["journal_blocks"])
        n = self.blocks
        for limit, size in ((2048, 0), (32768, 1024), (256 * 1024, 4096), (512 * 1024, 8192),
                            (4096 * 1024, 16384), (8192 * 1024, 32768),
                            (16384 * 1024, 65536), (32768 * 1024, 131072)):
            if n < limit:
                return size
        return 262144

    # -- the superblock -----------------------------------------------------------------------
    def superblock(self) -> Any:
        f = self.features
        if not self.journal_blocks:
            f["compat"] &= ~L.COMPAT_HAS_JOURNAL
        is64 = bool(f["incompat"] & L.INCOMPAT_64BIT)
        extra = 32 if f["ro_compat"] & L.RO_COMPAT_EXTRA_ISIZE and self.isz > 128 else 0
        seed = hashlib.sha256(b"rumpkernel-ext-hash" + self.uuid).digest()[:16]
        ts = self.ts & 0xFFFFFFFF
        zero = L.Superblock.parse(bytes(L.SUPERBLOCK_SIZE))
        return zero.replace(
            s_inodes_count=self.ipg * self.groups, s_blocks_count_lo=self.blocks & 0xFFFFFFFF,
            s_blocks_count_hi=self.blocks >> 32 if is64 else 0,
            s_r_blocks_count_lo=self.reserved & 0xFFFFFFFF,
            s_r_blocks_count_hi=self.reserved >> 32 if is64 else 0,
            s_first_data_block=self.fdb, s_log_block_size=self.bs.bit_length() - 11,
            s_log_cluster_size=self.bs.bit_length() - 11, s_blocks_per_group=self.bpg,
            s_clusters_per_group=self.bpg, s_inodes_per_group=self.ipg, s_wtime=ts,
            s_max_mnt_count=-1, s_magic=L.EXT2_MAGIC, s_state=L.STATE_VALID, s_errors=1,
            s_lastcheck=ts, s_rev_level=1, s_first_ino=L.GOOD_OLD_FIRST_INO,
            s_inode_size=self.isz, s_feature_compat=f["compat"],
            s_feature_incompat=f["incompat"], s_feature_ro_compat=f["ro_compat"],
            s_uuid=self.uuid, s_volume_name=self.label.ljust(16, b"\0"), s_hash_seed=seed,
            s_def_hash_version=1, s_desc_size=64 if is64 else 0, s_default_mount_opts=0x000C,
            s_mkfs_time=ts, s_min_extra_isize=extra, s_want_extra_isize=extra,
            s_flags=L.FLAGS_SIGNED_HASH, s_log_groups_per_flex=4 if f["incompat"] &
            L.INCOMPAT_FLEX_BG else 0, s_checksum_type=1 if f["ro_compat"] &
            L.RO_COMPAT_METADATA_CSUM else 0, s_wtime_hi=(self.ts >> 32) & 0xFF,
            s_mkfs_time_hi=(self.ts >> 32) & 0xFF, s_lastcheck_hi=(self.ts >> 32) & 0xFF)


def _group_layout(geo: Geometry, group: int) -> tuple[int, int, int, int]:
    """(block bitmap, inode bitmap, inode table, first free block) of ``group``."""
    meta = geo.super_and_gdt(group)
    start = max(meta) + 1 if meta else geo.group_first_block(group)
    return start, start + 1, start + 2, start + 2 + geo.itable_blocks


def _write_tables(vol: Any, geo: Geometry, zeroed: bool = False) -> None:
    """Descriptors, bitmaps and zeroed inode tables of every group (through the Volume;
    the tables are not written when the device reads as zeros already)."""
    gds, bbm, ibm = [], {}, {}
    csum = vol.metadata_csum
    zero_chunk = bytes(geo.block_size * 64)
    for g in range(geo.group_count):
        bb, ib, it, free_start = _group_layout(geo, g)
        first = geo.group_first_block(g)
        nblocks = geo.group_nblocks(g)
        if free_start - first >= nblocks:
            raise KernelError(Errno.EINVAL, f"ext newfs: group {g} too small for its tables")
        bm = bytearray(geo.block_size)
        set_bits(bm, 0, free_start - first, True)
        set_bits(bm, nblocks, geo.block_size * 8 - nblocks, True)
        im = bytearray(geo.block_size)
        if g == 0:
            set_bits(im, 0, geo.first_ino - 1, True)
        set_bits(im, geo.inodes_per_group, geo.block_size * 8 - geo.inodes_per_group, True)
        bbm[g], ibm[g] = bm, im
        free_b = nblocks - (free_start - first)
        free_i = geo.inodes_per_group - (geo.first_ino - 1 if g == 0 else 0)
        gd = L.GroupDesc64.parse(bytes(64)).replace(
            bg_block_bitmap_lo=bb & 0xFFFFFFFF, bg_block_bitmap_hi=bb >> 32,
            bg_inode_bitmap_lo=ib & 0xFFFFFFFF, bg_inode_bitmap_hi=ib >> 32,
            bg_inode_table_lo=it & 0xFFFFFFFF, bg_inode_table_hi=it >> 32,
            bg_free_blocks_count_lo=free_b & 0xFFFF, bg_free_blocks_count_hi=free_b >> 16,
            bg_free_inodes_count_lo=free_i & 0xFFFF, bg_free_inodes_count_hi=free_i >> 16,
            bg_flags=L.BG_INODE_ZEROED if csum else 0)
        gds.append(gd)
        for k in range(0, 0 if zeroed else geo.itable_blocks, 64):
            n = min(64, geo.itable_blocks - k)
            vol.bio.write_run(it + k, zero_chunk[:n * geo.block_size])
    vol.install_gds(gds)
    vol._bbm, vol._ibm = bbm, ibm
    vol._bbm_dirty, vol._ibm_dirty = set(bbm), set(ibm)


class _SyncOnce:
    """The device as newfs's steps see it: their flushes are deferred to one at the end."""

    def __init__(self, dev: Any) -> None:
        self.dev = dev
        self.name, self.size, self.sector_size = dev.name, dev.size, dev.sector_size
        self.readonly = dev.readonly

    def pread(self, offset: int, length: int) -> bytes:
        return self.dev.pread(offset, length)

    def pwrite(self, offset: int, data: bytes) -> None:
        self.dev.pwrite(offset, data)

    def flush(self) -> None:
        return None


NEWFS_OPTION = "_newfs"      # internal: mount an image that has no root directory yet


def make_filesystem(dev: Any, flavour: str, **options: Any) -> None:
    if dev.readonly:
        raise KernelError(Errno.EROFS, "ext newfs: device is read-only")
    _make(_SyncOnce(dev), flavour, options)
    dev.flush()


def _make(dev: Any, flavour: str, options: dict[str, Any]) -> None:
    from rumpkernel.fs.ext2.fs import ExtFileSystem
    from rumpkernel.fs.ext2.volume import Volume

    plan = _Plan(dev, flavour, options)
    sb = plan.superblock()
    geo = Geometry.from_superblock(sb, dev.size // plan.bs)
    bio = BlockIO(dev, plan.bs, cache_bytes=4 * MiB)
    bio.write_run(0, bytes(plan.bs * (2 if plan.bs == 1024 else 1)))
    vol = Volume(bio, _with_csum(sb), dev.size // plan.bs, False, lambda m: None)
    _write_tables(vol, geo, plan.zeroed)
    vol.sb_dirty = True
    vol.flush()
    bio.close()
    ctx = MountContext(dev=dev, now_ns=lambda: plan.ts * 1_000_000_000,
                       cache_bytes=8 * MiB, options={NEWFS_OPTION: ""})
    fs = ExtFileSystem(ctx, flavour)
    _make_root(fs)
    lpf = fs.vget(fs.mkdir(fs.vget(L.ROOT_INO), b"lost+found", 0o700, 0, 0))
    _grow_dir(fs, lpf, max(2, min(12, 16384 // plan.bs)))
    if plan.journal_blocks:
        _make_journal(fs, plan)
    fs.unmount()
    _finish(dev, plan)


def _with_csum(sb: Any) -> bytes:
    from rumpkernel.fs.ext2.csum import ext_crc32c

    raw = sb.emit()
    if sb.s_feature_ro_compat & L.RO_COMPAT_METADATA_CSUM:
        c = ext_crc32c(0xFFFFFFFF, raw[:L.SB_CHECKSUM_OFFSET])
        raw = sb.replace(s_checksum=c).emit()
    return raw


def _make_root(fs: Any) -> None:
    from rumpkernel.fs.ext2 import dirs
    from rumpkernel.fs.ext2.extents import empty_root
    from rumpkernel.fs.ext2.inode import Inode

    vol = fs.vol
    node = Inode.new(vol, L.ROOT_INO, 0o040755, 0, 0, fs.now(), 0)
    node.links = 2
    if fs.extents:
        node.flags |= L.INODE_EXTENTS_FL
        node.iblock[:] = empty_root()
    fs.inodes[L.ROOT_INO] = node
    (_, pblk, _, _), = fs.bmap(node).map_alloc(0, 1, fs.goal_for(node))
    node.size = vol.block_size
    dirs.write_block(fs, node, pblk, dirs.new_dir_block(fs, node.ino, node.ino, node))
    vol._adjust_gd(0, dirs=1)


def _grow_dir(fs: Any, node: Any, nblocks: int) -> None:
    from rumpkernel.fs.ext2 import dirs

    bs = fs.vol.block_size
    for lblk in range(node.size // bs, nblocks):
        (_, pblk, _, _), = fs.bmap(node).map_alloc(lblk, 1, fs.goal_for(node))
        dirs.write_block(fs, node, pblk, dirs.empty_block(fs))
        node.size += bs
    node.dcache = None
    node.dirty = True


def _make_journal(fs: Any, plan: _Plan) -> None:
    from rumpkernel.fs.ext2.extents import empty_root
    from rumpkernel.fs.ext2.inode import Inode

    vol = fs.vol
    bs = vol.block_size
    n = plan.journal_blocks
    node = Inode.new(vol, L.JOURNAL_INO, 0o100600, 0, 0, fs.now(), 0)
    if fs.extents:
        node.flags |= L.INODE_EXTENTS_FL
        node.iblock[:] = empty_root()
    fs.inodes[L.JOURNAL_INO] = node
    goal = vol.geo.group_first_block(vol.geo.group_count // 2)
    runs = fs.bmap(node).map_alloc(0, n, goal)
    zeros = bytes(bs * 256)
    for _, pblk, cnt, _ in [] if plan.zeroed else runs:
        for k in range(0, cnt, 256):
            vol.write_run(pblk + k, zeros[:min(256, cnt - k) * bs])
    node.size = n * bs
    vol.write(runs[0][1], _journal_super(plan, vol).ljust(bs, b"\0"))
    fs._write_inode(node)
    ib = bytes(node.iblock) + (node.size >> 32).to_bytes(4, "little") + \
        (node.size & 0xFFFFFFFF).to_bytes(4, "little")
    vol.update_super(s_journal_inum=L.JOURNAL_INO, s_jnl_blocks=ib, s_jnl_backup_type=1)


def _journal_super(plan: _Plan, vol: Any) -> bytes:
    from rumpkernel.fs.ext2.journal import jsb_csum

    incompat = 0
    if vol.geo.incompat & L.INCOMPAT_64BIT:
        incompat |= L.JBD2_INCOMPAT_64BIT
    if vol.metadata_csum:
        incompat |= L.JBD2_INCOMPAT_CSUM_V3
    j = L.JournalSuper.parse(bytes(1024)).replace(
        h_magic=L.JBD2_MAGIC, h_blocktype=L.JBD2_SUPER_V2, s_blocksize=plan.bs,
        s_maxlen=plan.journal_blocks, s_first=1, s_sequence=1, s_feature_incompat=incompat,
        s_uuid=plan.uuid, s_nr_users=1,
        s_checksum_type=L.JBD2_CSUM_CRC32C if vol.metadata_csum else 0,
        s_users=plan.uuid.ljust(768, b"\0"))
    if vol.metadata_csum:
        j = j.replace(s_checksum=jsb_csum(j))
    return j.emit()


def _finish(dev: Any, plan: _Plan) -> None:
    """Reset mount counters left by the internal mount; write superblock/descriptor backups."""
    from rumpkernel.fs.ext2.mount import read_super

    sb = L.Superblock.parse(read_super(dev))
    ts = plan.ts & 0xFFFFFFFF
    sb = sb.replace(s_mnt_count=0, s_mtime=0, s_mtime_hi=0, s_wtime=ts,
                    s_wtime_hi=(plan.ts >> 32) & 0xFF, s_state=L.STATE_VALID)
    geo = Geometry.from_superblock(sb, dev.size // plan.bs)
    bio = BlockIO(dev, plan.bs, cache_bytes=4 * MiB)
    bs = plan.bs
    blk, off = divmod(L.SUPERBLOCK_OFFSET, bs)
    data = bytearray(bio.read(blk))
    data[off:off + L.SUPERBLOCK_SIZE] = _with_csum(sb)
    bio.write(blk, data)
    gdt = [bio.read(geo.gdt_block(0)[0] + i) for i in range(geo.gdt_blocks_total())]
    for g in range(1, geo.group_count):
        if not geo.has_super(g):
            continue
        first = geo.group_first_block(g)
        copy = _with_csum(sb.replace(s_block_group_nr=g & 0xFFFF))
        bio.write(first, copy.ljust(bs, b"\0"))
        for i, block in enumerate(gdt):
            bio.write(first + 1 + i, block)
    bio.close()
