"""``fsu makefs``: build a file system image from a host directory in one step, as NetBSD's
makefs(8) does -- with the kernel's own newfs and file system drivers, no root, no mount.

    fsu makefs -t ext4|ext3|ext2|fat [-s SIZE] [-M MINSIZE] [-m MAXSIZE] [-b FREE[%]]
               [-f FREEFILES[%]] [-L LABEL] [-U UUID] [-T EPOCH|FILE] [-o OPT,...]
               [-F SPEC [-x]] [-N DBDIR] IMAGE DIR

Sizes take k/m/g suffixes (any case).  ``-M`` is the minimum size and ``-m`` the maximum, as
in NetBSD's makefs(8).  Without ``-s`` the image is sized to fit the tree with headroom (5%
more blocks, at least 16, plus ``-b``; 25% more inodes, at least 128, plus ``-f``): the
blocks and inodes the tree needs are estimated, a file system of a first size is made and its
statvfs checked, and the image grows until the tree fits (a write that still meets ENOSPC for
want of blocks or inodes grows it again).  With ``-s`` an ext image gets mke2fs's inode
density (one inode per 8 KiB below 3 MiB, per 4 KiB below 512 MiB, per 16 KiB above), and
never fewer inodes than the tree needs plus the headroom.  A FAT directory that cannot hold
its entries (65,536 slots; a long name takes several) fails at once, naming the directory.
Holes in sparse source files stay holes in ext images (SEEK_DATA/SEEK_HOLE).

Owners: files get uid/gid 0 unless ``-o keep-owner``; an mtree spec (``-F``) sets owners,
modes, times, symlink targets and device nodes, and adds entries the directory lacks
(``-x`` leaves out what the spec does not list); names in the spec (uname/gname) come from
``-N DBDIR``'s passwd/group, then the host's.  Hard links stay hard links (ext); FAT has no
symlinks, hard links or device nodes: symlinks are stored as copies of their targets, the rest
is skipped, each with a warning.

Reproducible output: ``-T EPOCH`` (or ``-T FILE``: its mtime) sets every time stamp to EPOCH;
``SOURCE_DATE_EPOCH`` clamps time stamps to it.  Either way the kernel clock is frozen at that
time, its randomness comes from a fixed seed, the UUID / volume id is derived from the
options (``-U`` overrides), and the tree is written in sorted order: the same input gives the
same bytes.  Otherwise the UUID / volume id is random, as mke2fs and mkfs.fat make them.

-o options: ext: block_size (bsize), inode_size, inodes, inode_ratio (density),
features (``^has_journal:extent``; ``:`` separates), journal_blocks, reserved_percent
(minfree); fat: fat_type (12/16/32), cluster_size, sectors_per_cluster, num_fats,
root_entries, sector_size, volume_id; all: keep-owner.

The image is written under a temporary name and renamed into place when complete: a failed
build leaves no image (and an older image of the same name untouched).  That is why the
build can skip crash safety: the kernel boots with only vfs and the one file system, newfs
is told the new sparse file reads as zeros, ext mounts with ``build`` (no journal, no undo
log, one write-back and one flush at unmount; the journal stays empty and valid), and each
small file is created, written and stamped in one kernel entry (``Kernel.put_file``);
large or sparse files go through descriptors.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from rumpkernel.apps.fsu import sizing
from rumpkernel.apps.fsu.common import ArgParser, Usage
from rumpkernel.apps.fsu.tree_scan import (
    IFMT,
    Node,
    TreeError,
    apply_spec,
    owners_and_times,
    scan,
)
from rumpkernel.client.files.imagespec import parse_size
from rumpkernel.client.files.names import temp_path

EXT_TYPES = ("ext2", "ext3", "ext4")
FAT_TYPES = {"fat": None, "msdos": None, "vfat": None, "fat12": 12, "fat16": 16, "fat32": 32}
EXT_OPTS = {"block_size": "block_size", "bsize": "block_size", "inode_size": "inode_size",
            "inodes": "inodes", "inode_ratio": "inode_ratio", "density": "inode_ratio",
            "features": "features", "journal_blocks": "journal_blocks",
            "reserved_percent": "reserved_percent", "minfree": "reserved_percent"}
FAT_OPTS = {"fat_type": "fat_type", "cluster_size": "cluster_size",
            "sectors_per_cluster": "sectors_per_cluster", "num_fats": "num_fats",
            "root_entries": "root_entries", "sector_size": "sector_size",
            "volume_id": "volume_id"}
MiB = 1 << 20
MAX_ATTEMPTS = 8


class MakefsError(Exception):
    pass


class _NoSpace(Exception):
    def __init__(self, short: int, reason: str) -> None:
        super().__init__(reason)
        self.short = short


@dataclass
class Plan:
    fstype: str
    image: str
    source: str
    size: int | None = None
    minsize: int = 0
    maxsize: int | None = None
    free_blocks: str | None = None
    free_files: str | None = None
    label: str | None = None
    uuid: str | None = None
    epoch_ns: int | None = None
    clamp_ns: int | None = None
    newfs_opts: dict[str, Any] = field(default_factory=dict)
    keep_owner: bool = False
    spec: str | None = None
    exclude: bool = False
    dbdir: str | None = None
    verbose: bool = False

    @property
    def fat(self) -> bool:
        return self.fstype in FAT_TYPES

    @property
    def reproducible(self) -> bool:
        return self.epoch_ns is not None or self.clamp_ns is not None

    @property
    def frozen_ns(self) -> int | None:
        return self.epoch_ns if self.epoch_ns is not None else self.clamp_ns


# ---- command line -----------------------------------------------------------------------------
OPTIONS_HELP = """\
-o options (comma-separated; several -o add up):
  ext2/ext3/ext4:
    block_size=N (bsize)        1024, 2048 or 4096 bytes
    inode_size=N                128 or 256 bytes
    inodes=N                    total inode count
    inode_ratio=N (density)     bytes per inode
    features=F1:F2:^F3          ext features to add (or ^remove); ':' separates
    journal_blocks=N            journal size in blocks (ext3/ext4)
    reserved_percent=N (minfree)  blocks reserved for root, percent
  fat, fat12, fat16, fat32:
    fat_type=12|16|32           FAT width (default: by size)
    cluster_size=N              bytes per cluster
    sectors_per_cluster=N       sectors per cluster
    num_fats=N                  copies of the FAT (default 2)
    root_entries=N              FAT12/16 root directory entries
    sector_size=N               bytes per sector
    volume_id=XXXX-XXXX         volume serial number
  all:
    keep-owner                  keep the source files' owners (default: uid/gid 0)

Without -s the image fits the tree with headroom: 5% more blocks (at least 16) and 25% more
inodes (at least 128), plus -b/-f.  With -s, ext images get mke2fs's inode density for the
size.  Holes in sparse files are kept (ext).
"""


def _parser(prog: str) -> ArgParser:
    from rumpkernel.apps.fsu.common import RawHelpFormatter

    p = ArgParser(prog=prog, allow_abbrev=False,
                  usage=f"{prog} -t TYPE [-s SIZE] [-M MINSIZE] [-m MAXSIZE] [-b FREE] "
                        "[-f FREEFILES] [-L LABEL] [-U UUID] [-T EPOCH] [-o OPT,...] "
                        "[-F SPEC [-x]] [-N DBDIR] IMAGE DIR",
                  description="Build a file system image from a directory (ext2/3/4, FAT).",
                  epilog=OPTIONS_HELP, formatter_class=RawHelpFormatter)
    p.add_argument("-t", dest="fstype", default="ext4", metavar="TYPE",
                   help="ext4 (default), ext3, ext2, fat (fat12/fat16/fat32 force the width)")
    p.add_argument("-s", dest="size", metavar="SIZE",
                   help="image size (k/m/g suffixes); default: fit the tree with headroom")
    p.add_argument("-M", dest="minsize", metavar="MINSIZE", help="minimum image size")
    p.add_argument("-m", dest="maxsize", metavar="MAXSIZE", help="maximum image size")
    p.add_argument("-b", dest="free_blocks", metavar="FREE",
                   help="free space to leave (bytes or N%%)")
    p.add_argument("-f", dest="free_files", metavar="FREEFILES",
                   help="free inodes to leave (count or N%%)")
    p.add_argument("-L", dest="label", help="volume label")
    p.add_argument("-U", dest="uuid", help="file system UUID (ext) or volume id (fat, XXXX-XXXX)")
    p.add_argument("-T", dest="timestamp", metavar="EPOCH|FILE",
                   help="every time stamp: seconds since 1970, or a file whose mtime to use")
    p.add_argument("-o", dest="options", action="append", default=[], metavar="OPT,...",
                   help="file system options, comma-separated (listed below)")
    p.add_argument("-F", dest="spec", metavar="SPEC", help="mtree specification file")
    p.add_argument("-x", dest="exclude", action="store_true",
                   help="leave out files the spec does not list")
    p.add_argument("-N", dest="dbdir", metavar="DBDIR",
                   help="directory with passwd and group for spec names")
    p.add_argument("-v", dest="verbose", action="store_true", help="report sizes")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("source", metavar="DIR")
    return p


def _size_arg(text: str | None, name: str) -> int | None:
    if text is None:
        return None
    try:
        return parse_size(text, name=name)
    except ValueError as e:
        raise Usage(str(e)) from None


def _epoch(ns: Any) -> tuple[int | None, int | None]:
    if ns.timestamp is not None:
        t = ns.timestamp
        if os.path.exists(t) and not t.lstrip("-").isdigit():
            return os.stat(t).st_mtime_ns // 10**9 * 10**9, None
        try:
            return int(t) * 10**9, None
        except ValueError:
            raise Usage(f"invalid -T {t!r}: seconds since 1970 or an existing file") from None
    sde = os.environ.get("SOURCE_DATE_EPOCH")
    if sde:
        try:
            return None, int(sde) * 10**9
        except ValueError:
            raise Usage(f"invalid SOURCE_DATE_EPOCH {sde!r}") from None
    return None, None


def _options(items: list[str], fstype: str) -> tuple[dict[str, Any], bool]:
    table = FAT_OPTS if fstype in FAT_TYPES else EXT_OPTS
    out: dict[str, Any] = {}
    keep_owner = False
    for item in ",".join(items).split(","):
        item = item.strip()
        if not item:
            continue
        key, _, value = item.partition("=")
        if key in ("keep-owner", "keep_owner"):
            keep_owner = True
            continue
        name = table.get(key)
        if name is None:
            raise Usage(f"unknown -o option {key!r} for {fstype} (known: "
                        f"{', '.join(sorted(set(table)))}, keep-owner)")
        if name == "features":
            out[name] = value.replace(":", ",").replace("+", ",")
        elif name == "volume_id":
            out[name] = int(value.replace("-", ""), 16)
        else:
            try:
                out[name] = int(parse_size(value, name=key)) if name in (
                    "block_size", "cluster_size", "inode_ratio") else int(value)
            except ValueError as e:
                raise Usage(f"-o {key}: {e}") from None
    return out, keep_owner


def plan_from_args(argv: list[str], prog: str) -> Plan:
    ns = _parser(prog).parse_args(argv)
    fstype = ns.fstype.lower()
    if fstype not in EXT_TYPES and fstype not in FAT_TYPES:
        raise Usage(f"unknown file system type {ns.fstype!r} (ext2, ext3, ext4, fat, fat12, "
                    "fat16, fat32)")
    opts, keep_owner = _options(ns.options, fstype)
    if FAT_TYPES.get(fstype):
        opts.setdefault("fat_type", FAT_TYPES[fstype])
    epoch_ns, clamp_ns = _epoch(ns)
    if ns.exclude and not ns.spec:
        raise Usage("-x needs -F SPEC")
    return Plan(fstype=fstype, image=ns.image, source=ns.source,
                size=_size_arg(ns.size, "size"), minsize=_size_arg(ns.minsize, "size") or 0,
                maxsize=_size_arg(ns.maxsize, "size"), free_blocks=ns.free_blocks,
                free_files=ns.free_files, label=ns.label, uuid=ns.uuid, epoch_ns=epoch_ns,
                clamp_ns=clamp_ns, newfs_opts=opts, keep_owner=keep_owner, spec=ns.spec,
                exclude=ns.exclude, dbdir=ns.dbdir, verbose=ns.verbose)


def main(argv: list[str] | None = None, prog: str = "fsu makefs") -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    plan = None
    try:
        plan = plan_from_args(args, prog)
        Builder(plan, prog).run()
    except Usage as e:
        sys.stderr.write(f"{prog}: {e}\n")
        return 2
    except SystemExit as e:
        return int(e.code or 0)
    except (MakefsError, TreeError) as e:
        sys.stderr.write(f"{prog}: {e}\n")
        return 1
    except OSError as e:  # the host refused the image file (directory missing, read-only ...)
        where = e.filename if e.filename is not None else ""
        if where and plan is not None and where.endswith(f".fsu-makefs-{os.getpid()}.tmp"):
            where = plan.image  # name the image, not its temporary
        sys.stderr.write(f"{prog}: {where}: {os.strerror(e.errno or errno.EIO)}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return 130
    return 0


# ---- the kernel's host, reproducible ----------------------------------------------------------
def reproducible_host(epoch_ns: int, seed: bytes) -> Any:
    """A PosixHost whose wall clock stands at ``epoch_ns`` and whose randomness is a fixed
    stream from ``seed`` (the kernel's time and entropy come only through its host)."""
    from rumpkernel import PosixHost

    class FrozenHost(PosixHost):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self._counter = 0

        def clock_wall_ns(self) -> int:
            return epoch_ns

        def random_bytes(self, n: int) -> bytes:
            out = b""
            while len(out) < n:
                self._counter += 1
                out += hashlib.sha256(seed + self._counter.to_bytes(8, "little")).digest()
            return out[:n]

    return FrozenHost()


class Users:
    """uname/gname -> ids from ``-N DBDIR`` (passwd, group), then the host's databases."""

    def __init__(self, dbdir: str | None) -> None:
        self.db: dict[str, dict[str, int]] = {"passwd": {}, "group": {}}
        for which in ("passwd", "group"):
            if dbdir is None:
                continue
            try:
                with open(os.path.join(dbdir, which), encoding="utf-8") as f:
                    for line in f:
                        parts = line.split(":")
                        if len(parts) >= 3 and parts[2].isdigit():
                            self.db[which].setdefault(parts[0], int(parts[2]))
            except OSError as e:
                raise MakefsError(f"{dbdir}/{which}: {os.strerror(e.errno or 0)}") from None

    def uid(self, name: str) -> int:
        if name in self.db["passwd"]:
            return self.db["passwd"][name]
        import pwd

        try:
            return pwd.getpwnam(name).pw_uid
        except KeyError:
            raise ValueError(f"unknown user {name!r}") from None

    def gid(self, name: str) -> int:
        if name in self.db["group"]:
            return self.db["group"][name]
        import grp

        try:
            return grp.getgrnam(name).gr_gid
        except KeyError:
            raise ValueError(f"unknown group {name!r}") from None


# ---- building ---------------------------------------------------------------------------------
class Builder:
    def __init__(self, plan: Plan, prog: str) -> None:
        self.plan = plan
        self.prog = prog
        self.tmp = temp_path(plan.image, f"fsu-makefs-{os.getpid()}.tmp")

    def warn(self, msg: str) -> None:
        sys.stderr.write(f"{self.prog}: warning: {msg}\n")

    def nodes(self) -> dict[str, Node]:
        p = self.plan
        nodes = scan(p.source, follow_symlinks=p.fat, warn=self.warn)
        if p.spec is not None:
            from rumpkernel.apps.fsu.mtree import SpecError, parse_spec

            try:
                with open(p.spec, encoding="utf-8", errors="surrogateescape") as f:
                    spec = parse_spec(f.read(), source=p.spec)
            except OSError as e:
                raise MakefsError(f"{p.spec}: {os.strerror(e.errno or 0)}") from None
            except SpecError as e:
                raise MakefsError(str(e)) from None
            nodes = apply_spec(nodes, spec, p.source, exclude_unlisted=p.exclude,
                               users=Users(p.dbdir))
        owners_and_times(nodes, keep_owner=p.keep_owner, fixed_ns=p.epoch_ns,
                         clamp_ns=p.clamp_ns)
        if p.fat:
            self._fat_dirs_fit(nodes)
            for n in [n for n in nodes.values() if n.kind not in ("file", "dir")]:
                self.warn(f"{os.path.join(p.source, n.rel)}: {n.kind} node skipped (FAT "
                          "cannot hold it)")
                parent = nodes[n.rel.rsplit("/", 1)[0] if "/" in n.rel else ""]
                parent.children.remove(n.name)
                del nodes[n.rel]
        return nodes

    def _fat_dirs_fit(self, nodes: dict[str, Node]) -> None:
        """Fail at once (no image is tried) on a directory FAT cannot hold."""
        for n in nodes.values():
            if n.kind != "dir":
                continue
            slots = sizing.fat_dir_slots_min(n)
            if slots > sizing.FAT_DIR_SLOTS:
                where = os.path.join(self.plan.source, n.rel) if n.rel else self.plan.source
                raise MakefsError(
                    f"{where}: {len(n.children)} entries need at least {slots} directory "
                    f"slots (a long name takes several); a FAT directory holds at most "
                    f"{sizing.FAT_DIR_SLOTS}: split the directory")

    def run(self) -> None:
        p = self.plan
        if os.path.isdir(p.image):
            raise MakefsError(f"{p.image}: Is a directory")
        nodes = self.nodes()
        size = self._initial_size(nodes)
        try:
            for attempt in range(MAX_ATTEMPTS):
                try:
                    self._attempt(nodes, size)
                    break
                except _NoSpace as e:
                    if p.size is not None or attempt == MAX_ATTEMPTS - 1:
                        raise MakefsError(f"{p.image}: {self._human(size)} is too small for "
                                          f"{p.source} ({e})") from None
                    size = self._grow(size, e.short)
            os.replace(self.tmp, p.image)
        except BaseException:
            try:
                os.unlink(self.tmp)
            except OSError:
                pass
            raise
        if p.verbose:
            self.warn(f"{p.image}: {self._human(size)}, {len(nodes)} entries")

    @staticmethod
    def _human(n: int) -> str:
        return f"{n / MiB:.1f} MiB ({n} bytes)"

    def _initial_size(self, nodes: dict[str, Node]) -> int:
        p = self.plan
        if p.size is not None:
            return p.size
        floor = {16: 9 * MiB, 32: 34 * MiB}.get(p.newfs_opts.get("fat_type") or 0, MiB) \
            if p.fat else MiB
        size = _round(max(sizing.first_guess(p.fstype, nodes), p.minsize, floor))
        if p.maxsize is not None:
            if p.maxsize < p.minsize:
                raise Usage(f"-M {p.maxsize} is below -m {p.minsize}")
            size = min(size, p.maxsize)
        return size

    def _grow(self, size: int, short_bytes: int) -> int:
        new = _round(max(int(size * 1.25), size + short_bytes + MiB))
        if self.plan.maxsize is not None and new > self.plan.maxsize:
            if size >= self.plan.maxsize:
                raise MakefsError(f"{self.plan.source} does not fit in "
                                  f"{self._human(self.plan.maxsize)} (-M)")
            new = self.plan.maxsize
        return new

    # -- one try at one size -----------------------------------------------------------------
    def _attempt(self, nodes: dict[str, Node], size: int) -> None:
        import rumpkernel

        p = self.plan
        with open(self.tmp, "wb") as f:
            f.truncate(size)
        host = None
        if p.reproducible:
            seed = hashlib.sha256(f"{p.frozen_ns}:{p.fstype}:{p.label}".encode()).digest()
            host = reproducible_host(p.frozen_ns or 0, seed)
        # only the file system needed: booting no network stack saves a third of the start
        done = False
        k = rumpkernel.boot(host, components=("vfs", "msdos" if p.fat else "ext2"))
        try:
            try:
                k.newfs(self._kernel_type(), os.path.abspath(self.tmp),
                        **self._newfs_options(nodes, size))
                # ext "build": no journal, no undo log, one write-back at unmount (the
                # image is thrown away unless the whole build succeeds)
                k.mount_image(os.path.abspath(self.tmp), "/image",
                              fstype=self._kernel_type(), options="quiet" if p.fat else "build")
            except OSError as e:
                detail = getattr(e, "detail", None)
                if p.size is None and e.errno == errno.EINVAL:
                    raise _NoSpace(size, f"no {p.fstype} layout fits: {detail}") from None
                raise MakefsError(f"{p.image}: cannot make a {p.fstype} file system of "
                                  f"{self._human(size)}: {detail or e.strerror}") from None
            rootfd = k.sys.open("/", os.O_RDONLY | os.O_DIRECTORY)
            k.sys.chroot("/image")
            k.sys.chdir("/")
            self._check_room(k, nodes, size)
            Writer(k.sys, nodes, fat=p.fat, put_file=k.put_file).write()
            k.sys.fchdir(rootfd)
            k.sys.chroot(".")
            k.sys.close(rootfd)
            k.sys.chdir("/")
            k.sys.unmount("/image")
            done = True
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _NoSpace(0, _what_ran_out(k)) from None
            raise MakefsError(f"{e.filename or p.image}: {os.strerror(e.errno or errno.EIO)}"
                              ) from None
        finally:
            k.halt(sync=done)     # a failed build is thrown away: nothing more to write

    def _kernel_type(self) -> str:
        return "msdos" if self.plan.fat else self.plan.fstype

    def _newfs_options(self, nodes: dict[str, Node], size: int) -> dict[str, Any]:
        p = self.plan
        opts = dict(p.newfs_opts)
        if p.label:
            opts["label"] = p.label
        if p.fat:
            roots = sizing.fat_root_entries(nodes)
            if roots > 512 and "root_entries" not in opts:
                opts["root_entries"] = -(-roots // 16) * 16
            if p.uuid:
                try:
                    opts["volume_id"] = int(p.uuid.replace("-", ""), 16) & 0xFFFFFFFF
                except ValueError:
                    raise Usage(f"invalid volume id {p.uuid!r} (8 hex digits)") from None
            elif not p.reproducible and "volume_id" not in opts:
                opts["volume_id"] = int.from_bytes(os.urandom(4), "little")
            return opts
        opts.setdefault("block_size", 4096 if size >= 8 * MiB else 1024)
        opts["zeroed"] = True       # a new sparse file: tables and journal read as zeros
        if "inode_ratio" not in opts:
            opts.setdefault("inodes", self._inodes(nodes, size))
        if p.uuid:
            try:
                opts["uuid"] = str(uuid.UUID(p.uuid))
            except ValueError:
                raise Usage(f"invalid UUID {p.uuid!r}") from None
        elif not p.reproducible:
            opts["uuid"] = str(uuid.uuid4())
        opts["timestamp"] = (p.frozen_ns // 10**9) if p.reproducible else int(time.time())
        return opts

    def _inodes(self, nodes: dict[str, Node], size: int) -> int:
        """What the tree needs plus headroom (25%, at least 128, or -f); with -s at least
        mke2fs's density for the size."""
        need = sizing.ext_inodes(nodes) + 11
        want = need + max(_extra(self.plan.free_files, need), need // 4, 128)
        if self.plan.size is not None:
            want = max(want, size // mke2fs_inode_ratio(size))
        return want

    def _check_room(self, k: Any, nodes: dict[str, Node], size: int) -> None:
        v = k.sys.statvfs("/")
        bs = v.f_frsize
        if self.plan.fat:
            need = sizing.fat_clusters(nodes, bs)
        else:
            extents = "extent" in " ".join(k.sys.fsinfo("/").get("info", {}).get("features",
                                                                                 []))
            need = sizing.ext_blocks(nodes, bs, extents)
        want = need
        if self.plan.size is None:
            want += max(_extra(self.plan.free_blocks, need * bs) // bs, need // 20, 16)
        if v.f_bfree < want:
            raise _NoSpace((want - v.f_bfree) * bs, f"{want - v.f_bfree} blocks short")
        inodes = sizing.ext_inodes(nodes)
        if not self.plan.fat and v.f_files and v.f_ffree < inodes:
            raise _NoSpace((inodes - v.f_ffree) * 256,
                           f"out of inodes: the image has {v.f_ffree} free, the tree needs "
                           f"{inodes}")


def mke2fs_inode_ratio(size: int) -> int:
    """Bytes per inode as mke2fs.conf's floppy / small / default / big / huge types give."""
    if size < 3 * MiB:
        return 8192
    if size < 512 * MiB:
        return 4096
    if size < 4 << 40:
        return 16384
    return 32768 if size < 16 << 40 else 65536


def data_segments(hfd: int, size: int) -> list[tuple[int, int]] | None:
    """The [start, end) ranges of a sparse host file that hold data (SEEK_DATA/SEEK_HOLE), or
    None when the file has no holes or the host cannot say."""
    st = os.fstat(hfd)
    if not size or st.st_blocks * 512 >= size or not hasattr(os, "SEEK_DATA"):
        return None
    out: list[tuple[int, int]] = []
    pos = 0
    try:
        while pos < size:
            try:
                start = os.lseek(hfd, pos, os.SEEK_DATA)
            except OSError as e:
                if e.errno == errno.ENXIO:
                    break  # only a hole is left
                raise
            end = min(os.lseek(hfd, start, os.SEEK_HOLE), size)
            if end > start:
                out.append((start, end))
            pos = end
    except OSError:
        return None
    return out


def _reason(e: OSError) -> str:
    """The errno's words and the kernel's detail ("No space left on device (msdos: directory
    full (65536 entries))")."""
    std = os.strerror(e.errno or errno.EIO)
    text = e.strerror or std
    return text if text.startswith(std) else f"{std} ({text})"


def _what_ran_out(k: Any) -> str:
    try:
        v = k.sys.statvfs("/")
    except OSError:
        return "file system full"
    if v.f_files and not v.f_ffree:
        return f"out of inodes (all {v.f_files} in use)"
    return "out of blocks"


def _extra(spec: str | None, base: int) -> int:
    if not spec:
        return 0
    if spec.endswith("%"):
        return int(base * float(spec[:-1]) / 100)
    return parse_size(spec)


def _round(n: int) -> int:
    return -(-n // MiB) * MiB


# ---- writing the tree -------------------------------------------------------------------------
class Writer:
    """Creates ``nodes`` through a ``sys`` facade rooted at the image (parents first, times of
    directories last so adding entries does not disturb them)."""

    CHUNK = 4 * MiB
    DIRFDS = 64

    def __init__(self, sys_: Any, nodes: dict[str, Node], *, fat: bool,
                 put_file: Any = None) -> None:
        self.sys = sys_
        self.nodes = nodes
        self.fat = fat
        self.put_file = put_file    # the kernel's one-entry file creation (local kernels)
        self.links: dict[tuple[int, int], str] = {}
        self.dirfds: dict[str, int] = {}

    def write(self) -> None:
        self.sys.umask(0)
        try:
            for rel, n in self.nodes.items():
                if rel:
                    try:
                        self._create("/" + rel, n)
                    except OSError as e:
                        if e.errno in (errno.ENOSPC, errno.EDQUOT) and not self._room_for(n):
                            raise
                        raise MakefsError(f"{n.host or rel}: cannot be stored in the image: "
                                          f"{_reason(e)}") from None
        finally:
            for fd in self.dirfds.values():
                self.sys.close(fd)
            self.dirfds.clear()
        for rel, n in reversed(self.nodes.items()):
            if n.kind == "dir":
                self._attrs("/" + rel, n)

    def _room_for(self, n: Node) -> bool:
        """After ENOSPC: is there still room for ``n`` (so a bigger image would not help:
        a full FAT directory, a name the directory cannot take)?"""
        try:
            v = self.sys.statvfs("/")
        except OSError:
            return False
        if v.f_files and not v.f_ffree:
            return False
        need = n.size if n.data is None else n.data
        return v.f_bavail * v.f_frsize >= need + 4 * max(v.f_frsize, 4096)

    def _dirfd(self, rel: str) -> int:
        """An open descriptor of directory ``rel``: files are created relative to it, which
        spares the kernel a path walk from the root for every file.  At most DIRFDS stay
        open (least recently used closed first), so any tree fits any descriptor limit."""
        fd = self.dirfds.pop(rel, None)
        if fd is None:
            if len(self.dirfds) >= self.DIRFDS:
                old = next(iter(self.dirfds))
                self.sys.close(self.dirfds.pop(old))
            fd = self.sys.open("/" + rel, os.O_RDONLY | os.O_DIRECTORY)
        self.dirfds[rel] = fd  # most recently used last
        return fd

    def _create(self, path: str, n: Node) -> None:
        s = self.sys
        if n.kind == "dir":
            try:
                s.mkdir(path, n.mode)
            except FileExistsError:
                if not stat.S_ISDIR(s.lstat(path).st_mode):
                    raise
        elif n.kind == "file":
            if n.link_key is not None:
                first = self.links.get(n.link_key)
                if first is not None:
                    s.link(first, path)
                    return
                self.links[n.link_key] = path
            self._file(path, n)
        elif n.kind == "link":
            s.symlink(n.target, path)
            if not self.fat:
                s.chown(path, n.uid, n.gid, follow_symlinks=False)
                s.utime(path, ns=(n.atime_ns, n.mtime_ns), follow_symlinks=False)
        else:
            s.mknod(path, IFMT[n.kind] | n.mode, n.rdev)
            s.chown(path, n.uid, n.gid, follow_symlinks=False)
            s.chmod(path, n.mode)
            s.utime(path, ns=(n.atime_ns, n.mtime_ns), follow_symlinks=False)

    def _file(self, path: str, n: Node) -> None:
        s = self.sys
        parent, _, name = n.rel.rpartition("/")
        if self.put_file is not None and n.size <= self.CHUNK:
            data = self._small(n)
            if data is not None:    # whole and without holes: one kernel entry
                owner = (0, 0) if self.fat else (n.uid, n.gid)
                self.put_file(self._dirfd(parent), os.fsencode(name), n.mode & 0o7777,
                              *owner, data, len(data), n.atime_ns, n.mtime_ns)
                return
        fd = s.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, n.mode,
                    dir_fd=self._dirfd(parent))
        try:
            if n.host is not None and n.size:
                self._copy(n.host, n.size, fd)
            # a new file is root's, group 0 (its directory is still root's: directories get
            # their owners last), so chown only when the tree says otherwise; chown clears
            # set-id bits, so the mode goes back on after it
            if not self.fat and (n.uid or n.gid):
                s.fchown(fd, n.uid, n.gid)
                if n.mode & 0o7000:
                    s.fchmod(fd, n.mode)
            elif self.fat and not n.mode & 0o200:
                s.fchmod(fd, n.mode)
            s.futimens(fd, (n.atime_ns, n.mtime_ns))
        finally:
            s.close(fd)

    def _small(self, n: Node) -> bytes | None:
        """The contents of a small host file, or None when it has holes (ext keeps them) or
        has grown past CHUNK since the scan (the descriptor path copies those)."""
        if n.host is None or not n.size:
            return b""
        try:
            hfd = os.open(n.host, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            try:
                # the scan saw holes (n.data): does the file still have them?
                if not self.fat and n.data is not None and \
                        data_segments(hfd, n.size) is not None:
                    return None
                data = os.read(hfd, n.size + 1)     # short: the end (a regular file)
                if len(data) < n.size:              # shrunk since the scan: read to the end
                    parts = [data]
                    while data and sum(map(len, parts)) <= self.CHUNK:
                        data = os.read(hfd, self.CHUNK + 1)
                        parts.append(data)
                    data = b"".join(parts)
            finally:
                os.close(hfd)
        except OSError as e:
            raise MakefsError(f"{n.host}: {os.strerror(e.errno or errno.EIO)}") from None
        return None if len(data) > n.size or len(data) > self.CHUNK else data

    def _copy(self, host: str, size: int, fd: int) -> None:
        try:
            hfd = os.open(host, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            try:
                segments = None if self.fat else data_segments(hfd, size)
                if segments is None:
                    self._copy_range(hfd, fd, 0, None)
                    return
                for start, end in segments:
                    os.lseek(hfd, start, os.SEEK_SET)
                    self.sys.lseek(fd, start, os.SEEK_SET)
                    self._copy_range(hfd, fd, start, end)
                self.sys.ftruncate(fd, size)  # a hole at the end
            finally:
                os.close(hfd)
        except OSError as e:
            if e.filename is None or e.filename == host:
                raise MakefsError(f"{host}: {os.strerror(e.errno or errno.EIO)}") from None
            raise

    def _copy_range(self, hfd: int, fd: int, start: int, end: int | None) -> None:
        """Copy host bytes [start, end) (to the end of the file when ``end`` is None) from
        the current positions."""
        write = self.sys.write
        left = None if end is None else end - start
        while left is None or left > 0:
            data = os.read(hfd, self.CHUNK if left is None else min(self.CHUNK, left))
            if not data:
                break
            if left is not None:
                left -= len(data)
            done = write(fd, data)  # whole bytes: copyin takes them without a copy
            view = memoryview(data)[done:]
            while view:
                view = view[write(fd, view):]

    def _attrs(self, path: str, n: Node) -> None:
        s = self.sys
        if not self.fat:
            if n.uid or n.gid:
                s.chown(path, n.uid, n.gid)
            if n.uid or n.gid or n.mode & 0o7000 or not path.strip("/"):
                s.chmod(path, n.mode)
        s.utime(path, ns=(n.atime_ns, n.mtime_ns))
